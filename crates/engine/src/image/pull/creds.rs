//! Registry credentials in Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): `{"auths": {"HOST": {"auth": base64("user:password")}}}`, so
//! a `docker login` made on this machine works here and `codex-ctr login` works for
//! docker. Written 0600 (directory 0700), other keys of the file kept.

use std::path::PathBuf;

use base64::Engine as _;

use super::client::Credentials;
use crate::error::{Context, Error, Result};

/// The config file credentials are read from and written to.
pub fn config_path() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("config.json"),
        _ => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".docker/config.json")
        }
    }
}

/// The keys Docker may have stored a registry under.
fn keys(registry: &str) -> Vec<String> {
    let mut k = vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
    ];
    if registry == super::target::DOCKER_HUB {
        k.push("https://index.docker.io/v1/".into());
    }
    k
}

/// Credentials stored for `registry`, if any.
pub fn lookup(registry: &str) -> Result<Option<Credentials>> {
    let path = config_path();
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
    };
    let v: serde_json::Value = serde_json::from_slice(&data).map_err(|e| Error::Corrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    for k in keys(registry) {
        let Some(auth) = v["auths"][&k]["auth"].as_str() else {
            continue;
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Error::Corrupt {
                path: path.clone(),
                reason: format!("auths.{k}.auth is not base64 of user:password"),
            })?;
        if let Some((u, p)) = raw.split_once(':') {
            return Ok(Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }));
        }
    }
    Ok(None)
}

/// Stores credentials for `registry` (replacing any).
pub fn store(registry: &str, creds: &Credentials) -> Result<PathBuf> {
    let path = config_path();
    let mut v: serde_json::Value = match std::fs::read(&path) {
        Ok(d) => serde_json::from_slice(&d).map_err(|e| Error::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
    };
    if !v.is_object() {
        return Err(Error::Corrupt {
            path,
            reason: "not a JSON object".into(),
        });
    }
    let raw = format!("{}:{}", creds.username, creds.password);
    let auth = base64::engine::general_purpose::STANDARD.encode(raw);
    if !v["auths"].is_object() {
        v["auths"] = serde_json::json!({});
    }
    v["auths"][registry] = serde_json::json!({ "auth": auth });
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .ctx(|| format!("securing {}", dir.display()))?;
        }
    }
    let text =
        serde_json::to_vec_pretty(&v).map_err(|e| Error::invalid("credentials", e.to_string()))?;
    codex_sys::atomic::AtomicFile::new(&path)
        .mode(0o600)
        .write(&text)
        .ctx(|| format!("writing {}", path.display()))?;
    Ok(path)
}
