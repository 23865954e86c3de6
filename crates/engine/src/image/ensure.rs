//! `--pull missing|always|never` for `run`/`create`, and FROM of `build`: an image the
//! store lacks is pulled before use when its reference names a registry (Docker's rule:
//! the first part has a dot, a port, or is `localhost`). A registry on the loopback is
//! insecure (plain HTTP or unverified HTTPS, which Docker allows there by default); any
//! other is verified HTTPS against the system CAs and the per-registry certs dir, with
//! the credentials `login` stored. A short name (`busybox`) names the local store only:
//! it is not expanded to Docker Hub, so a missing one stays the caller's "not found"
//! (which says how to pull it) rather than a surprise trip off the machine.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::image::pull::Transport;
use crate::image::{PullOptions, Reference};

/// When to pull the image of a new container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Only when the store lacks it (Docker's default).
    #[default]
    Missing,
    /// Every time, for the newest of its tag.
    Always,
    /// Never: a missing image is an error.
    Never,
}

impl PullPolicy {
    pub fn parse(field: &str, s: &str) -> Result<PullPolicy> {
        match s {
            "missing" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            _ => Err(Error::invalid(
                field,
                format!("{s:?}: use missing, always or never"),
            )),
        }
    }
}

/// `127.0.0.1:5000`, `localhost:5000`, `[::1]:5000`: a registry this host serves itself.
pub fn is_loopback_registry(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// The registry a reference names, when it names one (Docker's rule: the first part
/// has a dot, a port, or is `localhost`).
pub fn registry_of(reference: &Reference) -> Option<&str> {
    reference
        .name
        .split_once('/')
        .map(|(first, _)| first)
        .filter(|first| first.contains(['.', ':']) || *first == "localhost")
}

impl Engine {
    /// Pulls `reference` as `policy` says, when it names a registry; returns whether it
    /// pulled. A missing short name is left for the caller to report (not found, with
    /// what to do).
    pub fn ensure_image(&self, reference: &str, policy: PullPolicy) -> Result<bool> {
        let store = self.images()?;
        let present = match store.get(reference) {
            Ok(_) => true,
            Err(Error::NotFound { .. }) => false,
            Err(e) => return Err(e),
        };
        let want = match policy {
            PullPolicy::Never => false,
            PullPolicy::Missing => !present,
            PullPolicy::Always => true,
        };
        if !want {
            return Ok(false);
        }
        let Ok(r) = Reference::parse(reference) else {
            return Ok(false);
        };
        let Some(registry) = registry_of(&r) else {
            return Ok(false);
        };
        let opts = PullOptions {
            transport: Transport {
                insecure: is_loopback_registry(registry),
                ..Default::default()
            },
            ..Default::default()
        };
        store.pull(reference, &opts)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_hosts_own_addresses_are_loopback_registries() {
        for h in [
            "127.0.0.1:5000",
            "localhost:5000",
            "localhost",
            "[::1]:5000",
            "127.1.2.3",
        ] {
            assert!(is_loopback_registry(h), "{h}");
        }
        for h in [
            "registry.example:5000",
            "10.0.0.1:5000",
            "docker.io",
            "localhostx:1",
        ] {
            assert!(!is_loopback_registry(h), "{h}");
        }
    }

    #[test]
    fn a_registry_is_named_by_a_dot_a_port_or_localhost() {
        let reg = |s: &str| registry_of(&Reference::parse(s).unwrap()).map(str::to_string);
        assert_eq!(
            reg("127.0.0.1:5000/a/b:1").as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(reg("localhost/x").as_deref(), Some("localhost"));
        assert_eq!(reg("library/busybox"), None);
        assert_eq!(reg("busybox"), None);
        assert!(PullPolicy::parse("pull", "sometimes").is_err());
    }
}
