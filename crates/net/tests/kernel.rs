//! Root-run: codex-net against the real kernel, each test inside a network namespace of
//! its own (the "host"), with `unshare --net` processes as containers.

mod common;

use std::net::IpAddr;
use std::time::Instant;

use codex_net::{Error, Handle, IpNet, Netns, VethSpec};
use common::*;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn veth<'a>(host_name: &'a str, c: &Container, addr: &str) -> VethSpec<'a> {
    VethSpec {
        bridge: "br-test",
        host_name,
        netns: Netns::Pid(c.pid()),
        container_name: "eth0",
        address: net(addr),
        mac: None,
        gateway: Some(ip("10.77.0.1")),
        mtu: None,
    }
}

#[test]
fn bridge_gets_its_address_is_idempotent_and_leaves_nothing() {
    let ns = TestNs::new();
    let mut h = ns.handle();
    let i1 = h
        .ensure_bridge("br-test", Some(net("10.77.0.1/24")))
        .unwrap();
    let i2 = h
        .ensure_bridge("br-test", Some(net("10.77.0.1/24")))
        .unwrap();
    assert_eq!(i1, i2, "a second ensure finds the same bridge");

    let link = ok(&ns.sh("ip -d -o link show br-test"));
    assert!(link.contains("bridge"), "{link}");
    assert!(link.contains(",UP"), "{link}");
    let addrs = ok(&ns.sh("ip -4 -o addr show dev br-test"));
    assert_eq!(addrs.matches("inet ").count(), 1, "one address: {addrs}");
    assert!(addrs.contains("inet 10.77.0.1/24"), "{addrs}");

    // A name taken by another kind of link is refused and left alone.
    ok(&ns.sh("ip link add not-a-br type veth peer name not-a-br-peer"));
    let e = h.ensure_bridge("not-a-br", None).unwrap_err();
    assert!(matches!(e, Error::WrongKind { .. }), "{e}");
    assert!(e.to_string().contains("not-a-br"), "{e}");
    let e = h.delete_bridge("not-a-br").unwrap_err();
    assert!(e.to_string().contains("veth"), "{e}");
    assert!(ns.link_names().contains(&"not-a-br".to_string()));
    ok(&ns.sh("ip link del not-a-br"));

    assert!(h.delete_bridge("br-test").unwrap());
    assert!(!h.delete_bridge("br-test").unwrap(), "already gone");
    assert_eq!(ns.link_names(), ["lo"]);
}

