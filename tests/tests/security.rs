//! Escape checks: no runtime fd reaches the container, the runtime binary cannot be
//! overwritten from inside, mount targets stay inside the rootfs, masking and sysctl writes
//! cannot be redirected (the runc CVE classes 2019-5736, 2024-21626, 2025-31133,
//! 2025-52565, 2025-52881). Tests named `codex_*` fail with runc 1.1.5, which is vulnerable
//! to (or refuses) that case.

use codex_tests::console::ConsoleSocket;
use codex_tests::*;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::time::Duration;

/// `fd -> target` pairs from `ls -l /proc/self/fd` output (ls's own dir fd included).
fn fd_targets(ls: &str) -> Vec<(u32, String)> {
    ls.lines()
        .filter_map(|l| {
            let (left, target) = l.split_once(" -> ")?;
            let fd = left.split_whitespace().last()?.parse().ok()?;
            Some((fd, target.trim().to_string()))
        })
        .collect()
}

#[track_caller]
fn assert_only_stdio(ls: &str) {
    let fds = fd_targets(ls);
    assert!(
        fds.iter().any(|(fd, _)| *fd == 0) && fds.iter().any(|(fd, _)| *fd == 2),
        "could not parse the fd listing: {ls:?}"
    );
    for (fd, target) in &fds {
        if *fd <= 2 {
            continue;
        }
        // the only other fd is the one ls opened on its own /proc/<pid>/fd directory
        assert!(
            target.starts_with("/proc/") && target.ends_with("/fd"),
            "fd {fd} -> {target} leaked into the container:\n{ls}"
        );
    }
    let extra = fds.iter().filter(|(fd, _)| *fd > 2).count();
    assert!(extra <= 1, "more than ls's own directory fd is open:\n{ls}");
}

#[test]
fn no_runtime_fd_leaks_into_the_container() {
    let ctx = TestCtx::new("fd-leak");
    let mut b = ctx.bundle();
    let o = ctx.run_sh(&mut b, "exec ls -l /proc/self/fd");
    assert_only_stdio(&o.stdout);
}

#[test]
fn no_runtime_fd_leaks_into_an_exec_process() {
    let ctx = TestCtx::new("fd-leak-exec");
    let mut b = ctx.bundle();
    b.sh("echo ready; exec sleep 1000");
    let id = ctx.id("exec");
    ctx.create_and_start(&b, &id);
    ctx.wait_for_stdout(&id, "ready");
    let o = ctx.exec(&id, &[], &["ls", "-l", "/proc/self/fd"]);
    o.assert_ok();
    assert_only_stdio(&o.stdout);
}

#[test]
fn process_cwd_cannot_reach_the_host_through_an_inherited_fd() {
    // CVE-2024-21626: cwd "/proc/self/fd/N" pointing at a runtime fd outside the rootfs.
    let ctx = TestCtx::new("cwd-fd");
    let marker = ctx.path("host-marker");
    fs::write(&marker, "HOST-SECRET").unwrap();
    let rel = format!("../../../../../../../../..{}", marker.display());
    // Positive control: from a directory outside any rootfs the path reaches the marker.
    let control = host_sh(&format!("cd /proc && cat {rel}"));
    assert_eq!(control.stdout, "HOST-SECRET", "{control:?}");
    for fd in 3..=9 {
        let mut b = ctx.bundle();
        b.cwd(&format!("/proc/self/fd/{fd}"));
        b.sh(&format!(
            "cat {rel} 2>/dev/null; cat /proc/self/cwd/{rel} 2>/dev/null; echo script-ran"
        ));
        let id = ctx.id(&format!("cwd{fd}"));
        let o = ctx.run(&b, &id, &[]);
        assert!(
            !o.stdout.contains("HOST-SECRET"),
            "cwd /proc/self/fd/{fd} reached the host: {o:?}"
        );
        // Either the program ran (and did not reach the host) or the runtime refused the
        // cwd; a crash or a run that never started the program proves nothing.
        if o.ok() {
            assert!(o.stdout.contains("script-ran"), "{o:?}");
        } else {
            o.assert_refused();
        }
    }
}

