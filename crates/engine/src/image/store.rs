//! Reading the store: images, layers, the index, and resolving names.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;

use super::fsutil::{sync_dir, write_atomic, FileLock};
use super::{
    check_version, digest_hex, first_reference, is_hex64, is_lower_hex, to_json, ImageRecord,
    ImageStore, Index, LayerRecord, Reference, STORE_VERSION,
};
use crate::error::{Context, Error, Result};

impl ImageStore {
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

    pub(super) fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    pub(super) fn layer_path(&self, hex: &str) -> PathBuf {
        self.dir.join("layers").join(hex)
    }

    pub(super) fn blob_path_hex(&self, hex: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(hex)
    }

    pub(super) fn manifest_path(&self, id: &str) -> PathBuf {
        self.dir.join("manifests").join(format!("{id}.json"))
    }

    pub(super) fn index_path(&self) -> PathBuf {
        self.dir.join("index.json")
    }

    pub(super) fn lock(&self) -> Result<FileLock> {
        FileLock::exclusive(&self.dir.join("lock"))
    }

    pub(super) fn read_index(&self) -> Result<Index> {
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

    pub(super) fn write_index(&self, index: &Index) -> Result<()> {
        let index = Index {
            version: STORE_VERSION,
            references: index.references.clone(),
        };
        write_atomic(&self.index_path(), &to_json(&index)?)
    }

    /// Ids of all image records (file names that are not ids are ignored).
    pub(super) fn image_ids(&self) -> Result<Vec<String>> {
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
    pub(super) fn load_record(&self, id: &str, index: &Index) -> Result<ImageRecord> {
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
    pub(super) fn refresh_names(&self, index: &Index, id: &str) -> Result<()> {
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
        // Written at this engine's version: the fields an older record lacks are read as
        // their defaults, and the file must fit the schema its version names.
        rec.version = STORE_VERSION;
        write_atomic(&path, &to_json(&rec)?)
    }

    pub(super) fn delete_record(&self, id: &str) -> Result<()> {
        let path = self.manifest_path(id);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir.join("manifests")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx(|| format!("removing {}", path.display())),
        }
    }

    /// `(image id, Some(reference) if it was named by reference)`.
    pub(super) fn resolve(&self, index: &Index, s: &str) -> Result<(String, Option<String>)> {
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
}
