//! A small OCI distribution client on `ureq`: GET manifests and blobs, answering a 401
//! with basic credentials or a bearer token fetched from the registry's token service.
//! Plain HTTP only (`--insecure`): this build carries no TLS stack.

use std::io::Read;
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

#[derive(Clone)]
pub(crate) struct Client {
    agent: ureq::Agent,
    base: String,
    target: Target,
    creds: Option<Credentials>,
    /// The `Authorization` header value that last worked (or was handed out).
    auth: Option<String>,
}

fn bad(what: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid("registry", format!("{what}: {why}"))
}

impl Client {
    pub(crate) fn new(
        target: Target,
        insecure: bool,
        creds: Option<Credentials>,
    ) -> Result<Client> {
        if !insecure {
            return Err(Error::invalid(
                "registry",
                format!(
                    "{}: this build speaks plain HTTP only; pass --insecure for a registry \
                     served over http (TLS is not built in yet)",
                    target.registry
                ),
            ));
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .build();
        Ok(Client {
            agent: ureq::Agent::new_with_config(config),
            base: format!("http://{}", target.api_host()),
            target,
            creds,
            auth: None,
        })
    }

    /// GETs `/v2/<repository>/<path>`; on success returns the response.
    pub(crate) fn get(
        &mut self,
        path: &str,
        accept: &str,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let url = format!("{}/v2/{}/{}", self.base, self.target.repository, path);
        for attempt in 0..2 {
            let mut req = self.agent.get(&url).header("Accept", accept);
            if let Some(a) = &self.auth {
                req = req.header("Authorization", a);
            }
            let resp = req.call().map_err(|e| bad(&url, e))?;
            let status = resp.status().as_u16();
            if status == 401 && attempt == 0 {
                let challenge = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|h| h.to_str().ok())
                    .and_then(parse_challenge)
                    .ok_or_else(|| {
                        bad(&url, "HTTP 401 without a usable WWW-Authenticate challenge")
                    })?;
                self.authenticate(&url, challenge)?;
                continue;
            }
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
                404 => " (no such repository, tag or blob)",
                _ => "",
            };
            return Err(bad(&url, format!("HTTP {status}{hint}: {}", body.trim())));
        }
        Err(bad(
            &url,
            "HTTP 401 after authenticating (the credentials were refused)",
        ))
    }

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
                let scope =
                    scope.unwrap_or_else(|| format!("repository:{}:pull", self.target.repository));
                let mut req = self.agent.get(&realm).query("scope", &scope);
                if let Some(s) = &service {
                    req = req.query("service", s);
                }
                if self.creds.is_some() {
                    req = req.header("Authorization", self.basic(url)?);
                }
                let resp = req.call().map_err(|e| bad(&realm, e))?;
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