#[test]
fn containers_on_a_bridge_reach_each_other_and_the_host_reaches_them() {
    let ns = TestNs::new();
    let mut h = ns.handle();
    let (c1, c2) = (Container::new(), Container::new());

    let t = Instant::now();
    h.ensure_bridge("br-test", Some(net("10.77.0.1/24")))
        .unwrap();
    let mut spec = veth("veth-c1", &c1, "10.77.0.2/24");
    spec.mac = Some([0x02, 0x42, 0x0a, 0x4d, 0x00, 0x02]);
    let a1 = h.attach_veth(&spec).unwrap();
    let first = t.elapsed();
    eprintln!(
        "bridge + veth for one container: {:.2} ms",
        first.as_secs_f64() * 1e3
    );
    assert_eq!(a1.mac, [0x02, 0x42, 0x0a, 0x4d, 0x00, 0x02]);

    // Control: c2 is not plugged in yet, so nothing answers at its address.
    assert!(!c1.sh("ping -c 1 -W 1 10.77.0.3").status.success());

    h.attach_veth(&veth("veth-c2", &c2, "10.77.0.3/24"))
        .unwrap();

    // Inside: eth0 with the address and MAC, up, default route via the gateway.
    let inside = ok(&c1.sh("ip -o addr show dev eth0; ip -o link show eth0; ip route"));
    assert!(inside.contains("inet 10.77.0.2/24"), "{inside}");
    assert!(inside.contains("02:42:0a:4d:00:02"), "{inside}");
    assert!(inside.contains(",UP"), "{inside}");
    assert!(
        inside.contains("default via 10.77.0.1 dev eth0"),
        "{inside}"
    );
    // Outside: the host ends are on the bridge; no eth0 appeared on the host.
    let master = ok(&ns.sh("ip -o link show master br-test"));
    assert!(
        master.contains("veth-c1") && master.contains("veth-c2"),
        "{master}"
    );
    assert!(!ns.link_names().contains(&"eth0".to_string()));

    // Container to container, both ways, and the host to both.
    ok(&c1.sh("ping -c 1 -W 2 10.77.0.3"));
    ok(&c2.sh("ping -c 1 -W 2 10.77.0.2"));
    ok(&ns.sh("ping -c 1 -W 2 10.77.0.2 && ping -c 1 -W 2 10.77.0.3"));
    // And a TCP payload over it (busybox nc), c1 serving, c2 sending.
    let server = std::process::Command::new("nsenter")
        .arg(format!("--net={}", c1.ns_path().display()))
        .args(["sh", "-c", "exec nc -l -p 7070"])
        .env("PATH", path_with_busybox())
        // An open stdin: busybox nc stops serving when its stdin ends.
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut sent = false;
    for _ in 0..50 {
        if c2
            .sh("echo over-the-bridge | nc -w 2 10.77.0.2 7070")
            .status
            .success()
        {
            sent = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let got = server.wait_with_output().unwrap();
    assert!(sent, "c2 never connected to c1:7070");
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim(),
        "over-the-bridge"
    );

    assert!(h.delete_veth("veth-c1").unwrap());
    assert!(h.delete_veth("veth-c2").unwrap());
    assert!(!h.delete_veth("veth-c2").unwrap(), "already gone");
    assert!(
        !ok(&c1.sh("ip -o link")).contains("eth0"),
        "the inner end goes too"
    );
    assert_eq!(ns.link_names(), ["lo", "br-test"]);
    assert!(h.delete_bridge("br-test").unwrap());
    assert_eq!(ns.link_names(), ["lo"]);
}

#[test]
fn a_failed_attach_leaves_no_veth_and_names_what_failed() {
    let ns = TestNs::new();
    let mut h = ns.handle();
    let c = Container::new();

    let e = h
        .attach_veth(&veth("veth-x", &c, "10.77.0.2/24"))
        .unwrap_err();
    assert!(matches!(&e, Error::NoSuchLink(n) if n == "br-test"), "{e}");

    h.ensure_bridge("br-test", Some(net("10.77.0.1/24")))
        .unwrap();
    // A gateway off the container's subnet: the kernel refuses the route, after the
    // veth exists; the veth must go again.
    let mut spec = veth("veth-x", &c, "10.77.0.2/24");
    spec.gateway = Some(ip("10.55.0.1"));
    let e = h.attach_veth(&spec).unwrap_err().to_string();
    assert!(
        e.contains("default route via 10.55.0.1") && e.contains("eth0"),
        "{e}"
    );
    assert_eq!(ns.link_names(), ["lo", "br-test"]);
    assert!(
        !ok(&c.sh("ip -o link")).contains("eth0"),
        "inner end gone too"
    );

    // A host name that is taken: refused with the name, and the existing one survives.
    h.attach_veth(&veth("veth-x", &c, "10.77.0.2/24")).unwrap();
    let c2 = Container::new();
    let e = h
        .attach_veth(&veth("veth-x", &c2, "10.77.0.3/24"))
        .unwrap_err();
    assert!(
        e.to_string().contains("veth-x") && e.errno() == Some(libc::EEXIST),
        "{e}"
    );
    assert!(ns.link_names().contains(&"veth-x".to_string()));

    // The bridge's own namespace is not a container's: refused before anything is made.
    let mut own = veth("veth-own", &c2, "10.77.0.4/24");
    own.netns = Netns::Path(&ns.path);
    let e = h.attach_veth(&own).unwrap_err();
    assert!(matches!(e, Error::Invalid { .. }), "{e}");
    assert!(!ns.link_names().contains(&"veth-own".to_string()));
    assert!(!ns.link_names().contains(&"eth0".to_string()));

    let e = h
        .attach_veth(&veth("way-too-long-name", &c2, "10.77.0.3/24"))
        .unwrap_err();
    assert!(matches!(e, Error::Invalid { .. }), "{e}");
}

#[test]
fn routes_and_addresses_are_what_ip_shows() {
    let ns = TestNs::new();
    // No IPv6 link-local addresses: the kernel adds them whenever a carrier comes up
    // (later, from a work queue), which would race the two listings.
    ok(&ns.sh("echo 1 > /proc/sys/net/ipv6/conf/default/addr_gen_mode"));
    let mut h = ns.handle();
    h.ensure_bridge("br-test", Some(net("10.77.0.1/24")))
        .unwrap();
    ok(&ns.sh(
        "ip link add dum0 type veth peer name dum1 && ip link set dum0 up && ip link set dum1 up && \
         ip addr add 192.168.201.7/28 dev dum0 && ip addr add fd00:77::7/64 dev dum0 && \
         ip route add 10.99.0.0/16 via 192.168.201.1 && ip route add default via 192.168.201.2",
    ));

    let mut ours: Vec<String> = h
        .routes()
        .unwrap()
        .into_iter()
        .filter(|r| r.is_ipv4 && r.table == 254 && r.unicast)
        .map(|r| {
            let dst = r.destination.map_or("default".into(), |d| {
                if d.prefix == 32 {
                    d.addr.to_string()
                } else {
                    d.to_string()
                }
            });
            let via = r.gateway.map_or(String::new(), |g| format!(" via {g}"));
            format!("{dst}{via}")
        })
        .collect();
    // `ip route` prints networks, not the address the prefix was given with.
    let mut theirs: Vec<String> = ok(&ns.sh("ip -4 route show table main"))
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.iter().position(|x| *x == "via") {
                Some(i) => format!("{} via {}", w[0], w[i + 1]),
                None => w[0].to_string(),
            }
        })
        .collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours.len(), 4, "{ours:?}");
    assert_eq!(ours, theirs);

    let mut ours: Vec<String> = h
        .addresses()
        .unwrap()
        .into_iter()
        .map(|a| format!("{} {}", a.ifname, a.net))
        .collect();
    let mut theirs: Vec<String> = ok(&ns.sh("ip -o addr show"))
        .lines()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            format!("{} {}", w[1], w[3])
        })
        .collect();
    ours.sort();
    theirs.sort();
    assert!(
        ours.contains(&"dum0 192.168.201.7/28".to_string()),
        "{ours:?}"
    );
    assert!(ours.contains(&"dum0 fd00:77::7/64".to_string()), "{ours:?}");
    assert_eq!(ours, theirs);
}

