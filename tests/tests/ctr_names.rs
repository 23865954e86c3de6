//! Name and id lookup through `names/` (one symlink per name, see the registry's `links`):
//! a name follows its container across rename, rm and recreate; a lookup by id never
//! misses a container that is being renamed; a rename racing an rm ends in one of the
//! two orders, never in a name left pointing at nothing.

use std::path::Path;

use codex_tests::ctr::Ctr;

fn create(c: &Ctr, name: &str) -> String {
    let o = c.run(&[
        "create",
        "--network",
        "none",
        "--name",
        name,
        "busybox",
        "true",
    ]);
    o.assert_ok();
    o.stdout.trim().to_string()
}

fn id_of(c: &Ctr, reference: &str) -> Option<String> {
    let o = c.run(&["inspect", reference]);
    o.ok()
        .then(|| o.json()["id"].as_str().expect("id").to_string())
}

/// The names in `<root>/names` and the ids they point to.
fn links(root: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(root.join("names"))
        .expect("the root has names/")
        .flatten()
        .map(|e| {
            let target = std::fs::read_link(e.path()).expect("a symlink");
            (
                e.file_name().to_string_lossy().into_owned(),
                target.to_string_lossy().into_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_name_follows_its_container_across_rename_rm_and_recreate() {
    let c = Ctr::new();
    let a = create(&c, "lookup-one");
    assert_eq!(id_of(&c, "lookup-one").as_deref(), Some(a.as_str()));
    assert_eq!(links(&c.root), vec![("lookup-one".to_string(), a.clone())]);

    c.run(&["rename", "lookup-one", "lookup-two"]).assert_ok();
    assert_eq!(id_of(&c, "lookup-one"), None, "the old name is free");
    assert_eq!(id_of(&c, "lookup-two").as_deref(), Some(a.as_str()));
    assert_eq!(c.inspect(&a)["name"], "lookup-two", "by full id");
    assert_eq!(c.inspect(&a[..12])["name"], "lookup-two", "by id prefix");
    assert_eq!(links(&c.root), vec![("lookup-two".to_string(), a.clone())]);

    // The old name can be taken by another container while the first keeps its new one.
    let b = create(&c, "lookup-one");
    assert_ne!(a, b);
    assert_eq!(id_of(&c, "lookup-one").as_deref(), Some(b.as_str()));
    assert_eq!(id_of(&c, "lookup-two").as_deref(), Some(a.as_str()));

    c.run(&["rm", "lookup-two"]).assert_ok();
    assert_eq!(id_of(&c, "lookup-two"), None);
    assert_eq!(
        id_of(&c, &a),
        None,
        "a removed container is not found by id"
    );
    let o = c.run(&["inspect", &a]);
    assert!(o.stderr.contains("not found"), "{}", o.stderr);

    // Recreated under the same name: a new container, found by that name.
    let a2 = create(&c, "lookup-two");
    assert_ne!(a2, a);
    assert_eq!(id_of(&c, "lookup-two").as_deref(), Some(a2.as_str()));
    let mut want = vec![
        ("lookup-one".to_string(), b.clone()),
        ("lookup-two".to_string(), a2.clone()),
    ];
    want.sort();
    assert_eq!(links(&c.root), want);
    c.run(&["rm", &a2, &b]).assert_ok();
    assert_eq!(links(&c.root), Vec::new());
}

#[test]
fn a_lookup_by_id_never_misses_a_container_being_renamed() {
    let c = Ctr::new();
    let id = create(&c, "spin-0");
    let rounds = 12;
    std::thread::scope(|s| {
        let renamer = s.spawn(|| {
            for i in 0..rounds {
                let (from, to) = (format!("spin-{}", i % 2), format!("spin-{}", (i + 1) % 2));
                c.run(&["rename", &from, &to]).assert_ok();
            }
        });
        let mut looked = 0;
        while !renamer.is_finished() || looked == 0 {
            let v = c.inspect(&id);
            let name = v["name"].as_str().expect("name");
            assert!(name == "spin-0" || name == "spin-1", "{name}");
            let o = c.run(&["ps", "-a", "-q"]);
            o.assert_ok();
            let listed: Vec<&str> = o.stdout.lines().collect();
            assert!(
                listed.len() == 1 && id.starts_with(listed[0]),
                "listed exactly once: {listed:?}"
            );
            looked += 1;
        }
        renamer.join().expect("renamer");
        eprintln!("{looked} lookups during {rounds} renames");
    });
    assert_eq!(links(&c.root), vec![("spin-0".to_string(), id.clone())]);
    c.run(&["rm", &id]).assert_ok();
}

#[test]
fn a_rename_racing_an_rm_leaves_no_name_behind() {
    let c = Ctr::new();
    for round in 0..6 {
        let (old, new) = (format!("race-{round}"), format!("raced-{round}"));
        let id = create(&c, &old);
        let (renamed, removed) = std::thread::scope(|s| {
            let r = s.spawn(|| c.run(&["rename", &old, &new]));
            let m = s.spawn(|| c.run(&["rm", "-f", &id]));
            (r.join().expect("rename"), m.join().expect("rm"))
        });
        removed.assert_ok();
        // Either the rename came first (and the rm removed the renamed container), or
        // the rm did and the rename found nothing.
        if !renamed.ok() {
            assert!(renamed.stderr.contains("not found"), "{}", renamed.stderr);
        }
        assert_eq!(links(&c.root), Vec::new(), "round {round}");
        assert_eq!(id_of(&c, &old), None);
        assert_eq!(id_of(&c, &new), None);
        assert_eq!(c.containers(), 0, "round {round}");
        // Both names are free again.
        let a = create(&c, &old);
        let b = create(&c, &new);
        c.run(&["rm", &a, &b]).assert_ok();
    }
}
