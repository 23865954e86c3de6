//! `image import`: a root filesystem (directory or tar) as a one-layer image.

use std::fs;
use std::io;
use std::path::Path;

use super::fsutil::{sha256_hex, sync_dir, write_atomic, WorkDir};
use super::{
    layer, new_file, to_json, write_new, ImageConfig, ImageRecord, ImageStore, LayerRecord,
    Reference, LAYER_MEDIA_TYPE, STORE_VERSION,
};
use crate::error::{Context, Error, Result};

impl ImageStore {
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
            manifest: None,
            platform: super::Platform::host().to_string(),
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

    pub(super) fn unpack_blob(&self, blob: &Path, dest: &Path) -> Result<()> {
        let file = fs::File::open(blob).ctx(|| format!("opening {}", blob.display()))?;
        layer::unpack(io::BufReader::with_capacity(1 << 16, file), dest, blob).map(|_| ())
    }

    /// Moves an unpacked layer into `layers/<hex>` unless it is there already. Called
    /// under the lock; if the layer was skipped as present but collected since, it is
    /// unpacked now from its tar.
    pub(super) fn commit_layer(
        &self,
        hex: &str,
        layer_tmp: &Path,
        unpacked: bool,
        blob: &Path,
    ) -> Result<()> {
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

    pub(super) fn commit_blob(&self, hex: &str, tmp: &Path) -> Result<()> {
        let dest = self.blob_path_hex(hex);
        if dest.exists() {
            return Ok(());
        }
        fs::rename(tmp, &dest).ctx(|| format!("moving blob into {}", dest.display()))?;
        sync_dir(&self.dir.join("blobs/sha256"))
    }
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
