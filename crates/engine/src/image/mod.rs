//! The image store: content-addressed layers, unpacked once, and named image records.
//!
//! Layout under `<root>/images/` (0700; laid out like an OCI image store, so that layered images,
//! registry pulls and overlayfs fit without migrating):
//!
//! ```text
//! lock                          flock(2)ed around every change of index.json, manifests/,
//!                               layers/ and blobs/ (never while unpacking)
//! index.json                    {"version":1,"references":{"NAME:TAG":"<image id>"}}
//! manifests/<id>.json           one ImageRecord per image; <id> = sha256 hex of its config
//! blobs/sha256/<hex>            content-addressed blobs: layer tars (uncompressed, so the
//!                               digest is the layer's diff_id) and image config JSON (OCI
//!                               image-config format; its digest is the image id)
//! layers/<hex>/rootfs/          a layer unpacked once (<hex> of its diff_id: no ':' so the
//!                               path can go into an overlayfs lowerdir= list), with
//!                               OCI whiteouts stored as overlayfs whiteouts
//! layers/<hex>/layer.json       {"version":1,"diff_id","blob","size","media_type"}
//! tmp/<work>/                   private work dirs of running imports (each flocks its own
//!                               `lock` file); stale ones are collected
//! ```
//!
//! The JSON files' schemas are versioned in `runtime-state/` at the top of the repository
//! (`image-index`, `image-manifest`, `image-layer`); a file of a version newer than
//! [`STORE_VERSION`] is refused rather than read without its new fields.
//!
//! `import` normalises its input into the *canonical* layer tar (sorted, numeric owners,
//! whole-second mtimes; see [`layer`]), so the same tree imported as a directory, a tar, a
//! tar.gz or a tar.zst gets the same diff_id, and a second import of the same content
//! reuses the layer and its blob. Everything is prepared in a work dir under `tmp/` and
//! renamed into place under the lock at the end: a failed import leaves nothing behind,
//! concurrent imports are safe, and a crash leaves only a stale work dir that the next
//! garbage collection removes.

mod commit;
mod defaults;
pub mod ensure;
mod filter;
mod fsutil;
mod gc;
mod import;
mod inspect;
pub(crate) mod keylock;
pub(crate) mod layer;
mod load;
mod manifest;
pub mod pull;
mod record;
mod recover;
mod reference;
mod runconfig;
mod save;
mod service;
mod store;
mod verify;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Context, Error, Result};

pub use commit::{CommitSpec, StagedLayer};
pub use defaults::{apply_defaults, resolve_named_user};
pub use filter::ImageFilter;
pub(crate) use fsutil::hex as fsutil_hex;
pub(crate) use fsutil::unique_name as unique_work_name;
pub use inspect::HistoryEntry;
pub use load::{LoadOptions, Loaded};
pub use manifest::Platform;
pub use pull::{Credentials, PullOptions, PushOptions, Pushed, Transport};
use record::Index;
pub use record::{Healthcheck, ImageConfig, ImageRecord, LayerRecord, Removal};
pub use reference::{Reference, DEFAULT_TAG};
pub use save::SaveFormat;
pub use verify::DEFAULT_MAX_UNPACKED;

