//! A container's network counters for `stats`: the sum over every interface in its
//! network namespace but loopback, read there over rtnetlink (codex-net).

use std::os::unix::fs::MetadataExt;

use serde::Serialize;

/// Bytes and packets the container received (rx) and sent (tx).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NetCounters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

impl NetCounters {
    fn add(&mut self, s: &codex_net::LinkStats) {
        self.rx_bytes += s.rx_bytes;
        self.tx_bytes += s.tx_bytes;
        self.rx_packets += s.rx_packets;
        self.tx_packets += s.tx_packets;
    }
}

/// The counters of the namespace process `pid` is in; `None` when that is not a
/// namespace of its own (a `host` container's are the host's, not the container's) or
/// cannot be read (it just exited).
pub fn of_pid(pid: i32) -> Option<NetCounters> {
    let ino = |p: &str| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let theirs = ino(&format!("/proc/{pid}/ns/net"))?;
    if Some(theirs) == ino("/proc/thread-self/ns/net") {
        return None;
    }
    let mut h = codex_net::Handle::in_netns(codex_net::Netns::Pid(pid)).ok()?;
    let mut sum = NetCounters::default();
    for l in h.links().ok()? {
        if l.name == "lo" {
            continue;
        }
        if let Ok(s) = h.link_stats(&l.name) {
            sum.add(&s);
        }
    }
    Some(sum)
}
