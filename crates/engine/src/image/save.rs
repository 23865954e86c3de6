//! `image save`: images as an OCI image layout tar (the blobs as stored, so a loaded
//! image saves with the digests it came with) or a docker archive (`docker load`'s
//! format: config JSON and uncompressed `layer.tar`s named by `manifest.json`).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use tar::{EntryType, Header};

use super::fsutil::WorkDir;
use super::manifest::OCI_MANIFEST;
use super::verify::Hashing;
use super::{digest_hex, layer, new_file, ImageRecord, ImageStore, Reference};
use crate::error::{Context, Error, Result};

/// The archive `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// An OCI image layout in a tar (`oci-archive:` for skopeo and podman).
    OciArchive,
    /// `docker save`'s format (`docker-archive:`).
    DockerArchive,
}

impl std::str::FromStr for SaveFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "oci-archive" | "oci" => Ok(SaveFormat::OciArchive),
            "docker-archive" | "docker" => Ok(SaveFormat::DockerArchive),
            _ => Err(Error::invalid(
                "format",
                format!("{s:?}: expected oci-archive or docker-archive"),
            )),
        }
    }
}

impl ImageStore {
    /// Writes the images `refs` name (references or id prefixes) to `dest`: a temp file
    /// beside it, renamed into place when complete (a failed save leaves no file).
    pub fn save(&self, refs: &[String], format: SaveFormat, dest: &Path) -> Result<()> {
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.codex-save-{}", std::process::id()));
        let result = (|| {
            let mut f = new_file(&tmp)?;
            self.save_to(refs, format, &mut f)?;
            f.sync_all().ctx(|| format!("writing {}", tmp.display()))?;
            fs::rename(&tmp, dest).ctx(|| format!("moving the archive to {}", dest.display()))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Writes the archive to `out` (`save -o -`).
    pub fn save_to(&self, refs: &[String], format: SaveFormat, out: &mut dyn Write) -> Result<()> {
        if refs.is_empty() {
            return Err(Error::invalid(
                "reference",
                "name at least one image to save",
            ));
        }
        let index = self.read_index()?;
        let mut images: Vec<(ImageRecord, Option<Reference>)> = Vec::new();
        for r in refs {
            let (id, by_ref) = self.resolve(&index, r)?;
            let rec = self.load_record(&id, &index)?;
            let named = by_ref.and_then(|k| Reference::parse(&k).ok());
            images.push((rec, named));
        }
        let mut b = tar::Builder::new(out);
        match format {
            SaveFormat::OciArchive => self.write_oci(&mut b, &images)?,
            SaveFormat::DockerArchive => self.write_docker(&mut b, &images)?,
        }
        b.into_inner()
            .and_then(|w| w.flush())
            .ctx(|| "finishing the archive".to_string())
    }

    fn write_oci(
        &self,
        b: &mut tar::Builder<&mut dyn Write>,
        images: &[(ImageRecord, Option<Reference>)],
    ) -> Result<()> {
        put_dir(b, "blobs/")?;
        put_dir(b, "blobs/sha256/")?;
        let mut written = HashSet::new();
        let mut manifests = Vec::new();
        for (rec, named) in images {
            let (bytes, hex) = self.manifest_bytes(rec)?;
            let m: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                    path: self.blob_path_hex(&hex),
                    reason: e.to_string(),
                })?;
            let mut blobs = vec![m["config"]["digest"].clone()];
            blobs.extend(
                m["layers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|l| l["digest"].clone()),
            );
            for d in blobs {
                let h = d
                    .as_str()
                    .and_then(digest_hex)
                    .ok_or_else(|| Error::Corrupt {
                        path: self.blob_path_hex(&hex),
                        reason: format!("manifest names a bad digest {d}"),
                    })?;
                if written.insert(h.to_string()) {
                    let path = self.blob_path_hex(h);
                    let f = File::open(&path).ctx(|| format!("opening {}", path.display()))?;
                    let size = f
                        .metadata()
                        .ctx(|| format!("reading {}", path.display()))?
                        .len();
                    put(b, &format!("blobs/sha256/{h}"), size, f)?;
                }
            }
            if written.insert(hex.clone()) {
                put(
                    b,
                    &format!("blobs/sha256/{hex}"),
                    bytes.len() as u64,
                    &bytes[..],
                )?;
            }
            let media = m["mediaType"].as_str().unwrap_or(OCI_MANIFEST).to_string();
            let mut d = serde_json::json!({"mediaType": media, "digest": format!("sha256:{hex}"), "size": bytes.len()});
            if let Some(r) = named {
                d["annotations"] = serde_json::json!({
                    "org.opencontainers.image.ref.name": r.to_string(),
                    "io.containerd.image.name": r.to_string(),
                });
            }
            manifests.push(d);
        }
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": super::manifest::OCI_INDEX, "manifests": manifests});
        put_json(b, "index.json", &index)?;
        put_json(
            b,
            "oci-layout",
            &serde_json::json!({"imageLayoutVersion": "1.0.0"}),
        )
    }

    fn write_docker(
        &self,
        b: &mut tar::Builder<&mut dyn Write>,
        images: &[(ImageRecord, Option<Reference>)],
    ) -> Result<()> {
        let work = WorkDir::create(&self.tmp_dir(), "save-")?;
        let mut written = HashSet::new();
        let mut entries: Vec<serde_json::Value> = Vec::new();
        for (rec, named) in images {
            let config = format!("{}.json", rec.id);
            if written.insert(config.clone()) {
                let path = self.blob_path_hex(&rec.id);
                let f = File::open(&path).ctx(|| format!("opening {}", path.display()))?;
                let size = f
                    .metadata()
                    .ctx(|| format!("reading {}", path.display()))?
                    .len();
                put(b, &config, size, f)?;
            }
            let mut layers = Vec::new();
            for diff_id in &rec.layers {
                let hex = digest_hex(diff_id).unwrap_or_default().to_string();
                let name = format!("{hex}/layer.tar");
                if written.insert(name.clone()) {
                    put_dir(b, &format!("{hex}/"))?;
                    let tar = self.uncompressed_layer(diff_id, &hex, work.path())?;
                    let f = File::open(&tar).ctx(|| format!("opening {}", tar.display()))?;
                    let size = f
                        .metadata()
                        .ctx(|| format!("reading {}", tar.display()))?
                        .len();
                    put(b, &name, size, f)?;
                    let _ = fs::remove_file(&tar);
                }
                layers.push(name);
            }
            let tags: Vec<String> = named.iter().map(|r| r.to_string()).collect();
            // One entry per image, with every name asked for (docker save's shape).
            match entries.iter_mut().find(|e| e["Config"] == config.as_str()) {
                Some(e) => {
                    if let Some(t) = e["RepoTags"].as_array_mut() {
                        t.extend(tags.into_iter().map(serde_json::Value::from));
                    }
                }
                None => entries.push(
                    serde_json::json!({"Config": config, "RepoTags": tags, "Layers": layers}),
                ),
            }
        }
        put_json(b, "manifest.json", &serde_json::Value::Array(entries))
    }

    /// The layer as an uncompressed tar file in `work`, checked against its diff_id.
    fn uncompressed_layer(
        &self,
        diff_id: &str,
        hex: &str,
        work: &Path,
    ) -> Result<std::path::PathBuf> {
        let l = self.layer(diff_id)?;
        let blob = self.blob_path(&l.blob)?;
        let (reader, _) = layer::open_archive(&blob)?;
        let out_path = work.join(hex);
        let mut out = new_file(&out_path)?;
        let mut h = Hashing::new(reader, u64::MAX, format!("layer {diff_id}"));
        io::copy(&mut h, &mut out).ctx(|| format!("decompressing layer {diff_id}"))?;
        let (got, _) = h
            .finish()
            .ctx(|| format!("decompressing layer {diff_id}"))?;
        if got != hex {
            return Err(Error::Corrupt {
                path: blob,
                reason: format!("layer {diff_id} decompresses to sha256:{got}"),
            });
        }
        Ok(out_path)
    }
}

fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h
}

fn put(b: &mut tar::Builder<&mut dyn Write>, path: &str, size: u64, data: impl Read) -> Result<()> {
    let mut h = header(EntryType::Regular, 0o644, size);
    let data = super::layer::ExactReader {
        inner: data.take(size),
        remaining: size,
    };
    b.append_data(&mut h, path, data)
        .ctx(|| format!("writing {path} into the archive"))
}

fn put_dir(b: &mut tar::Builder<&mut dyn Write>, path: &str) -> Result<()> {
    let mut h = header(EntryType::Directory, 0o755, 0);
    b.append_data(&mut h, path, io::empty())
        .ctx(|| format!("writing {path} into the archive"))
}

fn put_json(b: &mut tar::Builder<&mut dyn Write>, path: &str, v: &serde_json::Value) -> Result<()> {
    let data = serde_json::to_vec(v).map_err(|e| Error::Io {
        context: format!("serializing {path}"),
        cause: e.into(),
    })?;
    put(b, path, data.len() as u64, &data[..])
}