#[test]
fn runtime_binary_cannot_be_overwritten_from_inside_the_container() {
    // CVE-2019-5736. The runtime under test is a private copy, so a failure cannot destroy
    // the real build. While the container is `created`, its PID 1 is the runtime's init: a
    // process exec'd into the container opens /proc/1/exe, waits until `start` has replaced
    // PID 1 with the user program, then keeps trying to write through the fd it holds while
    // the runtime processes exit.
    let base = TestCtx::new("exe-overwrite-bin");
    let bindir = base.mkdir("bin");
    let bin = copy_runtime_to(&bindir, "runtime-copy");
    let before = fs::read(&bin).unwrap();
    let mtime = fs::metadata(&bin).unwrap().mtime();
    // Whatever happens to the attack (refused, inconclusive, a failed step), the binary is
    // checked afterwards: the containers are gone by then (the ctx is dropped in the closure).
    let attack =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| attack_runtime_binary(&bin)));
    assert_eq!(
        fs::metadata(&bin).unwrap().mtime(),
        mtime,
        "runtime binary mtime changed"
    );
    assert!(
        fs::read(&bin).unwrap() == before,
        "runtime binary content changed"
    );
    if let Err(panic) = attack {
        std::panic::resume_unwind(panic);
    }
}

/// The attacker: everything runs in a subshell, because a failed redirection on `exec` (a
/// special builtin) ends a non-interactive shell; the subshell's failure is the refusal.
/// Every path prints exactly one `result:` line.
const EXE_ATTACK: &str = "( exec 3</proc/1/exe; echo opened; \
     i=0; until [ \"$(readlink /proc/1/exe)\" = /bin/busybox ]; do \
       i=$((i+1)); if [ $i -gt 1000 ]; then echo result:never-started; exit 0; fi; \
       sleep 0.02; done; \
     i=0; while [ $i -lt 150 ]; do \
       if echo pwned 2>/dev/null >/proc/self/fd/3; then echo result:WROTE; exit 0; fi; \
       i=$((i+1)); sleep 0.02; done; \
     echo result:refused ) 2>/dev/null || echo result:no-open";

/// Runs [`EXE_ATTACK`] against a container of the runtime copy `bin`; panics if the attacker
/// wrote or never finished.
fn attack_runtime_binary(bin: &std::path::Path) {
    let ctx = TestCtx::with_binary("exe-overwrite", bin);
    let mut b = ctx.bundle();
    b.sh("echo started; exec sleep 1000");
    let id = ctx.id("victim");
    ctx.create(&b, &id, &[]).assert_ok();
    let (out, err) = (ctx.path("attack.out"), ctx.path("attack.err"));
    // -d: the attacker outlives the exec command and keeps writing to these files
    let exec = try_run_to(
        &mut ctx.rt.command(&["exec", "-d", &id, "sh", "-c", EXE_ATTACK]),
        &out,
        &err,
        CMD_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let report = || format!("{:?} {:?}", read_lossy(&out), read_lossy(&err));
    if exec.ok() {
        // let the attacker get its fd (or fail to) before start
        assert!(
            wait_until(WAIT, || {
                let o = read_lossy(&out);
                o.contains("opened") || o.contains("result:")
            }),
            "the attacker never started: {}",
            report()
        );
    }
    ctx.rt.run(&["start", &id]).assert_ok();
    ctx.wait_for_stdout(&id, "started");
    if exec.ok() {
        assert!(
            wait_until(Duration::from_secs(60), || read_lossy(&out)
                .contains("result:")),
            "the attacker never finished: {}",
            report()
        );
        eprintln!("attack: {}", report());
        let o = read_lossy(&out);
        assert!(!o.contains("result:WROTE"), "{}", report());
        assert!(
            !o.contains("result:never-started"),
            "PID 1 never became the user's program: {}",
            report()
        );
    } else {
        eprintln!(
            "note: exec into a created container was refused; the attack did not run: {}",
            exec.stderr.trim()
        );
    }
    // also: the user program may write to /proc/1/exe or /proc/self/exe (busybox) itself
    let mut b2 = ctx.bundle();
    b2.sh("echo x > /proc/1/exe 2>/dev/null; echo x > /proc/self/exe 2>/dev/null; true");
    let id2 = ctx.id("victim2");
    ctx.run(&b2, &id2, &[]).assert_ok();
}

/// Host dirs, each holding only `host-marker`.
fn host_dirs(ctx: &TestCtx, names: &[&str]) -> Vec<std::path::PathBuf> {
    names
        .iter()
        .map(|n| {
            let d = ctx.mkdir(n);
            fs::write(d.join("host-marker"), "host").unwrap();
            d
        })
        .collect()
}

#[track_caller]
fn assert_host_untouched(dirs: &[std::path::PathBuf]) {
    let host_mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    for d in dirs {
        let names: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["host-marker"],
            "the runtime wrote into host dir {}",
            d.display()
        );
        assert!(
            mount_at(&host_mi, &d.to_string_lossy()).is_none(),
            "host dir {} got a mount",
            d.display()
        );
    }
}

