//! Registry host names resolved for ureq without glibc's NSS in this process (the
//! release `codex-ctr` is static: see codex_sys::nss).

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// Resolves through the host's `getent` (codex_sys::nss::host_addrs).
#[derive(Debug, Default)]
pub(crate) struct HostResolver;

impl Resolver for HostResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().ok_or(ureq::Error::HostNotFound)?;
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("http") {
                80
            } else {
                443
            });
        let ips = codex_sys::nss::host_addrs(host).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ureq::Error::HostNotFound,
            _ => ureq::Error::Io(e),
        })?;
        let family = config.ip_family();
        let wanted = family.keep_wanted(
            ips.into_iter()
                .map(|ip| std::net::SocketAddr::new(ip, port)),
        );
        let mut out = self.empty();
        for addr in wanted.take(16) {
            out.push(addr);
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}
