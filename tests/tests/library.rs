//! The library protects itself: no fork from a multi-threaded or unprotected caller.
//!
//! These drive codex-runtime in-process (and through `codex-lib-probe`), not the
//! `codex-oci` binary: a stand-in runtime (`make test-mutants`) cannot reach them, so
//! they live in a test target of their own that the mutant check leaves out.

use codex_tests::*;
use serde_json::json;
use std::process::Command;

#[test]
fn codex_library_refuses_to_fork_from_a_multithreaded_caller() {
    // A test binary is multi-threaded; one more thread makes sure of it.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let extra = std::thread::spawn(move || {
        let _ = rx.recv();
    });
    let ctx = TestCtx::new("threads");
    let rt = codex_runtime::Runtime::new(ctx.rt.root.clone());
    let mut b = ctx.bundle();
    b.args(&["sleep", "100"]).save();

    let id = ctx.id("lib");
    let opts = codex_runtime::CreateOptions {
        bundle: b.dir.clone(),
        ..Default::default()
    };
    let err = match rt.create(&id, &opts) {
        Ok(_) => panic!("create forked from a multi-threaded process"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("threads") && err.contains("single-threaded process"),
        "the error does not tell the embedder what to do: {err}"
    );
    assert!(!ctx.rt.root_has_entry(&id), "a refused create left state");
    let err = rt
        .run(&id, &opts)
        .expect_err("run from a multi-threaded process");
    assert!(err.to_string().contains("threads"), "{err}");

    // exec into a container the (single-threaded) CLI made: refused through the library,
    // while the CLI's exec of the same container works (positive control).
    let cli_id = ctx.id("cli");
    ctx.create_and_start(&b, &cli_id);
    ctx.exec(&cli_id, &[], &["true"]).assert_ok();
    let exec = codex_runtime::ExecOptions {
        process: serde_json::from_value(json!({
            "args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}
        }))
        .unwrap(),
        detach: true,
        pid_file: None,
        console_socket: None,
        preserve_fds: 0,
        no_stdin: true,
        ..Default::default()
    };
    let err = rt
        .exec(&cli_id, &exec)
        .expect_err("exec from a multi-threaded process");
    assert!(err.to_string().contains("threads"), "{err}");
    drop(tx);
    extra.join().unwrap();
}

/// Runs the library probe (`tests/src/bin/codex-lib-probe.rs`): a single-threaded program
/// that embeds codex-runtime.
fn probe(ctx: &TestCtx, args: &[&str]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_codex-lib-probe"));
    let root = ctx.rt.root.to_string_lossy().into_owned();
    let flags: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| a.starts_with("--"))
        .collect();
    let rest: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| !a.starts_with("--"))
        .collect();
    cmd.args(&flags).arg(&root).args(&rest);
    ctx.rt.run_cmd(cmd)
}

#[test]
fn codex_library_refuses_to_fork_from_an_unprotected_binary() {
    // CVE-2019-5736's class for embedders: the probe runs from target/debug, a writable
    // file, unless it first re-executes itself through ensure_protected_self.
    let ctx = TestCtx::new("lib-unprotected");
    let mut b = ctx.bundle();
    b.args(&["sleep", "100"]).save();
    let bundle = b.dir.to_string_lossy().into_owned();

    let id = ctx.id("plain");
    let o = probe(&ctx, &["create", &bundle, &id]);
    assert!(
        o.stdout.contains("error:") && o.stdout.contains("ensure_protected_self"),
        "an unprotected embedder was allowed to create: {}",
        o.stdout
    );
    assert!(!ctx.rt.root_has_entry(&id), "a refused create left state");

    // Positive control: the same program, protected, creates; the CLI starts it.
    let ok = ctx.id("protected");
    let o = probe(&ctx, &["--protect", "create", &bundle, &ok]);
    assert_eq!(o.stdout.trim(), "ok", "{}{}", o.stdout, o.stderr);
    ctx.rt.run(&["start", &ok]).assert_ok();

    let o = probe(&ctx, &["exec", &ok, "true"]);
    assert!(o.stdout.contains("ensure_protected_self"), "{}", o.stdout);
    let o = probe(&ctx, &["--protect", "exec", &ok, "true"]);
    assert_eq!(o.stdout.trim(), "ok", "{}{}", o.stdout, o.stderr);

    // A protected but multi-threaded embedder is refused for its threads.
    let t = ctx.id("threaded");
    let o = probe(&ctx, &["--protect", "--thread", "create", &bundle, &t]);
    assert!(
        o.stdout.contains("threads") && o.stdout.contains("single-threaded process"),
        "{}",
        o.stdout
    );
    assert!(!ctx.rt.root_has_entry(&t));
}

