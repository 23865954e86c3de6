//! `process`: args, env, cwd, user, umask, rlimits, capabilities, noNewPrivileges,
//! oomScoreAdj, hostname/domainname, as seen from inside the container.

use codex_tests::*;

/// `/proc/self/status` of a container process built from `b`.
fn status_of(ctx: &TestCtx, b: &mut Bundle) -> String {
    let st = ctx.run_sh(b, "cat /proc/self/status").stdout;
    // positive control: every check below reads fields of a real status file
    assert!(
        status_field(&st, "Name").is_some() && status_field(&st, "Pid").is_some(),
        "the container did not print its /proc/self/status: {st:?}"
    );
    st
}

#[test]
fn init_is_pid_1_in_a_new_pid_namespace() {
    let ctx = TestCtx::new("pid1");
    let mut b = ctx.bundle();
    let o = ctx.run_sh(
        &mut b,
        "echo $$; ls /proc | grep -E '^[0-9]+$' | sort -n | head -1",
    );
    assert_eq!(o.lines(), vec!["1", "1"], "{o:?}");
}

#[test]
fn program_gets_its_args_unchanged() {
    let ctx = TestCtx::new("args");
    let mut b = ctx.bundle();
    b.args(&[
        "sh",
        "-c",
        "printf '[%s]' \"$0\" \"$@\"",
        "zero",
        "a b",
        "",
        "c'd",
    ]);
    let id = ctx.id("args");
    let o = ctx.run(&b, &id, &[]);
    o.assert_ok();
    assert_eq!(o.stdout, "[zero][a b][][c'd]");
}

#[test]
fn program_gets_exactly_the_configured_env() {
    let ctx = TestCtx::new("env");
    let mut b = ctx.bundle();
    b.env(&["PATH=/bin:/sbin", "CODEX_A=x y", "CODEX_B=", "HOME=/home"]);
    let o = ctx.run_sh(&mut b, "env | grep -v '^PWD=' | grep -v '^SHLVL=' | sort");
    assert_eq!(
        o.lines(),
        vec!["CODEX_A=x y", "CODEX_B=", "HOME=/home", "PATH=/bin:/sbin"],
        "{o:?}"
    );
}

#[test]
fn home_defaults_to_the_users_passwd_entry_when_not_in_env() {
    // runc sets HOME from /etc/passwd when process.env has none.
    let ctx = TestCtx::new("home");
    let mut b = ctx.bundle();
    b.env(&["PATH=/bin"]);
    let o = ctx.run_sh(&mut b, "echo \"home=$HOME\"");
    assert_eq!(o.stdout.trim(), "home=/root");
}

#[test]
fn program_starts_in_the_configured_cwd() {
    let ctx = TestCtx::new("cwd");
    let mut b = ctx.bundle();
    b.cwd("/home");
    let o = ctx.run_sh(&mut b, "pwd");
    assert_eq!(o.stdout.trim(), "/home");
}

#[test]
fn user_uid_gid_and_additional_gids_are_applied() {
    let ctx = TestCtx::new("user");
    let mut b = ctx.bundle();
    b.user(1000, 1001).additional_gids(&[20, 30]);
    let st = status_of(&ctx, &mut b);
    let ids = |f| {
        status_field(&st, f)
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids("Uid"), vec!["1000"; 4], "{st}");
    assert_eq!(ids("Gid"), vec!["1001"; 4], "{st}");
    let mut groups = ids("Groups");
    groups.sort();
    groups.retain(|g| g != "1001");
    assert_eq!(groups, vec!["20", "30"], "{st}");
}

#[test]
fn root_user_has_no_supplementary_groups_by_default() {
    let ctx = TestCtx::new("no-groups");
    let mut b = ctx.bundle();
    let st = status_of(&ctx, &mut b);
    let g = status_field(&st, "Groups").expect("a Groups: line");
    assert!(
        g.split_whitespace().all(|x| x == "0"),
        "host groups leaked into the container: {g:?}"
    );
}

