//! Removing images and collecting what nothing uses.

use std::collections::HashSet;
use std::fs;

use super::fsutil::{self, sync_dir};
use super::{digest_hex, is_hex64, ImageRecord, ImageStore, LayerRecord, Removal};
use crate::error::{Context, Error, Result};

impl ImageStore {
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
        self.prune_partials()?;
        self.prune_unpack_locks()?;
        Ok(removal)
    }

    /// Deletes every image `in_use` does not claim, with its references (`image prune
    /// -a`), then collects layers, blobs and stale work dirs.
    pub fn prune_unused(&self, in_use: impl Fn(&str) -> bool) -> Result<Removal> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let mut removal = Removal::default();
        for id in self.image_ids()? {
            if in_use(&id) {
                continue;
            }
            let refs: Vec<String> = index
                .references
                .iter()
                .filter(|(_, v)| **v == id)
                .map(|(k, _)| k.clone())
                .collect();
            for r in refs {
                index.references.remove(&r);
                removal.untagged.push(r);
            }
            removal.deleted.push(id);
        }
        // The index first: a crash between the two leaves dangling records (the next
        // prune takes them), never a reference to a deleted record.
        self.write_index(&index)?;
        for id in &removal.deleted {
            self.delete_record(id)?;
        }
        removal.layers = self.gc()?;
        self.prune_partials()?;
        self.prune_unpack_locks()?;
        Ok(removal)
    }

    /// Removes layers and blobs no image record uses, and stale work dirs. Under the lock.
    /// Conservative: if any record cannot be read, no layer or blob is removed.
    pub(super) fn gc(&self) -> Result<Vec<String>> {
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
            if let Some(m) = rec.manifest.as_deref().and_then(digest_hex) {
                // The manifest names the blobs a save of this image writes: its
                // layers as loaded (compressed) may differ from the blob the shared
                // layer was first unpacked from. Unreadable: keep everything.
                let Ok(blobs) = self.manifest_blobs(m) else {
                    return Ok(removed);
                };
                used_blobs.extend(blobs);
                used_blobs.insert(m.to_string());
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

impl ImageStore {
    /// The config and layer blob hexes a stored manifest names.
    pub(super) fn manifest_blobs(&self, manifest_hex: &str) -> Result<Vec<String>> {
        let path = self.blob_path_hex(manifest_hex);
        let data = fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
        let m: oci_spec::image::ImageManifest =
            serde_json::from_slice(&data).map_err(|e| Error::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let mut out = Vec::new();
        for d in std::iter::once(m.config()).chain(m.layers()) {
            let s: &str = d.digest().as_ref();
            if let Some(h) = digest_hex(s) {
                out.push(h.to_string());
            }
        }
        Ok(out)
    }
}
