//! `--network-rate`: a token bucket on both ends of the container's veth (tc), measured
//! both ways with a 4 MB transfer (at 8 mbit it cannot take under ~4.2 s; the bound is
//! 3.5 s), against the same transfers with an unlimited container (the control); and
//! the bytes counted by `stats`. The `Ctr` fixture runs everything in a network
//! namespace of its own.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use codex_tests::ctr::Ctr;
use codex_tests::*;

const SIZE: u64 = 4_000_000;
const BOUND: Duration = Duration::from_millis(3500);

/// A process killed on drop.
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Seconds for `f`, which must succeed.
fn timed(what: &str, f: impl FnOnce() -> Out) -> Duration {
    let t = Instant::now();
    let o = f();
    let d = t.elapsed();
    assert!(o.ok(), "{what}: {o:?}");
    d
}

#[test]
fn network_rate_limits_both_directions_and_stats_count_the_bytes() {
    if !have_tool("nft") {
        return skip("nft (the nftables package) is not installed");
    }
    let c = Ctr::new();
    let busybox = fixture_dir().join("rootfs/bin/busybox");
    let serve = format!(
        "head -c {SIZE} /dev/zero > /tmp/f && echo ok > /tmp/ok && exec httpd -f -p 80 -h /tmp"
    );
    c.run(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--network-rate",
        "8mbit",
        "busybox",
        "sh",
        "-c",
        &serve,
    ])
    .assert_ok();
    c.run(&["run", "-d", "--name", "fast", "busybox", "sh", "-c", &serve])
        .assert_ok();
    let v = c.inspect("slow");
    let gw = v["networks"]["bridge"]["gateway"]
        .as_str()
        .unwrap()
        .to_string();
    let ip = |name: &str| {
        c.inspect(name)["networks"]["bridge"]["ip"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (slow, fast) = (ip("slow"), ip("fast"));

    // The host side's server (in the fixture's namespace, on the bridge's address).
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("f"), vec![0u8; SIZE as usize]).unwrap();
    let _srv = Bg(c
        .netns()
        .cmd(&[
            busybox.to_str().unwrap(),
            "httpd",
            "-f",
            "-p",
            &format!("{gw}:18080"),
            "-h",
            www.path().to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .spawn()
        .unwrap());
    // Both servers answer before anything is timed.
    for addr in [slow.as_str(), fast.as_str()] {
        let probe = format!(
            "for i in $(seq 50); do printf 'GET /ok HTTP/1.0\\r\\n\\r\\n' | {} nc {addr} 80 | grep -q ok && exit 0; sleep 0.2; done; exit 1",
            busybox.display()
        );
        c.netns().sh(&probe).assert_ok();
    }
    let url = format!("http://{gw}:18080/f");
    for name in ["slow", "fast"] {
        let o = c.run(&["exec", name, "sh", "-c", &format!("for i in $(seq 50); do wget -q -O /dev/null {url}.x 2>&1 | grep -q 404 && exit 0; sleep 0.2; done; exit 1")]);
        o.assert_ok();
    }

    // Container -> host: the download of its 4 MB file (what the container sends).
    let down = |addr: &str| {
        let script = format!(
            "n=$(printf 'GET /f HTTP/1.0\\r\\n\\r\\n' | {} nc {addr} 80 | wc -c); [ $n -gt {SIZE} ]",
            busybox.display()
        );
        timed(&format!("download from {addr}"), || c.netns().sh(&script))
    };
    // Host -> container: the container fetches 4 MB (what it receives).
    let up = |name: &str| {
        timed(&format!("{name} fetches"), || {
            c.run(&["exec", name, "wget", "-q", "-O", "/dev/null", &url])
        })
    };
    let (fast_down, fast_up) = (down(&fast), up("fast"));
    let (slow_down, slow_up) = (down(&slow), up("slow"));
    eprintln!(
        "4 MB: unlimited {fast_down:?} down, {fast_up:?} up; 8mbit {slow_down:?} down, {slow_up:?} up"
    );
    // The control: the same transfers without a limit are well under the bound.
    assert!(
        fast_down < BOUND && fast_up < BOUND,
        "unlimited: {fast_down:?} down, {fast_up:?} up"
    );
    assert!(slow_down >= BOUND, "8mbit egress took only {slow_down:?}");
    assert!(slow_up >= BOUND, "8mbit ingress took only {slow_up:?}");

    // stats counts what went through eth0 both ways.
    let o = c.run(&["stats", "--no-stream", "--format", "json", "slow"]);
    o.assert_ok();
    let v = o.json();
    let n = &v[0]["network"];
    for k in ["rx_bytes", "tx_bytes"] {
        assert!(n[k].as_u64().unwrap_or(0) > SIZE, "{k}: {v}");
    }
    assert!(n["rx_packets"].as_u64().unwrap_or(0) > 0, "{v}");
    let o = c.run(&["stats", "--no-stream", "slow"]);
    assert!(o.stdout.contains("NET I/O"), "{o:?}");
}
