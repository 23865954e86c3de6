//! The registry under concurrency and after crashes. Unprivileged (one test mounts a tmpfs
//! when run as root and is skipped otherwise); each test has its own temp root.
//!
//! The multi-process tests re-run this test binary as workers: the ignored test `worker`
//! does one job described by `WORKER_*` environment variables and prints `RESULT ...`.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use codex_engine::registry::{
    is_full_id, ContainerRecord, ContainerStatus, Registry, Repair, CONTAINERS_DIR, INDEX_FILE,
    INDEX_VERSION, NAMES_DIR, SHARED_DIR_GID, STATE_FILE,
};
use codex_engine::Error;
use serde_json::json;

const N: usize = 50;

fn temp_root() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("codex-registry-")
        .tempdir()
        .expect("temp dir")
}

fn no_labels() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// Every name in the index has a directory whose state.json has that id and name; every
/// directory is in the index; no temp file is left; reconcile finds nothing to do.
fn assert_consistent(reg: &Registry) -> Vec<ContainerRecord> {
    reg.index().expect("index loads");
    let links = reg.container_names().expect("names/ lists");
    let mut dirs = BTreeSet::new();
    for entry in std::fs::read_dir(reg.containers_dir()).expect("read containers/") {
        let entry = entry.expect("entry");
        let name = entry.file_name().into_string().expect("utf-8 name");
        assert!(is_full_id(&name), "unexpected entry containers/{name}");
        for inner in std::fs::read_dir(entry.path()).expect("read container dir") {
            let inner = inner
                .expect("entry")
                .file_name()
                .into_string()
                .expect("utf-8");
            assert_eq!(inner, STATE_FILE, "unexpected file in containers/{name}");
        }
        dirs.insert(name);
    }
    let indexed: BTreeSet<String> = links.values().cloned().collect();
    assert_eq!(indexed, dirs, "names/ and containers/ disagree");
    assert_eq!(indexed.len(), links.len(), "an id has two names");
    for entry in std::fs::read_dir(reg.root()).expect("read root") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8");
        assert!(!name.contains(".tmp-"), "temp file left: {name}");
    }
    let records = reg.list().expect("list");
    assert_eq!(records.len(), dirs.len());
    for record in &records {
        assert_eq!(links.get(&record.name), Some(&record.id));
    }
    let reconciled = reg.reconcile().expect("reconcile");
    assert!(
        reconciled.is_clean(),
        "reconcile found work: {reconciled:?}"
    );
    records
}

fn is_name_in_use(e: &Error, wanted: &str) -> bool {
    matches!(e, Error::NameInUse { kind: "container", name } if name == wanted)
}

#[test]
fn open_creates_the_layout_with_private_modes() {
    let tmp = temp_root();
    let root = tmp.path().join("deep/root");
    let reg = Registry::open(&root).expect("open");
    assert_eq!(mode(&root), 0o710);
    assert_eq!(mode(&root.join(CONTAINERS_DIR)), 0o710);
    for d in [root.clone(), root.join(CONTAINERS_DIR)] {
        let md = std::fs::metadata(&d).expect("stat");
        assert_eq!((md.uid(), md.gid()), (0, SHARED_DIR_GID), "{}", d.display());
    }
    assert_eq!(mode(&root.join(INDEX_FILE)), 0o600);
    assert_eq!(mode(&root.join("registry.lock")), 0o600);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join(INDEX_FILE)).expect("read")).expect("json");
    assert_eq!(
        index,
        json!({"version": 2, "images": {}, "volumes": {}, "networks": {}})
    );
    assert_eq!(mode(&root.join(NAMES_DIR)), 0o700);

    let rec = reg
        .create_container(Some("web"), json!({}), no_labels())
        .expect("create");
    let dir = reg.container_dir(&rec.id).expect("dir");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(STATE_FILE)), 0o600);
    assert_eq!(mode(&root.join(INDEX_FILE)), 0o600);

    // A root an earlier version left open to every host user is closed on the next open.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711)).expect("chmod");
    std::os::unix::fs::chown(&root, Some(0), Some(0)).expect("chown");
    Registry::open(&root).expect("reopen an old root");
    assert_eq!(mode(&root), 0o710);

    // Opening again keeps what is there.
    let again = Registry::open(&root).expect("reopen");
    assert_eq!(again.get("web").expect("get").id, rec.id);
    assert_consistent(&again);
}

