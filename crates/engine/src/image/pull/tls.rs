//! Which certificates a registry's TLS is checked against: the system's CA bundle plus
//! the registry's own CA dir, Docker's layout (`CERTS_DIR/HOST[:PORT]/*.crt`, e.g.
//! `/etc/docker/certs.d/registry.example:5000/ca.crt`), so a CA set up for docker works
//! here. The certs dir is `$CODEX_REGISTRY_CERTS_DIR` when set (tests, or a private
//! setup), else `/etc/docker/certs.d`.

use std::path::{Path, PathBuf};

use ureq::tls::{Certificate, PemItem};

use crate::error::{Context, Error, Result};

/// Docker's per-registry CA dir.
pub const DEFAULT_CERTS_DIR: &str = "/etc/docker/certs.d";

/// The CA bundles tried for the system store, first found wins (`$SSL_CERT_FILE` first).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The per-registry certs dir in effect.
pub fn certs_dir() -> PathBuf {
    match std::env::var_os("CODEX_REGISTRY_CERTS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(DEFAULT_CERTS_DIR),
    }
}

/// The system bundle's path, if there is one.
fn system_bundle() -> Option<PathBuf> {
    if let Some(f) = std::env::var_os("SSL_CERT_FILE").filter(|f| !f.is_empty()) {
        return Some(PathBuf::from(f));
    }
    SYSTEM_BUNDLES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Every certificate of a PEM file (other PEM items, e.g. keys, are skipped).
fn read_pem(path: &Path) -> Result<Vec<Certificate<'static>>> {
    let data = std::fs::read(path).ctx(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(&data) {
        match item {
            Ok(PemItem::Certificate(c)) => out.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::invalid(
                    "certificate",
                    format!("{}: {e}", path.display()),
                ))
            }
        }
    }
    Ok(out)
}

/// The `.crt` files of `dir/<registry>` (sorted, so the order is stable); none when the
/// dir does not exist.
pub(crate) fn registry_cas(dir: &Path, registry: &str) -> Result<Vec<PathBuf>> {
    if registry.contains('/') || registry.starts_with('.') {
        return Err(Error::invalid(
            "registry",
            format!("{registry:?} is not a host[:port]"),
        ));
    }
    let d = dir.join(registry);
    let entries = match std::fs::read_dir(&d) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx(|| format!("reading {}", d.display())),
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    out.sort();
    Ok(out)
}

/// The roots for `registry`: the system bundle's and the registry's own CAs.
pub(crate) fn roots(registry: &str, dir: &Path) -> Result<Vec<Certificate<'static>>> {
    let mut certs = Vec::new();
    if let Some(b) = system_bundle() {
        certs.extend(read_pem(&b)?);
    }
    for f in registry_cas(dir, registry)? {
        certs.extend(read_pem(&f)?);
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_cas_are_the_crt_files_of_the_registry_dir() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("reg.example:5000");
        std::fs::create_dir_all(&d).unwrap();
        for f in ["ca.crt", "b.crt", "client.key", "client.cert"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        let got = registry_cas(t.path(), "reg.example:5000").unwrap();
        assert_eq!(got, vec![d.join("b.crt"), d.join("ca.crt")]);
        assert!(registry_cas(t.path(), "other:1").unwrap().is_empty());
        assert!(registry_cas(t.path(), "../etc").is_err());
        assert!(registry_cas(t.path(), "..").is_err());
    }

    #[test]
    fn a_bad_pem_names_its_file() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("r:1");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("ca.crt"),
            b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = roots("r:1", t.path()).unwrap_err().to_string();
        assert!(e.contains("ca.crt"), "{e}");
    }
}
