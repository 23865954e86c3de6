//! `serve --tcp ADDR`: the API on TCP, with mutual TLS only. Whoever reaches the API
//! is root on the host, so a TCP listener without client certificates would hand the
//! host to the network; the server refuses to start without a CA to check clients
//! against, and a client without a certificate that CA signed never gets past the
//! handshake (Docker's `--tlsverify`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The files of a mutual-TLS listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA whose certificates clients must present (PEM).
    pub ca: PathBuf,
}

fn bad(what: &str, path: &Path, why: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{what} {}: {why}", path.display()),
    )
}

fn certs(what: &str, path: &Path) -> std::io::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(what, path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(what, path, e))?;
    if certs.is_empty() {
        return Err(bad(what, path, "no certificate in it"));
    }
    Ok(certs)
}

/// The acceptor for `files`; errors name the file and what is wrong with it.
pub fn acceptor(files: &TlsFiles) -> std::io::Result<TlsAcceptor> {
    // ring, not aws-lc-rs: it builds with the C compiler alone (aws-lc wants cmake and
    // more). Its default provider is deprecated for lacking post-quantum key exchange,
    // which a Docker API client does not offer anyway.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in certs("--tls-ca", &files.ca)? {
        roots.add(c).map_err(|e| bad("--tls-ca", &files.ca, e))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| bad("--tls-ca", &files.ca, e))?;
    let chain = certs("--tls-cert", &files.cert)?;
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|e| bad("--tls-key", &files.key, e))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| std::io::Error::other(format!("TLS versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| bad("--tls-cert/--tls-key", &files.cert, e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        let empty = d.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let files = TlsFiles {
            cert: empty.clone(),
            key: empty.clone(),
            ca: d.path().join("nope.pem"),
        };
        let e = acceptor(&files).err().unwrap().to_string();
        assert!(e.contains("--tls-ca") && e.contains("nope.pem"), "{e}");
        let files = TlsFiles {
            ca: empty.clone(),
            ..files
        };
        let e = acceptor(&files).err().unwrap().to_string();
        assert!(e.contains("no certificate"), "{e}");
    }
}
