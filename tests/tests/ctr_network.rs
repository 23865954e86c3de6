//! `codex-ctr network ...` and the network flags of `create`/`run`, from outside: the
//! records (`network create/ls/inspect/rm/prune`), the errors that name the flag, and the
//! namespaces `host`, `none` and the default give. Every command runs in the `Ctr`
//! fixture's own network namespace (bridges and rules never touch the host's); bridge
//! traffic itself is tested in ctr_bridge.rs, ctr_netrules.rs and ctr_ports.rs.

use codex_tests::ctr::Ctr;
use codex_tests::*;

fn names(o: &Out) -> Vec<String> {
    o.lines().iter().map(|l| l.to_string()).collect()
}

#[test]
fn networks_are_created_listed_inspected_pruned_and_removed() {
    let c = Ctr::new();
    // The default network is there from the first listing, with a subnet of its own.
    let o = c.run(&["network", "ls", "-q"]);
    o.assert_ok();
    assert_eq!(names(&o), ["bridge"]);
    let id = c.run(&[
        "network",
        "create",
        "--subnet",
        "10.89.7.0/24",
        "--gateway",
        "10.89.7.254",
        "--internal",
        "--label",
        "team=db",
        "backend",
    ]);
    id.assert_ok();
    let id = id.stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    c.run(&["network", "create", "-l", "team=web", "front"])
        .assert_ok();
    c.run(&["network", "create", "scratch"]).assert_ok();

    let o = c.run(&["network", "inspect", "backend"]);
    o.assert_ok();
    let v = &o.json()[0];
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["subnet"], "10.89.7.0/24");
    assert_eq!(v["gateway"], "10.89.7.254");
    assert_eq!(v["internal"], true);
    assert_eq!(v["labels"]["team"], "db");
    assert_eq!(v["bridge"], format!("cx-{}", &id[..10]));
    assert_eq!(v["endpoints"], serde_json::json!({}));
    // By id prefix too.
    let o = c.run(&["network", "inspect", &id[..12]]);
    assert_eq!(o.json()[0]["name"], "backend");

    let o = c.run(&["network", "ls", "--format", "json"]);
    let all = o.json();
    let subnets: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["subnet"].as_str().unwrap())
        .collect();
    let unique: std::collections::BTreeSet<&str> = subnets.iter().copied().collect();
    assert_eq!(
        unique.len(),
        4,
        "every network has its own subnet: {subnets:?}"
    );
    let o = c.run(&["network", "ls", "-q", "--filter", "label=team"]);
    assert_eq!(names(&o), ["backend", "front"]);
    let o = c.run(&["network", "ls", "-q", "--filter", "label=team=web"]);
    assert_eq!(names(&o), ["front"]);
    let o = c.run(&["network", "ls", "--filter", "name=front"]);
    o.assert_code(125).assert_stderr_mentions("filter[0]");

    // The table has a header and a row per network.
    let o = c.run(&["network", "ls"]);
    assert!(o.lines()[0].starts_with("ID") && o.lines()[0].contains("SUBNET"));
    assert_eq!(o.lines().len(), 5, "{o:?}");

    let o = c.run(&["network", "prune", "--filter", "label=team=web"]);
    o.assert_ok();
    assert_eq!(names(&o), ["front"]);
    let o = c.run(&["network", "rm", "backend", "nosuch"]);
    assert_eq!(o.code(), Some(125), "{o:?}");
    assert!(o.stderr.contains("nosuch"), "{o:?}");
    let o = c.run(&["network", "prune"]);
    assert_eq!(names(&o), ["scratch"]);
    let o = c.run(&["network", "rm", "bridge"]);
    assert_eq!(o.code(), Some(125), "{o:?}");
    assert!(o.stderr.contains("default network"), "{o:?}");
    assert_eq!(names(&c.run(&["network", "ls", "-q"])), ["bridge"]);
}

#[test]
fn bad_networks_fail_naming_the_flag_and_record_nothing() {
    let c = Ctr::new();
    c.run(&["network", "create", "--subnet", "10.89.8.0/24", "first"])
        .assert_ok();
    let cases: &[(&[&str], &str)] = &[
        (&["--subnet", "10.89.8.128/25", "inside"], "subnet"),
        (&["--subnet", "10.89.8.1/24", "hostbits"], "subnet"),
        (&["--subnet", "10.89.300.0/24", "badcidr"], "subnet"),
        (
            &["--subnet", "10.89.9.0/24", "--gateway", "10.89.10.1", "gw"],
            "gateway",
        ),
        (&["--gateway", "10.89.10.1", "gwonly"], "gateway"),
        (&["none"], "name"),
        (&["host"], "name"),
        (&["bridge"], "name"),
        (&["first"], "first"),
        (&["-l", "=x", "nolabelkey"], "label[0]"),
    ];
    for (args, needle) in cases {
        let mut argv = vec!["network", "create"];
        argv.extend_from_slice(args);
        let o = c.run(&argv);
        o.assert_code(125).assert_stderr_mentions(needle);
        assert!(o.stderr.starts_with("codex-ctr: "), "{o:?}");
    }
    let o = c.run(&["network", "ls", "-q"]);
    assert_eq!(names(&o), ["bridge", "first"]);
}