#[test]
fn stats_count_a_containers_traffic() {
    let ns = TestNs::new();
    let mut h = ns.handle();
    let c = Container::new();
    h.ensure_bridge("br-test", Some(net("10.77.0.1/24")))
        .unwrap();
    h.attach_veth(&veth("veth-s", &c, "10.77.0.2/24")).unwrap();

    let before = codex_net::link_stats(Netns::Pid(c.pid()), "eth0").unwrap();
    ok(&ns.sh("ping -c 3 -i 0.2 -s 1000 -W 2 10.77.0.2"));
    let kernel_before = proc_net_dev(&c);
    let after = codex_net::link_stats(Netns::Pid(c.pid()), "eth0").unwrap();
    let kernel_after = proc_net_dev(&c);

    // Three 1000-byte echo requests in, three replies out.
    assert!(
        after.rx_packets >= before.rx_packets + 3,
        "{before:?} -> {after:?}"
    );
    assert!(
        after.tx_packets >= before.tx_packets + 3,
        "{before:?} -> {after:?}"
    );
    assert!(
        after.rx_bytes >= before.rx_bytes + 3 * 1000,
        "{before:?} -> {after:?}"
    );
    assert!(
        after.tx_bytes >= before.tx_bytes + 3 * 1000,
        "{before:?} -> {after:?}"
    );
    // And they are the kernel's own numbers (/proc/net/dev read around ours; IPv6
    // chatter may land between the reads).
    for (k0, v, k1) in [
        (kernel_before.0, after.rx_bytes, kernel_after.0),
        (kernel_before.1, after.rx_packets, kernel_after.1),
        (kernel_before.2, after.tx_bytes, kernel_after.2),
        (kernel_before.3, after.tx_packets, kernel_after.3),
    ] {
        assert!(k0 <= v && v <= k1, "{k0} <= {v} <= {k1}");
    }
    let e = codex_net::link_stats(Netns::Pid(c.pid()), "eth9").unwrap_err();
    assert!(e.to_string().contains("eth9"), "{e}");
}

/// eth0's (rx bytes, rx packets, tx bytes, tx packets) from /proc/net/dev, which shows
/// the reader's namespace.
fn proc_net_dev(c: &Container) -> (u64, u64, u64, u64) {
    let text = ok(&c.sh("cat /proc/net/dev"));
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("eth0:"))
        .unwrap()
        .split_once(':')
        .unwrap()
        .1
        .to_string();
    let n: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    (n[0], n[1], n[8], n[9])
}

/// Not a timed test: prints what plugging one container in costs, for the docs
/// (`cargo test -p codex-net --test kernel -- --nocapture attach_cost`).
#[test]
fn attach_cost() {
    let ns = TestNs::new();
    let mut h: Handle = ns.handle();
    h.ensure_bridge("br-test", Some(net("10.77.0.1/24")))
        .unwrap();
    let mut attach = Vec::new();
    let mut detach = Vec::new();
    for i in 0..20 {
        let c = Container::new();
        let t = Instant::now();
        h.attach_veth(&veth("veth-b", &c, &format!("10.77.0.{}/24", i + 2)))
            .unwrap();
        attach.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        h.delete_veth("veth-b").unwrap();
        detach.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let t = Instant::now();
    let mut h2 = ns.handle();
    h2.ensure_bridge("br-new", Some(net("10.78.0.1/24")))
        .unwrap();
    let bridge = t.elapsed().as_secs_f64() * 1e3;
    for v in [&mut attach, &mut detach] {
        v.sort_by(f64::total_cmp);
    }
    eprintln!(
        "attach_veth: median {:.2} ms, max {:.2} ms; delete_veth: median {:.2} ms; \
         new bridge with address (new handle): {bridge:.2} ms",
        attach[attach.len() / 2],
        attach[attach.len() - 1],
        detach[detach.len() / 2],
    );
}
