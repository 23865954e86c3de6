//! `commit` (and each step of `build`): a new image made of a parent image's layers, at
//! most one new layer on top, and the parent's config with changes.
//!
//! The new image is written as an OCI image layout in a work dir (the parent's layer
//! blobs hard-linked from the store, the new layer tar, a new config and manifest) and
//! brought in by the same code as `image load`: every digest and the new layer's diff_id
//! are checked, the layer is unpacked from its tar (so the stored layer is exactly what
//! the tar says, never the container's files themselves), and everything is committed
//! under the store lock at once. A commit that fails or is killed leaves nothing but a
//! work dir that the next store operation collects.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::fsutil::{sha256_hex, WorkDir};
use super::layer::{self, UpperOptions};
use super::load::LoadOptions;
use super::manifest::{OCI_CONFIG, OCI_MANIFEST};
use super::{
    digest_hex, new_file, write_new, ImageRecord, ImageStore, Reference, LAYER_MEDIA_TYPE,
};
use crate::error::{Context, Error, Result};

/// A new layer packed into a commit's work dir, not yet in the store.
pub struct StagedLayer {
    work: WorkDir,
    hex: String,
    size: u64,
}

impl StagedLayer {
    /// `sha256:<hex>` of the layer tar (its diff_id).
    pub fn diff_id(&self) -> String {
        format!("sha256:{}", self.hex)
    }

    /// The tar's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// The history entry and names of a new image.
#[derive(Debug, Clone, Default)]
pub struct CommitSpec {
    /// `NAME[:TAG]` to name the image; `None`: untagged (dangling).
    pub reference: Option<String>,
    /// The history entry's `created_by` (the command or instruction that made it).
    pub created_by: String,
    /// The history entry's `comment` (`commit -m`).
    pub comment: Option<String>,
    /// The image config's and history entry's `author`.
    pub author: Option<String>,
}

const LAYOUT_BLOBS: &str = "layout/blobs/sha256";

impl ImageStore {
    /// Packs a container's overlay upper dir into a new layer in a work dir of its own.
    pub(crate) fn stage_upper(&self, upper: &Path, opts: &UpperOptions) -> Result<StagedLayer> {
        let work = WorkDir::create(&self.tmp_dir(), "commit-")?;
        let blobs = work.path().join(LAYOUT_BLOBS);
        fs::create_dir_all(&blobs).ctx(|| format!("creating {}", blobs.display()))?;
        let tmp = blobs.join("layer.tmp");
        let (hex, size) = layer::pack_upper(upper, opts, new_file(&tmp)?)?;
        let dest = blobs.join(&hex);
        fs::rename(&tmp, &dest).ctx(|| format!("naming {}", dest.display()))?;
        Ok(StagedLayer { work, hex, size })
    }

    /// Makes and stores the image: `parent`'s layers (none for `scratch`), then `layer`
    /// if there is one, with `parent`'s config changed by `edit` (which gets the config's
    /// `config` object). Returns the new image's record.
    pub fn commit_image(
        &self,
        parent: Option<&ImageRecord>,
        layer: Option<StagedLayer>,
        spec: &CommitSpec,
        edit: impl FnOnce(&mut Value) -> Result<()>,
    ) -> Result<ImageRecord> {
        let reference = spec
            .reference
            .as_deref()
            .map(Reference::parse)
            .transpose()?;
        let (work, new_layer) = match layer {
            Some(l) => (l.work, Some((l.hex, l.size))),
            None => (WorkDir::create(&self.tmp_dir(), "commit-")?, None),
        };
        let layout = work.path().join("layout");
        let blobs = work.path().join(LAYOUT_BLOBS);
        fs::create_dir_all(&blobs).ctx(|| format!("creating {}", blobs.display()))?;

        let mut doc = match parent {
            Some(p) => self.config_json(p)?,
            None => scratch_config(),
        };
        let created = codex_runtime::state::now_rfc3339();
        doc["created"] = json!(created);
        if let Some(a) = &spec.author {
            doc["author"] = json!(a);
        }
        if !doc["config"].is_object() {
            doc["config"] = json!({});
        }
        edit(&mut doc["config"])?;
        let mut descriptors = Vec::new();
        for diff_id in parent.map(|p| p.layers.as_slice()).unwrap_or_default() {
            descriptors.push(self.link_parent_layer(diff_id, &blobs)?);
        }
        if let Some((hex, size)) = &new_layer {
            push_array(
                &mut doc["rootfs"]["diff_ids"],
                json!(format!("sha256:{hex}")),
            );
            descriptors.push(json!({
                "mediaType": LAYER_MEDIA_TYPE,
                "digest": format!("sha256:{hex}"),
                "size": size,
            }));
        }
        let mut history = json!({"created": created, "created_by": spec.created_by});
        if let Some(a) = &spec.author {
            history["author"] = json!(a);
        }
        if let Some(c) = &spec.comment {
            history["comment"] = json!(c);
        }
        if new_layer.is_none() {
            history["empty_layer"] = json!(true);
        }
        push_array(&mut doc["history"], history);

        let config = to_bytes(&doc)?;
        let config_hex = sha256_hex(&config);
        write_blob(&blobs, &config_hex, &config)?;
        let manifest = to_bytes(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": format!("sha256:{config_hex}"), "size": config.len()},
            "layers": descriptors,
        }))?;
        let manifest_hex = sha256_hex(&manifest);
        write_blob(&blobs, &manifest_hex, &manifest)?;
        let mut entry = json!({
            "mediaType": OCI_MANIFEST,
            "digest": format!("sha256:{manifest_hex}"),
            "size": manifest.len(),
        });
        if let Some(r) = &reference {
            entry["annotations"] = json!({"io.containerd.image.name": r.to_string()});
        }
        let index = json!({"schemaVersion": 2, "manifests": [entry]});
        write_new(&layout.join("index.json"), &to_bytes(&index)?)?;
        write_new(
            &layout.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        let loaded = self.load_dir(&work, &layout, &LoadOptions::default())?;
        let id = loaded
            .first()
            .map(|l| l.id.clone())
            .ok_or_else(|| Error::invalid("commit", "nothing was stored"))?;
        self.get(&id)
    }

    /// Hard-links a parent layer's blob into the layout; its manifest descriptor.
    fn link_parent_layer(&self, diff_id: &str, blobs: &Path) -> Result<Value> {
        let rec = self.layer(diff_id)?;
        let hex = digest_hex(&rec.blob).ok_or_else(|| Error::Corrupt {
            path: PathBuf::from(diff_id),
            reason: format!("layer blob {:?} is not a sha256 digest", rec.blob),
        })?;
        let from = self.blob_path_hex(hex);
        let to = blobs.join(hex);
        if !to.exists() {
            fs::hard_link(&from, &to)
                .ctx(|| format!("linking {} into a commit", from.display()))?;
        }
        Ok(json!({"mediaType": rec.media_type, "digest": rec.blob, "size": rec.size}))
    }
}

fn scratch_config() -> Value {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    json!({
        "architecture": arch,
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    })
}

fn push_array(v: &mut Value, item: Value) {
    if !v.is_array() {
        *v = json!([]);
    }
    if let Value::Array(a) = v {
        a.push(item);
    }
}

fn to_bytes(v: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Io {
        context: "serializing".into(),
        cause: e.into(),
    })
}

fn write_blob(blobs: &Path, hex: &str, data: &[u8]) -> Result<()> {
    let path = blobs.join(hex);
    if path.exists() {
        return Ok(());
    }
    write_new(&path, data)
}
