//! A small OCI distribution client on `ureq`: requests to `/v2/<repository>/...`,
//! answering a 401 with basic credentials or a bearer token fetched from the registry's
//! token service. HTTPS checked against the system's CAs and the registry's own
//! (`tls.rs`); `--insecure` allows an unverified certificate or plain HTTP.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use super::target::{parse_challenge, Challenge, Target};
use crate::error::{Error, Result};

/// `user:password` for a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct Transport {
    /// An unverified certificate, or plain HTTP when the registry does not speak TLS.
    pub insecure: bool,
    /// The per-registry CA dir (`None`: `tls::certs_dir()`).
    pub certs_dir: Option<PathBuf>,
}

pub(crate) type Response = ureq::http::Response<ureq::Body>;

#[derive(Clone)]
pub(crate) struct Client {
    agent: ureq::Agent,
    /// `https://host[:port]` or `http://...`.
    base: String,
    pub(crate) target: Target,
    creds: Option<Credentials>,
    /// The `Authorization` header value that last worked (or was handed out).
    auth: Option<String>,
    /// What a token is asked for when the challenge names no scope: `pull` or `pull,push`.
    actions: &'static str,
    certs_dir: PathBuf,
}

pub(crate) fn bad(what: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid("registry", format!("{what}: {why}"))
}

fn agent(tls: ureq::tls::TlsConfig) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .tls_config(tls)
        .build();
    // Host names through the host's getent, never this process's NSS (resolve.rs).
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::default(),
        super::resolve::HostResolver,
    )
}

impl Client {
    /// A client for `target`. Without `insecure`: HTTPS, verified. With it: HTTPS without
    /// verification when the registry answers TLS on `/v2/`, else plain HTTP (Docker's
    /// insecure-registry rule).
    pub(crate) fn connect(
        target: Target,
        transport: &Transport,
        creds: Option<Credentials>,
        actions: &'static str,
    ) -> Result<Client> {
        let certs_dir = transport
            .certs_dir
            .clone()
            .unwrap_or_else(super::tls::certs_dir);
        let host = target.api_host().to_string();
        let (agent, base) = if transport.insecure {
            let unverified = agent(
                ureq::tls::TlsConfig::builder()
                    .disable_verification(true)
                    .build(),
            );
            let https = format!("https://{host}");
            match unverified.get(format!("{https}/v2/")).call() {
                Ok(_) => (unverified, https),
                Err(_) => (
                    agent(ureq::tls::TlsConfig::default()),
                    format!("http://{host}"),
                ),
            }
        } else {
            let roots = super::tls::roots(&target.registry, &certs_dir)?;
            let tls = ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
                .build();
            (agent(tls), format!("https://{host}"))
        };
        Ok(Client {
            agent,
            base,
            target,
            creds,
            auth: None,
            actions,
            certs_dir,
        })
    }

    /// `BASE/v2/<repository>/<path>`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{}", self.base, self.target.repository, path)
    }

    /// A `Location` header made absolute (registries may answer with a path).
    pub(crate) fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}/{}", self.base, location.trim_start_matches('/'))
        }
    }

    /// A transport error explained: certificates, or TLS to a plain-HTTP registry.
    fn transport_error(&self, url: &str, e: ureq::Error) -> Error {
        let text = e.to_string();
        let hint = transport_hint(
            &text,
            self.base.starts_with("https://"),
            &self.certs_dir,
            &self.target.registry,
        );
        bad(url, format!("{text}{hint}"))
    }

    /// Runs `call` (given the agent and the current Authorization value) against `url`;
    /// a 401 is answered once by authenticating, then the call is made again. Returns
    /// the response, whatever its status other than that first 401.
    pub(crate) fn send(
        &mut self,
        url: &str,
        mut call: impl FnMut(&ureq::Agent, Option<&str>) -> std::result::Result<Response, ureq::Error>,
    ) -> Result<Response> {
        for attempt in 0..2 {
            let resp = call(&self.agent, self.auth.as_deref())
                .map_err(|e| self.transport_error(url, e))?;
            if resp.status().as_u16() == 401 && attempt == 0 {
                let challenge = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|h| h.to_str().ok())
                    .and_then(parse_challenge)
                    .ok_or_else(|| {
                        bad(url, "HTTP 401 without a usable WWW-Authenticate challenge")
                    })?;
                self.authenticate(url, challenge)?;
                continue;
            }
            if resp.status().as_u16() == 401 {
                return Err(bad(
                    url,
                    "HTTP 401 after authenticating (the credentials were refused)",
                ));
            }
            return Ok(resp);
        }
        Err(bad(
            url,
            "HTTP 401 after authenticating (the credentials were refused)",
        ))
    }

    /// GETs `/v2/<repository>/<path>`; a status other than 2xx is an error.
    pub(crate) fn get(&mut self, path: &str, accept: &str) -> Result<Response> {
        self.get_range(path, accept, None)
    }

    /// GETs `/v2/<repository>/<path>`, from byte `from` on when given (a 206 or a 200
    /// comes back: the caller looks at which).
    pub(crate) fn get_range(
        &mut self,
        path: &str,
        accept: &str,
        from: Option<u64>,
    ) -> Result<Response> {
        let url = self.url(path);
        let resp = self.send(&url, |agent, auth| {
            let mut req = agent.get(&url).header("Accept", accept);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            if let Some(n) = from {
                req = req.header("Range", format!("bytes={n}-"));
            }
            req.call()
        })?;
        check(&url, resp)
    }
}