/// The net namespace a container's `readlink /proc/self/ns/net` shows.
fn netns_of(c: &Ctr, args: &[&str]) -> String {
    let mut argv = vec!["run", "--rm"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["busybox", "readlink", "/proc/self/ns/net"]);
    let o = c.run(&argv);
    o.assert_ok();
    o.stdout.trim().to_string()
}

#[test]
fn host_shares_the_hosts_network_and_none_and_the_default_get_their_own() {
    let c = Ctr::new();
    // "The host" is the namespace the engine runs in: the fixture's own.
    let host = std::fs::read_link(c.netns().path()).unwrap();
    let host = host.to_string_lossy();
    assert_eq!(netns_of(&c, &["--network", "host"]), host);
    assert_ne!(netns_of(&c, &["--network", "none"]), host);
    assert_ne!(netns_of(&c, &[]), host);
    // What a container got is in its record: resolved, never left to a later default.
    // A standard container is on the default bridge, a strict one on none.
    c.run(&["create", "--name", "dflt", "busybox", "true"])
        .assert_ok();
    c.run(&[
        "create",
        "--name",
        "strict",
        "--isolation",
        "strict",
        "busybox",
        "true",
    ])
    .assert_ok();
    c.run(&["create", "--name", "h", "--net", "host", "busybox", "true"])
        .assert_ok();
    assert_eq!(c.inspect("dflt")["config"]["network"], "bridge");
    assert_eq!(c.inspect("strict")["config"]["network"], "none");
    assert_eq!(c.inspect("h")["config"]["network"], "host");
    let v = c.inspect("dflt");
    assert!(v["networks"]["bridge"]["ip"].is_string(), "{v}");
    // On no bridge network, so no address on any.
    assert_eq!(c.inspect("strict")["networks"], serde_json::json!({}));
    // The default container has eth0 with its address and a default route.
    let o = c.run(&["run", "--rm", "busybox", "ip", "route"]);
    assert!(o.ok() && o.stdout.contains("default via"), "{o:?}");
    let spec = c.run(&["inspect", "--spec", "h"]).json();
    assert_eq!(spec["annotations"]["io.github.codex-ctr.network"], "host");
}

#[test]
fn network_flags_that_cannot_be_honoured_fail_clearly_and_leave_nothing() {
    let c = Ctr::new();
    let cases: &[(&[&str], &str)] = &[
        // No such container to join: an error, never a container with a dead network.
        // (Joining a running one works: ctr_connect.rs.)
        (
            &["--network", "container:other"],
            "network: container:other",
        ),
        (
            &["--network", "container:other", "--isolation", "strict"],
            "strict container",
        ),
        (&["--network", "nosuchnet"], "nosuchnet"),
        (&["--network", "bad/name"], "--network"),
        (
            &["--network", "host", "--isolation", "strict"],
            "network: host",
        ),
        (
            &["--network", "none", "--network-alias", "db"],
            "aliases[0]",
        ),
        (&["--dns", "1.1.1"], "dns[0]"),
        (&["--add-host", "nohostip"], "add-host[0]"),
        (
            &["--net", "none", "--add-host", "gw:host-gateway"],
            "add_hosts[0]",
        ),
        (&["--net", "none", "-p", "80"], "ports"),
        (&["-p", "80/sctp"], "publish[0]"),
    ];
    for (flags, needle) in cases {
        let mut argv = vec!["run", "--rm"];
        argv.extend_from_slice(flags);
        argv.extend_from_slice(&["busybox", "true"]);
        let o = c.run(&argv);
        o.assert_code(125).assert_stderr_mentions(needle);
        assert_eq!(c.containers(), 0, "{flags:?} left a container");
    }
    // Accepted and recorded: a nameserver and a hosts entry on the default network.
    c.run(&[
        "create",
        "--name",
        "x",
        "--dns",
        "192.0.2.53",
        "--add-host",
        "db:192.0.2.7",
        "busybox",
        "true",
    ])
    .assert_ok();
    let cfg = &c.inspect("x")["config"];
    assert_eq!(cfg["dns"], serde_json::json!(["192.0.2.53"]));
    assert_eq!(
        cfg["add_hosts"],
        serde_json::json!([{"host": "db", "ip": "192.0.2.7"}])
    );
}

