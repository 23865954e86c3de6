//! The engine's packet-filter rules (crates/engine/src/network/rules.rs): networks are
//! isolated from each other, `--internal` networks have no way out, the others reach
//! the outside through a masquerade. Every codex-ctr command runs inside a private
//! network namespace (`TestNetns`); "the outside" is a second namespace joined to it
//! by a veth, which has no route back to any container subnet: only a masqueraded
//! connection can get an answer from it.

use std::process::{Child, Stdio};
use std::time::Duration;

use codex_tests::ctr::Ctr;
use codex_tests::netns::TestNetns;
use codex_tests::*;

/// A busybox `httpd` in a namespace, killed on drop.
struct Server(Child);

impl Server {
    fn start(ns: &TestNetns, addr: &str, dir: &std::path::Path) -> Server {
        let busybox = fixture_dir().join("rootfs/bin/busybox");
        std::fs::write(dir.join("index.html"), "outside\n").unwrap();
        let child = ns
            .cmd(&[
                busybox.to_str().unwrap(),
                "httpd",
                "-f",
                "-p",
                addr,
                "-h",
                dir.to_str().unwrap(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("httpd");
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ip_on(c: &Ctr, ns: &TestNetns, name: &str, network: &str) -> String {
    let o = ns.ctr(c, &["inspect", name]);
    o.assert_ok();
    let v = o.json();
    v["networks"][network]["ip"]
        .as_str()
        .unwrap_or_else(|| panic!("no address on {network}: {v}"))
        .to_string()
}

/// A container on `network` that connects to `ip:port` (`tries` attempts 0.3 s apart);
/// whether it got through.
fn reaches(c: &Ctr, ns: &TestNetns, network: &str, ip: &str, port: u16, tries: u32) -> Out {
    let script = format!(
        "i=0; until nc -w 2 {ip} {port} </dev/null; do i=$((i+1)); [ $i -ge {tries} ] && exit 7; sleep 0.3; done; echo reached"
    );
    ns.ctr(
        c,
        &[
            "run",
            "--rm",
            "--network",
            network,
            "busybox",
            "sh",
            "-c",
            &script,
        ],
    )
}

#[test]
fn networks_are_isolated_internal_ones_closed_and_the_rest_masqueraded_out() {
    if !have_tool("nft") {
        return skip("nft (the nftables package) is not installed");
    }
    let c = Ctr::new();
    let ns = TestNetns::new();
    let outside = TestNetns::new();
    ns.link_to(&outside, "up0", "198.51.100.1/24", "198.51.100.2/24");
    let www = tempfile::tempdir().unwrap();
    let _server = Server::start(&outside, "198.51.100.2:9000", www.path());
    let busybox = fixture_dir().join("rootfs/bin/busybox");
    let probe = format!(
        "for i in $(seq 50); do {} nc -w 1 198.51.100.2 9000 </dev/null && exit 0; sleep 0.1; done; exit 1",
        busybox.display()
    );
    ns.sh(&probe).assert_ok();
    // The outside knows no route to any container subnet.
    let o = run_command(&mut outside.cmd(&["ip", "route"]));
    assert!(
        !o.stdout.contains("default") && !o.stdout.contains("10."),
        "{o:?}"
    );

    for args in [
        &["network", "create", "a"][..],
        &["network", "create", "b"],
        &["network", "create", "--internal", "i"],
    ] {
        ns.ctr(&c, args).assert_ok();
    }
    ns.ctr(
        &c,
        &[
            "run",
            "-d",
            "--name",
            "wb",
            "--network",
            "b",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "8080",
            "-h",
            "/",
        ],
    )
    .assert_ok();
    let ipb = ip_on(&c, &ns, "wb", "b");

    // Control: a peer on wb's own network reaches it.
    let o = reaches(&c, &ns, "b", &ipb, 8080, 30);
    assert!(
        o.ok() && o.stdout.contains("reached"),
        "same network: {o:?}"
    );
    // Another network's container does not.
    let o = reaches(&c, &ns, "a", &ipb, 8080, 1);
    assert!(!o.ok(), "a -> b got through: {o:?}");

    // It is the engine's table that stops it: without it, a -> b is routed (forwarding
    // is on)...
    let rules = ns.ruleset();
    let table = rules
        .lines()
        .find_map(|l| l.strip_prefix("table ip codex_"))
        .and_then(|l| l.split_whitespace().next())
        .map(|t| format!("codex_{t}"))
        .unwrap_or_else(|| panic!("no codex table: {rules}"));
    let fwd = run_command(&mut ns.cmd(&["cat", "/proc/sys/net/ipv4/ip_forward"]));
    assert_eq!(fwd.stdout.trim(), "1", "{fwd:?}");
    run_command(&mut ns.cmd(&["nft", "delete", "table", "ip", &table])).assert_ok();
    // (This run's own start brings the rules back, before it starts: so the control
    // connects from the namespace itself, through a container on a.)
    ns.ctr(
        &c,
        &[
            "run",
            "-d",
            "--name",
            "wa",
            "--network",
            "a",
            "busybox",
            "sleep",
            "1000",
        ],
    )
    .assert_ok();
    run_command(&mut ns.cmd(&["nft", "delete", "table", "ip", &table])).assert_ok();
    let o = ns.ctr(
        &c,
        &[
            "exec",
            "wa",
            "sh",
            "-c",
            &format!("nc -w 2 {ipb} 8080 </dev/null && echo reached"),
        ],
    );
    assert!(
        o.ok() && o.stdout.contains("reached"),
        "without the table: {o:?}"
    );
    // ... and the next command that changes the networking rebuilds the table from the
    // registry (here a start on another network).
    let o = reaches(&c, &ns, "a", &ipb, 8080, 1);
    assert!(!o.ok(), "a -> b after the rebuild: {o:?}");
    assert!(ns.ruleset().contains(&table));

    // Out through the uplink: a non-internal network is masqueraded (the outside has no
    // route back to the container's own address) ...
    let o = reaches(&c, &ns, "a", "198.51.100.2", 9000, 3);
    assert!(
        o.ok() && o.stdout.contains("reached"),
        "a -> outside: {o:?}"
    );
    // ... an internal one has no default route and is dropped even with one.
    let o = ns.ctr(
        &c,
        &["run", "--rm", "--network", "i", "busybox", "ip", "route"],
    );
    o.assert_ok();
    assert!(!o.stdout.contains("default"), "{o:?}");
    let o = ns.ctr(
        &c,
        &[
            "run", "--rm", "--network", "i", "busybox", "sh", "-c",
            "ip route add default via $(ip route | awk '{print $1}' | sed 's#0/.*#1#') 2>&1; nc -w 2 198.51.100.2 9000 </dev/null && echo reached",
        ],
    );
    assert!(!o.stdout.contains("reached"), "internal -> outside: {o:?}");
    let o = reaches(&c, &ns, "i", &ipb, 8080, 1);
    assert!(!o.ok(), "internal -> b: {o:?}");

    // Removing the containers and networks leaves no codex link and no codex table.
    ns.ctr(&c, &["rm", "-f", "wa", "wb"]).assert_ok();
    ns.ctr(&c, &["network", "rm", "a", "b", "i"]).assert_ok();
    assert!(
        wait_until(Duration::from_secs(10), || ns
            .links()
            .iter()
            .all(|l| !l.starts_with("cx-") && !l.starts_with("cv"))),
        "links left: {:?}",
        ns.links()
    );
    let rules = ns.ruleset();
    assert!(!rules.contains("codex_"), "rules left: {rules}");
}
