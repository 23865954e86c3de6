//! `--network-rate RATE`: a container's bandwidth limit, both ways, in tc's units (pure).

use crate::error::{Error, Result};

/// Lowest accepted limit: below this a token bucket's burst is a packet or less and the
/// limit stops being a rate.
pub const MIN_BITS: u64 = 8_000;

/// `RATE` in bits per second: a number with tc's units: `bit`, `kbit`, `mbit`, `gbit`
/// (powers of 1000) or bytes per second `bps`, `kbps`, `mbps`, `gbps` (times 8), e.g.
/// `8mbit`, `1.5gbit`, `500kbps`. A bare number is refused: bits or bytes is too easy to
/// get wrong.
pub fn parse_rate(field: &str, s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: f64 = match unit {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        "" => {
            return Err(Error::invalid(
                field,
                format!(
                "{s:?} needs a unit: bit, kbit, mbit, gbit (or bps, kbps, mbps, gbps for bytes)"
            ),
            ))
        }
        other => {
            return Err(Error::invalid(
                field,
                format!(
                    "{s:?}: unknown unit {other:?} (bit, kbit, mbit, gbit, bps, kbps, mbps, gbps)"
                ),
            ))
        }
    };
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite())
        .ok_or_else(|| Error::invalid(field, format!("{s:?} is not a number and a unit")))?;
    let bits = n * mult;
    // `n` is finite, so this is an ordinary comparison.
    if bits < MIN_BITS as f64 {
        return Err(Error::invalid(
            field,
            format!("{s:?} is below the lowest limit, {}kbit", MIN_BITS / 1000),
        ));
    }
    // tc's rate is 64-bit bytes per second: anything up to u64 bits fits.
    if bits >= u64::MAX as f64 {
        return Err(Error::invalid(field, format!("{s:?} is too large")));
    }
    Ok(bits as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_follow_tc() {
        assert_eq!(parse_rate("r", "8mbit").unwrap(), 8_000_000);
        assert_eq!(parse_rate("r", "1.5Gbit").unwrap(), 1_500_000_000);
        assert_eq!(parse_rate("r", "500kbps").unwrap(), 4_000_000);
        assert_eq!(parse_rate("r", "8000bit").unwrap(), 8_000);
        assert_eq!(parse_rate("r", "1mbps").unwrap(), 8_000_000);
    }

    #[test]
    fn bad_rates_name_the_flag() {
        for (bad, why) in [
            ("8", "needs a unit"),
            ("8mb", "unknown unit"),
            ("mbit", "not a number"),
            ("1.2.3mbit", "not a number"),
            ("1kbit", "below"),
            ("0mbit", "below"),
            ("-1mbit", "unknown unit"),
            ("99999999999999999999gbit", "too large"),
        ] {
            let e = parse_rate("network-rate", bad).unwrap_err().to_string();
            assert!(
                e.starts_with("network-rate:") && e.contains(why),
                "{bad}: {e}"
            );
        }
    }
}
