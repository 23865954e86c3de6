//! CPU weight, CPU/memory-node pinning and the memory+swap limit: Docker's
//! `--cpu-shares`, `--cpuset-cpus`, `--cpuset-mems` and `--memory-swap`, with Docker's
//! meanings, checked for `create` and `update` alike (errors name the field).

use std::collections::BTreeSet;

use crate::error::{Error, Result};

/// The range Linux's `cpu.shares` takes (v2's `cpu.weight` is converted from it).
pub const MIN_CPU_SHARES: u64 = 2;
pub const MAX_CPU_SHARES: u64 = 262_144;

/// `--memory-swap -1`: swap without a limit.
pub const UNLIMITED_SWAP: i64 = -1;

/// A cpuset list (`0-2,4`) as its members; `field` names it in errors.
pub fn parse_cpuset(field: &str, s: &str) -> Result<BTreeSet<u32>> {
    let bad = |why: String| Error::invalid(field, format!("{s:?} {why}"));
    let mut out = BTreeSet::new();
    if s.trim().is_empty() {
        return Err(bad("is empty (a list like 0-2,4)".into()));
    }
    for part in s.split(',') {
        let num = |t: &str| -> Result<u32> {
            let t = t.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(format!("is not a list like 0-2,4 ({part:?})")));
            }
            t.parse()
                .map_err(|_| bad(format!("has {t:?}, which is out of range")))
        };
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(part)?;
                (n, n)
            }
        };
        if lo > hi {
            return Err(bad(format!("has the backwards range {part:?}")));
        }
        if hi >= 1 << 16 {
            return Err(bad(format!("has {hi}, beyond any machine")));
        }
        out.extend(lo..=hi);
    }
    Ok(out)
}

/// Checks that every member of `asked` is in `online` (the kernel's list of online CPUs
/// or memory nodes), as Docker does: a cgroup write would fail later with a bare EINVAL.
pub fn check_available(field: &str, asked: &str, online: &str) -> Result<()> {
    let want = parse_cpuset(field, asked)?;
    let have = parse_cpuset(field, online.trim()).unwrap_or_default();
    let missing: Vec<String> = want.difference(&have).map(u32::to_string).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::invalid(
        field,
        format!(
            "{} not available on this host (available: {})",
            missing.join(","),
            online.trim()
        ),
    ))
}

/// The host's online CPUs and memory nodes (a machine without NUMA has node 0).
fn online(what: &str) -> String {
    let path = match what {
        "cpus" => "/sys/devices/system/cpu/online",
        _ => "/sys/devices/system/node/online",
    };
    std::fs::read_to_string(path).unwrap_or_else(|_| "0".into())
}

/// [`check_available`] against the host's online CPUs (`what` = `cpus`) or memory
/// nodes (`mems`).
pub fn check_online(field: &str, what: &str, asked: &str) -> Result<()> {
    check_available(field, asked, &online(what))
}

/// `--cpu-shares`: 2..=262144 (0 means "not set" and never reaches here).
pub fn check_shares(field: &str, shares: u64) -> Result<()> {
    if !(MIN_CPU_SHARES..=MAX_CPU_SHARES).contains(&shares) {
        return Err(Error::invalid(
            field,
            format!("{shares} is not between {MIN_CPU_SHARES} and {MAX_CPU_SHARES}"),
        ));
    }
    Ok(())
}

/// `--memory-swap`: memory plus swap, so at least the memory limit; -1 is unlimited
/// swap; either needs a memory limit (Docker's rules).
pub fn check_swap(field: &str, swap: i64, memory: Option<u64>) -> Result<()> {
    let Some(m) = memory else {
        return Err(Error::invalid(
            field,
            "needs a memory limit too (--memory): it is memory plus swap",
        ));
    };
    if swap == UNLIMITED_SWAP {
        return Ok(());
    }
    if swap < 0 {
        return Err(Error::invalid(
            field,
            format!("{swap} is neither a size nor -1 (unlimited swap)"),
        ));
    }
    if (swap as u64) < m {
        return Err(Error::invalid(
            field,
            format!(
                "{swap} is below the memory limit {m}: it is memory plus swap, so at least the memory limit"
            ),
        ));
    }
    if !swap_accounting() {
        return Err(Error::invalid(
            field,
            "swap accounting is off on this host (the v1 memory controller has no \
             memory.memsw.limit_in_bytes; boot with swapaccount=1)",
        ));
    }
    Ok(())
}

