//! Hardening of the runtime against its own containers (issue 11, "Runtime"): the
//! exec'ing process cannot be ptrace-attached while it sets up, the bounding-set drop
//! does not trust the container's /proc, `kill --all` reaches every process of the
//! cgroup, bind sources and ptmx are never opened for I/O before they are checked, hooks
//! cannot stall the runtime. Tests named `codex_*` rely on codex-only hooks or on cases
//! runc 1.1.5 refuses or gets wrong.

use codex_tests::*;
use serde_json::json;
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Compiles `src` with `cc -static` into `<rootfs>/bin/<name>` (None, with a SKIP line,
/// when there is no C compiler or static libc).
fn compile_static(ctx: &TestCtx, b: &Bundle, name: &str, src: &str) -> Option<PathBuf> {
    if !have_tool("cc") {
        skip("no cc to build a static helper");
        return None;
    }
    let c = ctx.path(&format!("{name}.c"));
    fs::write(&c, src).unwrap();
    let out = b.rootfs().join("bin").join(name);
    let o = host_sh(&format!(
        "cc -static -O2 -o {} {} 2>&1",
        out.display(),
        c.display()
    ));
    if !o.ok() {
        skip(&format!("cc -static failed: {}", o.stdout));
        return None;
    }
    Some(out)
}

/// Seizes (PTRACE_SEIZE, which does not stop the tracee) every other process it sees in
/// the container, over and over, printing `PID COMM RESULT` whenever that changes and
/// detaching again at once; it exits a while after attaching to a process whose comm is
/// argv[1], or after argv[2] seconds.
const TRACER: &str = r#"
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void comm_of(int pid, char *buf, size_t n) {
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/comm", pid);
    FILE *f = fopen(p, "r");
    buf[0] = 0;
    if (!f) return;
    if (!fgets(buf, (int)n, f)) buf[0] = 0;
    fclose(f);
    buf[strcspn(buf, "\n")] = 0;
}

int main(int argc, char **argv) {
    const char *want = argc > 1 ? argv[1] : "sleep";
    int secs = argc > 2 ? atoi(argv[2]) : 20;
    static char last[32768][48];
    printf("ready\n");
    fflush(stdout);
    time_t end = time(NULL) + secs;
    while (time(NULL) < end) {
        DIR *d = opendir("/proc");
        struct dirent *e;
        while (d && (e = readdir(d))) {
            int pid = atoi(e->d_name);
            if (pid <= 1 || pid == getpid() || pid >= 32768) continue;
            char comm[32], line[48];
            comm_of(pid, comm, sizeof comm);
            if (!comm[0]) continue;
            long r = ptrace(PTRACE_SEIZE, pid, 0, 0);
            int err = errno;
            if (r == 0) {
                /* The comm read above may predate an execve that finished before the
                   attach: stop the tracee and read what it is now. */
                int st;
                ptrace(PTRACE_INTERRUPT, pid, 0, 0);
                waitpid(pid, &st, __WALL);
                comm_of(pid, comm, sizeof comm);
                ptrace(PTRACE_DETACH, pid, 0, 0);
            }
            snprintf(line, sizeof line, "%s %s", comm, r == 0 ? "attached" : strerror(err));
            if (strcmp(line, last[pid]) != 0) {
                strcpy(last[pid], line);
                printf("%d %s\n", pid, line);
                fflush(stdout);
            }
            if (r == 0 && strcmp(comm, want) == 0) {
                sleep(5); /* the container outlives the exec'd program */
                return 0;
            }
        }
        if (d) closedir(d);
        usleep(500);
    }
    printf("timeout\n");
    return 0;
}
"#;

#[test]
fn codex_exec_is_not_ptraceable_during_setup() {
    // CVE-2016-9962's class: container root (CAP_SYS_PTRACE in its user namespace, same
    // host uid thanks to an identity map) attaches to the process `exec` is setting up,
    // which still holds the runtime's memory and fds. The debug-build hook
    // CODEX_TEST_EXEC_DELAY_MS holds that process before its cgroup placement.
    let ctx = TestCtx::new("exec-ptrace");
    let mut b = ctx.bundle();
    if compile_static(&ctx, &b, "tracer", TRACER).is_none() {
        return;
    }
    let caps = ["CAP_SYS_PTRACE", "CAP_KILL", "CAP_SETUID", "CAP_SETGID"];
    b.user_namespace(0, 65536)
        .caps("bounding", &caps)
        .caps("effective", &caps)
        .caps("permitted", &caps)
        .args(&["/bin/tracer", "sleep", "20"]);
    let id = ctx.id("c");
    ctx.create_and_start(&b, &id);
    ctx.wait_for_stdout(&id, "ready");

    let mut cmd = ctx.rt.command(&["exec", &id, "sleep", "2"]);
    cmd.env("CODEX_TEST_EXEC_DELAY_MS", "1500");
    let exec = ctx.rt.run_cmd(cmd);
    let out = ctx.wait_for_stdout(&id, "sleep attached");
    let lines: Vec<&str> = out.lines().collect();
    // Positive control first: the very same process, once it runs `sleep`, is
    // attachable, so caps, uids and the user namespace allow the attach.
    assert!(
        lines.iter().any(|l| l.ends_with(" sleep attached")),
        "the exec'd program itself could not be attached (no positive control):\n{out}"
    );
    let setup: Vec<&&str> = lines
        .iter()
        .filter(|l| l.split(' ').nth(1).is_some_and(|c| c != "sleep"))
        .collect();
    assert!(
        !setup.is_empty(),
        "the tracer never saw the exec'ing process during its set-up:\n{out}"
    );
    for l in setup {
        assert!(
            !l.ends_with("attached"),
            "attached to the exec'ing process during its set-up: {l}\n{out}"
        );
        assert!(
            l.ends_with("Operation not permitted"),
            "unexpected result: {l}\n{out}"
        );
    }
    exec.assert_ok();
}

/// CapBnd of the container's init, read from the host.
fn host_capbnd(ctx: &TestCtx, id: &str) -> u64 {
    let pid = ctx.rt.pid(id);
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    parse_mask(status_field(&status, "CapBnd").expect("CapBnd line"))
}

const BOUNDING: &[&str] = &["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

#[test]
fn codex_bounding_set_is_dropped_without_the_containers_proc() {
    // No procfs in the container: once without any /proc, once with an image /proc whose
    // sys/kernel/cap_last_cap says 3 (a runtime that believes it keeps caps 4..). runc
    // 1.1.5 cannot run a container without /proc ("open /proc/self/fd"), hence codex_.
    let ctx = TestCtx::new("capbnd-noproc");
    for lying in [false, true] {
        let mut b = ctx.bundle();
        b.remove_mount("/proc")
            .caps("bounding", BOUNDING)
            .args(&["sleep", "100"]);
        let proc_dir = b.rootfs().join("proc");
        fs::remove_dir_all(&proc_dir).unwrap();
        if lying {
            fs::create_dir_all(proc_dir.join("sys/kernel")).unwrap();
            fs::write(proc_dir.join("sys/kernel/cap_last_cap"), "3\n").unwrap();
        }
        let id = ctx.id(if lying { "lying" } else { "absent" });
        ctx.create_and_start(&b, &id);
        // Positive control: the container runs and its CapBnd is readable from the host.
        assert_eq!(
            host_capbnd(&ctx, &id),
            cap_mask(BOUNDING),
            "bounding set with {} /proc",
            if lying { "a lying" } else { "no" }
        );
    }
}

#[test]
fn codex_bounding_set_ignores_a_lying_proc_sys() {
    // /proc is procfs, but /proc/sys is a tmpfs whose kernel/cap_last_cap (bound from a
    // host file) says 3. runc 1.1.5 refuses mounts inside /proc, hence codex_.
    let ctx = TestCtx::new("capbnd-lie");
    let lie = ctx.path("cap_last_cap");
    fs::write(&lie, "3\n").unwrap();
    let mut b = ctx.bundle();
    b.add_mount("/proc/sys", "tmpfs", "tmpfs", &["mode=755"])
        .add_bind(&lie, "/proc/sys/kernel/cap_last_cap", &["ro"])
        .caps("bounding", BOUNDING)
        .args(&["sleep", "100"]);
    let id = ctx.id("c");
    ctx.create_and_start(&b, &id);
    let inside = ctx.exec(&id, &[], &["cat", "/proc/sys/kernel/cap_last_cap"]);
    inside.assert_ok();
    assert_eq!(inside.stdout.trim(), "3", "the lie is not in place");
    assert_eq!(host_capbnd(&ctx, &id), cap_mask(BOUNDING));
}

/// A container without its own PID namespace (so killing its init does not kill the rest)
/// whose processes relay: each forks its successor and becomes `sleep`, so the newest
/// process (the end of any pid list) is always about to fork again. Returns the
/// container's `cgroup.procs` in the pids hierarchy.
fn start_relay(ctx: &TestCtx, id: &str) -> PathBuf {
    let mut b = ctx.bundle();
    fs::write(
        b.rootfs().join("relay"),
        "/bin/sh /relay &\nexec sleep 1000\n",
    )
    .unwrap();
    b.remove_namespace("pid")
        .set("/linux/resources/pids/limit", json!(3000))
        .sh("/bin/sh /relay & echo ready; exec sleep 1000");
    ctx.create_and_start(&b, id);
    ctx.wait_for_stdout(id, "ready");
    let pid = ctx.rt.pid(id);
    let cg = cgroup_of(pid, "pids").expect("the init is in a pids cgroup");
    let procs = PathBuf::from(format!("/sys/fs/cgroup/pids{cg}/cgroup.procs"));
    // Let the relay run long enough to make a few hundred processes.
    std::thread::sleep(Duration::from_millis(300));
    let n = fs::read_to_string(&procs).unwrap().lines().count();
    assert!(n > 20, "the relay did not get going: {n} processes");
    procs
}

fn procs_left(procs: &Path) -> usize {
    let mut n = 0;
    wait_until(Duration::from_secs(3), || {
        n = fs::read_to_string(procs)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        n == 0
    });
    n
}

#[test]
fn kill_all_reaches_processes_forked_during_the_kill() {
    for sig in ["KILL", "TERM"] {
        let ctx = TestCtx::new("kill-all-relay");
        let id = ctx.id(sig);
        let procs = start_relay(&ctx, &id);
        ctx.rt.run(&["kill", "--all", &id, sig]).assert_ok();
        let left = procs_left(&procs);
        assert_eq!(left, 0, "kill --all {sig} left {left} processes running");
    }
}

#[test]
fn delete_force_leaves_no_process_of_a_forking_container() {
    let ctx = TestCtx::new("delete-relay");
    let id = ctx.id("c");
    let procs = start_relay(&ctx, &id);
    ctx.rt.run(&["delete", "--force", &id]).assert_ok();
    assert!(
        !procs.exists() || procs_left(&procs) == 0,
        "delete --force left processes"
    );
    assert_eq!(cgroup_dirs_containing(&id), Vec::<PathBuf>::new());
}

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
    };
    let err = rt
        .exec(&cli_id, &exec)
        .expect_err("exec from a multi-threaded process");
    assert!(err.to_string().contains("threads"), "{err}");
    drop(tx);
    extra.join().unwrap();
}

