//! The parts of an image's config that make a service of a container: the health check
//! (Docker's `Healthcheck`) and the exposed ports `-P` publishes. Both apply only where
//! the user said nothing: a `--health-*` flag or `--no-healthcheck` wins, and `--expose`
//! adds to the image's ports.

use std::time::Duration;

use crate::config::ContainerConfig;
use crate::error::Result;
use crate::health::{HealthCheck, HealthProbe, MIN_PERIOD};
use crate::network::ports::{parse_expose, Exposed};

use super::record::{Healthcheck, ImageConfig};

/// Applies the image's health check and exposed ports to `config` (see the module).
pub fn apply(image: &ImageConfig, config: &mut ContainerConfig) -> Result<()> {
    if config.health.is_none() {
        config.health = image.healthcheck.as_ref().and_then(health_from_image);
    }
    for (i, p) in image.exposed_ports.iter().enumerate() {
        let (port, proto) = parse_expose(&format!("image ExposedPorts[{i}]"), p)?;
        let e = Exposed { port, proto };
        if !config.publish.expose.contains(&e) {
            config.publish.expose.push(e);
        }
    }
    Ok(())
}

/// Docker's `Healthcheck` as the engine's check: `["NONE"]` switches checks off,
/// `["CMD", arg...]` runs the program (as a quoted shell command), `["CMD-SHELL",
/// command]` runs the command with `sh -c`. Durations of 0 take the engine's defaults;
/// shorter ones than the engine allows are raised to its minimum. `None` when the
/// image states no test (Docker's "inherit", which has nothing to inherit here).
fn health_from_image(h: &Healthcheck) -> Option<HealthCheck> {
    let probe = match h.test.split_first() {
        Some((kind, _)) if kind == "NONE" => HealthProbe::None,
        Some((kind, args)) if kind == "CMD" && !args.is_empty() => HealthProbe::Cmd {
            command: args
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
        },
        Some((kind, [command])) if kind == "CMD-SHELL" => HealthProbe::Cmd {
            command: command.clone(),
        },
        _ => return None,
    };
    let mut check = HealthCheck::new(probe);
    let ms = |ns: u64| -> Option<u64> {
        (ns > 0).then(|| {
            let d = Duration::from_nanos(ns).max(MIN_PERIOD);
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
        })
    };
    if let Some(v) = ms(h.interval) {
        check.interval_ms = v;
    }
    if let Some(v) = ms(h.timeout) {
        check.timeout_ms = v;
    }
    if h.start_period > 0 {
        check.start_period_ms =
            u64::try_from(Duration::from_nanos(h.start_period).as_millis()).unwrap_or(u64::MAX);
    }
    if h.retries > 0 {
        check.retries = h.retries;
    }
    Some(check)
}

/// `arg` as one word of a POSIX shell command line.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::ports::Proto;

    fn hc(test: &[&str]) -> Healthcheck {
        Healthcheck {
            test: test.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn docker_test_forms_become_probes() {
        let cmd = |h: Healthcheck| match health_from_image(&h).map(|c| c.probe) {
            Some(HealthProbe::Cmd { command }) => command,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            cmd(hc(&["CMD-SHELL", "curl -f localhost || exit 1"])),
            "curl -f localhost || exit 1"
        );
        assert_eq!(
            cmd(hc(&["CMD", "wget", "-q", "http://x/a b", "it's"])),
            r"wget -q 'http://x/a b' 'it'\''s'"
        );
        assert_eq!(
            health_from_image(&hc(&["NONE"])).map(|c| c.probe),
            Some(HealthProbe::None)
        );
        assert!(health_from_image(&hc(&[])).is_none());
        assert!(health_from_image(&hc(&["CMD"])).is_none());
    }

    #[test]
    fn durations_in_nanoseconds_and_zero_means_the_default() {
        let mut h = hc(&["CMD-SHELL", "true"]);
        h.interval = 5_000_000_000;
        h.timeout = 1_000; // 1 µs: raised to the minimum
        h.retries = 7;
        let c = health_from_image(&h).unwrap();
        assert_eq!(c.interval_ms, 5000);
        assert_eq!(c.timeout_ms, MIN_PERIOD.as_millis() as u64);
        assert_eq!(c.retries, 7);
        let d = health_from_image(&hc(&["CMD-SHELL", "true"])).unwrap();
        assert_eq!(d, HealthCheck::new(d.probe.clone()));
    }

    #[test]
    fn the_users_check_wins_and_exposed_ports_are_added_once() {
        let image = ImageConfig {
            healthcheck: Some(hc(&["CMD-SHELL", "image-check"])),
            exposed_ports: vec!["53/udp".into(), "80/tcp".into()],
            ..Default::default()
        };
        let mut config = ContainerConfig {
            health: Some(HealthCheck::new(HealthProbe::None)),
            ..Default::default()
        };
        config.publish.expose.push(Exposed {
            port: 80,
            proto: Proto::Tcp,
        });
        apply(&image, &mut config).unwrap();
        assert_eq!(config.health.unwrap().probe, HealthProbe::None);
        assert_eq!(config.publish.expose.len(), 2);
        let mut config = ContainerConfig::default();
        apply(&image, &mut config).unwrap();
        assert!(matches!(
            config.health.unwrap().probe,
            HealthProbe::Cmd { .. }
        ));
    }
}
