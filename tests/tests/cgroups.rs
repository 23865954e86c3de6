//! Cgroup placement and cleanup, on the hierarchies the host has (v1 controllers on a
//! hybrid host, the v2 tree on a pure v2 one: `placement_controllers()`). Resource limits
//! are the resource-control issue's; here only where the container lives and that it is
//! removed. Every "no cgroup left" check first finds the cgroup while it exists.

use codex_tests::*;
use std::fs;
use std::time::Duration;

/// The test process's own cgroup path for a controller ("" = the v2 tree).
fn own(controller: &str) -> String {
    cgroup_of(std::process::id() as i64, controller).expect("own cgroup")
}

/// Where this process's containers are nested for a controller: its own cgroup on v1,
/// beside it (under its parent) on v2 ([`nesting_base`]).
fn base(controller: &str) -> String {
    nesting_base(controller).expect("own cgroup")
}

fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

#[test]
fn container_is_in_a_cgroup_named_after_its_id() {
    let ctx = TestCtx::new("cg-default");
    let mut b = ctx.bundle();
    b.remove_namespace("cgroup");
    b.sh("cat /proc/self/cgroup");
    let id = ctx.id("cg");
    let o = ctx.run(&b, &id, &[]);
    o.assert_ok();
    for c in placement_controllers() {
        let p = parse_cgroup_line(&o.stdout, c).unwrap_or_else(|| panic!("no {c}: {o:?}"));
        assert!(
            p.contains(&id),
            "{c} cgroup {p:?} does not name the container"
        );
        assert_eq!(
            p,
            join(&base(c), &id),
            "{c} cgroup is not <caller's cgroup (v1) or its parent (v2)>/<id> (caller: {:?})",
            own(c)
        );
    }
}

#[test]
fn relative_cgroups_path_is_nested_where_the_caller_nests_containers() {
    let ctx = TestCtx::new("cg-relative");
    let mut b = ctx.bundle();
    let id = ctx.id("cg");
    let rel = format!("{id}-cgpath");
    b.remove_namespace("cgroup").cgroups_path(&rel);
    b.sh("cat /proc/self/cgroup");
    let o = ctx.run(&b, &id, &[]);
    o.assert_ok();
    for c in placement_controllers() {
        assert_eq!(
            parse_cgroup_line(&o.stdout, c).as_deref(),
            Some(join(&base(c), &rel).as_str()),
            "{c}: {o:?}"
        );
    }
}

#[test]
fn every_process_of_the_container_is_in_its_cgroup_and_the_cgroup_goes_with_delete() {
    let ctx = TestCtx::new("cg-delete");
    let mut b = ctx.bundle();
    b.sh("sleep 1000 & echo ready; wait");
    let id = ctx.id("cg");
    ctx.create_and_start(&b, &id);
    ctx.wait_for_stdout(&id, "ready");
    let init = ctx.rt.pid(&id);
    let ctrls = placement_controllers();
    let dirs: Vec<std::path::PathBuf> = ctrls
        .iter()
        .map(|c| cgroup_dir(init, c).unwrap_or_else(|| panic!("no {c:?} cgroup of {init}")))
        .collect();
    // positive control for the leftover walk below: it finds the cgroup while it exists
    let live = cgroup_dirs_containing(&id);
    for d in &dirs {
        assert!(
            live.contains(d),
            "the walk misses {}: {live:?}",
            d.display()
        );
    }
    for (c, d) in ctrls.iter().zip(&dirs) {
        assert!(d.is_dir(), "{} missing while running", d.display());
        assert_ne!(
            cgroup_of(init, c).unwrap(),
            own(c),
            "the container must get its own {c} cgroup"
        );
    }
    let procs = read_lossy(&dirs[0].join("cgroup.procs"));
    let n = procs.lines().count();
    assert!(
        n >= 2,
        "the pids cgroup must hold init and the sleep: {procs:?}"
    );
    ctx.rt.run(&["delete", "--force", &id]).assert_ok();
    for d in &dirs {
        assert!(!d.exists(), "{} survived delete", d.display());
    }
    assert!(
        cgroup_dirs_containing(&id).is_empty(),
        "{:?}",
        cgroup_dirs_containing(&id)
    );
}

#[test]
fn foreground_run_removes_its_cgroup() {
    let ctx = TestCtx::new("cg-run");
    let mut b = ctx.bundle();
    // the program waits for /go (created from the host) so the cgroup can be seen first
    b.sh("echo ready; while [ ! -e /go ]; do sleep 0.1; done; echo done");
    let id = ctx.id("cg");
    let mut run = ctx.spawn_run(&b, &id, &[]);
    run.wait_for_stdout("ready");
    // positive control: while the container runs, its cgroup is there to be found
    let live = cgroup_dirs_containing(&id);
    assert!(!live.is_empty(), "no cgroup named after {id} while it runs");
    fs::write(b.rootfs().join("go"), "").unwrap();
    let o = run.wait(Duration::from_secs(60));
    o.assert_ok();
    assert!(o.stdout.contains("done"), "{o:?}");
    assert!(
        cgroup_dirs_containing(&id).is_empty(),
        "{:?}",
        cgroup_dirs_containing(&id)
    );
}

#[test]
fn stopped_container_and_its_configured_cgroup_are_removed_by_delete() {
    let ctx = TestCtx::new("cg-stopped");
    let mut b = ctx.bundle();
    let id = ctx.id("cg");
    b.cgroups_path(&format!("{id}-cgpath"));
    b.sh("true");
    ctx.create(&b, &id, &[]).assert_ok();
    // positive control: the walk finds the configured cgroup of the created container
    let live = cgroup_dirs_containing(&id);
    assert!(
        live.iter().any(|d| d.ends_with(format!("{id}-cgpath"))),
        "no {id}-cgpath cgroup while created: {live:?}"
    );
    ctx.rt.run(&["start", &id]).assert_ok();
    ctx.rt.wait_status(&id, "stopped");
    ctx.rt.run(&["delete", &id]).assert_ok();
    assert!(
        cgroup_dirs_containing(&id).is_empty(),
        "{:?}",
        cgroup_dirs_containing(&id)
    );
}
