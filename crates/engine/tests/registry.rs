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
    is_full_id, ContainerRecord, ContainerStatus, Registry, CONTAINERS_DIR, INDEX_FILE, NAMES_DIR,
    SHARED_DIR_GID, STATE_FILE,
};
use codex_engine::Error;
use serde_json::json;

const N: usize = 50;

mod common;
use common::{assert_consistent, is_name_in_use, mode, no_labels, temp_root};

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