/// `create` of `b` as `id`, killed (and reported as Err) after `limit`. The container's
/// stdout goes to [`created_stdout`].
fn create_within(ctx: &TestCtx, b: &Bundle, id: &str, limit: Duration) -> Result<Out, String> {
    b.save();
    let d = b.dir.to_string_lossy().into_owned();
    let out = ctx.path(&format!("{id}.create.out"));
    let err = ctx.path(&format!("{id}.create.err"));
    try_run_to(
        &mut ctx.rt.command(&["create", "--bundle", &d, id]),
        &out,
        &err,
        limit,
    )
}

fn created_stdout(ctx: &TestCtx, id: &str) -> String {
    read_lossy(&ctx.path(&format!("{id}.create.out")))
}

#[test]
fn hook_that_never_reads_a_large_state_still_times_out() {
    // The state JSON (with a 256 KiB annotation) does not fit in a pipe: a runtime that
    // writes it before starting the clock waits for as long as the hook lives.
    let ctx = TestCtx::new("hook-stdin");
    let mut b = ctx.bundle();
    b.annotation("big", &"x".repeat(256 * 1024)).add_hook(
        "createRuntime",
        "/bin/sh",
        &["sh", "-c", "exec sleep 30"],
        &[],
        Some(2),
    );
    let id = ctx.id("c");
    let t = Instant::now();
    let o = create_within(&ctx, &b, &id, Duration::from_secs(25))
        .unwrap_or_else(|e| panic!("create hung on the hook's stdin: {e}"));
    let took = t.elapsed();
    o.assert_fails();
    assert!(
        took < Duration::from_secs(15),
        "the 2 s timeout took {took:?} to fire"
    );
}