#[test]
fn a_container_goes_through_create_get_update_list_and_remove() {
    let tmp = temp_root();
    let reg = Registry::open(tmp.path()).expect("open");
    let labels = BTreeMap::from([("app".to_string(), "bot".to_string())]);
    let rec = reg
        .create_container(Some("bot-1"), json!({"image": "busybox"}), labels.clone())
        .expect("create");
    assert!(is_full_id(&rec.id), "{}", rec.id);
    assert_eq!(rec.name, "bot-1");
    assert_eq!(rec.status, ContainerStatus::Created);
    assert_eq!(rec.version, 1);
    assert_eq!(rec.labels, labels);
    assert_eq!(rec.restart_count, 0);
    assert!(
        rec.created.ends_with('Z') && rec.created.contains('T'),
        "{}",
        rec.created
    );
    assert_eq!(reg.get("bot-1").expect("by name"), rec);
    assert_eq!(reg.get(&rec.id).expect("by id"), rec);

    let running = reg
        .update_container(&rec.id, |r| {
            r.status = ContainerStatus::Running;
            r.pid = Some(4242);
            r.started_at = Some("2026-05-01T10:00:00.000000000Z".into());
            Ok(())
        })
        .expect("update");
    assert_eq!(running.status, ContainerStatus::Running);
    assert_eq!(reg.get("bot-1").expect("get"), running);

    let auto = reg
        .create_container(None, json!({}), no_labels())
        .expect("auto-named");
    let (adjective, noun) = auto.name.split_once('_').expect("adjective_noun");
    assert!(!adjective.is_empty() && !noun.is_empty(), "{}", auto.name);
    let listed: Vec<String> = reg
        .list()
        .expect("list")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(
        listed,
        vec!["bot-1".to_string(), auto.name.clone()],
        "oldest first"
    );
    assert_consistent(&reg);

    reg.remove_container(&rec.id).expect("rm");
    assert!(!reg.container_dir(&rec.id).expect("dir").exists());
    assert!(matches!(reg.get("bot-1"), Err(Error::NotFound { .. })));
    assert!(matches!(
        reg.remove_container(&rec.id),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        reg.update_container(&rec.id, |_| Ok(())),
        Err(Error::NotFound { .. })
    ));
    // The name is free again.
    reg.create_container(Some("bot-1"), json!({}), no_labels())
        .expect("reuse name");
    assert_eq!(assert_consistent(&reg).len(), 2);
}

#[test]
fn fifty_threads_creating_at_once_lose_nothing() {
    let tmp = temp_root();
    let reg = Registry::open(tmp.path()).expect("open");
    let barrier = Arc::new(Barrier::new(N));
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let (reg, barrier) = (reg.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                // Half named, half with generated names.
                let name = (i % 2 == 0).then(|| format!("t-{i}"));
                reg.create_container(name.as_deref(), json!({"i": i}), no_labels())
            })
        })
        .collect();
    let created: Vec<ContainerRecord> = handles
        .into_iter()
        .map(|h| h.join().expect("thread").expect("create"))
        .collect();
    let records = assert_consistent(&reg);
    assert_eq!(records.len(), N);
    let ids: BTreeSet<&str> = created.iter().map(|r| r.id.as_str()).collect();
    let names: BTreeSet<&str> = created.iter().map(|r| r.name.as_str()).collect();
    assert_eq!((ids.len(), names.len()), (N, N));
    for rec in &created {
        assert_eq!(&reg.get(&rec.id).expect("get"), rec);
    }
}

#[test]
fn fifty_threads_racing_for_one_name_have_exactly_one_winner() {
    let tmp = temp_root();
    let reg = Registry::open(tmp.path()).expect("open");
    let barrier = Arc::new(Barrier::new(N));
    let handles: Vec<_> = (0..N)
        .map(|_| {
            let (reg, barrier) = (reg.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                reg.create_container(Some("same"), json!({}), no_labels())
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let winners: Vec<&ContainerRecord> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1);
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(is_name_in_use(err, "same"), "{err}");
        assert_eq!(err.to_string(), "container name \"same\" is already in use");
    }
    let records = assert_consistent(&reg);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].id, winners[0].id);
}

