//! The flags Docker users type daily to loosen or tighten a container (issue 20):
//! `--cap-add/--cap-drop`, `--privileged`, `--read-only`, `--security-opt`, `--ulimit`,
//! `--shm-size`, `--device`. Each is checked from inside the container, against the
//! same command without the flag. Each test has its own engine root.

use codex_tests::ctr::Ctr;

/// `run --rm --network none [flags] busybox sh -c script`: (exit code, stdout+stderr).
fn sh(c: &Ctr, flags: &[&str], script: &str) -> (i32, String) {
    let mut args = vec!["run", "--rm", "--network", "none"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    let o = c.run(&args);
    (
        o.status.code().unwrap_or(-1),
        format!("{}{}", o.stdout, o.stderr),
    )
}

fn status_field(text: &str, field: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {field} in {text}"))
}

#[test]
fn cap_add_and_cap_drop_change_what_root_in_the_container_may_do() {
    let c = Ctr::new();
    let add_link = "ip addr add 10.9.9.9/32 dev lo && echo added";
    let (code, out) = sh(&c, &[], add_link);
    assert_ne!(code, 0, "the default set has no NET_ADMIN: {out}");
    let (code, out) = sh(&c, &["--cap-add", "NET_ADMIN"], add_link);
    assert_eq!((code, out.trim()), (0, "added"), "{out}");

    let chown = "touch /tmp/f && chown 1 /tmp/f && echo chowned";
    let (code, out) = sh(&c, &[], chown);
    assert_eq!((code, out.trim()), (0, "chowned"), "{out}");
    let (code, out) = sh(&c, &["--cap-drop", "chown"], chown);
    assert_ne!(code, 0, "{out}");
    let (code, out) = sh(&c, &["--cap-drop", "ALL"], "grep CapEff /proc/self/status");
    assert_eq!(
        (code, status_field(&out, "CapEff:").as_str()),
        (0, "0000000000000000")
    );
}

#[test]
fn privileged_has_the_hosts_capabilities_devices_and_no_seccomp() {
    let c = Ctr::new();
    let probe = "grep -E 'CapEff|Seccomp:' /proc/self/status; ls /dev/kmsg 2>&1; true";
    let (code, plain) = sh(&c, &[], probe);
    assert_eq!(code, 0, "{plain}");
    assert_eq!(status_field(&plain, "Seccomp:"), "2", "{plain}");
    assert!(
        plain.contains("No such file"),
        "no host devices by default: {plain}"
    );
    let (code, out) = sh(&c, &["--privileged"], probe);
    assert_eq!(code, 0, "{out}");
    let host = std::fs::read_to_string("/proc/self/status").expect("our status");
    assert_eq!(
        status_field(&out, "CapEff:"),
        status_field(&host, "CapBnd:"),
        "{out}"
    );
    assert_eq!(status_field(&out, "Seccomp:"), "0", "{out}");
    assert!(
        !out.contains("No such file"),
        "host devices are there: {out}"
    );
}

#[test]
fn read_only_ulimit_shm_size_and_no_new_privileges_are_seen_inside() {
    let c = Ctr::new();
    let (code, out) = sh(&c, &[], "touch /written && echo ok");
    assert_eq!((code, out.trim()), (0, "ok"));
    let (code, out) = sh(&c, &["--read-only"], "touch /written");
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Read-only file system"), "{out}");

    let (code, out) = sh(&c, &["--ulimit", "nofile=100:200"], "ulimit -n; ulimit -Hn");
    assert_eq!((code, out.as_str()), (0, "100\n200\n"));

    let df = "df -k /dev/shm | tail -1";
    let (_, plain) = sh(&c, &[], df);
    assert!(plain.contains("65536"), "the default is 64 MiB: {plain}");
    let (code, out) = sh(&c, &["--shm-size", "1m"], df);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.split_whitespace().nth(1), Some("1024"), "{out}");

    let nnp = "grep NoNewPrivs /proc/self/status";
    let (_, plain) = sh(&c, &[], nnp);
    assert_eq!(status_field(&plain, "NoNewPrivs:"), "0");
    let (_, out) = sh(&c, &["--security-opt", "no-new-privileges"], nnp);
    assert_eq!(status_field(&out, "NoNewPrivs:"), "1");
    let (_, out) = sh(
        &c,
        &["--security-opt", "seccomp=unconfined"],
        "grep Seccomp: /proc/self/status",
    );
    assert_eq!(status_field(&out, "Seccomp:"), "0");
}

#[test]
fn device_maps_a_host_node_with_the_access_given() {
    let c = Ctr::new();
    let (code, out) = sh(&c, &[], "ls /dev/mynull");
    assert_ne!(code, 0, "{out}");
    let (code, out) = sh(
        &c,
        &["--device", "/dev/null:/dev/mynull:rw"],
        "echo x > /dev/mynull && echo wrote",
    );
    assert_eq!((code, out.trim()), (0, "wrote"));
    // The access letters hold: a node allowed `w` opens for writing, one allowed
    // only `r` does not (the device cgroup refuses it). /dev/kmsg is on every host
    // and writable by root without a capability; it is not one of the defaults.
    let write = "echo codex-ctr device test > /dev/k && echo wrote || echo refused";
    let (code, out) = sh(&c, &["--device", "/dev/kmsg:/dev/k:w"], write);
    assert_eq!((code, out.trim()), (0, "wrote"));
    let (code, out) = sh(&c, &["--device", "/dev/kmsg:/dev/k:r"], write);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("refused") && !out.contains("wrote"), "{out}");
}

#[test]
fn bad_values_are_refused_by_flag_and_leave_nothing() {
    let c = Ctr::new();
    for (flags, field) in [
        (&["--cap-add", "NET_WIZARD"][..], "cap-add[0]"),
        (&["--ulimit", "nofile=x"], "ulimit[0]"),
        (&["--device", "/etc/passwd"], "devices[0]"),
        (
            &["--security-opt", "apparmor=unconfined"],
            "security-opt[0]",
        ),
        (&["--privileged", "--isolation", "strict"], "privileged"),
        (&["--privileged", "--cap-add", "NET_ADMIN"], "privileged"),
    ] {
        let mut args = vec!["run", "--rm", "--network", "none"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["busybox", "true"]);
        let o = c.run(&args);
        assert_eq!(o.status.code(), Some(125), "{flags:?}: {o:?}");
        assert!(
            o.stderr.contains(field),
            "{flags:?} should name {field}: {o:?}"
        );
    }
    assert_eq!(
        c.run(&["ps", "-aq"]).stdout.trim(),
        "",
        "nothing was created"
    );
}
