//! The CLI's string forms (`512m`, `0.5`, `50%`, `30s`, env files) as numbers and lists,
//! with errors that name the field; `ContainerConfig` uses them, the CLI re-uses them.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};

/// `512m`, `1g`, `1.5GiB`, `1048576` (bytes). Units are powers of 1024, as in Docker.
pub fn parse_memory(field: &str, s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| Error::invalid(field, format!("{s:?} is not a size like 512m or 1g")))?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(Error::invalid(
                field,
                format!("{s:?}: unknown unit {other:?}"),
            ))
        }
    };
    let bytes = n * mult as f64;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(Error::invalid(field, format!("{s:?} is out of range")));
    }
    Ok(bytes as u64)
}

/// `10`, `10s`, `2m`, `1h` as whole seconds (`--timeout`).
pub fn parse_duration_secs(field: &str, s: &str) -> Result<u64> {
    match parse_duration_secs_or_zero(field, s)? {
        0 => Err(Error::invalid(field, format!("{s:?} must be positive"))),
        n => Ok(n),
    }
}

/// [`parse_duration_secs`] that also takes 0 (a grace of none: SIGKILL at once).
pub fn parse_duration_secs_or_zero(field: &str, s: &str) -> Result<u64> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| Error::invalid(field, format!("{s:?} is not a duration like 30s or 2m")))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => {
            return Err(Error::invalid(
                field,
                format!("{s:?}: unknown unit {unit:?} (use s, m or h)"),
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| Error::invalid(field, format!("{s:?} is out of range")))
}

/// `DEVICE:RATE` pairs (`/dev/vda:1mb`) as a device-to-bytes-per-second map.
pub fn parse_device_rates(field: &str, specs: &[String]) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for (i, s) in specs.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let (dev, rate) = s
            .rsplit_once(':')
            .ok_or_else(|| Error::invalid(&f, format!("{s:?} is not DEVICE:RATE")))?;
        if !dev.starts_with("/dev/") {
            return Err(Error::invalid(
                &f,
                format!("{dev:?} is not a device path under /dev"),
            ));
        }
        let rate = parse_memory(&f, rate)?;
        // Checked here too (not only when the spec is made) so the error names the flag.
        crate::profile::block_device(dev).map_err(|e| Error::invalid(&f, e))?;
        out.insert(dev.to_string(), rate);
    }
    Ok(out)
}

/// `0.5` (CPUs) or `50%` (of one CPU).
pub fn parse_cpus(field: &str, s: &str) -> Result<f64> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.parse::<f64>().map(|p| p / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| Error::invalid(field, format!("{s:?} is not a CPU amount like 0.5 or 50%")))?;
    let max = std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .unwrap_or(1.0);
    if !(v > 0.0 && v.is_finite()) {
        return Err(Error::invalid(field, format!("{s:?} must be more than 0")));
    }
    if v > max {
        return Err(Error::invalid(
            field,
            format!("{s:?} is more than the {max} CPUs of this host"),
        ));
    }
    Ok(v)
}

/// Lines `KEY=VALUE` of an env file; blank lines and `#` comments are skipped, a bare
/// `KEY` takes the value from `lookup` (the caller's environment), as Docker does.
pub fn parse_env_file(path: &Path, lookup: impl Fn(&str) -> Option<String>) -> Result<Vec<String>> {
    let field = format!("env_files[{}]", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| Error::invalid(&field, e.to_string()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((k, _)) if valid_env_key(k) => out.push(line.to_string()),
            Some((k, _)) => {
                return Err(Error::invalid(
                    &field,
                    format!("line {}: {k:?} is not a variable name", i + 1),
                ))
            }
            None if valid_env_key(line) => {
                if let Some(v) = lookup(line) {
                    out.push(format!("{line}={v}"));
                }
            }
            None => {
                return Err(Error::invalid(
                    &field,
                    format!("line {}: {line:?} is not KEY=VALUE", i + 1),
                ))
            }
        }
    }
    Ok(out)
}

pub(super) fn valid_env_key(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}