#[test]
fn concurrent_updates_of_one_container_lose_nothing() {
    let tmp = temp_root();
    let reg = Registry::open(tmp.path()).expect("open");
    let rec = reg
        .create_container(Some("counter"), json!({}), no_labels())
        .expect("create");
    let barrier = Arc::new(Barrier::new(N));
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let (reg, barrier, id) = (reg.clone(), barrier.clone(), rec.id.clone());
            std::thread::spawn(move || {
                barrier.wait();
                reg.update_container(&id, |r| {
                    r.restart_count += 1;
                    r.labels.insert(format!("l{i}"), i.to_string());
                    Ok(())
                })
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread").expect("update");
    }
    let now = reg.get("counter").expect("get");
    assert_eq!(now.restart_count, N as u32);
    assert_eq!(now.labels.len(), N);
    assert_consistent(&reg);
}

// ---- many processes ----------------------------------------------------------------

/// Starts `n` workers doing `mode` on `root`; they begin together when `go` appears.
fn spawn_workers(n: usize, root: &Path, mode: &str, name: Option<&str>, go: &Path) -> Vec<Child> {
    let exe = std::env::current_exe().expect("current exe");
    (0..n)
        .map(|_| {
            let mut cmd = Command::new(&exe);
            cmd.args([
                "worker",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("WORKER_MODE", mode)
            .env("WORKER_ROOT", root)
            .env("WORKER_GO", go)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
            if let Some(name) = name {
                cmd.env("WORKER_NAME", name);
            }
            cmd.spawn().expect("spawn worker")
        })
        .collect()
}

/// The `RESULT` line of each worker.
fn results(children: Vec<Child>) -> Vec<String> {
    children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().expect("wait worker");
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            stdout
                .lines()
                .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r.to_string()))
                .unwrap_or_else(|| panic!("worker printed no result ({}): {stdout}", out.status))
        })
        .collect()
}

/// A worker process: not a test of its own (ignored; does nothing without `WORKER_MODE`).
#[test]
#[ignore = "run by the multi-process tests"]
fn worker() {
    let Some(mode) = std::env::var_os("WORKER_MODE") else {
        return;
    };
    let root = PathBuf::from(std::env::var_os("WORKER_ROOT").expect("WORKER_ROOT"));
    let go = PathBuf::from(std::env::var_os("WORKER_GO").expect("WORKER_GO"));
    let name = std::env::var("WORKER_NAME").ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !go.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    match mode.to_str() {
        Some("create") => {
            let created = Registry::open(&root)
                .and_then(|reg| reg.create_container(name.as_deref(), json!({}), no_labels()));
            match created {
                Ok(rec) => println!("RESULT created {} {}", rec.id, rec.name),
                Err(e @ Error::NameInUse { .. }) => println!("RESULT name-in-use {e}"),
                Err(e) => println!("RESULT error {e}"),
            }
        }
        // Creates and removes until killed.
        Some("churn") => {
            let reg = Registry::open(&root).expect("open");
            println!("RESULT churning");
            let busy = go.with_extension(format!("busy-{}", std::process::id()));
            for n in 0u64.. {
                let rec = reg
                    .create_container(None, json!({}), no_labels())
                    .expect("create");
                if rec.id.as_bytes()[0] < b'8' {
                    reg.remove_container(&rec.id).expect("rm");
                }
                // tells the test this worker is well into its churn (kills come after)
                if n == 20 {
                    std::fs::write(&busy, b"").expect("busy marker");
                }
            }
        }
        Some("default-root") => {
            println!(
                "RESULT {}",
                codex_engine::registry::default_root().display()
            )
        }
        other => panic!("unknown WORKER_MODE {other:?}"),
    }
}

#[test]
fn fifty_processes_creating_at_once_lose_nothing() {
    let tmp = temp_root();
    let root = tmp.path().join("root");
    let go = tmp.path().join("go");
    // The workers also race to create the layout.
    let children = spawn_workers(N, &root, "create", None, &go);
    std::fs::write(&go, b"").expect("go");
    let results = results(children);
    let mut ids = BTreeSet::new();
    let mut names = BTreeSet::new();
    for r in &results {
        let mut words = r.split(' ');
        assert_eq!(words.next(), Some("created"), "{r}");
        ids.insert(words.next().expect("id").to_string());
        names.insert(words.next().expect("name").to_string());
    }
    assert_eq!((ids.len(), names.len()), (N, N));
    let reg = Registry::open(&root).expect("open");
    let records = assert_consistent(&reg);
    let listed: BTreeSet<String> = records.into_iter().map(|r| r.id).collect();
    assert_eq!(listed, ids);
}

