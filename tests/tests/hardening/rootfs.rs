//! The rootfs set-up opens nothing for I/O before it is checked and follows no symlink
//! it did not resolve itself: bind sources, ptmx, device nodes, tmpcopyup.

use super::*;

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
    // Precondition, from the kernel: the writer sleeps in the FIFO's open, waiting for a
    // reader (so an open by the runtime would wake it, not slip in before it).
    let wpid = writer.id() as i64;
    assert!(
        wait_until(WAIT, || blocked_in_fifo_open(wpid)),
        "the writer never blocked in its open: {:?}",
        fs::read_to_string(format!("/proc/{wpid}/wchan"))
    );
    let console = codex_tests::console::ConsoleSocket::bind(
        &ctx.path("console.sock"),
        Vec::new(),
        Duration::from_secs(5),
    );
    let id = ctx.id("c");
    let o = ctx.create(&b, &id, &["--console-socket", &console.arg()]);
    o.assert_fails();
    // Woken, the writer is runnable until it gets a CPU, then leaves the open: wait until
    // it is not runnable (however loaded the machine), then ask where it sleeps. No
    // fixed window: a writer woken late is still seen as woken.
    let settled = wait_until(Duration::from_secs(60), || {
        proc_state(wpid).is_none_or(|st| st != 'R')
    });
    assert!(settled, "the writer stayed runnable for 60 s");
    let woke = marker.exists() || !blocked_in_fifo_open(wpid);
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

/// The state letter of `pid` in /proc/PID/stat (None once it is gone).
fn proc_state(pid: i64) -> Option<char> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Whether `pid` sleeps in a FIFO open that waits for the other end.
fn blocked_in_fifo_open(pid: i64) -> bool {
    proc_state(pid) == Some('S')
        && fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w == "wait_for_partner")
}