/// Whether a memory+swap limit can be set: the v1 memory controller's memsw files (a
/// v2-only host's memory.swap.max is checked by the runtime when it writes it).
pub(crate) fn swap_accounting() -> bool {
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory");
    !v1.join("memory.limit_in_bytes").exists() || v1.join("memory.memsw.limit_in_bytes").exists()
}

/// `--memory-swap` as given on the command line: `-1` or a size (`1g`).
pub fn parse_swap(field: &str, s: &str) -> Result<i64> {
    if s.trim() == "-1" {
        return Ok(UNLIMITED_SWAP);
    }
    let n = super::parse_memory(field, s)?;
    i64::try_from(n).map_err(|_| Error::invalid(field, format!("{s:?} is out of range")))
}

/// The whole check of the four limits of one container (create, or update merged with
/// what the container had).
pub fn validate(
    prefix: &str,
    memory: Option<u64>,
    shares: Option<u64>,
    cpus: Option<&str>,
    mems: Option<&str>,
    swap: Option<i64>,
) -> Result<()> {
    if let Some(s) = shares {
        check_shares(&format!("{prefix}cpu_shares"), s)?;
    }
    if let Some(c) = cpus {
        check_online(&format!("{prefix}cpuset_cpus"), "cpus", c)?;
    }
    if let Some(m) = mems {
        check_online(&format!("{prefix}cpuset_mems"), "mems", m)?;
    }
    if let Some(s) = swap {
        check_swap(&format!("{prefix}memory_swap"), s, memory)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpusets_parse_as_lists_and_ranges() {
        assert_eq!(
            parse_cpuset("c", "0-2,4")
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            [0, 1, 2, 4]
        );
        assert_eq!(parse_cpuset("c", "3").unwrap().len(), 1);
        for bad in [
            "",
            "a",
            "1-",
            "-1",
            "2-1",
            "0,,1",
            "1.5",
            "99999999999",
            "70000",
        ] {
            let e = parse_cpuset("cpuset_cpus", bad).unwrap_err().to_string();
            assert!(e.starts_with("cpuset_cpus"), "{bad}: {e}");
        }
    }

    #[test]
    fn cpus_must_be_online() {
        check_available("cpuset_cpus", "0-1", "0-1\n").unwrap();
        check_available("cpuset_cpus", "1", "0-3").unwrap();
        let e = check_available("cpuset_cpus", "0,2-3", "0-1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cpuset_cpus") && e.contains("2,3"), "{e}");
    }

    #[test]
    fn shares_and_swap_follow_dockers_rules() {
        check_shares("s", 2).unwrap();
        check_shares("s", 262_144).unwrap();
        assert!(check_shares("cpu_shares", 1)
            .unwrap_err()
            .to_string()
            .contains("cpu_shares"));
        assert!(check_shares("s", 262_145).is_err());
        assert!(check_swap("memory_swap", -1, None)
            .unwrap_err()
            .to_string()
            .contains("memory limit"));
        check_swap("memory_swap", -1, Some(64 << 20)).unwrap();
        let e = check_swap("memory_swap", 32 << 20, Some(64 << 20))
            .unwrap_err()
            .to_string();
        assert!(e.contains("memory_swap") && e.contains("below"), "{e}");
        assert!(check_swap("memory_swap", -2, Some(1)).is_err());
        assert_eq!(parse_swap("memory-swap", "-1").unwrap(), -1);
        assert_eq!(parse_swap("memory-swap", "1g").unwrap(), 1 << 30);
        assert!(parse_swap("memory-swap", "-2").is_err());
    }
}
