//! Looking at images: all references, tagging, the stored config, the history, and the
//! OCI manifest an image is saved with.

use std::collections::BTreeMap;
use std::fs;

use serde::Serialize;

use super::manifest::{OCI_CONFIG, OCI_MANIFEST};
use super::{digest_hex, ImageRecord, ImageStore, Reference, LAYER_MEDIA_TYPE};
use crate::error::{Context, Error, Result};

/// One line of `image history`, bottom first (like the config's `history`).
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub created: Option<String>,
    pub created_by: Option<String>,
    pub comment: Option<String>,
    /// The layer this step made (`sha256:` diff_id), or None for an empty layer.
    pub layer: Option<String>,
}

impl ImageStore {
    /// Every reference, `NAME:TAG` -> image id.
    pub fn references(&self) -> Result<BTreeMap<String, String>> {
        Ok(self.read_index()?.references)
    }

    /// Makes `target` (`NAME[:TAG]`) name the image `source` names (a reference or an id
    /// prefix). An image `target` named before keeps its other names or becomes dangling.
    pub fn tag(&self, source: &str, target: &str) -> Result<ImageRecord> {
        let target = Reference::parse(target)?;
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let (id, _) = self.resolve(&index, source)?;
        let previous = index.references.insert(target.to_string(), id.clone());
        self.write_index(&index)?;
        if let Some(prev) = previous.filter(|p| *p != id) {
            self.refresh_names(&index, &prev)?;
        }
        self.refresh_names(&index, &id)?;
        self.load_record(&id, &index)
    }

    /// The image's OCI config blob, as JSON.
    pub fn config_json(&self, image: &ImageRecord) -> Result<serde_json::Value> {
        let path = self.blob_path_hex(&image.id);
        let data = fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&data).map_err(|e| Error::Corrupt {
            path,
            reason: e.to_string(),
        })
    }

    /// The config's history, each non-empty step paired with its layer.
    pub fn history(&self, image: &ImageRecord) -> Result<Vec<HistoryEntry>> {
        let config = self.config_json(image)?;
        let steps = config["history"].as_array().cloned().unwrap_or_default();
        let mut layers = image.layers.iter();
        let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
        let mut out: Vec<HistoryEntry> = steps
            .iter()
            .map(|h| HistoryEntry {
                created: s(&h["created"]),
                created_by: s(&h["created_by"]),
                comment: s(&h["comment"]),
                layer: if h["empty_layer"].as_bool() == Some(true) {
                    None
                } else {
                    layers.next().cloned()
                },
            })
            .collect();
        // Layers the history does not mention (it is optional) still show.
        out.extend(layers.map(|l| HistoryEntry {
            created: None,
            created_by: None,
            comment: None,
            layer: Some(l.clone()),
        }));
        Ok(out)
    }

    /// The manifest an image is saved with: the stored one, or (an import) one made
    /// from its config and canonical layer tars. (bytes, hex).
    pub fn manifest_bytes(&self, image: &ImageRecord) -> Result<(Vec<u8>, String)> {
        if let Some(hex) = image.manifest.as_deref().and_then(digest_hex) {
            let path = self.blob_path_hex(hex);
            let data = fs::read(&path).ctx(|| format!("reading {}", path.display()))?;
            return Ok((data, hex.to_string()));
        }
        let config_size = fs::metadata(self.blob_path_hex(&image.id))
            .ctx(|| format!("reading the config of {}", image.short_id()))?
            .len();
        let mut layers = Vec::new();
        for diff_id in &image.layers {
            let l = self.layer(diff_id)?;
            layers.push(serde_json::json!({
                "mediaType": if l.media_type.is_empty() { LAYER_MEDIA_TYPE } else { &l.media_type },
                "digest": l.blob,
                "size": l.size,
            }));
        }
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": format!("sha256:{}", image.id), "size": config_size},
            "layers": layers,
        });
        let data = serde_json::to_vec(&m).map_err(|e| Error::Io {
            context: "serializing a manifest".into(),
            cause: e.into(),
        })?;
        let hex = super::fsutil::sha256_hex(&data);
        Ok((data, hex))
    }
}
