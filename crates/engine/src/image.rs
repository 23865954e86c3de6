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

mod fsutil;
pub(crate) mod layer;
mod recover;
mod reference;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};
use fsutil::{sha256_hex, sync_dir, write_atomic, FileLock, WorkDir};

pub use reference::{Reference, DEFAULT_TAG};

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
}

/// Schema version of `manifests/<id>.json`, `layers/<hex>/layer.json` and `index.json`.
pub const STORE_VERSION: u32 = 1;

/// The media type of the uncompressed layer tars kept in `blobs/`.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// How a container from the image runs by default (the runtime part of an OCI image
/// config). Empty for imports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub labels: BTreeMap<String, String>,
}

/// One image: `manifests/<id>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub version: u32,
    /// sha256 hex (64 characters, no `sha256:` prefix) of the image's OCI config blob.
    pub id: String,
    /// The repository name; `None` for a dangling image (its tag moved to a newer image).
    pub name: Option<String>,
    pub tag: Option<String>,
    /// RFC 3339, UTC.
    pub created: String,
    /// diff_ids (`sha256:<hex>` of the uncompressed layer tars), bottom layer first.
    pub layers: Vec<String>,
    /// Total size of the layer tars, in bytes.
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub config: ImageConfig,
}

impl ImageRecord {
    /// `NAME:TAG`, or `None` for a dangling image.
    pub fn reference(&self) -> Option<String> {
        match (&self.name, &self.tag) {
            (Some(n), Some(t)) => Some(format!("{n}:{t}")),
            _ => None,
        }
    }

    /// The first 12 characters of the id, as `image ls` shows it.
    pub fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }
}

/// One unpacked layer: `layers/<hex>/layer.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub version: u32,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// The blob in `blobs/` this layer came from (equal to `diff_id` for uncompressed
    /// blobs; a pulled compressed layer will name its compressed digest here).
    pub blob: String,
    /// Size of the blob in bytes.
    pub size: u64,
    pub media_type: String,
}