/// Entry points for the fuzz targets in `fuzz/`: the layer code as `import` runs it, on
/// bytes in memory instead of a file. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use std::fs::File;
    use std::io::Cursor;
    use std::path::Path;

    use super::layer;
    use crate::error::Result;

    /// Detects the compression of `archive` (plain, gzip, zstd tar) and unpacks it into
    /// `dest`, an existing empty directory. Returns the number of entries applied.
    pub fn unpack_layer(archive: &[u8], dest: &Path) -> Result<u64> {
        let head = &archive[..archive.len().min(512)];
        let source = Path::new("fuzz-input");
        let (reader, _) = layer::decoder(Cursor::new(archive.to_vec()), head, source)?;
        layer::unpack(reader, dest, source)
    }

    /// Writes the canonical tar of the tree at `root` to `out`: (`sha256:<hex>`, size).
    pub fn pack_layer(root: &Path, out: File) -> Result<(String, u64)> {
        layer::pack(root, out)
    }

    /// The pure decisions of `load` and `pull` on untrusted bytes: manifests and indexes
    /// (with the platform pick), image configs and their run defaults, platform strings,
    /// registry challenges and image user names. Panics if an accepted document breaks
    /// what the loader relies on.
    pub fn image_documents(data: &[u8]) {
        use super::manifest::{self, Parsed, Platform};
        for declared in [
            None,
            Some(manifest::OCI_INDEX),
            Some(manifest::DOCKER_MANIFEST),
        ] {
            match manifest::parse(data, declared, "fuzz") {
                Ok(Parsed::Manifest(m)) => {
                    for l in m.layers() {
                        let t = l.media_type().to_string();
                        assert!(
                            manifest::layer_media_type(&t).is_some(),
                            "accepted layer type {t}"
                        );
                    }
                }
                Ok(Parsed::Index(i)) => {
                    if let Ok(d) = manifest::pick(&i, &Platform::host(), "fuzz") {
                        assert!(i.manifests().iter().any(|x| x == d));
                    }
                }
                Err(_) => {}
            }
        }
        for layers in [0, 1, 2] {
            if let Ok(c) = manifest::parse_config(data, layers, "fuzz") {
                assert_eq!(c.rootfs().diff_ids().len(), layers);
                assert!(c
                    .rootfs()
                    .diff_ids()
                    .iter()
                    .all(|d| manifest::sha256_hex_of(d).is_some()));
                let rc = super::runconfig::from_config(&c, data);
                assert!(
                    rc.exposed_ports.windows(2).all(|w| w[0] < w[1]),
                    "ports sorted, unique"
                );
            }
        }
        if let Ok(s) = std::str::from_utf8(data) {
            if let Ok(p) = Platform::parse(s) {
                assert_eq!(Platform::parse(&p.to_string()).ok(), Some(p));
            }
            let _ = super::pull::parse_challenge_for_fuzzing(s);
            let file = s.to_string();
            if let Ok(u) = super::defaults::resolve_user("User", s, &|_| Some(file.clone())) {
                let numeric = u
                    .split_once(':')
                    .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok());
                assert!(numeric, "{u}");
            }
        }
    }
}

/// Schema version of `manifests/<id>.json`, `layers/<hex>/layer.json` and `index.json`.
pub const STORE_VERSION: u32 = 2;

/// The media type of the uncompressed layer tars kept in `blobs/`.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// The image store under `<root>/images`. Cheap to create; every method re-reads the
/// files, so several stores (or processes) on one root see each other's changes.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    /// Opens (creating if needed) the store under `<root>/images`. The directory is made
    /// 0700: layers hold other images' files (set-id binaries, shadow files) that host
    /// users must not reach. overlayfs and pivot_root do not need them to.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let dir = root.as_ref().join("images");
        if !dir.exists() {
            fs::create_dir_all(&dir)
                .and_then(|_| fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)))
                .ctx(|| format!("creating {}", dir.display()))?;
        }
        let store = ImageStore { dir };
        // Made last below: once it is there, so are the others (one stat on every
        // command's open instead of five mkdirs).
        if store.tmp_dir().is_dir() {
            return Ok(store);
        }
        for d in [
            store.dir.clone(),
            store.dir.join("blobs/sha256"),
            store.dir.join("layers"),
            store.dir.join("manifests"),
            store.tmp_dir(),
        ] {
            fs::create_dir_all(&d).ctx(|| format!("creating {}", d.display()))?;
        }
        Ok(store)
    }

    /// `<root>/images`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Refuses a store file this engine cannot read faithfully: version 0 (never written) or a
/// version newer than [`STORE_VERSION`] (written by a newer codex-ctr, whose fields this
/// one would drop).
fn check_version(path: &Path, version: u32) -> Result<()> {
    if version == 0 || version > STORE_VERSION {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "version {version} is not one this engine understands (it reads versions 1 to {STORE_VERSION})"
            ),
        });
    }
    Ok(())
}

fn first_reference(index: &Index, id: &str) -> (Option<String>, Option<String>) {
    index
        .references
        .iter()
        .find(|(_, v)| *v == id)
        .and_then(|(k, _)| Reference::parse(k).ok())
        .map_or((None, None), |r| (Some(r.name), Some(r.tag)))
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(is_lower_hex)
}

/// The hex of `sha256:<hex>` (or of bare hex), if it is one.
pub(crate) fn digest_hex(d: &str) -> Option<&str> {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    is_hex64(hex).then_some(hex)
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    let mut data = serde_json::to_vec_pretty(v).map_err(|e| Error::Io {
        context: "serializing".into(),
        cause: e.into(),
    })?;
    data.push(b'\n');
    Ok(data)
}

fn new_file(path: &Path) -> Result<fs::File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .ctx(|| format!("creating {}", path.display()))
}

/// Writes a new file in a work dir and fsyncs it (it is renamed into place later).
fn write_new(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = new_file(path)?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .ctx(|| format!("writing {}", path.display()))
}
