//! `image push`: an image of the store to an OCI distribution registry. Each blob (the
//! config, then the layers as stored, three at a time: the bytes their digests name) is
//! asked for with a HEAD first and skipped when the registry has it; otherwise uploaded
//! in one PUT (POST for an upload session, PUT to its location with `?digest=`). The manifest goes last,
//! under the tag, so the registry never names an image whose blobs it lacks. The
//! registry checks every digest itself; the digests it answers with are checked here.

use std::fs::File;

use super::client::{bad, check, Client, Credentials, Transport};
use super::target::Target;
use crate::error::{Error, Result};
use crate::image::manifest::{DOCKER_MANIFEST, OCI_MANIFEST};
use crate::image::{digest_hex, ImageStore, Reference};

/// How to reach the registry.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub transport: Transport,
    /// Credentials; `None`: those stored for the registry, if any.
    pub creds: Option<Credentials>,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The reference pushed to.
    pub reference: String,
    /// The manifest's digest (`sha256:...`), as the registry stores it.
    pub digest: String,
    /// Each blob (`sha256:...`) and whether it was uploaded (false: the registry had it).
    pub blobs: Vec<(String, bool)>,
}

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The `Content-Type` of a stored manifest: its own `mediaType`, else by its config's.
fn manifest_media_type(m: &serde_json::Value) -> &str {
    match m["mediaType"].as_str() {
        Some(t) if !t.is_empty() => t,
        _ if m["config"]["mediaType"] == DOCKER_CONFIG => DOCKER_MANIFEST,
        _ => OCI_MANIFEST,
    }
}

/// The `?digest=` query appended to an upload location (which may have a query).
fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={}", digest.replace(':', "%3A"))
}