#[test]
fn mount_destination_symlinks_are_followed_inside_the_rootfs() {
    // /mnt/escape-abs -> HOST_ABS and /mnt/escape-rel -> ../../../..HOST_REL exist both on
    // the host and (as empty dirs) inside the rootfs: the mounts must land inside the rootfs.
    let ctx = TestCtx::new("symlink-dest");
    let src = ctx.mkdir("src");
    fs::write(src.join("payload"), "bind-payload").unwrap();
    let hosts = host_dirs(&ctx, &["host-abs", "host-rel"]);
    let (host_abs, host_rel) = (&hosts[0], &hosts[1]);
    let mut b = ctx.bundle();
    let rootfs = b.rootfs();
    for h in [host_abs, host_rel] {
        fs::create_dir_all(rootfs.join(h.strip_prefix("/").unwrap())).unwrap();
    }
    let mnt = rootfs.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    symlink(host_abs, mnt.join("escape-abs")).unwrap();
    symlink(
        format!("../../../../../../../../../..{}", host_rel.display()),
        mnt.join("escape-rel"),
    )
    .unwrap();
    b.add_bind(&src, "/mnt/escape-abs", &["ro"]);
    b.add_mount("/mnt/escape-rel", "tmpfs", "tmpfs", &[]);
    let o = ctx.run_sh(
        &mut b,
        "cat /mnt/escape-abs/payload; echo; touch /mnt/escape-rel/written && echo wrote; cat /proc/self/mountinfo",
    );
    assert_eq!(
        o.lines()[0],
        "bind-payload",
        "the bind did not land at the symlink's in-rootfs target: {o:?}"
    );
    assert_eq!(o.lines()[1], "wrote", "{o:?}");
    for h in [host_abs, host_rel] {
        assert!(
            mount_at(&o.stdout, &h.to_string_lossy()).is_some(),
            "no mount at the in-rootfs target {}: {o:?}",
            h.display()
        );
    }
    assert_host_untouched(&hosts);
}

#[test]
fn dangling_mount_destination_symlinks_never_reach_the_host() {
    // The symlinks point at host dirs that do not exist inside the rootfs: the runtime may
    // create them inside the rootfs (as runc does) or refuse, but never touch the host.
    let ctx = TestCtx::new("symlink-dangling");
    let hosts = host_dirs(&ctx, &["host-mk", "host-dangling"]);
    let mut b = ctx.bundle();
    let mnt = b.rootfs().join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    symlink(&hosts[0], mnt.join("escape-mk")).unwrap();
    symlink(&hosts[1], mnt.join("escape-dangling")).unwrap();
    b.add_mount("/mnt/escape-mk/sub/dir", "tmpfs", "tmpfs", &[]);
    b.add_mount("/mnt/escape-dangling", "tmpfs", "tmpfs", &[]);
    b.sh("touch /mnt/escape-dangling/written && cat /proc/self/mountinfo");
    let id = ctx.id("dangling");
    let o = ctx.run(&b, &id, &[]);
    if o.ok() {
        for p in [hosts[0].join("sub/dir"), hosts[1].clone()] {
            assert!(
                mount_at(&o.stdout, &p.to_string_lossy()).is_some(),
                "no mount at the in-rootfs target {}: {o:?}",
                p.display()
            );
        }
    } else {
        // a crash is not a refusal (and would leave the defence untested)
        o.assert_refused();
        eprintln!("note: the runtime refused this config: {}", o.stderr.trim());
        assert!(!ctx.rt.root_has_entry(&id));
    }
    assert_host_untouched(&hosts);
}

/// A bundle whose /dev comes from the rootfs (no /dev tmpfs in the config).
fn bundle_with_rootfs_dev(ctx: &TestCtx) -> Bundle {
    let mut b = ctx.bundle();
    b.remove_mount("/dev");
    b.readonly_root(false);
    b
}

#[test]
fn codex_masking_binds_a_real_null_device_even_if_dev_null_is_a_symlink() {
    // CVE-2025-31133: the container's /dev/null replaced by a symlink to a sensitive file.
    let ctx = TestCtx::new("mask-null-symlink");
    let mut b = bundle_with_rootfs_dev(&ctx);
    let rootfs = b.rootfs();
    fs::write(rootfs.join("etc/codex-secret"), "SECRET").unwrap();
    symlink("/etc/codex-secret", rootfs.join("dev/null")).unwrap();
    b.masked_paths(&["/proc/timer_list"]);
    // bounded reads only: with a vulnerable runtime the "null" mask is a regular file
    b.sh("stat -c '%F %t:%T' /proc/timer_list; head -c 64 /proc/timer_list | wc -c");
    let id = ctx.id("masknull");
    let o = ctx.run(&b, &id, &[]);
    if o.ok() {
        let l = o.lines();
        assert!(l.len() >= 2, "the container's output went missing: {o:?}");
        assert_eq!(
            l[0], "character special file 1:3",
            "masked with something else than /dev/null: {o:?}"
        );
        assert_eq!(l[1].trim(), "0", "/proc/timer_list must read empty: {o:?}");
    } else {
        // a crash is not a refusal (and would leave the defence untested)
        o.assert_refused();
        eprintln!("note: the runtime refused this config: {}", o.stderr.trim());
    }
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/codex-secret")).unwrap(),
        "SECRET"
    );
}