/// A foreground `run` needs no protected binary when its init qualifies for the exec
/// trampoline (codex_runtime::trampoline): the unprotected probe runs it. One whose
/// init could be seen before its exec (here a startContainer hook) is refused as a
/// `create` is, naming the reason, and leaves nothing.
#[test]
fn codex_library_runs_a_foreground_container_from_an_unprotected_binary_through_the_trampoline() {
    let ctx = TestCtx::new("lib-run-unprotected");
    let mut b = ctx.bundle();
    b.sh("[ \"$(readlink /proc/1/exe)\" = /bin/busybox ] && exit 0; exit 3")
        .save();
    let bundle = b.dir.to_string_lossy().into_owned();
    let id = ctx.id("run");
    let o = probe(&ctx, &["run", &bundle, &id]);
    assert_eq!(o.stdout.trim(), "ok", "{}{}", o.stdout, o.stderr);
    assert!(!ctx.rt.root_has_entry(&id));

    let mut hooked = ctx.bundle();
    hooked.sh("true");
    hooked.set(
        "/hooks",
        serde_json::json!({"startContainer": [{"path": "/bin/true"}]}),
    );
    hooked.save();
    let bundle = hooked.dir.to_string_lossy().into_owned();
    let refused = ctx.id("hooked");
    let o = probe(&ctx, &["run", &bundle, &refused]);
    assert!(
        o.stdout.contains("ensure_protected_self") && o.stdout.contains("startContainer"),
        "{}",
        o.stdout
    );
    assert!(!ctx.rt.root_has_entry(&refused));
    // Positive control: protected, the same config runs.
    let o = probe(&ctx, &["--protect", "run", &bundle, &refused]);
    assert_eq!(o.stdout.trim(), "ok", "{}{}", o.stdout, o.stderr);
}

/// The container a create returned is started and deleted as it is (`start_created`,
/// `delete_loaded`: the engine's supervisor does so, with no new read of its state): it
/// runs, and nothing of it is left, neither its state nor its cgroup.
#[test]
fn codex_library_starts_and_deletes_the_container_its_create_returned() {
    let ctx = TestCtx::new("lib-held");
    let mut b = ctx.bundle();
    b.args(&["true"]).save();
    let bundle = b.dir.to_string_lossy().into_owned();
    // Positive control for the cgroup walk: a created container's cgroup is found.
    let other = ctx.id("created");
    let o = probe(&ctx, &["--protect", "create", &bundle, &other]);
    assert_eq!(o.stdout.trim(), "ok", "{}{}", o.stdout, o.stderr);
    assert!(
        !cgroup_dirs_containing(&other).is_empty(),
        "the walk finds no cgroup"
    );
    ctx.rt.run(&["delete", "--force", &other]).assert_ok();

    let id = ctx.id("held");
    let o = probe(&ctx, &["--protect", "run-held", &bundle, &id]);
    assert_eq!(o.stdout.trim(), "ok", "{}{}", o.stdout, o.stderr);
    assert!(!ctx.rt.root_has_entry(&id), "its state was left");
    let left = cgroup_dirs_containing(&id);
    assert!(left.is_empty(), "its cgroup was left: {left:?}");
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
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    struct RemoveAtEnd(std::path::PathBuf);
    impl Drop for RemoveAtEnd {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _cleanup = RemoveAtEnd(dir.clone());
    let fd = std::fs::File::open(&dir).unwrap();
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
    std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut seen).unwrap();
    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    let v2_line = seen
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("no v2 line in {seen:?}"));
    assert_eq!(v2_line, rel, "the child started elsewhere: {seen:?}");
}