#[test]
fn fifty_processes_racing_for_one_name_have_exactly_one_winner() {
    let tmp = temp_root();
    let root = tmp.path().join("root");
    Registry::open(&root).expect("open");
    let go = tmp.path().join("go");
    let children = spawn_workers(N, &root, "create", Some("shared-name"), &go);
    std::fs::write(&go, b"").expect("go");
    let results = results(children);
    let winners: Vec<&String> = results
        .iter()
        .filter(|r| r.starts_with("created "))
        .collect();
    assert_eq!(winners.len(), 1, "{results:#?}");
    let losers = results
        .iter()
        .filter(|r| *r == "name-in-use container name \"shared-name\" is already in use")
        .count();
    assert_eq!(losers, N - 1, "{results:#?}");
    let reg = Registry::open(&root).expect("open");
    let records = assert_consistent(&reg);
    assert_eq!(records.len(), 1);
    assert!(winners[0].contains(&records[0].id));
}

#[test]
fn processes_killed_mid_create_or_rm_leave_what_reconcile_repairs() {
    let tmp = temp_root();
    let root = tmp.path().join("root");
    let reg = Registry::open(&root).expect("open");
    let go = tmp.path().join("go");
    let mut children = spawn_workers(4, &root, "churn", None, &go);
    std::fs::write(&go, b"").expect("go");
    // Kill only once every worker has done 20 create/rm rounds (it says so with a marker):
    // the kills then land mid-churn however slow the machine, not after a fixed 400 ms.
    let busy = || {
        std::fs::read_dir(tmp.path())
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with("go.busy-"))
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while busy() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(busy(), 4, "the workers never got going");
    for child in &mut children {
        child.kill().expect("kill -9 worker");
    }
    for r in results(children) {
        assert_eq!(r, "churning");
    }
    // Whatever the kills interrupted: the index loads, reconcile repairs the rest, and the
    // result is consistent (assert_consistent also asserts a second reconcile is clean).
    reg.index().expect("index loads after kill -9");
    let linked = reg.container_names().expect("names/ lists").len();
    let reconciled = reg.reconcile().expect("reconcile");
    assert!(reconciled.problems.is_empty(), "{:?}", reconciled.problems);
    let records = assert_consistent(&reg);
    assert!(
        records.len() + 4 >= linked,
        "reconcile dropped more than the interrupted operations: {} of {}",
        records.len(),
        linked
    );
    assert!(!records.is_empty(), "the workers left nothing to reconcile");
}

#[test]
fn default_root_reads_codex_ctr_root() {
    let tmp = temp_root();
    let exe = std::env::current_exe().expect("current exe");
    let run = |value: Option<&str>| {
        let mut cmd = Command::new(&exe);
        cmd.args(["worker", "--exact", "--ignored", "--nocapture"])
            .env("WORKER_MODE", "default-root")
            .env("WORKER_ROOT", tmp.path())
            .env("WORKER_GO", tmp.path())
            .env_remove("CODEX_CTR_ROOT")
            .stdout(Stdio::piped());
        if let Some(v) = value {
            cmd.env("CODEX_CTR_ROOT", v);
        }
        results(vec![cmd.spawn().expect("spawn")]).remove(0)
    };
    assert_eq!(run(None), "/var/lib/codex-ctr");
    assert_eq!(run(Some("")), "/var/lib/codex-ctr");
    assert_eq!(run(Some("/srv/ctr")), "/srv/ctr");
}

// ---- names and lookups ---------------------------------------------------------------

#[test]
fn a_taken_name_is_refused_and_leaves_nothing_behind() {
    let tmp = temp_root();
    let reg = Registry::open(tmp.path()).expect("open");
    reg.create_container(Some("db"), json!({}), no_labels())
        .expect("create");
    let index_before = std::fs::read(reg.index_path()).expect("read");
    let err = reg
        .create_container(Some("db"), json!({}), no_labels())
        .unwrap_err();
    assert!(is_name_in_use(&err, "db"), "{err}");
    assert_eq!(std::fs::read(reg.index_path()).expect("read"), index_before);
    assert_eq!(
        std::fs::read_dir(reg.containers_dir()).expect("ls").count(),
        1
    );
    assert_consistent(&reg);
}

#[test]
fn bad_names_and_configs_are_refused_naming_the_field() {
    let tmp = temp_root();
    let reg = Registry::open(tmp.path()).expect("open");
    let long = "a".repeat(129);
    for bad in ["", "-x", "../etc", "a/b", "with space", long.as_str()] {
        let err = reg
            .create_container(Some(bad), json!({}), no_labels())
            .unwrap_err();
        assert!(
            matches!(&err, Error::Invalid { field, .. } if field == "name"),
            "{bad:?}: {err}"
        );
    }
    reg.create_container(Some(&"a".repeat(128)), json!({}), no_labels())
        .expect("128 characters is fine");
    let err = reg.create_container(Some("x"), json!(["not", "an", "object"]), no_labels());
    assert!(matches!(err, Err(Error::Invalid { field, .. }) if field == "config"));
    let upper = "A".repeat(64);
    for bad_id in ["", "..", "abc", "../../etc/passwd", upper.as_str()] {
        assert!(
            matches!(reg.container_dir(bad_id), Err(Error::Invalid { .. })),
            "{bad_id:?}"
        );
        assert!(reg.remove_container(bad_id).is_err());
    }
    assert_eq!(assert_consistent(&reg).len(), 1);
}