#[test]
fn hosts_and_resolv_conf_are_the_engines_and_the_container_resolves_its_own_name() {
    let c = Ctr::new();
    // Control: the image's own files say nothing of the names below.
    let image_hosts = read_lossy(&fixture_dir().join("rootfs/etc/hosts"));
    assert!(!image_hosts.contains("web1") && !image_hosts.contains("10.1.2.3"));
    let o = c.run(&[
        "run", "--rm", "--name", "hf", "--hostname", "web1", "--add-host", "db:10.1.2.3",
        "--dns", "9.9.9.9", "busybox", "sh", "-c",
        "cat /etc/hosts; echo ---; cat /etc/resolv.conf; echo ---; ping -c1 -W2 web1 >/dev/null && echo own-name-ok",
    ]);
    o.assert_ok();
    let (hosts, rest) = o
        .stdout
        .split_once("---\n")
        .expect("hosts, then resolv.conf");
    let (resolv, tail) = rest
        .split_once("---\n")
        .expect("resolv.conf, then the ping");
    assert!(hosts.contains("127.0.0.1\tlocalhost"), "{hosts}");
    assert!(hosts.lines().any(|l| l == "10.1.2.3\tdb"), "{hosts}");
    assert!(
        hosts
            .lines()
            .any(|l| l.split_whitespace().skip(1).any(|n| n == "web1")
                && l.split_whitespace().any(|n| n == "hf")),
        "own hostname and name: {hosts}"
    );
    assert_eq!(resolv.trim(), "nameserver 9.9.9.9");
    assert_eq!(tail.trim(), "own-name-ok", "{o:?}");

    // Without --dns: the host's nameservers that work from a container (never loopback).
    let o = c.run(&["run", "--rm", "busybox", "cat", "/etc/resolv.conf"]);
    o.assert_ok();
    let servers: Vec<&str> = o
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .collect();
    assert!(!servers.is_empty(), "{o:?}");
    assert!(
        servers
            .iter()
            .all(|s| !s.starts_with("127.") && *s != "::1"),
        "{o:?}"
    );

    // Host networking gets no engine-made files: the image's own stay (Docker copies the
    // host's there; not done yet, see docs/networking.md).
    let o = c.run(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "cat",
        "/etc/hosts",
    ]);
    o.assert_ok();
    assert_eq!(
        o.stdout, image_hosts,
        "a host-network container got the engine's hosts file"
    );
}

/// The create writes the hosts file and resolv.conf a start would write, so a start
/// leaves them as they are (same inode: no file replaced); a start after a peer joined
/// the network writes the new hosts file (the control: the check does look).
#[test]
fn a_start_rewrites_hosts_only_when_its_content_changed() {
    use std::os::unix::fs::MetadataExt;
    let c = Ctr::new();
    c.run(&["network", "create", "--subnet", "10.213.7.0/24", "hn"])
        .assert_ok();
    let id = c
        .run(&[
            "create",
            "--name",
            "ha",
            "--network",
            "hn",
            "busybox",
            "sleep",
            "1000",
        ])
        .stdout
        .trim()
        .to_string();
    let dir = c.root.join("containers").join(&id);
    let inode = |f: &str| std::fs::metadata(dir.join(f)).expect(f).ino();
    let (hosts, resolv) = (inode("hosts"), inode("resolv.conf"));
    let created = std::fs::read_to_string(dir.join("hosts")).expect("hosts");
    assert!(
        created.contains("\tha") || created.contains(" ha"),
        "{created}"
    );
    c.run(&["start", "ha"]).assert_ok();
    assert_eq!(
        inode("hosts"),
        hosts,
        "an unchanged hosts file was replaced"
    );
    assert_eq!(
        inode("resolv.conf"),
        resolv,
        "an unchanged resolv.conf was replaced"
    );
    c.run(&["stop", "-t", "0", "ha"]).assert_ok();
    c.run(&[
        "create",
        "--name",
        "hb",
        "--network",
        "hn",
        "busybox",
        "true",
    ])
    .assert_ok();
    c.run(&["start", "ha"]).assert_ok();
    let now = std::fs::read_to_string(dir.join("hosts")).expect("hosts");
    assert!(now.contains("hb"), "the peer is missing: {now}");
    assert_ne!(
        inode("hosts"),
        hosts,
        "a changed hosts file was not written"
    );
    c.run(&["rm", "-f", "ha", "hb"]).assert_ok();
    c.run(&["network", "rm", "hn"]).assert_ok();
}
