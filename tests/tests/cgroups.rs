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

/// `clone_into_cgroup` (clone3 with CLONE_INTO_CGROUP, which a create on a pure v2 host
/// uses instead of a `cgroup.procs` write) starts the child in the given cgroup. Checked
/// on whichever v2 hierarchy this host has: the unified one beside v1 controllers on a
/// hybrid host, the only one on a pure v2 host.
#[test]
fn codex_a_process_cloned_into_a_v2_cgroup_starts_there() {
    let v2_root = if cgroup_v2_only() {
        std::path::PathBuf::from("/sys/fs/cgroup")
    } else {
        std::path::PathBuf::from("/sys/fs/cgroup/unified")
    };
    if !v2_root.join("cgroup.procs").exists() {
        skip("no cgroup v2 hierarchy mounted");
        return;
    }
    // Beside this process's cgroup: a v2 cgroup with processes cannot have children.
    let own_v2 = cgroup_of(std::process::id() as i64, "").expect("own v2 cgroup");
    let parent = std::path::Path::new(&own_v2)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rel = format!(
        "{}/codex-clone3-{}",
        parent.trim_end_matches('/'),
        std::process::id()
    );
    let dir = v2_root.join(rel.trim_start_matches('/'));
    fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    struct RemoveAtEnd(std::path::PathBuf);
    impl Drop for RemoveAtEnd {
        fn drop(&mut self) {
            let _ = fs::remove_dir(&self.0);
        }
    }
    let _cleanup = RemoveAtEnd(dir.clone());
    let fd = fs::File::open(&dir).unwrap();
    let (r, w) = nix::unistd::pipe().unwrap();
    // SAFETY: the child only reads a file with raw syscalls, writes to a pipe and exits
    // (no allocation after the fork of this multi-threaded test process).
    let pid = unsafe { codex_runtime::sys::clone_into_cgroup(0, std::os::fd::AsFd::as_fd(&fd)) }
        .unwrap_or_else(|e| panic!("clone3 into {}: {e}", dir.display()));
    if pid == 0 {
        // SAFETY: raw open/read/write/_exit with buffers on this stack.
        unsafe {
            let mut buf = [0u8; 4096];
            let f = libc::open(c"/proc/self/cgroup".as_ptr(), libc::O_RDONLY);
            let n = libc::read(f, buf.as_mut_ptr().cast(), buf.len());
            if n > 0 {
                libc::write(
                    std::os::fd::AsRawFd::as_raw_fd(&w),
                    buf.as_ptr().cast(),
                    n as usize,
                );
            }
            libc::_exit(0);
        }
    }
    drop(w);
    let mut seen = String::new();
    std::io::Read::read_to_string(&mut fs::File::from(r), &mut seen).unwrap();
    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    let v2_line = seen
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("no v2 line in {seen:?}"));
    assert_eq!(v2_line, rel, "the child started elsewhere: {seen:?}");
}