#[test]
fn a_unique_id_prefix_finds_the_container_and_an_ambiguous_one_names_the_candidates() {
    let tmp = temp_root();
    let reg = Registry::open(tmp.path()).expect("open");
    // 17 ids over 16 hex digits: two of them share their first character.
    let recs: Vec<ContainerRecord> = (0..17)
        .map(|i| {
            reg.create_container(Some(&format!("c{i}")), json!({}), no_labels())
                .expect("create")
        })
        .collect();
    for rec in &recs {
        assert_eq!(reg.get(&rec.id[..12]).expect("12-char prefix").id, rec.id);
        assert_eq!(reg.resolve(&rec.id[..20]).expect("resolve"), rec.id);
    }
    let first = |r: &ContainerRecord| r.id[..1].to_string();
    let shared = recs
        .iter()
        .map(first)
        .find(|p| recs.iter().filter(|r| first(r) == *p).count() > 1)
        .expect("pigeonhole");
    let err = reg.get(&shared).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Ambiguous { kind: "container", ref matches, .. } if matches.len() > 1),
        "{msg}"
    );
    assert!(msg.contains("ambiguous"), "{msg}");
    for rec in recs.iter().filter(|r| first(r) == shared) {
        assert!(
            msg.contains(&rec.id[..12]) && msg.contains(&rec.name),
            "{msg}"
        );
    }
    // Not found: a prefix no id has, a word that is no name, nothing at all.
    if let Some(p) = "0123456789abcdef"
        .chars()
        .map(String::from)
        .find(|p| recs.iter().all(|r| !r.id.starts_with(p.as_str())))
    {
        assert!(matches!(reg.get(&p), Err(Error::NotFound { .. })));
    }
    assert!(matches!(reg.get("nothere"), Err(Error::NotFound { .. })));
    assert!(matches!(reg.get(""), Err(Error::Invalid { .. })));
}

#[test]
fn an_exact_name_wins_over_an_id_prefix() {
    let tmp = temp_root();
    let reg = Registry::open(tmp.path()).expect("open");
    let a = reg
        .create_container(Some("a"), json!({}), no_labels())
        .expect("create");
    let prefix = &a.id[..6];
    let b = reg
        .create_container(Some(prefix), json!({}), no_labels())
        .expect("create");
    assert_eq!(reg.get(prefix).expect("by name").id, b.id);
    assert_eq!(reg.get(&a.id[..7]).expect("longer prefix").id, a.id);
}

#[test]
fn an_update_cannot_rename_and_a_failed_update_writes_nothing() {
    let tmp = temp_root();
    let reg = Registry::open(tmp.path()).expect("open");
    let rec = reg
        .create_container(Some("keep"), json!({}), no_labels())
        .expect("create");
    let state = reg.container_dir(&rec.id).expect("dir").join(STATE_FILE);
    let before = std::fs::read(&state).expect("read");
    let err = reg
        .update_container(&rec.id, |r| {
            r.name = "other".into();
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid { ref field, .. } if field == "name"),
        "{err}"
    );
    let err = reg
        .update_container(&rec.id, |r| {
            r.status = ContainerStatus::Running;
            Err(Error::invalid("status", "refused by the caller"))
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "status: refused by the caller");
    assert_eq!(std::fs::read(&state).expect("read"), before);
}

// ---- crashes and corruption ------------------------------------------------------------

/// A state.json as the engine would write it, for pieces made by hand.
fn hand_made_record(id: &str, name: &str) -> Vec<u8> {
    serde_json::to_vec_pretty(&json!({
        "version": 1, "id": id, "name": name, "created": "2026-05-01T09:00:00.000000000Z",
        "status": "created", "pid": null, "supervisor_pid": null, "exit_code": null,
        "signal": null, "oom_killed": false, "error": null, "started_at": null,
        "finished_at": null, "restart_count": 0, "labels": {}, "config": {}
    }))
    .expect("json")
}

fn fake_id(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

/// Links `name` to `id` in names/ as a create or rename would (or a crash would leave).
fn link(reg: &Registry, name: &str, id: &str) {
    std::os::unix::fs::symlink(id, reg.names_dir().join(name)).expect("symlink");
}

fn edit_index(reg: &Registry, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reg.index_path()).expect("read")).expect("json");
    edit(&mut index);
    std::fs::write(reg.index_path(), serde_json::to_vec(&index).expect("json")).expect("write");
}

