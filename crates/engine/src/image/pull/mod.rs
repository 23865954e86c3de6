//! `image pull`: an image from an OCI distribution registry. The manifest (and, for an
//! index, the platform's manifest), the config and the layers the store lacks are fetched
//! into an OCI image layout in a work dir, then loaded like any layout (`load/`): every
//! digest and diff_id is checked there, and nothing reaches the store unless all of it
//! is right. Layers are fetched in parallel (up to 4 at once).

mod client;
pub mod creds;
mod fetch;
mod pool;
pub mod progress;
mod push;
mod resolve;
mod target;
pub mod tls;

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use client::Client;
pub use client::{Credentials, Transport};
pub use progress::{ProgressEvent, ProgressSink};
pub use push::{PushOptions, Pushed};
use target::Target;

use super::fsutil::{sha256_hex, WorkDir};
use super::load::{LoadOptions, Loaded};
use super::manifest::{self, descriptor_hex, Parsed, Platform, JSON_MAX};
use super::{write_new, ImageStore, Reference};
use crate::error::{Context, Error, Result};

const ACCEPT_MANIFEST: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// How to reach the registry.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    pub load: LoadOptions,
    /// HTTPS verified against the system's and the registry's CAs, or (`insecure`)
    /// unverified HTTPS or plain HTTP.
    pub transport: Transport,
    /// Credentials; `None`: those stored for the registry (`codex-ctr login`), if any.
    pub creds: Option<Credentials>,
    /// Where per-blob progress goes, if anywhere.
    pub progress: Option<ProgressSink>,
}

/// Blobs downloaded (or uploaded, by push) at once.
pub(crate) const PARALLEL: usize = 3;

/// For the fuzz target: a `WWW-Authenticate` header parsed.
#[doc(hidden)]
pub fn parse_challenge_for_fuzzing(h: &str) -> bool {
    target::parse_challenge(h).is_some()
}

impl ImageStore {
    /// Pulls `reference` (`[REGISTRY/]NAME[:TAG]`) into the store.
    pub fn pull(&self, reference: &str, opts: &PullOptions) -> Result<Loaded> {
        let r = Reference::parse(reference)?;
        let target = Target::of(&r);
        let creds = match &opts.creds {
            Some(c) => Some(c.clone()),
            None => creds::lookup(&target.registry)?,
        };
        let mut client = Client::connect(target.clone(), &opts.transport, creds, "pull")?;
        let work = WorkDir::create(&self.tmp_dir(), "pull-")?;
        let layout = work.path().join("layout");
        let blobs = layout.join("blobs/sha256");
        fs::create_dir_all(&blobs).ctx(|| format!("creating {}", blobs.display()))?;

        let host = Platform::host();
        let want = opts.load.platform.as_ref().unwrap_or(&host);
        let (top, top_media) = fetch_manifest(&mut client, &target.tag, &blobs)?;
        let mut current = (top.clone(), top_media.clone());
        let manifest = loop {
            match manifest::parse(
                &current.0,
                Some(&current.1),
                &format!("{reference} manifest"),
            )? {
                Parsed::Manifest(m) => break m,
                Parsed::Index(index) => {
                    let d = manifest::pick(&index, want, reference)?;
                    let hex = descriptor_hex(d, reference)?;
                    current = fetch_manifest(&mut client, &format!("sha256:{hex}"), &blobs)?;
                    if sha256_hex(&current.0) != hex {
                        return Err(Error::invalid(
                            "digest",
                            format!(
                                "{reference}: manifest sha256:{hex} came back with other content"
                            ),
                        ));
                    }
                }
            }
        };
        // The config, then the layers the store does not have, in parallel.
        let mut wanted = vec![manifest.config().clone()];
        wanted.extend(manifest.layers().iter().cloned());
        let mut jobs = Vec::new();
        for d in &wanted {
            let hex = descriptor_hex(d, reference)?.to_string();
            let dest = blobs.join(&hex);
            if dest.exists() {
                continue;
            }
            let have = self.blob_path_hex(&hex);
            if have.exists() && fs::hard_link(&have, &dest).is_ok() {
                ProgressSink::emit(
                    opts.progress.as_ref(),
                    ProgressEvent::new(&hex, "Already exists", d.size(), d.size()),
                );
                continue;
            }
            jobs.push((hex, d.size()));
        }
        for (hex, size) in &jobs {
            ProgressSink::emit(
                opts.progress.as_ref(),
                ProgressEvent::new(hex, "Waiting", 0, *size),
            );
        }
        let partial_dir = self.partial_dir()?;
        self.fetch_all(&client, &jobs, &partial_dir, &blobs, opts.progress.as_ref())?;
        // The layout: its index names the top-level manifest (or index) under the
        // reference pulled, so the load picks the same platform and names the image.
        let top_hex = sha256_hex(&top);
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": top_media,
                "digest": format!("sha256:{top_hex}"),
                "size": top.len(),
                "annotations": {"io.containerd.image.name": r.to_string()},
            }],
        });
        write_new(&layout.join("index.json"), index.to_string().as_bytes())?;
        write_new(
            &layout.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        let mut loaded = self.load_dir(&work, &layout, &opts.load)?;
        loaded
            .pop()
            .ok_or_else(|| Error::invalid("registry", "nothing was loaded"))
    }
}