#[test]
fn hook_output_beyond_a_pipe_buffer_does_not_stall_it() {
    // 256 KiB on stdout and on stderr, then success: the runtime must drain both while it
    // waits, or the hook blocks on a full pipe and hits its timeout.
    let ctx = TestCtx::new("hook-output");
    let mut b = ctx.bundle();
    b.add_hook(
        "createRuntime",
        "/bin/sh",
        &[
            "sh",
            "-c",
            "head -c 262144 /dev/zero | tr '\\0' o; head -c 262144 /dev/zero | tr '\\0' e >&2",
        ],
        &[],
        Some(10),
    );
    let id = ctx.id("c");
    let t = Instant::now();
    let o = create_within(&ctx, &b, &id, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    o.assert_ok();
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "create took {:?}",
        t.elapsed()
    );
}

#[test]
fn fifo_as_a_bind_source_does_not_hang_create() {
    // Opening a FIFO for reading waits for a writer: a bind source must be opened O_PATH.
    let ctx = TestCtx::new("fifo-bind");
    let fifo = ctx.path("fifo");
    host_sh(&format!("mkfifo {}", fifo.display())).assert_ok();
    let mut b = ctx.bundle();
    b.add_bind(&fifo, "/fifo", &[])
        .sh("test -p /fifo && echo is-a-fifo");
    let id = ctx.id("c");
    let o = create_within(&ctx, &b, &id, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("create hung on the FIFO: {e}"));
    o.assert_ok();
    ctx.rt.run(&["start", &id]).assert_ok();
    // Positive control: the FIFO is what the container sees at /fifo.
    let seen = wait_until(WAIT, || created_stdout(&ctx, &id).contains("is-a-fifo"));
    assert!(seen, "stdout: {:?}", created_stdout(&ctx, &id));
}

