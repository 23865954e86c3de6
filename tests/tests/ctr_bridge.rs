//! Containers on bridge networks (`--network bridge|NAME`): each gets a veth on the
//! network's bridge with its recorded address, peers reach it by name, the host reaches
//! it at its address, and nothing of the network is left after `rm` and `network rm`.
//! Every codex-ctr command runs inside a network namespace the test made (through
//! `nsenter --net`, which keeps the host's /sys and its cgroups visible): the host's own
//! network is never touched.

use std::time::Duration;

use codex_tests::ctr::Ctr;
use codex_tests::netns::TestNetns;
use codex_tests::*;

/// codex-ctr `args` on `c`'s root, inside `ns`.
fn ctr_in(c: &Ctr, ns: &TestNetns, args: &[&str]) -> Out {
    let bin = workspace_dir().join("target/debug/codex-ctr");
    let mut cmd = ns.cmd(&[bin.to_str().unwrap()]);
    cmd.args(args).env("CODEX_CTR_ROOT", &c.root);
    run_command(&mut cmd)
}

fn ip_on(c: &Ctr, ns: &TestNetns, name: &str, network: &str) -> String {
    let o = ctr_in(c, ns, &["inspect", name]);
    o.assert_ok();
    let v = o.json();
    let ip = v["networks"][network]["ip"].as_str();
    ip.unwrap_or_else(|| panic!("no address on {network}: {v}"))
        .to_string()
}

#[test]
fn peers_reach_each_other_by_name_and_the_host_reaches_them_by_address() {
    let c = Ctr::new();
    let ns = TestNetns::new();
    // Control: nothing of codex in the fresh namespace.
    assert!(
        ns.links()
            .iter()
            .all(|l| !l.starts_with("cx-") && !l.starts_with("cv")),
        "{:?}",
        ns.links()
    );
    ctr_in(&c, &ns, &["network", "create", "backend"]).assert_ok();
    ctr_in(
        &c,
        &ns,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "backend",
            "busybox",
            "sh",
            "-c",
            "echo served-by-web > /tmp/index.html && exec httpd -f -p 8080 -h /tmp",
        ],
    )
    .assert_ok();
    let ip = ip_on(&c, &ns, "web", "backend");
    let v = ctr_in(&c, &ns, &["inspect", "web"]).json();
    let net = &v["networks"]["backend"];
    assert!(
        net["mac"].as_str().is_some_and(|m| m.starts_with("02:42:")),
        "{v}"
    );

    // A peer on the same network, by name (its hosts file lists web). It first waits
    // for the server to listen (and no -T: this static busybox wget crashes with it).
    let script = format!(
        "i=0; until nc -w 1 {ip} 8080 </dev/null; do i=$((i+1)); [ $i -gt 50 ] && exit 9; sleep 0.2; done; \
         wget -q -O - http://web:8080/"
    );
    let o = ctr_in(
        &c,
        &ns,
        &[
            "run",
            "--rm",
            "--network",
            "backend",
            "busybox",
            "sh",
            "-c",
            &script,
        ],
    );
    o.assert_ok();
    assert_eq!(o.stdout.trim(), "served-by-web", "{o:?}");

    // The host (this test's namespace) at the container's address, no port published.
    let busybox = fixture_dir().join("rootfs/bin/busybox");
    let fetch = format!(
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | {} nc -w 3 {ip} 8080",
        busybox.display()
    );
    let o = run_command(&mut ns.cmd(&["sh", "-c", &fetch]));
    assert!(o.stdout.contains("served-by-web"), "host -> {ip}: {o:?}");

    // The bridge and the container's veth are there while it runs...
    let links = ns.links();
    assert!(links.iter().any(|l| l.starts_with("cx-")), "{links:?}");
    assert!(links.iter().any(|l| l.starts_with("cv")), "{links:?}");
    // ... and go with the container and the network.
    ctr_in(&c, &ns, &["rm", "-f", "web"]).assert_ok();
    ctr_in(&c, &ns, &["network", "rm", "backend"]).assert_ok();
    assert!(
        wait_until(Duration::from_secs(10), || {
            ns.links()
                .iter()
                .all(|l| !l.starts_with("cv") && !l.starts_with("cx-"))
        }),
        "links left: {:?}",
        ns.links()
    );
}

#[test]
fn the_default_bridge_is_made_on_first_use_and_addresses_are_distinct() {
    let c = Ctr::new();
    let ns = TestNetns::new();
    for name in ["a", "b"] {
        ctr_in(
            &c,
            &ns,
            &[
                "run",
                "-d",
                "--name",
                name,
                "--network",
                "bridge",
                "busybox",
                "sleep",
                "1000",
            ],
        )
        .assert_ok();
    }
    let (a, b) = (ip_on(&c, &ns, "a", "bridge"), ip_on(&c, &ns, "b", "bridge"));
    assert_ne!(a, b);
    // Each container's eth0 has the recorded address and a default route.
    let o = ctr_in(
        &c,
        &ns,
        &["exec", "a", "sh", "-c", "ip -o -4 addr show eth0; ip route"],
    );
    o.assert_ok();
    assert!(o.stdout.contains(&format!("inet {a}/")), "{o:?}");
    assert!(o.stdout.contains("default via"), "{o:?}");
    let o = ctr_in(&c, &ns, &["exec", "a", "ping", "-c", "1", "-W", "2", &b]);
    assert!(o.ok(), "a cannot reach b at {b}: {o:?}");
    for name in ["a", "b"] {
        ctr_in(&c, &ns, &["rm", "-f", name]).assert_ok();
    }
    // Their addresses were released: a new container gets the first one again.
    ctr_in(
        &c,
        &ns,
        &[
            "run",
            "-d",
            "--name",
            "c",
            "--network",
            "bridge",
            "busybox",
            "sleep",
            "1000",
        ],
    )
    .assert_ok();
    assert_eq!(ip_on(&c, &ns, "c", "bridge"), a);
    ctr_in(&c, &ns, &["rm", "-f", "c"]).assert_ok();
}
