//! Published ports (`-p`, `codex-ctr port`, the PORTS of `ps` and `inspect`): DNAT in the
//! engine's nft table (docs/networking.md). Every codex-ctr command runs inside a private
//! network namespace (`TestNetns`); a second namespace joined to it by a veth is "another
//! network namespace" the ports must answer from.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use codex_tests::ctr::Ctr;
use codex_tests::netns::TestNetns;
use codex_tests::*;

/// A static UDP echo server and client (busybox's `nc` here has no UDP mode).
const UDPECHO_C: &str = "#include <arpa/inet.h>\n\
#include <stdio.h>\n\
#include <stdlib.h>\n\
#include <string.h>\n\
#include <sys/socket.h>\n\
#include <sys/time.h>\n\
#include <unistd.h>\n\
int main(int argc, char **argv) {\n\
  int s = socket(AF_INET, SOCK_DGRAM, 0);\n\
  struct sockaddr_in a = {0};\n\
  a.sin_family = AF_INET;\n\
  char buf[512];\n\
  if (argc == 3 && !strcmp(argv[1], \"serve\")) {\n\
    a.sin_port = htons(atoi(argv[2]));\n\
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) { perror(\"bind\"); return 1; }\n\
    for (;;) {\n\
      struct sockaddr_in from; socklen_t fl = sizeof from;\n\
      ssize_t n = recvfrom(s, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &fl);\n\
      if (n < 0) continue;\n\
      char out[600];\n\
      int m = snprintf(out, sizeof out, \"echo:%.*s\", (int)n, buf);\n\
      sendto(s, out, m, 0, (struct sockaddr *)&from, fl);\n\
    }\n\
  }\n\
  if (argc == 5 && !strcmp(argv[1], \"send\")) {\n\
    a.sin_port = htons(atoi(argv[3]));\n\
    if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1) return 2;\n\
    struct timeval tv = {1, 0};\n\
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);\n\
    for (int i = 0; i < 3; i++) {\n\
      sendto(s, argv[4], strlen(argv[4]), 0, (struct sockaddr *)&a, sizeof a);\n\
      ssize_t n = recv(s, buf, sizeof buf - 1, 0);\n\
      if (n > 0) { buf[n] = 0; printf(\"%s\\n\", buf); return 0; }\n\
    }\n\
    fprintf(stderr, \"no answer from %s:%s\\n\", argv[2], argv[3]);\n\
    return 1;\n\
  }\n\
  fprintf(stderr, \"usage: udpecho serve PORT | send IP PORT MSG\\n\");\n\
  return 2;\n\
}\n\
";

fn udpecho(dir: &Path) -> Option<PathBuf> {
    if !have_tool("cc") {
        skip("cc (gcc) is needed to build the UDP echo helper");
        return None;
    }
    let src = dir.join("udpecho.c");
    std::fs::write(&src, UDPECHO_C).unwrap();
    let bin = dir.join("udpecho");
    let o = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("run cc");
    assert!(o.status.success(), "cc failed: {o:?}");
    Some(bin)
}

fn busybox() -> String {
    fixture_dir()
        .join("rootfs/bin/busybox")
        .to_string_lossy()
        .into_owned()
}

/// An HTTP GET of `/` at `addr port` from namespace `ns` with the host's busybox nc
/// (`tries` attempts); the response, empty when nothing answered.
fn get(ns: &TestNetns, addr: &str, port: u16, tries: u32) -> String {
    let script = format!(
        "for i in $(seq {tries}); do r=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | {bb} nc -w 2 {addr} {port} 2>/dev/null); \
         case \"$r\" in *served*) echo \"$r\"; exit 0;; esac; sleep 0.2; done; exit 1",
        bb = busybox()
    );
    ns.sh(&script).stdout
}

