//! Root-run: a rate limit on both ends of a container's veth holds in both directions,
//! measured with a real transfer (issue 12: 4 MB at 8 mbit takes at least 3.5 s).

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use codex_net::{Handle, Netns, VethSpec};
use common::*;

const MB4: u64 = 4 * 1024 * 1024;

/// Sends 4 MiB from the namespace `from` to `to_ip:port`, where a busybox `nc -l` in
/// `to` counts it; returns (bytes received, time from the first byte sent to the
/// receiver's end of stream).
fn transfer(
    from: &std::path::Path,
    to: &std::path::Path,
    to_ip: &str,
    port: u16,
) -> (u64, Duration) {
    let mut server = Command::new("nsenter")
        .arg(format!("--net={}", to.display()))
        .args(["sh", "-c", &format!("nc -l -p {port} | wc -c")])
        .env("PATH", path_with_busybox())
        // An open stdin: busybox nc stops serving when its stdin ends.
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let send = format!("dd if=/dev/zero bs=65536 count=64 2>/dev/null | nc -w 30 {to_ip} {port}");
    let t = Instant::now();
    let mut sent = false;
    for _ in 0..100 {
        if run_in(from, &send).status.success() {
            sent = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(sent, "never connected to {to_ip}:{port}");
    let mut out = String::new();
    server
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let took = t.elapsed();
    let _ = server.wait();
    (out.trim().parse().unwrap(), took)
}

#[test]
fn rate_limit_on_both_veth_ends_holds_both_ways() {
    let ns = TestNs::new();
    let mut h: Handle = ns.handle();
    let c = Container::new();
    h.ensure_bridge("br-test", Some("10.77.0.1/24".parse().unwrap()))
        .unwrap();
    h.attach_veth(&VethSpec {
        bridge: "br-test",
        host_name: "veth-r",
        netns: Netns::Pid(c.pid()),
        container_name: "eth0",
        address: "10.77.0.2/24".parse().unwrap(),
        mac: None,
        gateway: Some("10.77.0.1".parse().unwrap()),
        mtu: None,
    })
    .unwrap();
    let host = ns.path.clone();
    let cont = c.ns_path();

    // Control: unlimited, the same transfer is far faster than the limit allows.
    let (n, free) = transfer(&cont, &host, "10.77.0.1", 7101);
    assert_eq!(n, MB4);
    eprintln!("4 MiB unlimited: {free:?}");

    let mut inner = Handle::in_netns(Netns::Pid(c.pid())).unwrap();
    inner.set_rate_limit("eth0", 8_000_000).unwrap();
    h.set_rate_limit("veth-r", 8_000_000).unwrap();
    // Twice is fine (replace), and tc sees a tbf at 8Mbit on both ends.
    h.set_rate_limit("veth-r", 8_000_000).unwrap();
    let q = ok(&ns.sh("tc qdisc show dev veth-r"));
    assert!(q.contains("tbf") && q.contains("8Mbit"), "{q}");
    let q = ok(&c.sh("tc qdisc show dev eth0"));
    assert!(q.contains("tbf") && q.contains("8Mbit"), "{q}");

    // 4 MiB at 8 mbit (1 MB/s) is 4.2 s; a 16 KiB bucket and the queue shave a little.
    let (n, egress) = transfer(&cont, &host, "10.77.0.1", 7102);
    assert_eq!(n, MB4);
    let (n, ingress) = transfer(&host, &cont, "10.77.0.2", 7103);
    assert_eq!(n, MB4);
    eprintln!("4 MiB at 8 mbit: container egress {egress:?}, ingress {ingress:?}");
    assert!(
        egress >= Duration::from_millis(3500),
        "egress took {egress:?}"
    );
    assert!(
        ingress >= Duration::from_millis(3500),
        "ingress took {ingress:?}"
    );
    // The control, relative so that a loaded machine cannot fail it: without the limit
    // the transfer is several times faster (0.11 s against 4.4 s here).
    assert!(free * 3 < egress.min(ingress), "unlimited took {free:?}");

    assert!(h.clear_rate_limit("veth-r").unwrap());
    assert!(!h.clear_rate_limit("veth-r").unwrap(), "already default");
    assert!(!ok(&ns.sh("tc qdisc show dev veth-r")).contains("tbf"));
    let e = h.set_rate_limit("veth-r", 100).unwrap_err();
    assert!(e.to_string().contains("veth-r"), "{e}");
}
