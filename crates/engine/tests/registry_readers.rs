//! Readers without the lock (`get`, `inspect`, `stop`'s wait) racing an `rm`: they see the
//! container or see it gone, never a "corrupt" listed container. Unprivileged.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use codex_engine::registry::Registry;
use codex_engine::Error;
use serde_json::json;

#[test]
fn a_reader_racing_rm_sees_the_container_or_not_found_never_corrupt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let reg = Arc::new(Registry::open(dir.path()).expect("open"));
    let rounds = 150;
    let mut seen_gone = 0;
    let mut seen_present = 0;
    for round in 0..rounds {
        let name = format!("c{round}");
        let rec = reg
            .create_container(Some(&name), json!({}), BTreeMap::new())
            .expect("create");
        let stop = Arc::new(AtomicBool::new(false));
        let reading = Arc::new(AtomicBool::new(false));
        let reader = {
            let (reg, stop, name) = (reg.clone(), stop.clone(), name.clone());
            let reading = reading.clone();
            std::thread::spawn(move || {
                let (mut present, mut gone) = (0, 0);
                loop {
                    let done = stop.load(Ordering::SeqCst);
                    match reg.get(&name) {
                        Ok(_) => present += 1,
                        Err(Error::NotFound { .. }) => gone += 1,
                        Err(e) => panic!("a reader racing rm got: {e}"),
                    }
                    reading.store(true, Ordering::SeqCst);
                    if done {
                        return (present, gone);
                    }
                }
            })
        };
        // The rm starts only once the reader is reading (else, with an rm as quick as
        // a few unlinks, a late-scheduled reader sees only "gone" and races nothing).
        while !reading.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        reg.remove_container(&rec.id).expect("remove");
        stop.store(true, Ordering::SeqCst);
        let (p, g) = reader.join().expect("the reader panicked");
        seen_present += p;
        seen_gone += g;
    }
    // The race was run: readers saw both sides of it.
    assert!(
        seen_present > 0 && seen_gone > 0,
        "{seen_present} / {seen_gone}"
    );
}

#[test]
fn rename_moves_the_name_and_leaves_nothing_for_reconcile() {
    // Names that cannot be taken for an id prefix (ids are hex).
    let dir = tempfile::tempdir().expect("temp dir");
    let reg = Registry::open(dir.path()).expect("open");
    let a = reg
        .create_container(Some("xa"), json!({}), BTreeMap::new())
        .expect("create a");
    reg.create_container(Some("xb"), json!({}), BTreeMap::new())
        .expect("create b");
    let renamed = reg.rename_container(&a.id, "xc").expect("rename");
    assert_eq!(renamed.name, "xc");
    assert_eq!(reg.get("xc").expect("by new name").id, a.id);
    assert!(matches!(reg.get("xa"), Err(Error::NotFound { .. })));
    assert!(matches!(
        reg.rename_container(&a.id, "xb"),
        Err(Error::NameInUse { .. })
    ));
    assert!(reg.rename_container(&a.id, "bad name").is_err());
    assert_eq!(reg.get(&a.id).expect("by id").name, "xc");
    assert!(reg.reconcile().expect("reconcile").is_clean());
}

/// A listing and a lookup by id during a run of renames between two names always find
/// the container, once. A rename links the new name, rewrites the record, unlinks the
/// old name: a record read just before a rename's rewrite names a link that may be gone
/// when it is checked, so the reader reads the record again (`ps` during renames once
/// listed nothing).
#[test]
fn readers_during_a_run_of_renames_always_find_the_container_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let reg = Arc::new(Registry::open(dir.path()).expect("open"));
    let rec = reg
        .create_container(Some("spin-0"), json!({}), BTreeMap::new())
        .expect("create");
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let renamer = {
        let (reg, stop, done, id) = (reg.clone(), stop.clone(), done.clone(), rec.id.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let to = format!("spin-{}", (n + 1) % 2);
                reg.rename_container(&id, &to).expect("rename");
                n += 1;
                done.store(n, Ordering::SeqCst);
            }
            n
        })
    };
    let mut looked = 0;
    let mut problem = None;
    // Enough looks, and enough renames under them to race with (each rename syncs: on a
    // busy disk 3000 looks saw fewer than 100), within a bound.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while (looked < 3000 || done.load(Ordering::SeqCst) < 200)
        && problem.is_none()
        && std::time::Instant::now() < until
    {
        let listed = reg.list().expect("list");
        if listed.len() != 1 || listed[0].id != rec.id {
            problem = Some(format!(
                "listed {:?}",
                listed.iter().map(|r| &r.name).collect::<Vec<_>>()
            ));
        }
        match reg.get(&rec.id) {
            Ok(r) if r.id == rec.id => {}
            other => problem = Some(format!("get by id: {other:?}")),
        }
        looked += 1;
    }
    stop.store(true, Ordering::SeqCst);
    let renames = renamer.join().expect("renamer");
    assert!(
        problem.is_none(),
        "after {looked} looks and {renames} renames: {problem:?}"
    );
    assert!(renames > 100, "too few renames to race: {renames}");
}