/// GETs a manifest by tag or digest into the layout's blobs: (bytes, media type).
fn fetch_manifest(client: &mut Client, reference: &str, blobs: &Path) -> Result<(Vec<u8>, String)> {
    let resp = client.get(&format!("manifests/{reference}"), ACCEPT_MANIFEST)?;
    let media = resp
        .headers()
        .get("content-type")
        .and_then(|h| h.to_str().ok())
        .map(|s| s.split(';').next().unwrap_or("").trim().to_string())
        .unwrap_or_default();
    let bytes = resp
        .into_body()
        .into_with_config()
        .limit(JSON_MAX)
        .read_to_vec()
        .map_err(|e| Error::invalid("registry", format!("manifest {reference}: {e}")))?;
    let hex = sha256_hex(&bytes);
    let dest = blobs.join(&hex);
    if !dest.exists() {
        write_new(&dest, &bytes)?;
    }
    Ok((bytes, media))
}

impl ImageStore {
    /// `<store>/partial/` (0700): downloads in progress or interrupted.
    fn partial_dir(&self) -> Result<PathBuf> {
        let d = self.dir.join("partial");
        match fs::create_dir(&d) {
            Ok(()) => {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&d, fs::Permissions::from_mode(0o700))
                    .ctx(|| format!("securing {}", d.display()))?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).ctx(|| format!("creating {}", d.display())),
        }
        Ok(d)
    }

    /// The blobs of `jobs` into `blobs/`, `PARALLEL` at a time; the first error stops
    /// the others from starting new ones (what they finished stays in `partial/`).
    fn fetch_all(
        &self,
        client: &Client,
        jobs: &[(String, u64)],
        partial_dir: &Path,
        blobs: &Path,
        progress: Option<&ProgressSink>,
    ) -> Result<()> {
        pool::run(client, jobs, PARALLEL, |c, (hex, size)| {
            let f = fetch::Fetch {
                partial_dir: partial_dir.to_path_buf(),
                hex,
                size: *size,
                progress,
            };
            f.run(c, &blobs.join(hex))
        })
        .map(|_| ())
    }

    /// Removes interrupted downloads no pull is working on (`image prune`).
    pub(crate) fn prune_partials(&self) -> Result<()> {
        let d = self.dir.join("partial");
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).ctx(|| format!("reading {}", d.display())),
        };
        for e in entries.flatten() {
            let Ok(f) = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(e.path())
            else {
                continue;
            };
            // A pull holding it keeps it.
            if let Ok(_held) =
                nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
            {
                fs::remove_file(e.path()).ctx(|| format!("removing {}", e.path().display()))?;
            }
        }
        Ok(())
    }
}
