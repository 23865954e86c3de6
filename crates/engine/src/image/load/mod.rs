//! `image load`: the images of an OCI layout (directory or tar) or a docker archive
//! (`docker save`), plain or gzip/zstd-compressed, into the store.
//!
//! Everything is brought into a work dir first: the archive unpacked (bounded, no entry
//! outside it), each blob copied and checked against its digest, each layer the store
//! does not have yet unpacked and checked against its diff_id. Only then, under the store
//! lock, is it renamed into place: layers, blobs, the image record, the index. A refused
//! or interrupted load leaves nothing (a stale work dir at most, collected later).

mod source;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::fsutil::{sha256_hex, write_atomic, WorkDir};
use super::manifest::{self, Platform};
use super::verify::{self, Expect, DEFAULT_MAX_UNPACKED};
use super::{
    layer, runconfig, to_json, write_new, ImageRecord, ImageStore, LayerRecord, STORE_VERSION,
};
use crate::error::{Context, Error, Result};
use crate::trace;
use source::{Plan, Source};

/// How `load` (and `pull`) treat their input.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The platform to pick from an index; `None`: the host's, and a single-image input
    /// of another platform is loaded as it is (like `docker load`). Given explicitly, an
    /// image of another platform is refused.
    pub platform: Option<Platform>,
    /// The most one layer, or the load's archive, may unpack to (bytes).
    pub max_unpacked: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            platform: None,
            max_unpacked: DEFAULT_MAX_UNPACKED,
        }
    }
}

/// One image a load brought in.
#[derive(Debug, Clone, Serialize)]
pub struct Loaded {
    /// The image id (sha256 hex of its config).
    pub id: String,
    /// `NAME:TAG` references now naming it (none: loaded untagged).
    pub references: Vec<String>,
}

/// A layer made ready in the work dir.
struct Staged {
    diff_hex: String,
    blob_hex: String,
    blob_size: u64,
    media_type: String,
    /// The blob's copy in the work dir (None: the store already has it).
    blob_tmp: Option<PathBuf>,
    /// The unpacked layer in the work dir (None: the store already has it).
    layer_tmp: Option<PathBuf>,
}