#[test]
fn codex_ptmx_is_checked_before_it_is_opened_read_write() {
    // No devpts at /dev/pts: the image's /dev/pts/ptmx is a FIFO. Opening it read-write
    // would wake a writer blocked on it; the runtime must refuse it unopened. (runc
    // 1.1.5 opens /dev/ptmx first, hence codex_.)
    let ctx = TestCtx::new("ptmx-fifo");
    let mut b = ctx.bundle();
    b.remove_mount("/dev")
        .remove_mount("/dev/pts")
        .terminal(true)
        .args(&["true"]);
    let pts = b.rootfs().join("dev/pts");
    fs::create_dir_all(&pts).unwrap();
    let fifo = pts.join("ptmx");
    host_sh(&format!("mkfifo {}", fifo.display())).assert_ok();
    // The writer touches the marker as soon as its open returns, i.e. once a reader
    // (or a read-write opener) exists.
    let marker = ctx.path("writer-woke");
    let mut writer = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec 3> {}; touch {}",
            fifo.display(),
            marker.display()
        ))
        .spawn()
        .unwrap();
    let console = codex_tests::console::ConsoleSocket::bind(
        &ctx.path("console.sock"),
        Vec::new(),
        Duration::from_secs(5),
    );
    let id = ctx.id("c");
    let o = ctx.create(&b, &id, &["--console-socket", &console.arg()]);
    o.assert_fails();
    std::thread::sleep(Duration::from_millis(500));
    let woke = marker.exists();
    // Positive control: a reader does wake the writer.
    let reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let control = wait_until(Duration::from_secs(5), || marker.exists());
    drop(reader);
    let _ = writer.kill();
    let _ = writer.wait();
    assert!(
        control,
        "the writer never woke, even for a reader (no positive control)"
    );
    assert!(
        !woke,
        "create opened the image's /dev/pts/ptmx FIFO read-write"
    );
    o.assert_stderr_mentions("/dev/pts");
}