/// What `remove` and `prune` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Removal {
    /// References (`NAME:TAG`) that no longer exist.
    pub untagged: Vec<String>,
    /// Image ids whose records were deleted.
    pub deleted: Vec<String>,
    /// diff_ids of layers garbage-collected because no image uses them any more.
    pub layers: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Index {
    version: u32,
    /// `NAME:TAG` -> image id.
    #[serde(default)]
    references: BTreeMap<String, String>,
}

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

    /// Imports a root filesystem as a one-layer image named `reference` (`NAME[:TAG]`,
    /// tag `latest` by default). `source` is a directory or a tar file, plain, gzip or
    /// zstd compressed (detected from its content). If the reference already names an
    /// image, it moves to the new one and the old one becomes dangling (see [`prune`]).
    ///
    /// [`prune`]: ImageStore::prune
    pub fn import(&self, source: &Path, reference: &str) -> Result<ImageRecord> {
        let reference = Reference::parse(reference)?;
        let md = fs::metadata(source).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::invalid(
                    "source",
                    format!("{}: no such file or directory", source.display()),
                )
            } else {
                Error::Io {
                    context: format!("reading {}", source.display()),
                    cause: e,
                }
            }
        })?;
        if !md.is_dir() && !md.is_file() {
            return Err(Error::invalid(
                "source",
                format!("{}: neither a directory nor a tar file", source.display()),
            ));
        }

        let work = WorkDir::create(&self.tmp_dir(), "import-")?;
        let layer_tmp = work.path().join("layer");
        let rootfs_tmp = layer_tmp.join("rootfs");
        let blob_tmp = work.path().join("blob");
        fs::create_dir_all(&rootfs_tmp).ctx(|| format!("creating {}", rootfs_tmp.display()))?;

        let (hex, size, unpacked) = if md.is_dir() {
            // Directory: its canonical tar is the layer; unpack that tar (unless the
            // layer is already in the store), so the layer is exactly what the tar says.
            let (hex, size) = layer::pack(source, new_file(&blob_tmp)?)?;
            let have = self.layer_path(&hex).exists();
            if !have {
                self.unpack_blob(&blob_tmp, &rootfs_tmp)?;
            }
            (hex, size, !have)
        } else {
            // Tar: unpack it (checking every entry), then its canonical tar is the layer.
            let (reader, _) = layer::open_archive(source)?;
            layer::unpack(reader, &rootfs_tmp, source)?;
            let (hex, size) = layer::pack(&rootfs_tmp, new_file(&blob_tmp)?)?;
            (hex, size, true)
        };
        let diff_id = format!("sha256:{hex}");
        let layer_record = LayerRecord {
            version: STORE_VERSION,
            diff_id: diff_id.clone(),
            blob: diff_id.clone(),
            size,
            media_type: LAYER_MEDIA_TYPE.to_string(),
        };
        write_new(&layer_tmp.join("layer.json"), &to_json(&layer_record)?)?;

        let created = codex_runtime::state::now_rfc3339();
        let config = ImageConfig::default();
        let config_blob = oci_config(&created, &config, std::slice::from_ref(&diff_id))?;
        let id = sha256_hex(&config_blob);
        let config_tmp = work.path().join("config");
        write_new(&config_tmp, &config_blob)?;
        let record = ImageRecord {
            version: STORE_VERSION,
            id: id.clone(),
            name: Some(reference.name.clone()),
            tag: Some(reference.tag.clone()),
            created,
            layers: vec![diff_id],
            size,
            config,
        };

        // Commit: everything below is renames and small writes, under the store lock.
        // The steps are named for the crash tests (testhook); recover.rs undoes a commit
        // killed between two of them.
        crate::testhook::die("import-unpacked");
        let _lock = self.lock()?;
        if self.recover()? {
            self.gc()?;
        }
        self.mark_commit(work.path(), &id)?;
        crate::testhook::die("import-marked");
        self.commit_layer(&hex, &layer_tmp, unpacked, &blob_tmp)?;
        crate::testhook::die("import-layer");
        self.commit_blob(&hex, &blob_tmp)?;
        crate::testhook::die("import-blob");
        self.commit_blob(&id, &config_tmp)?;
        crate::testhook::die("import-config");
        write_atomic(&self.manifest_path(&id), &to_json(&record)?)?;
        crate::testhook::die("import-manifest");
        let mut index = self.read_index()?;
        let previous = index.references.insert(reference.to_string(), id.clone());
        self.write_index(&index)?;
        crate::testhook::die("import-indexed");
        if let Some(prev) = previous.filter(|p| *p != id) {
            self.refresh_names(&index, &prev)?;
        }
        Ok(record)
    }

    /// Every image, newest first (dangling ones included, with `name: None`).
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        let index = self.read_index()?;
        let pending = self.pending_commits();
        let mut out = Vec::new();
        for id in self.image_ids()? {
            if pending.contains(&id) && !index.references.values().any(|v| *v == id) {
                continue;
            }
            out.push(self.load_record(&id, &index)?);
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The image named by `NAME[:TAG]`, or by a unique prefix of its id (with or without
    /// `sha256:`), like Docker.
    pub fn get(&self, reference_or_id: &str) -> Result<ImageRecord> {
        let index = self.read_index()?;
        let (id, _) = self.resolve(&index, reference_or_id)?;
        self.load_record(&id, &index)
    }

    /// Removes `reference` (`NAME[:TAG]`, or an id prefix: then every reference to that
    /// image). When the image has no reference left, its record is deleted and the layers
    /// and blobs no other image uses are garbage-collected. Refuses, changing nothing,
    /// while `in_use(image id)` says a container uses the image.
    pub fn remove(&self, reference_or_id: &str, in_use: impl Fn(&str) -> bool) -> Result<Removal> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let (id, by_ref) = self.resolve(&index, reference_or_id)?;
        let refs: Vec<String> = index
            .references
            .iter()
            .filter(|(_, v)| **v == id)
            .map(|(k, _)| k.clone())
            .collect();
        let mut removal = Removal::default();
        if let Some(r) = by_ref.filter(|_| refs.len() > 1) {
            // Other references keep the image: only this tag goes.
            index.references.remove(&r);
            self.write_index(&index)?;
            self.refresh_names(&index, &id)?;
            removal.untagged.push(r);
            return Ok(removal);
        }
        if in_use(&id) {
            return Err(in_use_error(reference_or_id, &id));
        }
        for r in refs {
            index.references.remove(&r);
            removal.untagged.push(r);
        }
        self.write_index(&index)?;
        self.delete_record(&id)?;
        removal.deleted.push(id);
        removal.layers = self.gc()?;
        Ok(removal)
    }

    /// Deletes dangling images (no reference points to them) that `in_use` does not
    /// claim, then garbage-collects layers, blobs and stale work dirs.
    pub fn prune(&self, in_use: impl Fn(&str) -> bool) -> Result<Removal> {
        let _lock = self.lock()?;
        let index = self.read_index()?;
        let referenced: HashSet<&String> = index.references.values().collect();
        let mut removal = Removal::default();
        for id in self.image_ids()? {
            if !referenced.contains(&id) && !in_use(&id) {
                self.delete_record(&id)?;
                removal.deleted.push(id);
            }
        }
        removal.layers = self.gc()?;
        Ok(removal)
    }

    /// The image's unpacked layer directories, top layer first: the order of an overlayfs
    /// `lowerdir=` list. (overlayfs separates that list with ':' and its options with ',':
    /// a store root whose path holds either needs escaping there.)
    pub fn rootfs_layers(&self, image: &ImageRecord) -> Result<Vec<PathBuf>> {
        let mut out = Vec::with_capacity(image.layers.len());
        for diff_id in image.layers.iter().rev() {
            let manifest = self.manifest_path(&image.id);
            let hex = digest_hex(diff_id).ok_or_else(|| Error::Corrupt {
                path: manifest.clone(),
                reason: format!("layer {diff_id:?} is not a sha256 digest"),
            })?;
            let dir = self.layer_path(hex).join("rootfs");
            if !dir.is_dir() {
                return Err(Error::Corrupt {
                    path: manifest,
                    reason: format!("layer {diff_id} is missing from {}", dir.display()),
                });
            }
            out.push(dir);
        }
        Ok(out)
    }

    /// `blobs/sha256/<hex>` for a digest (`sha256:<hex>` or bare hex).
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        let hex = digest_hex(digest).ok_or_else(|| {
            Error::invalid("digest", format!("{digest:?} is not a sha256 digest"))
        })?;
        Ok(self.blob_path_hex(hex))
    }

    /// The layer record of a diff_id in the store.
    pub fn layer(&self, diff_id: &str) -> Result<LayerRecord> {
        let hex = digest_hex(diff_id).ok_or_else(|| {
            Error::invalid("layer", format!("{diff_id:?} is not a sha256 digest"))
        })?;
        let path = self.layer_path(hex).join("layer.json");
        let data = fs::read(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::NotFound {
                    kind: "layer",
                    name: diff_id.to_string(),
                }
            } else {
                Error::Io {
                    context: format!("reading {}", path.display()),
                    cause: e,
                }
            }
        })?;
        let rec: LayerRecord = serde_json::from_slice(&data).map_err(|e| Error::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        check_version(&path, rec.version)?;
        Ok(rec)
    }

    // -----------------------------------------------------------------------------------

    fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    fn layer_path(&self, hex: &str) -> PathBuf {
        self.dir.join("layers").join(hex)
    }

    fn blob_path_hex(&self, hex: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(hex)
    }

    fn manifest_path(&self, id: &str) -> PathBuf {
        self.dir.join("manifests").join(format!("{id}.json"))
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    fn lock(&self) -> Result<FileLock> {
        FileLock::exclusive(&self.dir.join("lock"))
    }

    fn unpack_blob(&self, blob: &Path, dest: &Path) -> Result<()> {
        let file = fs::File::open(blob).ctx(|| format!("opening {}", blob.display()))?;
        layer::unpack(io::BufReader::with_capacity(1 << 16, file), dest, blob).map(|_| ())
    }

    /// Moves an unpacked layer into `layers/<hex>` unless it is there already. Called
    /// under the lock; if the layer was skipped as present but collected since, it is
    /// unpacked now from its tar.
    fn commit_layer(&self, hex: &str, layer_tmp: &Path, unpacked: bool, blob: &Path) -> Result<()> {
        let dest = self.layer_path(hex);
        if dest.exists() {
            return Ok(());
        }
        if !unpacked {
            self.unpack_blob(blob, &layer_tmp.join("rootfs"))?;
        }
        fs::rename(layer_tmp, &dest).ctx(|| format!("moving layer into {}", dest.display()))?;
        sync_dir(&self.dir.join("layers"))
    }

    fn commit_blob(&self, hex: &str, tmp: &Path) -> Result<()> {
        let dest = self.blob_path_hex(hex);
        if dest.exists() {
            return Ok(());
        }
        fs::rename(tmp, &dest).ctx(|| format!("moving blob into {}", dest.display()))?;
        sync_dir(&self.dir.join("blobs/sha256"))
    }

    fn read_index(&self) -> Result<Index> {
        let path = self.index_path();
        match fs::read(&path) {
            Ok(data) => {
                let index: Index = serde_json::from_slice(&data).map_err(|e| Error::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                check_version(&path, index.version)?;
                Ok(index)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index {
                version: STORE_VERSION,
                references: BTreeMap::new(),
            }),
            Err(e) => Err(e).ctx(|| format!("reading {}", path.display())),
        }
    }

    fn write_index(&self, index: &Index) -> Result<()> {
        let index = Index {
            version: STORE_VERSION,
            references: index.references.clone(),
        };
        write_atomic(&self.index_path(), &to_json(&index)?)
    }

    /// Ids of all image records (file names that are not ids are ignored).
    fn image_ids(&self) -> Result<Vec<String>> {
        let dir = self.dir.join("manifests");
        let mut ids = Vec::new();
        for e in fs::read_dir(&dir).ctx(|| format!("reading {}", dir.display()))? {
            let e = e.ctx(|| format!("reading {}", dir.display()))?;
            let name = e.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if is_hex64(id) {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Reads a record and reconciles its name with the index (the index is the truth: a
    /// record whose reference points elsewhere is shown as dangling).
    fn load_record(&self, id: &str, index: &Index) -> Result<ImageRecord> {
        let path = self.manifest_path(id);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::Corrupt {
                    path,
                    reason: format!("index.json names image {id} but its record is missing"),
                })
            }
            Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
        };
        let mut rec: ImageRecord = serde_json::from_slice(&data).map_err(|e| Error::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        check_version(&path, rec.version)?;
        if rec.id != id {
            return Err(Error::Corrupt {
                path,
                reason: format!("record has id {:?}", rec.id),
            });
        }
        let names_it = rec
            .reference()
            .is_some_and(|r| index.references.get(&r).is_some_and(|v| v == id));
        if !names_it {
            let (name, tag) = first_reference(index, id);
            rec.name = name;
            rec.tag = tag;
        }
        Ok(rec)
    }

    /// Rewrites a record's name/tag after references to it changed (under the lock).
    fn refresh_names(&self, index: &Index, id: &str) -> Result<()> {
        let path = self.manifest_path(id);
        let Ok(data) = fs::read(&path) else {
            return Ok(());
        };
        let Ok(mut rec) = serde_json::from_slice::<ImageRecord>(&data) else {
            return Ok(());
        };
        if rec.version > STORE_VERSION {
            // Rewriting it would drop what this engine does not know; the index (the
            // truth for names) is already written.
            return Ok(());
        }
        let still = rec
            .reference()
            .is_some_and(|r| index.references.get(&r).is_some_and(|v| v == id));
        if still {
            return Ok(());
        }
        (rec.name, rec.tag) = first_reference(index, id);
        write_atomic(&path, &to_json(&rec)?)
    }

    fn delete_record(&self, id: &str) -> Result<()> {
        let path = self.manifest_path(id);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir.join("manifests")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx(|| format!("removing {}", path.display())),
        }
    }

    /// `(image id, Some(reference) if it was named by reference)`.
    fn resolve(&self, index: &Index, s: &str) -> Result<(String, Option<String>)> {
        if let Ok(r) = Reference::parse(s) {
            let key = r.to_string();
            if let Some(id) = index.references.get(&key) {
                return Ok((id.clone(), Some(key)));
            }
        }
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(is_lower_hex) {
            let matches: Vec<String> = self
                .image_ids()?
                .into_iter()
                .filter(|id| id.starts_with(hex))
                .collect();
            match matches.len() {
                0 => {}
                1 => return Ok((matches.into_iter().next().unwrap_or_default(), None)),
                _ => {
                    return Err(Error::Ambiguous {
                        kind: "image",
                        reference: s.to_string(),
                        matches: matches
                            .iter()
                            .map(|id| id.get(..12).unwrap_or(id).to_string())
                            .collect(),
                    })
                }
            }
        }
        Err(Error::NotFound {
            kind: "image",
            name: s.to_string(),
        })
    }

    /// Removes layers and blobs no image record uses, and stale work dirs. Under the lock.
    /// Conservative: if any record cannot be read, no layer or blob is removed.
    fn gc(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        let tmp = self.tmp_dir();
        // Stale work dirs of crashed imports (undoing a half-done commit) and of
        // interrupted collections.
        self.recover()?;
        let mut used_layers = HashSet::new();
        let mut used_blobs = HashSet::new();
        for id in self.image_ids()? {
            let Ok(data) = fs::read(self.manifest_path(&id)) else {
                return Ok(removed);
            };
            let Ok(rec) = serde_json::from_slice::<ImageRecord>(&data) else {
                return Ok(removed);
            };
            for l in &rec.layers {
                if let Some(h) = digest_hex(l) {
                    used_layers.insert(h.to_string());
                }
            }
            used_blobs.insert(id);
        }
        let layers = self.dir.join("layers");
        for e in fs::read_dir(&layers).ctx(|| format!("reading {}", layers.display()))? {
            let e = e.ctx(|| format!("reading {}", layers.display()))?;
            let Some(hex) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !is_hex64(&hex) {
                continue;
            }
            if used_layers.contains(&hex) {
                let blob = fs::read(e.path().join("layer.json"))
                    .ok()
                    .and_then(|d| serde_json::from_slice::<LayerRecord>(&d).ok())
                    .and_then(|l| digest_hex(&l.blob).map(str::to_string))
                    .unwrap_or_else(|| hex.clone());
                used_blobs.insert(blob);
                continue;
            }
            // Rename first, so that a crash mid-delete leaves a stale work dir, never a
            // half-deleted layer under its name.
            let doomed = tmp.join(fsutil::unique_name("gc-"));
            fs::rename(e.path(), &doomed)
                .ctx(|| format!("collecting layer {}", e.path().display()))?;
            fs::remove_dir_all(&doomed).ctx(|| format!("removing {}", doomed.display()))?;
            removed.push(format!("sha256:{hex}"));
        }
        if !removed.is_empty() {
            sync_dir(&layers)?;
        }
        let blobs = self.dir.join("blobs/sha256");
        for e in fs::read_dir(&blobs).ctx(|| format!("reading {}", blobs.display()))? {
            let e = e.ctx(|| format!("reading {}", blobs.display()))?;
            let Some(hex) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if is_hex64(&hex) && !used_blobs.contains(&hex) {
                fs::remove_file(e.path()).ctx(|| format!("removing {}", e.path().display()))?;
            }
        }
        sync_dir(&blobs)?;
        Ok(removed)
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

fn in_use_error(what: &str, id: &str) -> Error {
    Error::InUse {
        kind: "image",
        name: what.to_string(),
        by: format!(
            "a container (image {}); remove the container first",
            id.get(..12).unwrap_or(id)
        ),
    }
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
fn digest_hex(d: &str) -> Option<&str> {
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

/// The OCI image config blob (application/vnd.oci.image.config.v1+json) whose digest is
/// the image id. serde_json's maps are sorted, so the bytes are deterministic.
fn oci_config(created: &str, config: &ImageConfig, diff_ids: &[String]) -> Result<Vec<u8>> {
    use serde_json::{json, Map, Value};
    let mut c = Map::new();
    let mut put = |k: &str, v: Value| {
        c.insert(k.to_string(), v);
    };
    if !config.entrypoint.is_empty() {
        put("Entrypoint", json!(config.entrypoint));
    }
    if !config.cmd.is_empty() {
        put("Cmd", json!(config.cmd));
    }
    if !config.env.is_empty() {
        put("Env", json!(config.env));
    }
    if !config.working_dir.is_empty() {
        put("WorkingDir", json!(config.working_dir));
    }
    if !config.user.is_empty() {
        put("User", json!(config.user));
    }
    if !config.labels.is_empty() {
        put("Labels", json!(config.labels));
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    let v = json!({
        "created": created,
        "architecture": arch,
        "os": "linux",
        "config": c,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": created, "created_by": "codex-ctr image import"}],
    });
    serde_json::to_vec(&v).map_err(|e| Error::Io {
        context: "serializing".into(),
        cause: e.into(),
    })
}
