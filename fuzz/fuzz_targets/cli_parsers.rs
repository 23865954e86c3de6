//! The parsers behind codex-ctr's flags (they live in the engine and runtime; the CLI only
//! calls them): sizes (`--memory`, `--log-max-size`, device rates), durations
//! (`--timeout`, `logs --since`, codex-oci's `events --interval`), CPUs, volumes (`-v SRC:DST:ro`), image references and
//! signals. There is no CIDR or port parser yet (no `--publish`, no networks).
//!
//! Properties: what parses re-formats and parses again to the same value, and is in the
//! range the caller relies on.
#![no_main]

use std::time::{Duration, SystemTime};

use codex_cli::oci::parse_interval;
use codex_engine::config::{
    parse_cpus, parse_device_rates, parse_duration_secs, parse_memory, Volume, VolumeSource,
};
use codex_engine::image::Reference;
use codex_engine::logread::parse_since;
use codex_runtime::parse_signal;
use libfuzzer_sys::fuzz_target;

fn sizes(s: &str) {
    let Ok(v) = parse_memory("memory", s) else {
        return;
    };
    assert!(v >= 1, "{s:?} -> {v}");
    assert_eq!(
        parse_memory("memory", &v.to_string()).ok(),
        Some(v),
        "{s:?}"
    );
    if v % 1024 == 0 {
        let k = format!("{}k", v / 1024);
        assert_eq!(parse_memory("memory", &k).ok(), Some(v), "{s:?} vs {k:?}");
    }
}

fn durations(s: &str) {
    if let Ok(v) = parse_duration_secs("timeout", s) {
        assert!(v >= 1, "{s:?} -> {v}");
        assert_eq!(parse_duration_secs("timeout", &v.to_string()).ok(), Some(v));
        if v % 60 == 0 {
            let m = format!("{}m", v / 60);
            assert_eq!(parse_duration_secs("timeout", &m).ok(), Some(v), "{m:?}");
        }
    }
    if let Ok(d) = parse_interval(s) {
        assert!(!d.is_zero(), "{s:?}");
        if d.subsec_nanos() == 0 {
            let again = format!("{}s", d.as_secs());
            assert_eq!(parse_interval(&again).ok(), Some(d), "{s:?} vs {again:?}");
        }
    }
    if let Ok(t) = parse_since(s) {
        if let Ok(secs) = s.parse::<u64>() {
            let expected = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs));
            assert_eq!(Some(t), expected, "{s:?}");
        }
    }
}

fn cpus(s: &str) {
    let Ok(c) = parse_cpus("cpus", s) else {
        return;
    };
    let max = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    assert!(c > 0.0 && c <= max, "{s:?} -> {c}");
    assert_eq!(parse_cpus("cpus", &c.to_string()).ok(), Some(c), "{s:?}");
}

fn volumes(s: &str) {
    let Ok(v) = Volume::parse("volume", s) else {
        return;
    };
    assert!(v.destination.starts_with('/'), "{s:?}");
    assert!(!v.destination.split('/').any(|c| c == ".."), "{s:?}");
    if v.anonymous {
        return;
    }
    let src = match &v.source {
        VolumeSource::Bind { path } => path.to_string_lossy().into_owned(),
        VolumeSource::Named { name } => name.clone(),
        VolumeSource::Tmpfs => unreachable!("-v never makes a tmpfs"),
    };
    let mode = if v.readonly { "ro" } else { "rw" };
    let again = format!("{src}:{}:{mode}", v.destination);
    assert_eq!(
        Volume::parse("volume", &again).ok(),
        Some(v),
        "{s:?} vs {again:?}"
    );
}

fn references(s: &str) {
    let Ok(r) = Reference::parse(s) else {
        return;
    };
    let shown = r.to_string();
    assert_eq!(Reference::parse(&shown).ok(), Some(r), "{s:?} vs {shown:?}");
}

fn signals(s: &str) {
    let Ok(n) = parse_signal(s) else {
        return;
    };
    assert!((1..=64).contains(&n), "{s:?} -> {n}");
    assert_eq!(parse_signal(&n.to_string()).ok(), Some(n));
}

fn device_rates(s: &str) {
    let Ok(m) = parse_device_rates("device_read_bps", &[s.to_string()]) else {
        return;
    };
    assert_eq!(m.len(), 1);
    for (dev, rate) in m {
        assert!(dev.starts_with("/dev/") && rate >= 1, "{s:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    sizes(s);
    durations(s);
    cpus(s);
    volumes(s);
    references(s);
    signals(s);
    device_rates(s);
});