#[test]
fn device_nodes_get_exactly_their_file_mode_whatever_the_umask() {
    // The runtime runs with umask 077 here: a node made by mknod alone would lose the
    // group and other bits, so the mode must come from a cleared umask (no chmod, which
    // would follow a symlink swapped in after mknod).
    let ctx = TestCtx::new("dev-mode");
    let mut b = ctx.bundle();
    b.add_device("/dev/xnull", "c", 1, 3, 0o666)
        .add_device("/dev/xzero", "c", 1, 5, 0o640)
        .add_mount("/dev/x", "tmpfs", "tmpfs", &["mode=755"])
        .add_device("/dev/x/full", "c", 1, 7, 0o604)
        .sh("stat -c '%n %a' /dev/xnull /dev/xzero /dev/x/full /dev/null");
    b.save();
    let d = b.dir.to_string_lossy().into_owned();
    let id = ctx.id("c");
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "umask 077; exec {} --root {} run --bundle {d} {id}",
        ctx.rt.bin.display(),
        ctx.rt.root.display()
    ));
    let o = ctx.rt.run_cmd(cmd);
    o.assert_ok();
    for want in [
        "/dev/xnull 666",
        "/dev/xzero 640",
        "/dev/x/full 604",
        "/dev/null 666",
    ] {
        assert!(o.stdout.contains(want), "want {want:?} in:\n{}", o.stdout);
    }
}

#[test]
fn codex_time_offsets_are_written_through_the_hosts_procfs() {
    // Container B joins container A's mount namespace by path and asks for a new time
    // namespace with offsets. A's /proc is a host directory with a plain file at
    // self/timens_offsets: the offsets must go to B's real procfs entry, not there.
    let ctx = TestCtx::new("timens-proc");
    let fake = ctx.mkdir("fakeproc");
    fs::create_dir(fake.join("self")).unwrap();
    let fake_offsets = fake.join("self/timens_offsets");
    fs::write(&fake_offsets, "").unwrap();
    let mut a = ctx.bundle();
    a.remove_mount("/proc")
        .add_bind(&fake, "/proc", &[])
        .args(&["sleep", "100"]);
    let a_id = ctx.id("a");
    ctx.create_and_start(&a, &a_id);
    // Positive control: in A's mount namespace that path is the fake file.
    ctx.exec(
        &a_id,
        &[],
        &["sh", "-c", "echo probe > /proc/self/timens_offsets"],
    )
    .assert_ok();
    assert_eq!(fs::read_to_string(&fake_offsets).unwrap(), "probe\n");
    fs::write(&fake_offsets, "").unwrap();

    let a_pid = ctx.rt.pid(&a_id);
    let mut b = ctx.bundle();
    b.namespace("time", None)
        .set(
            "/linux/timeOffsets",
            json!({"monotonic": {"secs": 86400, "nanosecs": 0}}),
        )
        .args(&["sleep", "100"]);
    b.remove_namespace("mount")
        .namespace("mount", Some(Path::new(&format!("/proc/{a_pid}/ns/mnt"))));
    let b_id = ctx.id("b");
    // B's rootfs path does not exist in A's mount namespace, so create fails later on;
    // what matters is where the offsets went first.
    let o = ctx.create(&b, &b_id, &[]);
    assert!(
        !o.stderr.contains("timeOffsets") && !o.stderr.contains("time namespace"),
        "the offsets were not written at all: {}",
        o.stderr
    );
    assert_eq!(
        fs::read_to_string(&fake_offsets).unwrap(),
        "",
        "the time offsets were written into the container's fake /proc"
    );
}