#[test]
fn codex_masking_binds_a_real_null_device_even_if_dev_null_is_a_bind_of_a_file() {
    // The same attack through the config: /dev/null is a bind mount of a regular file.
    let ctx = TestCtx::new("mask-null-bind");
    let f = ctx.path("fake-null");
    fs::write(&f, "NOT-NULL").unwrap();
    let mut b = ctx.bundle();
    b.add_bind(&f, "/dev/null", &["rw"]);
    b.masked_paths(&["/proc/timer_list"]);
    b.sh("stat -c '%F %t:%T' /proc/timer_list; head -c 64 /proc/timer_list | wc -c");
    let id = ctx.id("masknull");
    let o = ctx.run(&b, &id, &[]);
    if o.ok() {
        let l = o.lines();
        assert!(l.len() >= 2, "the container's output went missing: {o:?}");
        assert_eq!(
            l[0], "character special file 1:3",
            "masked with something else than /dev/null: {o:?}"
        );
        assert_eq!(l[1].trim(), "0", "/proc/timer_list must read empty: {o:?}");
    } else {
        // a crash is not a refusal (and would leave the defence untested)
        o.assert_refused();
        eprintln!("note: the runtime refused this config: {}", o.stderr.trim());
    }
    assert_eq!(fs::read_to_string(&f).unwrap(), "NOT-NULL");
}

#[test]
fn codex_console_is_not_bound_through_a_dev_console_symlink() {
    // CVE-2025-52565: /dev/console replaced by a symlink; the PTY bind must not follow it.
    let ctx = TestCtx::new("console-symlink");
    let mut b = bundle_with_rootfs_dev(&ctx);
    let rootfs = b.rootfs();
    fs::write(rootfs.join("etc/codex-secret"), "SECRET").unwrap();
    symlink("/etc/codex-secret", rootfs.join("dev/console")).unwrap();
    b.terminal(true);
    // never read the target in the container: if it became the PTY, the read would block
    b.sh("stat -c '%F' /etc/codex-secret; stat -c '%F %t' /dev/console; echo done");
    let sock = ConsoleSocket::bind(&ctx.path("console.sock"), Vec::new(), WAIT);
    let id = ctx.id("console");
    let c = ctx.create(&b, &id, &["--console-socket", &sock.arg()]);
    if c.ok() {
        ctx.rt.run(&["start", &id]).assert_ok();
        let r = sock.finish().expect("console output");
        let text = r.text();
        assert!(text.contains("done"), "{text:?}");
        assert!(
            text.lines()
                .next()
                .is_some_and(|l| l.trim() == "regular file"),
            "the console was bound over the symlink target: {text:?}"
        );
    } else {
        c.assert_refused();
        eprintln!("note: the runtime refused this config: {}", c.stderr.trim());
    }
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/codex-secret")).unwrap(),
        "SECRET"
    );
}

#[test]
fn sysctl_write_is_not_redirected_by_a_mount_over_proc() {
    // CVE-2025-52881 class: the runtime must write sysctls to procfs, not to whatever a
    // mount put at /proc/sys/...
    let ctx = TestCtx::new("sysctl-redirect");
    let f = ctx.path("fake-shmmax");
    fs::write(&f, "ORIGINAL").unwrap();
    let mut b = ctx.bundle();
    b.add_bind(&f, "/proc/sys/kernel/shmmax", &["rw"]);
    b.sysctl("kernel.shmmax", "123456789");
    b.sh("echo script-ran");
    let id = ctx.id("sysctl");
    // runc 1.1.5 refuses mounts inside /proc; a runtime that allows them must still write
    // the sysctl to procfs. Either way the runtime answered: it ran the program or refused
    // (a crash, or a run that never started the program, proves nothing).
    let o = ctx.run(&b, &id, &[]);
    if o.ok() {
        assert!(o.stdout.contains("script-ran"), "{o:?}");
    } else {
        o.assert_refused();
    }
    assert_eq!(
        fs::read_to_string(&f).unwrap(),
        "ORIGINAL",
        "the sysctl write went to the bind-mounted host file"
    );
}