impl ImageStore {
    /// Pushes the image `source` names (a reference or an id) to `dest` (default:
    /// `source`, which must then be a reference).
    pub fn push(&self, source: &str, dest: Option<&str>, opts: &PushOptions) -> Result<Pushed> {
        let index = self.read_index()?;
        let (id, by_ref) = self.resolve(&index, source)?;
        let rec = self.load_record(&id, &index)?;
        let dest = match (dest, by_ref) {
            (Some(d), _) => Reference::parse(d)?,
            (None, Some(r)) => Reference::parse(&r)?,
            (None, None) => {
                return Err(Error::invalid(
                    "reference",
                    format!(
                        "{source:?} names the image by id: give a destination NAME[:TAG] to push to"
                    ),
                ))
            }
        };
        let target = Target::of(&dest);
        let creds = match &opts.creds {
            Some(c) => Some(c.clone()),
            None => super::creds::lookup(&target.registry)?,
        };
        let mut client = Client::connect(target, &opts.transport, creds, "pull,push")?;
        let (bytes, hex) = self.manifest_bytes(&rec)?;
        let m: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            path: self.blob_path_hex(&hex),
            reason: e.to_string(),
        })?;
        let mut digests = vec![m["config"]["digest"].clone()];
        if let Some(layers) = m["layers"].as_array() {
            digests.extend(layers.iter().map(|l| l["digest"].clone()));
        }
        let mut hexes = Vec::new();
        for d in digests {
            let h = d
                .as_str()
                .and_then(digest_hex)
                .ok_or_else(|| Error::Corrupt {
                    path: self.blob_path_hex(&hex),
                    reason: format!("manifest names a bad digest {d}"),
                })?
                .to_string();
            hexes.push(h);
        }
        // The config alone first, so the pool's clones start with its token.
        let (config, layers) = hexes.split_first().ok_or_else(|| Error::Corrupt {
            path: self.blob_path_hex(&hex),
            reason: "manifest names no config".into(),
        })?;
        let first = self.push_blob(&mut client, config)?;
        let rest = super::pool::run(&client, layers, super::PARALLEL, |c, h| {
            self.push_blob(c, h)
        })?;
        let blobs: Vec<(String, bool)> = hexes
            .iter()
            .zip(std::iter::once(first).chain(rest))
            .map(|(h, up)| (format!("sha256:{h}"), up))
            .collect();
        let digest = put_manifest(&mut client, &dest.tag, manifest_media_type(&m), &bytes)?;
        if digest != format!("sha256:{hex}") {
            return Err(bad(
                &client.url(&format!("manifests/{}", dest.tag)),
                format!("the registry stored the manifest as {digest}, not sha256:{hex}"),
            ));
        }
        Ok(Pushed {
            reference: dest.to_string(),
            digest,
            blobs,
        })
    }

    /// One blob: skipped when the registry has it (true: uploaded).
    fn push_blob(&self, client: &mut Client, hex: &str) -> Result<bool> {
        let digest = format!("sha256:{hex}");
        let url = client.url(&format!("blobs/{digest}"));
        let head = client.send(&url, |agent, auth| {
            let mut req = agent.head(&url);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            req.call()
        })?;
        match head.status().as_u16() {
            200 => return Ok(false),
            404 => {}
            _ => {
                check(&url, head)?;
            }
        }
        let path = self.blob_path_hex(hex);
        if !path.is_file() {
            return Err(Error::Corrupt {
                path,
                reason: format!("blob {digest} is missing from the store"),
            });
        }
        let start = client.url("blobs/uploads/");
        let resp = client.send(&start, |agent, auth| {
            let mut req = agent.post(&start);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            req.send_empty()
        })?;
        let resp = check(&start, resp)?;
        let location = resp
            .headers()
            .get("location")
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| bad(&start, "the upload was accepted without a Location"))?;
        let put = with_digest(&client.absolute(location), &digest);
        let resp = client.send(&put, |agent, auth| {
            let f = File::open(&path).map_err(ureq::Error::Io)?;
            let mut req = agent
                .put(&put)
                .header("Content-Type", "application/octet-stream");
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            req.send(f)
        })?;
        let resp = check(&put, resp).map_err(|e| bad(&digest, e))?;
        if let Some(got) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|h| h.to_str().ok())
        {
            if got != digest {
                return Err(bad(
                    &put,
                    format!("the registry stored blob {digest} as {got}"),
                ));
            }
        }
        Ok(true)
    }
}

/// PUTs the manifest under `tag`; returns the digest the registry reports (or the
/// manifest's own when it reports none).
fn put_manifest(client: &mut Client, tag: &str, media: &str, bytes: &[u8]) -> Result<String> {
    let url = client.url(&format!("manifests/{tag}"));
    let resp = client.send(&url, |agent, auth| {
        let mut req = agent.put(&url).header("Content-Type", media);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        req.send(bytes)
    })?;
    let resp = check(&url, resp)?;
    let own = format!("sha256:{}", crate::image::fsutil::sha256_hex(bytes));
    Ok(resp
        .headers()
        .get("docker-content-digest")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .unwrap_or(own))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_locations_get_the_digest_query() {
        assert_eq!(
            with_digest("/v2/a/blobs/uploads/u1", "sha256:ab"),
            "/v2/a/blobs/uploads/u1?digest=sha256%3Aab"
        );
        assert_eq!(
            with_digest("http://r/v2/a/blobs/uploads/u1?_state=x", "sha256:ab"),
            "http://r/v2/a/blobs/uploads/u1?_state=x&digest=sha256%3Aab"
        );
    }

    #[test]
    fn manifest_media_types() {
        let j = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert_eq!(
            manifest_media_type(&j(r#"{"mediaType":"application/x","config":{}}"#)),
            "application/x"
        );
        assert_eq!(
            manifest_media_type(&j(&format!(
                r#"{{"config":{{"mediaType":"{DOCKER_CONFIG}"}}}}"#
            ))),
            DOCKER_MANIFEST
        );
        assert_eq!(manifest_media_type(&j(r#"{"config":{}}"#)), OCI_MANIFEST);
    }
}