#[test]
fn a_crash_between_state_json_and_the_index_is_repaired_by_reconcile() {
    let tmp = temp_root();
    let reg = Registry::open(tmp.path()).expect("open");
    let kept = reg
        .create_container(Some("kept"), json!({}), no_labels())
        .expect("create");
    // The create of "ghost" wrote its directory and state.json, then died before the index.
    let id = fake_id('a');
    let dir = reg.containers_dir().join(&id);
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join(STATE_FILE), hand_made_record(&id, "ghost")).expect("write");

    // Until repaired it is invisible, and its name is free.
    assert!(matches!(reg.get("ghost"), Err(Error::NotFound { .. })));
    assert_eq!(reg.list().expect("list").len(), 1);

    let reconciled = reg.reconcile().expect("reconcile");
    assert_eq!(
        reconciled.repairs,
        vec![Repair::RemovedOrphan {
            id: id.clone(),
            name: Some("ghost".into())
        }]
    );
    assert!(reconciled.problems.is_empty(), "{:?}", reconciled.problems);
    assert!(reconciled.repairs[0].to_string().contains("ghost"));
    assert!(!dir.exists());
    assert_eq!(assert_consistent(&reg)[0].id, kept.id);
    reg.create_container(Some("ghost"), json!({}), no_labels())
        .expect("name is free");
}

#[test]
fn reconcile_repairs_every_kind_of_leftover_and_leaves_what_it_does_not_know() {
    let tmp = temp_root();
    let reg = Registry::open(tmp.path()).expect("open");
    let good = reg
        .create_container(Some("good"), json!({}), no_labels())
        .expect("create");
    let containers = reg.containers_dir();

    // A create that died after mkdir: a directory without state.json.
    let incomplete = fake_id('b');
    std::fs::create_dir(containers.join(&incomplete)).expect("mkdir");
    // An rm that died after renaming the directory, before deleting it.
    let removing = containers.join(format!(".removing-{}", fake_id('c')));
    std::fs::create_dir_all(removing.join("rootfs/etc")).expect("mkdir");
    std::fs::write(removing.join("rootfs/etc/hosts"), b"x").expect("write");
    // An index name whose directory is gone, one whose directory has no state.json, and a
    // second name for the good container.
    let dangling = fake_id('d');
    let no_state = fake_id('e');
    std::fs::create_dir(containers.join(&no_state)).expect("mkdir");
    link(&reg, "dangling", &dangling);
    link(&reg, "no-state", &no_state);
    link(&reg, "alias", &good.id);
    // Temp files of writers that died.
    let tmp_index = reg.root().join(".registry.json.tmp-99999-0");
    std::fs::write(&tmp_index, b"{").expect("write");
    let good_dir = reg.container_dir(&good.id).expect("dir");
    let tmp_state = good_dir.join(".state.json.tmp-99999-3");
    std::fs::write(&tmp_state, b"{").expect("write");
    // Something that is not ours.
    let stranger = containers.join("notes.txt");
    std::fs::write(&stranger, b"mine").expect("write");

    let reconciled = reg.reconcile().expect("reconcile");
    let mut expected = vec![
        Repair::RemovedIncomplete {
            id: incomplete.clone(),
        },
        Repair::RemovedLeftover {
            path: removing.clone(),
        },
        Repair::DroppedName {
            name: "dangling".into(),
            id: dangling,
        },
        Repair::DroppedName {
            name: "no-state".into(),
            id: no_state.clone(),
        },
        Repair::DroppedName {
            name: "alias".into(),
            id: good.id.clone(),
        },
        Repair::RemovedTempFile {
            path: tmp_index.clone(),
        },
        Repair::RemovedTempFile {
            path: tmp_state.clone(),
        },
    ];
    let mut got = reconciled.repairs.clone();
    let key = |r: &Repair| format!("{r:?}");
    expected.sort_by_key(key);
    got.sort_by_key(key);
    assert_eq!(got, expected);
    assert_eq!(reconciled.problems.len(), 1, "{:?}", reconciled.problems);
    assert_eq!(reconciled.problems[0].path, stranger);
    for gone in [
        containers.join(&incomplete),
        containers.join(&no_state),
        removing,
        tmp_index,
        tmp_state,
    ] {
        assert!(!gone.exists(), "{} is still there", gone.display());
    }
    assert_eq!(std::fs::read(&stranger).expect("left alone"), b"mine");
    std::fs::remove_file(&stranger).expect("rm");
    let records = assert_consistent(&reg);
    assert_eq!(records.len(), 1);
    assert_eq!(reg.get("good").expect("get").id, good.id);
}