#[test]
fn tmpcopyup_copies_files_dirs_and_links_with_their_modes_and_owners() {
    let ctx = TestCtx::new("copyup");
    let mut b = ctx.bundle();
    let data = b.rootfs().join("opt/data");
    fs::create_dir_all(data.join("sub")).unwrap();
    fs::write(data.join("a"), "A").unwrap();
    fs::write(data.join("sub/b"), "B").unwrap();
    fs::write(data.join("s"), "S").unwrap();
    host_sh(&format!(
        "cd {} && chown 1000:1001 a && chmod 604 a && chown 1002:1002 sub && chmod 705 sub \
         && ln -s a l && chmod 4755 s",
        data.display()
    ))
    .assert_ok();
    b.add_mount("/opt/data", "tmpfs", "tmpfs", &["tmpcopyup", "mode=755"]);
    let o = ctx.run_sh(
        &mut b,
        "cd /opt/data && stat -c '%n %a %u %g %F' a sub sub/b s; readlink l; cat a sub/b; \
         grep -q ' /opt/data tmpfs' /proc/self/mounts && echo ' on-tmpfs'",
    );
    for want in [
        "a 604 1000 1001 regular file",
        "sub 705 1002 1002 directory",
        "sub/b 644 0 0 regular file",
        "s 4755 0 0 regular file",
        "\na\n",
        "AB on-tmpfs",
    ] {
        assert!(o.stdout.contains(want), "want {want:?} in:\n{}", o.stdout);
    }
}

/// Swaps /shared/x and /shared/y with renameat2(RENAME_EXCHANGE) as fast as it can.
const SWAPPER: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    printf("swapping\n");
    fflush(stdout);
    for (;;)
        syscall(SYS_renameat2, AT_FDCWD, "/shared/x", AT_FDCWD, "/shared/y", 2);
}
"#;

#[test]
fn codex_tmpcopyup_never_follows_a_symlink_swapped_in_during_the_copy() {
    // Container A swaps a regular file and a symlink to a host secret, in a host
    // directory that container B mounts and then covers with a tmpcopyup tmpfs. The
    // copy (made by host root, before pivot_root) must never contain the secret.
    let ctx = TestCtx::new("copyup-race");
    let secret = ctx.path("secret");
    fs::write(&secret, "HOST-SECRET\n").unwrap();
    let shared = ctx.mkdir("shared");
    fs::write(shared.join("x"), "safe\n").unwrap();
    std::os::unix::fs::symlink(&secret, shared.join("y")).unwrap();
    let mut a = ctx.bundle();
    if compile_static(&ctx, &a, "swapper", SWAPPER).is_none() {
        return;
    }
    a.add_bind(&shared, "/shared", &["rw"])
        .args(&["/bin/swapper"]);
    let a_id = ctx.id("swapper");
    ctx.create_and_start(&a, &a_id);
    ctx.wait_for_stdout(&a_id, "swapping");

    let mut copied = 0;
    for i in 0..40 {
        // The shared (read-only) fixture rootfs: /home exists, nothing is created in it.
        let mut b = ctx.bundle_shared_rootfs();
        b.add_bind(&shared, "/home", &[])
            .add_mount("/home", "tmpfs", "tmpfs", &["tmpcopyup"])
            .sh("cat /home/x /home/y 2>/dev/null; true");
        let id = ctx.id(&format!("copy{i}"));
        let o = ctx.run(&b, &id, &[]);
        assert!(
            !o.stdout.contains("HOST-SECRET"),
            "run {i}: the copy followed the symlink to the host: {}",
            o.stdout
        );
        if o.ok() && o.stdout.contains("safe") {
            copied += 1;
        }
        ctx.rt.run(&["delete", "--force", &id]);
    }
    // Positive control: the copies happened and carried the regular file.
    assert!(copied > 10, "only {copied} of 40 copies carried the file");
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