/// A process in `ns` killed on drop.
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn published_ports_answer_tcp_and_udp_on_every_address_and_go_with_the_stop() {
    if !have_tool("nft") {
        return skip("nft (the nftables package) is not installed");
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(echo) = udpecho(tmp.path()) else {
        return;
    };
    let c = Ctr::new();
    let ns = TestNetns::new();
    let other = TestNetns::new();
    ns.link_to(&other, "up0", "198.51.100.1/24", "198.51.100.2/24");
    let mount = format!("{}:/udpecho:ro", echo.display());
    ns.ctr(
        &c,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "bridge",
            "-v",
            &mount,
            "-p",
            "8080:80",
            "-p",
            "5353:53/udp",
            "-p",
            "127.0.0.1::80",
            "busybox",
            "sh",
            "-c",
            "echo served > /tmp/index.html; httpd -p 80 -h /tmp; exec /udpecho serve 53",
        ],
    )
    .assert_ok();

    // TCP from the namespace's loopback, from its other address, from another namespace.
    let r = get(&ns, "127.0.0.1", 8080, 50);
    assert!(r.contains("served"), "127.0.0.1:8080 -> {r:?}");
    let r = get(&ns, "198.51.100.1", 8080, 5);
    assert!(r.contains("served"), "198.51.100.1:8080 -> {r:?}");
    let r = get(&other, "198.51.100.1", 8080, 5);
    assert!(
        r.contains("served"),
        "other netns -> 198.51.100.1:8080 -> {r:?}"
    );
    // UDP, the same three ways.
    let e = echo.to_str().unwrap();
    for (from, addr) in [
        (&ns, "127.0.0.1"),
        (&ns, "198.51.100.1"),
        (&other, "198.51.100.1"),
    ] {
        let o = run_command(&mut from.cmd(&[e, "send", addr, "5353", "ping"]));
        assert!(
            o.ok() && o.stdout.trim() == "echo:ping",
            "udp {addr}:5353 -> {o:?}"
        );
    }

    // The ephemeral port: reported by `port`, `inspect` and `ps`, and reachable, on
    // 127.0.0.1 only.
    let o = ns.ctr(&c, &["port", "web", "80"]);
    o.assert_ok();
    let mut lines: Vec<&str> = o.stdout.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{o:?}");
    assert_eq!(lines[0], "0.0.0.0:8080", "{o:?}");
    let eph: u16 = lines[1]
        .strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no ephemeral port: {o:?}"));
    assert!(
        get(&ns, "127.0.0.1", eph, 5).contains("served"),
        "ephemeral {eph}"
    );
    assert!(
        get(&other, "198.51.100.1", eph, 1).is_empty(),
        "a port published on 127.0.0.1 answered on another address"
    );
    let o = ns.ctr(&c, &["port", "web"]);
    assert!(o.stdout.contains("53/udp -> 0.0.0.0:5353"), "{o:?}");
    let o = ns.ctr(&c, &["port", "web", "81"]);
    assert!(!o.ok() && o.stderr.contains("81/tcp"), "{o:?}");
    let v = ns.ctr(&c, &["inspect", "web"]).json();
    assert_eq!(v["ports"].as_array().map(Vec::len), Some(3), "{v}");
    let o = ns.ctr(&c, &["ps"]);
    assert!(o.stdout.contains("0.0.0.0:8080->80/tcp"), "{o:?}");
    assert!(
        o.stdout.contains(&format!("127.0.0.1:{eph}->80/tcp")),
        "{o:?}"
    );

    // A port another container publishes, or a program on the host holds, is a clear
    // error at start naming it.
    let o = ns.ctr(
        &c,
        &[
            "run",
            "-d",
            "--name",
            "clash",
            "--network",
            "bridge",
            "-p",
            "8080:81",
            "busybox",
            "sleep",
            "100",
        ],
    );
    assert!(
        !o.ok() && o.stderr.contains("0.0.0.0:8080/tcp") && o.stderr.contains("web"),
        "{o:?}"
    );
    let _holder = Bg(ns
        .cmd(&[&busybox(), "nc", "-l", "-p", "9999"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap());
    assert!(wait_until(Duration::from_secs(5), || ns
        .sh("grep -q ':270F ' /proc/net/tcp /proc/net/tcp6")
        .ok()));
    let o = ns.ctr(
        &c,
        &[
            "run",
            "-d",
            "--name",
            "held",
            "--network",
            "bridge",
            "-p",
            "9999:80",
            "busybox",
            "sleep",
            "100",
        ],
    );
    assert!(
        !o.ok() && o.stderr.contains("9999/tcp") && o.stderr.contains("another program"),
        "{o:?}"
    );
    // Neither failed start left a rule: web's three are all there are.
    let rules = ns.ruleset();
    assert_eq!(rules.matches("dnat to").count(), 3, "{rules}");

    // Stopped: every port is gone (the same GET answered a moment ago).
    ns.ctr(&c, &["stop", "-t", "1", "web"]).assert_ok();
    let o = ns.ctr(&c, &["port", "web"]);
    assert!(o.ok() && o.stdout.trim().is_empty(), "{o:?}");
    let rules = ns.ruleset();
    assert!(!rules.contains("dnat"), "{rules}");
    assert!(get(&ns, "127.0.0.1", 8080, 1).is_empty());
    let o = run_command(&mut ns.cmd(&[e, "send", "127.0.0.1", "5353", "ping"]));
    assert!(!o.ok(), "udp after stop: {o:?}");
}

#[test]
fn a_crashed_container_loses_its_published_ports_at_the_next_command() {
    if !have_tool("nft") {
        return skip("nft (the nftables package) is not installed");
    }
    let c = Ctr::new();
    c.run(&[
        "run", "-d", "--name", "crash", "-p", "8181:80", "busybox", "sleep", "1000",
    ])
    .assert_ok();
    let v = c.inspect("crash");
    // Control: the port is in the rules while the container runs.
    let rules = c.netns().ruleset();
    assert!(rules.contains("dport 8181"), "{rules}");
    // The supervisor and then the init die without recording anything.
    for key in ["supervisor_pid", "pid"] {
        let pid = v[key].as_i64().unwrap_or_else(|| panic!("{key}: {v}")) as i32;
        // SAFETY: kill with integer arguments; the pids are this test's container's.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        assert!(wait_until(
            Duration::from_secs(5),
            || !std::path::Path::new(&format!("/proc/{pid}/stat")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
        ));
    }
    // The next command sees it dead, and its port goes with it.
    let o = c.run(&["ps", "-a"]);
    assert!(o.stdout.contains("exited"), "{o:?}");
    let rules = c.netns().ruleset();
    assert!(!rules.contains("dport 8181"), "{rules}");
    let o = c.run(&["port", "crash"]);
    assert!(o.ok() && o.stdout.trim().is_empty(), "{o:?}");
    // The port is free for another container.
    c.run(&[
        "run", "-d", "--name", "next", "-p", "8181:80", "busybox", "sleep", "1000",
    ])
    .assert_ok();
}

#[test]
fn concurrent_starts_publishing_one_port_let_exactly_one_through() {
    if !have_tool("nft") {
        return skip("nft (the nftables package) is not installed");
    }
    let c = Ctr::new();
    const N: usize = 6;
    let names: Vec<String> = (0..N).map(|i| format!("race{i}")).collect();
    for n in &names {
        c.run(&[
            "create", "--name", n, "-p", "8383:80", "busybox", "sleep", "1000",
        ])
        .assert_ok();
    }
    // All at once: each start checks the port against the others under the registry
    // lock; one that is still starting holds it as much as one that runs.
    let mut children: Vec<Child> = names
        .iter()
        .map(|n| {
            let mut cmd = c.cmd(&["start", n]);
            own_group(&mut cmd)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut won = Vec::new();
    for (n, child) in names.iter().zip(children.iter_mut()) {
        let st = wait_child(child, Duration::from_secs(120)).expect("start hung");
        if st.success() {
            won.push(n.clone());
        }
    }
    assert_eq!(won.len(), 1, "started with port 8383: {won:?}");
    let rules = c.netns().ruleset();
    assert_eq!(rules.matches("dport 8383").count(), 1, "{rules}");
    let o = c.run(&["ps", "--format", "json"]);
    let running: Vec<String> = o
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["ports"].as_array().is_some_and(|p| !p.is_empty()))
        .map(|v| v["name"].to_string())
        .collect();
    assert_eq!(running.len(), 1, "publishing: {running:?}");
}
