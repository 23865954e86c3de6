//! A rate limit on an interface's egress: a token-bucket (tbf) root qdisc, as
//! `tc qdisc replace dev IF root tbf rate R burst B latency 50ms` makes it. Limiting both
//! ends of a container's veth limits both directions: what the container sends leaves
//! through its eth0, what it receives leaves the host through the host end.

use netlink_packet_core::{DefaultNla, NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::tc::{TcAttribute, TcHandle, TcMessage, TcOption};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::{Error, Result};
use crate::socket::Netlink;

// include/uapi/linux/pkt_sched.h
const TCA_TBF_PARMS: u16 = 1;
const TCA_TBF_RATE64: u16 = 4;
const TCA_TBF_BURST: u16 = 6;
/// With the link layer stated, the kernel computes packet times itself and needs no
/// rate table (TCA_TBF_RTAB).
const TC_LINKLAYER_ETHERNET: u8 = 1;
const ROOT: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0xffff,
};

/// How long a full queue takes to drain at the rate: bounds the added latency.
const LATENCY_MS: u64 = 50;
/// The smallest bucket: one full-size frame must always fit, or it is dropped.
const MIN_BURST: u64 = 16 * 1024;

/// The qdisc's sizes for a rate in bits per second: (bytes/s, burst, queue limit).
pub fn tbf_sizes(bits_per_sec: u64) -> (u64, u32, u32) {
    let bytes = bits_per_sec / 8;
    // 10 ms worth of tokens: smooth at low rates, enough for a 100 Hz timer at high ones.
    let burst = (bytes / 100).clamp(MIN_BURST, u64::from(u32::MAX / 2));
    let limit = (bytes * LATENCY_MS / 1000 + burst).min(u64::from(u32::MAX));
    (bytes, burst as u32, limit as u32)
}

fn tc_tbf_qopt(rate_bytes: u64, limit: u32) -> Vec<u8> {
    // struct tc_ratespec: cell_log u8, linklayer u8, overhead u16, cell_align i16,
    // mpu u16, rate u32 (bytes/s; all ones when TCA_TBF_RATE64 carries it).
    let ratespec = |rate: u32| {
        let mut v = vec![0u8, TC_LINKLAYER_ETHERNET, 0, 0, 0, 0, 0, 0];
        v.extend_from_slice(&rate.to_ne_bytes());
        v
    };
    let rate32 = u32::try_from(rate_bytes).unwrap_or(u32::MAX);
    let mut v = ratespec(rate32);
    v.extend(ratespec(0)); // no peak rate
    v.extend_from_slice(&limit.to_ne_bytes());
    v.extend_from_slice(&0u32.to_ne_bytes()); // buffer: from TCA_TBF_BURST instead
    v.extend_from_slice(&0u32.to_ne_bytes()); // mtu: peak rate only
    v
}

/// Replaces `ifname`'s root qdisc with a token bucket of `bits_per_sec`.
pub fn set_rate(nl: &mut Netlink, index: u32, ifname: &str, bits_per_sec: u64) -> Result<()> {
    if bits_per_sec < 8 * 1000 {
        return Err(Error::invalid(
            format!("rate limit of {ifname:?}"),
            format!("{bits_per_sec} bit/s is below the 8 kbit/s a link can be limited to"),
        ));
    }
    let (bytes, burst, limit) = tbf_sizes(bits_per_sec);
    let mut opts = vec![
        TcOption::Other(DefaultNla::new(TCA_TBF_PARMS, tc_tbf_qopt(bytes, limit))),
        TcOption::Other(DefaultNla::new(TCA_TBF_BURST, burst.to_ne_bytes().to_vec())),
    ];
    if bytes > u64::from(u32::MAX) {
        opts.push(TcOption::Other(DefaultNla::new(
            TCA_TBF_RATE64,
            bytes.to_ne_bytes().to_vec(),
        )));
    }
    let mut m = TcMessage::default();
    m.header.index = index as i32;
    m.header.parent = ROOT;
    m.header.handle = TcHandle { major: 1, minor: 0 };
    m.attributes.push(TcAttribute::Kind("tbf".into()));
    m.attributes.push(TcAttribute::Options(opts));
    nl.request(
        RouteNetlinkMessage::NewQueueDiscipline(m),
        NLM_F_CREATE | NLM_F_REPLACE,
        &format!("limiting {ifname:?} to {bits_per_sec} bit/s"),
    )
}

/// Puts the default root qdisc back; `false` when there was no limit to remove.
pub fn clear_rate(nl: &mut Netlink, index: u32, ifname: &str) -> Result<bool> {
    let mut m = TcMessage::default();
    m.header.index = index as i32;
    m.header.parent = ROOT;
    match nl.request(
        RouteNetlinkMessage::DelQueueDiscipline(m),
        0,
        &format!("removing the rate limit of {ifname:?}"),
    ) {
        Ok(()) => Ok(true),
        // No root qdisc of ours: the kernel's default one cannot be deleted.
        Err(e) if matches!(e.errno(), Some(libc::ENOENT) | Some(libc::EINVAL)) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_rate() {
        // 8 mbit: 1 MB/s, a 16 KiB bucket (the floor), 50 ms of queue plus the bucket.
        assert_eq!(tbf_sizes(8_000_000), (1_000_000, 16384, 66384));
        // 1 gbit: 10 ms of tokens.
        assert_eq!(tbf_sizes(1_000_000_000).1, 1_250_000);
    }

    #[test]
    fn qopt_is_the_kernels_layout() {
        let v = tc_tbf_qopt(1_000_000, 66384);
        assert_eq!(v.len(), 36, "sizeof(struct tc_tbf_qopt)");
        assert_eq!(v[1], TC_LINKLAYER_ETHERNET);
        assert_eq!(&v[8..12], &1_000_000u32.to_ne_bytes());
        assert_eq!(&v[24..28], &66384u32.to_ne_bytes());
    }
}
