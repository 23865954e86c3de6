//! Root-run: nft rules applied through codex-net do NAT for a container on a bridge, in a
//! test namespace that plays the host, with a second namespace as "the outside" behind
//! an uplink. ip_forward is switched on in the test namespace only (and the test checks
//! the machine's own is untouched).

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use codex_net::{nft, Error, Netns, VethSpec};
use common::*;

const RULES: &str = "table ip codex-test {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 10.77.0.0/24 oifname != \"br-test\" masquerade
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname \"up0\" tcp dport 8080 dnat to 10.77.0.2:80
  }
}
";

fn host_forwarding() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap()
}

#[test]
fn masquerade_and_a_port_forward_work_and_go_away_with_their_table() {
    assert!(
        which("nft"),
        "nft is missing: install the nftables package (.ci/run does)"
    );
    let before = host_forwarding();
    let ns = TestNs::new();
    let mut h = ns.handle();
    let c = Container::new();
    let outside = Container::new();
    h.ensure_bridge("br-test", Some("10.77.0.1/24".parse().unwrap()))
        .unwrap();
    h.attach_veth(&VethSpec {
        bridge: "br-test",
        host_name: "veth-n",
        netns: Netns::Pid(c.pid()),
        container_name: "eth0",
        address: "10.77.0.2/24".parse().unwrap(),
        mac: None,
        gateway: Some("10.77.0.1".parse().unwrap()),
        mtu: None,
    })
    .unwrap();
    // The uplink: up0 (10.200.0.1) here, wan0 (10.200.0.2) outside, which has no route
    // to the bridge's subnet: only a masqueraded packet can get an answer.
    ok(&ns.sh(&format!(
        "ip link add up0 type veth peer name wan0 netns {} && \
         ip addr add 10.200.0.1/24 dev up0 && ip link set up0 up && \
         echo 1 > /proc/sys/net/ipv4/ip_forward",
        outside.pid()
    )));
    ok(&outside.sh("ip addr add 10.200.0.2/24 dev wan0 && ip link set wan0 up"));
    let test_ns = Netns::Path(&ns.path);

    // Control: forwarding alone does not do it.
    assert!(!c.sh("ping -c 1 -W 1 10.200.0.2").status.success());

    nft::apply(Some(test_ns), RULES).unwrap();
    let tables = nft::tables(Some(test_ns)).unwrap();
    assert!(
        tables.contains(&("ip".into(), "codex-test".into())),
        "{tables:?}"
    );
    ok(&c.sh("ping -c 1 -W 2 10.200.0.2"));

    // The port forward: outside -> 10.200.0.1:8080 -> the container's port 80.
    let server = Command::new("nsenter")
        .arg(format!("--net={}", c.ns_path().display()))
        .args(["sh", "-c", "exec nc -l -p 80"])
        .env("PATH", path_with_busybox())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = server;
    let mut sent = false;
    for _ in 0..50 {
        if outside
            .sh("echo through-the-forward | nc -w 2 10.200.0.1 8080")
            .status
            .success()
        {
            sent = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(sent, "outside never reached 10.200.0.1:8080");
    let mut got = String::new();
    server
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut got)
        .unwrap();
    let _ = server.wait();
    assert_eq!(got.trim(), "through-the-forward");

    // A bad script is refused whole, with nft's message, and changes nothing.
    let e = nft::apply(
        Some(test_ns),
        "table ip codex-other {\n chain x {\n  this is not nft\n }\n}\n",
    )
    .unwrap_err();
    assert!(matches!(e, Error::Nft { .. }), "{e}");
    assert!(e.to_string().contains("syntax error"), "{e}");
    assert_eq!(nft::tables(Some(test_ns)).unwrap(), tables);

    assert!(nft::delete_table(Some(test_ns), "ip", "codex-test").unwrap());
    assert!(!nft::delete_table(Some(test_ns), "ip", "codex-test").unwrap());
    assert!(nft::tables(Some(test_ns)).unwrap().is_empty());
    assert!(!c.sh("ping -c 1 -W 1 10.200.0.2").status.success());
    assert!(nft::delete_table(Some(test_ns), "ip", "a b").is_err());

    assert_eq!(
        host_forwarding(),
        before,
        "the machine's ip_forward is untouched"
    );
}

fn which(tool: &str) -> bool {
    std::env::var("PATH")
        .unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .any(|d| std::path::Path::new(d).join(tool).exists())
}
