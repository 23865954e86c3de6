//! The processes the runtime makes: exec's set-up is not ptrace-able, the bounding set
//! does not trust the container's /proc, kill --all and delete --force reach every
//! process of the cgroup, timeOffsets go through the host's procfs.

use super::*;

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
    // CODEX_TEST_EXEC_DELAY_MS holds that process before its cgroup placement (so the
    // binary under test must be a debug build, as target/debug/codex-oci is).
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
    let procs = cgroup_dir(pid, "pids")
        .expect("the init is in a pids cgroup")
        .join("cgroup.procs");
    // Let the relay get going (a few dozen processes at a time), however slow the machine.
    let mut n = 0;
    let going = wait_until(WAIT, || {
        n = fs::read_to_string(&procs).unwrap().lines().count();
        n > 20
    });
    assert!(going, "the relay did not get going: {n} processes");
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
    // positive control for the leftover walk at the end
    assert!(!cgroup_dirs_containing(&id).is_empty());
    ctx.rt.run(&["delete", "--force", &id]).assert_ok();
    assert!(
        !procs.exists() || procs_left(&procs) == 0,
        "delete --force left processes"
    );
    assert_eq!(cgroup_dirs_containing(&id), Vec::<PathBuf>::new());
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