#[test]
fn reconcile_gives_the_record_the_index_name() {
    let tmp = temp_root();
    let reg = Registry::open(tmp.path()).expect("open");
    let rec = reg
        .create_container(Some("right"), json!({}), no_labels())
        .expect("create");
    let state = reg.container_dir(&rec.id).expect("dir").join(STATE_FILE);
    std::fs::write(&state, hand_made_record(&rec.id, "wrong")).expect("write");
    let reconciled = reg.reconcile().expect("reconcile");
    assert_eq!(
        reconciled.repairs,
        vec![Repair::FixedName {
            id: rec.id.clone(),
            was: "wrong".into(),
            now: "right".into()
        }]
    );
    assert_eq!(reg.get("right").expect("get").name, "right");
    assert_consistent(&reg);
}

#[test]
fn a_corrupt_state_json_is_reported_and_rm_still_removes_the_container() {
    let tmp = temp_root();
    let reg = Registry::open(tmp.path()).expect("open");
    let rec = reg
        .create_container(Some("broken"), json!({}), no_labels())
        .expect("create");
    let state = reg.container_dir(&rec.id).expect("dir").join(STATE_FILE);
    std::fs::write(&state, br#"{"version": 1, "id": "#).expect("write");

    let err = reg.get("broken").unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { path, .. } if *path == state),
        "{err}"
    );
    assert!(
        err.to_string().contains(&state.display().to_string()),
        "{err}"
    );
    assert!(matches!(reg.list(), Err(Error::Corrupt { .. })));
    let reconciled = reg.reconcile().expect("reconcile does not fail on it");
    assert!(reconciled.repairs.is_empty());
    assert_eq!(reconciled.problems.len(), 1);
    assert_eq!(reconciled.problems[0].path, state);

    // A wrong type names the field.
    let mut bad: serde_json::Value =
        serde_json::from_slice(&hand_made_record(&rec.id, "broken")).expect("json");
    bad["status"] = json!("zombie");
    std::fs::write(&state, serde_json::to_vec(&bad).expect("json")).expect("write");
    let msg = reg.get("broken").unwrap_err().to_string();
    assert!(msg.contains("status") && msg.contains("zombie"), "{msg}");

    reg.remove_container(&rec.id)
        .expect("rm of a corrupt container");
    assert!(assert_consistent(&reg).is_empty());
}

#[test]
fn a_corrupt_registry_json_is_an_error_naming_the_file() {
    let tmp = temp_root();
    let reg = Registry::open(tmp.path()).expect("open");
    reg.create_container(Some("x"), json!({}), no_labels())
        .expect("create");
    let index = reg.index_path();
    std::fs::write(&index, b"{\"version\": 1, \"containers\": {\"x\": ").expect("corrupt it");
    let check = |err: Error| {
        let msg = err.to_string();
        assert!(
            matches!(&err, Error::Corrupt { path, .. } if *path == index),
            "{msg}"
        );
        assert!(msg.starts_with(&index.display().to_string()), "{msg}");
        assert!(msg.contains("not valid JSON"), "{msg}");
    };
    // Containers are found through names/, which does not read the index.
    assert_eq!(reg.get("x").expect("get").name, "x");
    assert_eq!(reg.list().expect("list").len(), 1);
    check(reg.index().unwrap_err());
    check(
        reg.create_container(Some("y"), json!({}), no_labels())
            .unwrap_err(),
    );
    check(reg.reconcile().unwrap_err());
    check(reg.update(|_| Ok(())).unwrap_err());
    check(
        Registry::open(tmp.path())
            .and_then(|r| r.index())
            .unwrap_err(),
    );
    // Nothing was overwritten or removed while refusing.
    assert_eq!(
        std::fs::read_dir(reg.containers_dir()).expect("ls").count(),
        1
    );
}

#[test]
fn a_file_from_a_newer_version_is_refused_naming_both_versions() {
    let tmp = temp_root();
    let reg = Registry::open(tmp.path()).expect("open");
    let newer = INDEX_VERSION + 1;
    edit_index(&reg, |index| {
        index["version"] = json!(newer);
        index["pods"] = json!({});
    });
    let msg = reg.index().unwrap_err().to_string();
    assert!(
        msg.contains("registry.json") && msg.contains(&format!("version {newer}")),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("up to version {INDEX_VERSION}")),
        "{msg}"
    );
}

