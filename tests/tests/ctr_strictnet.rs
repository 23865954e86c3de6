//! `strict` containers on bridge networks (`--isolation strict --network NAME`): an
//! address, routes, and the engine's hosts and resolv.conf files like any other
//! container on the network, even from an image that has no `/etc/hosts` or
//! `/etc/resolv.conf` (the start makes the mount points its user namespace could not),
//! and files the container cannot write. Every command runs in the `Ctr` fixture's own
//! network namespace.

use codex_tests::ctr::Ctr;
use codex_tests::*;

#[test]
fn strict_containers_on_a_network_resolve_and_are_resolved_by_name() {
    let c = Ctr::new();
    // An image without /etc/hosts and /etc/resolv.conf.
    let tmp = tempfile::tempdir().unwrap();
    let bare = tmp.path().join("rootfs");
    let o = host_sh(&format!(
        "cp -a {} {} && rm -f {b}/etc/hosts {b}/etc/resolv.conf",
        fixture_dir().join("rootfs").display(),
        bare.display(),
        b = bare.display()
    ));
    o.assert_ok();
    assert!(!bare.join("etc/hosts").exists());
    c.run(&["image", "import", bare.to_str().unwrap(), "bare"])
        .assert_ok();
    c.run(&["network", "create", "shop"]).assert_ok();
    c.run(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "shop",
        "busybox",
        "sh",
        "-c",
        "echo served-by-web > /tmp/index.html && exec httpd -f -p 8080 -h /tmp",
    ])
    .assert_ok();
    c.run(&[
        "run",
        "-d",
        "--name",
        "s",
        "--isolation",
        "strict",
        "--network",
        "shop",
        "bare",
        "sh",
        "-c",
        "echo served-by-strict > /tmp/index.html && exec httpd -f -p 8080 -h /tmp",
    ])
    .assert_ok();
    let s_ip = c.inspect("s")["networks"]["shop"]["ip"]
        .as_str()
        .unwrap()
        .to_string();
    // The strict container resolves web, lists itself, and cannot change its files.
    let o = c.run(&[
        "exec",
        "s",
        "sh",
        "-c",
        "cat /etc/hosts; i=0; until wget -q -O - http://web:8080/; do i=$((i+1)); \
         [ $i -gt 50 ] && exit 9; sleep 0.2; done; echo x >> /etc/hosts && echo WROTE",
    ]);
    assert!(o.stdout.contains("served-by-web"), "{o:?}");
    assert!(o.stdout.contains(&format!("{s_ip}\t")), "{o:?}");
    assert!(
        !o.stdout.contains("WROTE"),
        "a strict container wrote its hosts file: {o:?}"
    );
    // A standard peer started later resolves the strict one by name.
    let o = c.run(&[
        "run",
        "--rm",
        "--network",
        "shop",
        "busybox",
        "sh",
        "-c",
        "i=0; until wget -q -O - http://s:8080/; do i=$((i+1)); [ $i -gt 50 ] && exit 9; \
         sleep 0.2; done",
    ]);
    o.assert_ok();
    assert!(o.stdout.contains("served-by-strict"), "{o:?}");
    for n in ["web", "s"] {
        c.run(&["rm", "-f", n]).assert_ok();
    }
}
