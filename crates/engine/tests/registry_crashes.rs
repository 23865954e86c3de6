//! The registry after crashes and corruption: what reconcile repairs, what it refuses,
//! and what it leaves alone. Unprivileged except one test that mounts a tmpfs when run as
//! root (skipped otherwise); each test has its own temp root. Split from registry.rs,
//! which keeps the concurrency tests.

use std::path::PathBuf;
use std::time::Duration;

use codex_engine::registry::{Keeping, Registry, Repair, INDEX_FILE, INDEX_VERSION, STATE_FILE};
use codex_engine::Error;
use serde_json::json;

mod common;
use common::{assert_consistent, no_labels, temp_root};

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

/// An ephemeral (`run --rm`) record is written without fsync, so a host crash may leave
/// it empty: the reconcile after a reboot removes such a container (its name too), as its
/// end would have. Without a reboot an empty record is corruption like any other (reported,
/// left), and after one a record with content that does not load is left as well.
#[test]
fn an_empty_record_is_removed_after_a_reboot_and_reported_before() {
    let tmp = temp_root();
    let reg = Registry::open(tmp.path()).expect("open");
    let lost = reg
        .create_container_with(
            Some("lost"),
            json!({}),
            no_labels(),
            Keeping::Ephemeral { remover: None },
            |_, _, _| Ok(()),
        )
        .expect("ephemeral create");
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("boot id");
    assert_eq!(lost.ephemeral_boot.as_deref(), Some(boot.trim()));
    assert!(reg.get("lost").expect("get").ephemeral());
    let torn = reg
        .create_container(Some("torn"), json!({}), no_labels())
        .expect("create");
    assert!(!torn.ephemeral());
    let lost_state = reg.container_dir(&lost.id).expect("dir").join(STATE_FILE);
    let torn_state = reg.container_dir(&torn.id).expect("dir").join(STATE_FILE);
    std::fs::write(&lost_state, b"").expect("empty it, as the crash did");
    std::fs::write(&torn_state, br#"{"version": 1, "id": "#).expect("write");

    let before = reg.reconcile().expect("reconcile");
    assert!(before.repairs.is_empty(), "{:?}", before.repairs);
    let mut paths: Vec<PathBuf> = before.problems.iter().map(|p| p.path.clone()).collect();
    paths.sort();
    let mut want = vec![lost_state.clone(), torn_state.clone()];
    want.sort();
    assert_eq!(paths, want);

    let after = reg
        .reconcile_after_reboot()
        .expect("reconcile after a reboot");
    assert_eq!(
        after.repairs,
        vec![Repair::RemovedLostInCrash {
            id: lost.id.clone(),
            names: vec!["lost".into()],
        }]
    );
    assert!(after.repairs[0]
        .to_string()
        .contains("empty after a reboot"));
    assert_eq!(after.problems.len(), 1, "{:?}", after.problems);
    assert_eq!(after.problems[0].path, torn_state);
    assert!(!reg.container_dir(&lost.id).expect("dir").exists());
    assert!(matches!(reg.get("lost"), Err(Error::NotFound { .. })));
    assert!(
        torn_state.exists(),
        "a record with content is never removed"
    );
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