/// What to do about a transport error's `text`: trust the CA, or say `--insecure` for
/// a plain-HTTP registry reached over TLS; nothing for other errors.
fn transport_hint(text: &str, https: bool, certs_dir: &Path, registry: &str) -> String {
    if text.contains("certificate") || text.contains("UnknownIssuer") {
        format!(
            " (the registry's certificate is not trusted: put its CA in {}/{registry}/ca.crt \
             or the system store, or pass --insecure)",
            certs_dir.display()
        )
    } else if https && (text.contains("corrupt message") || text.contains("InvalidContentType")) {
        " (the registry does not speak TLS; pass --insecure for a plain-HTTP registry)".into()
    } else {
        String::new()
    }
}

/// A 2xx response as is; anything else an error naming the URL, the status and the
/// start of the body, with a hint for 401 and 404.
pub(crate) fn check(url: &str, resp: Response) -> Result<Response> {
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(resp);
    }
    let mut body = String::new();
    let _ = resp
        .into_body()
        .into_reader()
        .take(512)
        .read_to_string(&mut body);
    let hint = match status {
        401 => " (authentication failed: check the credentials given with --creds or stored by `codex-ctr login`)",
        403 => " (the credentials do not allow this)",
        404 => " (no such repository, tag or blob)",
        _ => "",
    };
    Err(bad(url, format!("HTTP {status}{hint}: {}", body.trim())))
}

impl Client {
    fn basic(&self, url: &str) -> Result<String> {
        let c = self.creds.as_ref().ok_or_else(|| {
            bad(
                url,
                format!(
                    "the registry asks for credentials: `codex-ctr login {}` or --creds USER:PASSWORD",
                    self.target.registry
                ),
            )
        })?;
        let raw = format!("{}:{}", c.username, c.password);
        Ok(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    }

    fn authenticate(&mut self, url: &str, challenge: Challenge) -> Result<()> {
        match challenge {
            Challenge::Basic => {
                self.auth = Some(self.basic(url)?);
                Ok(())
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let scope = scope.unwrap_or_else(|| {
                    format!("repository:{}:{}", self.target.repository, self.actions)
                });
                let mut req = self.agent.get(&realm).query("scope", &scope);
                if let Some(s) = &service {
                    req = req.query("service", s);
                }
                if self.creds.is_some() {
                    req = req.header("Authorization", self.basic(url)?);
                }
                let resp = req.call().map_err(|e| self.transport_error(&realm, e))?;
                let status = resp.status().as_u16();
                if status != 200 {
                    return Err(bad(&realm, format!("token service answered HTTP {status}")));
                }
                let body = resp
                    .into_body()
                    .into_with_config()
                    .limit(1 << 20)
                    .read_to_vec()
                    .map_err(|e| bad(&realm, format!("token response: {e}")))?;
                let v: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| bad(&realm, format!("token response: {e}")))?;
                let token = v["token"]
                    .as_str()
                    .or_else(|| v["access_token"].as_str())
                    .ok_or_else(|| bad(&realm, "token response has no token"))?;
                self.auth = Some(format!("Bearer {token}"));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_errors_say_what_to_do() {
        let d = Path::new("/etc/docker/certs.d");
        let h = transport_hint(
            "invalid peer certificate: UnknownIssuer",
            true,
            d,
            "reg:5000",
        );
        assert!(h.contains("/etc/docker/certs.d/reg:5000/ca.crt"), "{h}");
        let h = transport_hint(
            "rustls: received corrupt message of type InvalidContentType",
            true,
            d,
            "r",
        );
        assert!(h.contains("--insecure"), "{h}");
        assert_eq!(
            transport_hint("received corrupt message", false, d, "r"),
            "",
            "plain HTTP already"
        );
        assert_eq!(transport_hint("connection refused", true, d, "r"), "");
    }
}