#[test]
fn umask_is_applied() {
    let ctx = TestCtx::new("umask");
    let mut b = ctx.bundle();
    b.umask(0o027)
        .add_mount("/tmp", "tmpfs", "tmpfs", &["mode=1777"]);
    let o = ctx.run_sh(
        &mut b,
        "umask; touch /tmp/f; mkdir /tmp/d; stat -c %a /tmp/f /tmp/d",
    );
    assert_eq!(o.lines(), vec!["0027", "640", "750"], "{o:?}");
}

#[test]
fn rlimits_are_applied() {
    let ctx = TestCtx::new("rlimits");
    let mut b = ctx.bundle();
    b.rlimits(&[
        ("RLIMIT_NOFILE", 512, 1000),
        ("RLIMIT_NPROC", 500, 600),
        ("RLIMIT_CORE", 0, 4096),
    ]);
    let o = ctx.run_sh(&mut b, "cat /proc/self/limits; echo nofile=$(ulimit -n)");
    let row = |name: &str| -> Vec<String> {
        let l = o
            .stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {o:?}"));
        l[name.len()..]
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(&row("Max open files")[..2], ["512", "1000"]);
    assert_eq!(&row("Max processes")[..2], ["500", "600"]);
    assert_eq!(&row("Max core file size")[..2], ["0", "4096"]);
    assert!(o.stdout.contains("nofile=512"), "{o:?}");
}

#[test]
fn root_process_with_no_new_privs_has_the_configured_bounding_inheritable_and_permitted_sets() {
    // For uid 0 the kernel makes effective = permitted at execve (root's file capabilities
    // count as "all"), and with no_new_privs the new permitted set cannot exceed the old one:
    // so CapPrm = CapEff = the configured permitted set (runc gives exactly this).
    let ctx = TestCtx::new("caps-root");
    let mut b = ctx.bundle();
    let bnd = [
        "CAP_CHOWN",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
    ];
    let prm = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    b.no_new_privileges(true)
        .caps("bounding", &bnd)
        .caps("permitted", &prm)
        .caps("effective", &prm)
        .caps("inheritable", &["CAP_KILL"])
        .caps("ambient", &[]);
    let st = status_of(&ctx, &mut b);
    let f = |n| parse_mask(status_field(&st, n).unwrap_or_else(|| panic!("no {n}: {st}")));
    assert_eq!(f("CapBnd"), cap_mask(&bnd), "{st}");
    assert_eq!(f("CapInh"), cap_mask(&["CAP_KILL"]), "{st}");
    assert_eq!(f("CapPrm"), cap_mask(&prm), "{st}");
    assert_eq!(f("CapEff"), cap_mask(&prm), "{st}");
    assert_eq!(f("CapAmb"), 0, "{st}");
}

#[test]
fn non_root_process_gets_all_five_capability_sets() {
    // For a non-root user without file capabilities, execve leaves permitted = effective =
    // ambient, so every configured set is visible.
    let ctx = TestCtx::new("caps-user");
    let mut b = ctx.bundle();
    let bnd = [
        "CAP_CHOWN",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_RAW",
    ];
    let inh = ["CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let amb = ["CAP_NET_BIND_SERVICE"];
    b.user(1000, 1000)
        .caps("bounding", &bnd)
        .caps(
            "permitted",
            &["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        )
        .caps(
            "effective",
            &["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
        )
        .caps("inheritable", &inh)
        .caps("ambient", &amb);
    let st = status_of(&ctx, &mut b);
    let f = |n| parse_mask(status_field(&st, n).unwrap_or_else(|| panic!("no {n}: {st}")));
    assert_eq!(f("CapBnd"), cap_mask(&bnd), "{st}");
    assert_eq!(f("CapInh"), cap_mask(&inh), "{st}");
    assert_eq!(f("CapAmb"), cap_mask(&amb), "{st}");
    assert_eq!(f("CapPrm"), cap_mask(&amb), "{st}");
    assert_eq!(f("CapEff"), cap_mask(&amb), "{st}");
}

#[test]
fn empty_capability_sets_leave_no_capabilities() {
    let ctx = TestCtx::new("caps-none");
    let mut b = ctx.bundle();
    b.set("/process/capabilities", serde_json::json!({}));
    let st = status_of(&ctx, &mut b);
    for f in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(parse_mask(status_field(&st, f).unwrap()), 0, "{f}: {st}");
    }
}

#[test]
fn no_new_privileges_is_set_only_when_asked() {
    let ctx = TestCtx::new("nnp");
    let mut b = ctx.bundle();
    b.no_new_privileges(true);
    assert_eq!(
        status_field(&status_of(&ctx, &mut b), "NoNewPrivs"),
        Some("1")
    );
    b.no_new_privileges(false);
    assert_eq!(
        status_field(&status_of(&ctx, &mut b), "NoNewPrivs"),
        Some("0")
    );
}

#[test]
fn oom_score_adj_is_applied() {
    let ctx = TestCtx::new("oom");
    let mut b = ctx.bundle();
    b.oom_score_adj(500);
    let o = ctx.run_sh(&mut b, "cat /proc/self/oom_score_adj");
    assert_eq!(o.stdout.trim(), "500");
}

#[test]
fn hostname_is_set_without_touching_the_host() {
    let ctx = TestCtx::new("uts");
    let host_before = host_sh("hostname").stdout;
    let mut b = ctx.bundle();
    b.hostname("codex-box");
    let o = ctx.run_sh(&mut b, "hostname; cat /proc/sys/kernel/hostname");
    assert_eq!(o.lines(), vec!["codex-box", "codex-box"], "{o:?}");
    assert_eq!(
        host_sh("hostname").stdout,
        host_before,
        "the host's hostname changed"
    );
}

/// codex-specific: runc 1.1.5 ignores `domainname` (runtime-spec 1.1 field).
#[test]
fn codex_domainname_is_set_without_touching_the_host() {
    let ctx = TestCtx::new("domainname");
    let host_before = host_sh("cat /proc/sys/kernel/domainname").stdout;
    let mut b = ctx.bundle();
    b.hostname("codex-box").domainname("codex.test");
    let o = ctx.run_sh(&mut b, "cat /proc/sys/kernel/domainname");
    assert_eq!(o.stdout.trim(), "codex.test", "{o:?}");
    assert_eq!(
        host_sh("cat /proc/sys/kernel/domainname").stdout,
        host_before,
        "the host's domainname changed"
    );
}

#[test]
fn preserve_fds_passes_extra_fds_to_the_container_and_no_more() {
    use std::os::unix::io::AsRawFd;
    use std::os::unix::process::CommandExt;
    let ctx = TestCtx::new("preserve-fds");
    let f3 = ctx.path("fd3");
    let f4 = ctx.path("fd4");
    std::fs::write(&f3, "preserved-three").unwrap();
    std::fs::write(&f4, "not-preserved-four").unwrap();
    let mut b = ctx.bundle();
    b.sh("cat <&3; echo; [ -e /proc/self/fd/4 ] && echo fd4-leaked || echo fd4-closed");
    b.save();
    let id = ctx.id("fds");
    let a = std::fs::File::open(&f3).unwrap();
    let c = std::fs::File::open(&f4).unwrap();
    let (ra, rc) = (a.as_raw_fd(), c.as_raw_fd());
    let mut cmd = ctx.rt.command(&[
        "run",
        "--bundle",
        b.dir.to_str().unwrap(),
        "--preserve-fds",
        "1",
        &id,
    ]);
    // SAFETY: only async-signal-safe dup2 calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // move both out of the way first (they may already be 3 or 4, and dup2 onto
            // the same number would keep O_CLOEXEC)
            let ha = libc::fcntl(ra, libc::F_DUPFD, 100);
            let hc = libc::fcntl(rc, libc::F_DUPFD, 100);
            if ha < 0 || hc < 0 || libc::dup2(ha, 3) < 0 || libc::dup2(hc, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(ha);
            libc::close(hc);
            Ok(())
        });
    }
    let o = ctx.rt.run_cmd(cmd);
    o.assert_ok();
    assert_eq!(o.lines(), vec!["preserved-three", "fd4-closed"], "{o:?}");
}