#[test]
fn a_lost_index_is_refused_rather_than_emptied() {
    let tmp = temp_root();
    let reg = Registry::open(tmp.path()).expect("open");
    let rec = reg
        .create_container(Some("precious"), json!({}), no_labels())
        .expect("create");
    std::fs::remove_file(reg.index_path()).expect("lose the index");
    let err = Registry::open(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { path, .. } if path.ends_with(INDEX_FILE)),
        "{err}"
    );
    assert!(reg.reconcile().is_err());
    assert!(reg
        .container_dir(&rec.id)
        .expect("dir")
        .join(STATE_FILE)
        .exists());
}

#[test]
fn the_index_transaction_keeps_other_maps_and_writes_only_changes() {
    let tmp = temp_root();
    let reg = Registry::open(tmp.path()).expect("open");
    let rec = reg
        .create_container(Some("c"), json!({}), no_labels())
        .expect("create");
    reg.update(|index| {
        index
            .images
            .insert("busybox:latest".into(), "sha256:abc".into());
        Ok(())
    })
    .expect("update");
    let index = reg.index().expect("index");
    assert_eq!(
        index.images.get("busybox:latest").map(String::as_str),
        Some("sha256:abc")
    );
    assert_eq!(
        reg.container_names().expect("names").get("c"),
        Some(&rec.id)
    );
    assert_eq!(reg.name_of(&rec.id).expect("name_of"), Some("c".into()));

    let mtime = || {
        std::fs::metadata(reg.index_path())
            .expect("stat")
            .modified()
            .expect("mtime")
    };
    let before = mtime();
    std::thread::sleep(Duration::from_millis(20));
    let n = reg
        .update(|index| Ok(index.images.len()))
        .expect("read-only update");
    assert_eq!(n, 1);
    assert_eq!(mtime(), before, "an unchanged index was rewritten");
    let err = reg
        .update(|index| {
            index.images.clear();
            Err::<(), _>(Error::invalid("image", "no"))
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "image: no");
    assert_eq!(reg.index().expect("index").images.len(), 1);
}

/// A mount below a container directory (a rootfs, a volume) must never be deleted through.
#[test]
fn rm_refuses_a_container_with_something_mounted_below() {
    if !nix::unistd::geteuid().is_root() {
        codex_tests::skip("mounting a tmpfs needs root");
        return;
    }
    let tmp = temp_root();
    let reg = Registry::open(tmp.path()).expect("open");
    let rec = reg
        .create_container(Some("mounted"), json!({}), no_labels())
        .expect("create");
    let mnt = reg.container_dir(&rec.id).expect("dir").join("rootfs");
    std::fs::create_dir(&mnt).expect("mkdir");
    nix::mount::mount(
        Some("tmpfs"),
        &mnt,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .expect("mount tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let guard = Unmount(mnt.clone());
    std::fs::write(mnt.join("data"), b"precious").expect("write");

    let err = reg.remove_container(&rec.id).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("still mounted") && msg.contains(&mnt.display().to_string()),
        "{msg}"
    );
    assert_eq!(std::fs::read(mnt.join("data")).expect("kept"), b"precious");
    assert_eq!(reg.get("mounted").expect("still registered").id, rec.id);

    // Reconcile also leaves an unlisted directory with a mount below alone.
    std::fs::remove_file(reg.names_dir().join("mounted")).expect("unlink the name");
    let reconciled = reg.reconcile().expect("reconcile");
    assert!(reconciled.repairs.is_empty(), "{:?}", reconciled.repairs);
    assert_eq!(reconciled.problems.len(), 1);
    assert_eq!(std::fs::read(mnt.join("data")).expect("kept"), b"precious");

    drop(guard);
    reg.remove_container(&rec.id)
        .expect("rm after unmount (of an unlisted directory)");
    assert!(assert_consistent(&reg).is_empty());
}

#[test]
fn the_index_transaction_cannot_touch_container_names() {
    let tmp = temp_root();
    let reg = Registry::open(tmp.path()).expect("open");
    reg.create_container(Some("c"), json!({}), no_labels())
        .expect("create");
    let err = reg
        .update(|index| {
            *index =
                serde_json::from_value(json!({"version": 1, "containers": {"x": fake_id('f')}}))
                    .expect("a version 1 index");
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { field, .. } if field == "containers"),
        "{err}"
    );
    assert_eq!(assert_consistent(&reg).len(), 1);
}