impl ImageStore {
    /// Loads every image of `input`: an OCI layout directory, or a file holding an OCI
    /// layout tar or a docker archive (plain, gzip or zstd).
    pub fn load(&self, input: &Path, opts: &LoadOptions) -> Result<Vec<Loaded>> {
        let md = fs::metadata(input).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::invalid(
                    "input",
                    format!("{}: no such file or directory", input.display()),
                )
            } else {
                Error::Io {
                    context: format!("reading {}", input.display()),
                    cause: e,
                }
            }
        })?;
        let work = WorkDir::create(&self.tmp_dir(), "load-")?;
        if md.is_dir() {
            return self.load_dir(&work, input, opts);
        }
        let dir = work.path().join("input");
        fs::create_dir(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let (reader, _) = layer::open_archive(input)?;
        layer::unpack_limited(reader, &dir, input, opts.max_unpacked)?;
        self.load_dir(&work, &dir, opts)
    }

    /// [`ImageStore::load`] of an archive read from a stream (`load -i -`).
    pub fn load_stream(&self, mut input: impl Read, opts: &LoadOptions) -> Result<Vec<Loaded>> {
        let work = WorkDir::create(&self.tmp_dir(), "load-")?;
        let file = work.path().join("input.tar");
        let mut out = super::new_file(&file)?;
        let mut bounded = verify::Hashing::new(&mut input, opts.max_unpacked, "the input");
        io::copy(&mut bounded, &mut out).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                Error::invalid("input", e.to_string())
            } else {
                Error::Io {
                    context: "reading the input".into(),
                    cause: e,
                }
            }
        })?;
        drop(out);
        let dir = work.path().join("input");
        fs::create_dir(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let (reader, _) = layer::open_archive(&file)?;
        layer::unpack_limited(reader, &dir, Path::new("<stdin>"), opts.max_unpacked)?;
        fs::remove_file(&file).ctx(|| format!("removing {}", file.display()))?;
        self.load_dir(&work, &dir, opts)
    }

    pub(in crate::image) fn load_dir(
        &self,
        work: &WorkDir,
        dir: &Path,
        opts: &LoadOptions,
    ) -> Result<Vec<Loaded>> {
        let src = Source::open(dir)?;
        let host = Platform::host();
        let want = opts.platform.as_ref().unwrap_or(&host);
        let plans = if src.has("oci-layout") {
            source::oci_plans(&src, want)?
        } else if src.has("manifest.json") {
            source::docker_plans(&src)?
        } else {
            return Err(Error::invalid(
                "input",
                format!(
                    "{}: neither an OCI image layout (no oci-layout file) nor a docker archive \
                     (no manifest.json)",
                    dir.display()
                ),
            ));
        };
        // Check every image before bringing in any.
        for p in &plans {
            if let Some(w) = &opts.platform {
                let c = &p.config;
                let (os, arch) = (c.os().to_string(), c.architecture().to_string());
                if !w.matches(&os, &arch, c.variant().as_deref()) {
                    return Err(Error::invalid(
                        "platform",
                        format!("the image is for {}, not {w}", runconfig::platform_of(c)),
                    ));
                }
            }
        }
        let mut out = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            let stage = work.path().join(format!("image-{i}"));
            fs::create_dir(&stage).ctx(|| format!("creating {}", stage.display()))?;
            out.push(self.ingest(work.path(), &stage, &src, plan, opts)?);
        }
        Ok(out)
    }

    /// Brings one image's blobs and layers into `stage`, then commits it.
    fn ingest(
        &self,
        work: &Path,
        stage: &Path,
        src: &Source,
        plan: &Plan,
        opts: &LoadOptions,
    ) -> Result<Loaded> {
        let diff_ids = plan.config.rootfs().diff_ids();
        // The unpack locks of the layers the store lacks, in one order (no two loads
        // wait on each other), held until this load has committed them: a load that
        // waited finds them in the store below and reuses them.
        let mut missing: Vec<String> = diff_ids
            .iter()
            .filter_map(|d| manifest::sha256_hex_of(d))
            .filter(|h| !self.layer_path(h).join("layer.json").exists())
            .map(str::to_string)
            .collect();
        missing.sort();
        missing.dedup();
        let mut _unpack_locks = Vec::new();
        for hex in &missing {
            let l = self.lock_layer(hex)?;
            if l.waited {
                trace::phase(&format!("image: waited for layer sha256:{hex}"));
            }
            _unpack_locks.push(l);
        }
        let mut staged = Vec::new();
        for (i, (l, diff_id)) in plan.layers.iter().zip(diff_ids).enumerate() {
            let diff_hex = manifest::sha256_hex_of(diff_id)
                .unwrap_or_default()
                .to_string();
            let what = format!("layer {} ({diff_id})", l.rel.display());
            let have_layer = self.layer_path(&diff_hex).join("layer.json").exists();
            let known = l
                .blob_hex
                .as_deref()
                .filter(|h| self.blob_path_hex(h).exists());
            let (blob_hex, blob_size, blob_tmp) = match (known, have_layer) {
                (Some(h), true) => (h.to_string(), l.size.unwrap_or(0), None),
                _ => {
                    let tmp = stage.join(format!("blob-{i}"));
                    let expect = l
                        .blob_hex
                        .as_deref()
                        .map(|hex| Expect { hex, size: l.size });
                    let (h, n) =
                        verify::copy_blob(&mut src.file(&l.rel)?, &tmp, expect, u64::MAX, &what)?;
                    (h, n, Some(tmp))
                }
            };
            let blob_for_unpack = blob_tmp
                .clone()
                .unwrap_or_else(|| self.blob_path_hex(&blob_hex));
            let mut media_type = l.media_type.clone();
            let layer_tmp = if have_layer {
                if missing.contains(&diff_hex) {
                    trace::phase(&format!(
                        "image: reused layer sha256:{diff_hex} another load unpacked"
                    ));
                }
                None
            } else {
                let dir = stage.join(format!("layer-{i}"));
                let rootfs = dir.join("rootfs");
                fs::create_dir_all(&rootfs).ctx(|| format!("creating {}", rootfs.display()))?;
                let (kind, _) = verify::unpack_layer(
                    &blob_for_unpack,
                    &diff_hex,
                    &rootfs,
                    opts.max_unpacked,
                    &what,
                )?;
                trace::phase(&format!("image: unpacked layer sha256:{diff_hex}"));
                match media_type.as_deref().and_then(manifest::layer_media_type) {
                    Some(declared) if declared != kind => {
                        return Err(Error::invalid(
                            "manifest",
                            format!("{what}: media type says {declared}, the blob is {kind}"),
                        ))
                    }
                    _ => {}
                }
                media_type.get_or_insert_with(|| manifest::oci_layer_media_type(kind).to_string());
                Some(dir)
            };
            let media_type = match media_type {
                Some(m) => m,
                None => manifest::oci_layer_media_type(verify::compression_of(&blob_for_unpack)?)
                    .to_string(),
            };
            if let Some(dir) = &layer_tmp {
                let rec = LayerRecord {
                    version: STORE_VERSION,
                    diff_id: diff_id.clone(),
                    blob: format!("sha256:{blob_hex}"),
                    size: blob_size,
                    media_type: media_type.clone(),
                };
                write_new(&dir.join("layer.json"), &to_json(&rec)?)?;
            }
            staged.push(Staged {
                diff_hex,
                blob_hex,
                blob_size,
                media_type,
                blob_tmp,
                layer_tmp,
            });
        }
        let id = sha256_hex(&plan.config_bytes);
        let manifest_bytes = match &plan.manifest {
            Some(m) => m.clone(),
            None => synth_manifest(&id, plan.config_bytes.len(), &staged)?,
        };
        let manifest_hex = sha256_hex(&manifest_bytes);
        let config_tmp = stage.join("config");
        write_new(&config_tmp, &plan.config_bytes)?;
        let manifest_tmp = stage.join("manifest");
        write_new(&manifest_tmp, &manifest_bytes)?;
        let first = plan.names.first();
        let created = plan
            .config
            .created()
            .clone()
            .unwrap_or_else(codex_runtime::state::now_rfc3339);
        let record = ImageRecord {
            version: STORE_VERSION,
            id: id.clone(),
            name: first.map(|r| r.name.clone()),
            tag: first.map(|r| r.tag.clone()),
            created,
            layers: diff_ids.clone(),
            size: staged.iter().map(|s| s.blob_size).sum(),
            config: runconfig::from_config(&plan.config, &plan.config_bytes),
            manifest: Some(format!("sha256:{manifest_hex}")),
            platform: runconfig::platform_of(&plan.config),
        };

        // Commit, under the lock: renames and small writes only (a layer collected since
        // it was seen is unpacked again from its blob, as import does).
        let _lock = self.lock()?;
        if self.recover()? {
            self.gc()?;
        }
        self.mark_commit(work, &id)?;
        for s in &staged {
            if let Some(b) = &s.blob_tmp {
                self.commit_blob(&s.blob_hex, b)?;
            }
        }
        for s in &staged {
            let blob = self.blob_path_hex(&s.blob_hex);
            match &s.layer_tmp {
                Some(dir) => self.commit_layer(&s.diff_hex, dir, true, &blob)?,
                None => {
                    let dir = stage.join(format!("relayer-{}", s.diff_hex));
                    self.commit_layer_from_blob(
                        &s.diff_hex,
                        &dir,
                        &blob,
                        &s.media_type,
                        s.blob_size,
                    )?
                }
            }
        }
        self.commit_blob(&id, &config_tmp)?;
        self.commit_blob(&manifest_hex, &manifest_tmp)?;
        write_atomic(&self.manifest_path(&id), &to_json(&record)?)?;
        let mut index = self.read_index()?;
        let mut previous = Vec::new();
        let mut references = Vec::new();
        for r in &plan.names {
            let key = r.to_string();
            if let Some(prev) = index.references.insert(key.clone(), id.clone()) {
                previous.push(prev);
            }
            references.push(key);
        }
        self.write_index(&index)?;
        for prev in previous.into_iter().filter(|p| *p != id) {
            self.refresh_names(&index, &prev)?;
        }
        self.refresh_names(&index, &id)?;
        // Done: a crash from here on must not undo this image (dangling ones included).
        self.mark_commit(work, "done")?;
        Ok(Loaded { id, references })
    }

    /// Under the lock: a layer that was in the store when the load looked, but has been
    /// collected since, is unpacked again from its blob (checked against its diff_id).
    fn commit_layer_from_blob(
        &self,
        diff_hex: &str,
        dir: &Path,
        blob: &Path,
        media_type: &str,
        size: u64,
    ) -> Result<()> {
        if self.layer_path(diff_hex).join("layer.json").exists() {
            return Ok(());
        }
        let rootfs = dir.join("rootfs");
        fs::create_dir_all(&rootfs).ctx(|| format!("creating {}", rootfs.display()))?;
        let what = format!("layer sha256:{diff_hex}");
        verify::unpack_layer(blob, diff_hex, &rootfs, u64::MAX, &what)?;
        trace::phase(&format!("image: unpacked layer sha256:{diff_hex}"));
        let rec = LayerRecord {
            version: STORE_VERSION,
            diff_id: format!("sha256:{diff_hex}"),
            blob: format!(
                "sha256:{}",
                blob.file_name().and_then(|n| n.to_str()).unwrap_or("")
            ),
            size,
            media_type: media_type.to_string(),
        };
        write_new(&dir.join("layer.json"), &to_json(&rec)?)?;
        self.commit_layer(diff_hex, dir, true, blob)
    }
}

/// The OCI manifest of a docker archive's image: its config and layer blobs as loaded.
fn synth_manifest(config_hex: &str, config_size: usize, layers: &[Staged]) -> Result<Vec<u8>> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|s| {
            serde_json::json!({
                "mediaType": s.media_type,
                "digest": format!("sha256:{}", s.blob_hex),
                "size": s.blob_size,
            })
        })
        .collect();
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": {
            "mediaType": manifest::OCI_CONFIG,
            "digest": format!("sha256:{config_hex}"),
            "size": config_size,
        },
        "layers": layers,
    });
    serde_json::to_vec(&m).map_err(|e| Error::Io {
        context: "serializing a manifest".into(),
        cause: e.into(),
    })
}
