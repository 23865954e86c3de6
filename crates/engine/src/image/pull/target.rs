//! Where a reference lives (Docker's rules) and how a registry asks to be authenticated:
//! pure decisions, unit-tested.

use std::collections::BTreeMap;

use crate::image::Reference;

/// Docker Hub, where a name without a registry part lives.
pub(crate) const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A reference split into registry and repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// `host[:port]` as written (`docker.io` for Docker Hub).
    pub registry: String,
    /// The repository inside it (`library/busybox` for Hub's official images).
    pub repository: String,
    pub tag: String,
}

impl Target {
    /// Docker's rule: the first component is a registry when it has a `.` or a `:`, or
    /// is `localhost`; otherwise the name is on Docker Hub (`library/` for one
    /// component).
    pub(crate) fn of(r: &Reference) -> Target {
        let (first, rest) = r.name.split_once('/').unwrap_or(("", &r.name));
        let is_registry = !first.is_empty()
            && (first.contains('.') || first.contains(':') || first == "localhost");
        let (registry, repository) = if is_registry {
            (first.to_string(), rest.to_string())
        } else if r.name.contains('/') {
            (DOCKER_HUB.to_string(), r.name.clone())
        } else {
            (DOCKER_HUB.to_string(), format!("library/{}", r.name))
        };
        Target {
            registry,
            repository,
            tag: r.tag.clone(),
        }
    }

    /// The host the API is served from.
    pub(crate) fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Basic realm="x"` or `Bearer realm="https://auth/token",service="s",scope="a:b:pull"`.
pub(crate) fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let params = parse_params(rest);
            Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            })
        }
        _ => None,
    }
}

/// `k="v",k2=v2` (quoted values may hold commas).
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let key = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.insert(key, value.to_string());
        rest = next.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        Target::of(&Reference::parse(s).unwrap())
    }

    #[test]
    fn registries_follow_dockers_rule() {
        let x = t("127.0.0.1:5000/busybox:test");
        assert_eq!(
            (x.registry.as_str(), x.repository.as_str(), x.tag.as_str()),
            ("127.0.0.1:5000", "busybox", "test")
        );
        assert_eq!(t("localhost/a/b").registry, "localhost");
        assert_eq!(t("quay.io/org/app:1").repository, "org/app");
        let hub = t("busybox");
        assert_eq!(
            (
                hub.registry.as_str(),
                hub.repository.as_str(),
                hub.tag.as_str()
            ),
            ("docker.io", "library/busybox", "latest")
        );
        assert_eq!(hub.api_host(), "registry-1.docker.io");
        assert_eq!(t("team/app").repository, "team/app");
    }

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge("Basic realm=\"Registry Realm\""),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                "Bearer realm=\"https://auth.example/token\",service=\"registry.example\",scope=\"repository:a/b:pull,push\""
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge("bearer realm=http://a/t, service=s"),
            Some(Challenge::Bearer {
                realm: "http://a/t".into(),
                service: Some("s".into()),
                scope: None
            })
        );
        assert_eq!(parse_challenge("Bearer service=\"x\""), None, "no realm");
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }
}
