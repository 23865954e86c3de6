//! Reading what an archive holds: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/<alg>/<hex>`) or a docker archive (`manifest.json` naming config and layer
//! files), turned into [`Plan`]s: one per image, each blob with the digest it must have.
//! Every file is opened inside the archive's root (`openat2` with `RESOLVE_IN_ROOT`), so
//! a symlink in an archive cannot make the load read a host file.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration};
use serde::Deserialize;

use crate::error::{Context, Error, Result};
use crate::image::manifest::{self, descriptor_hex, Parsed, Platform};
use crate::image::verify::{read_small, Expect};
use crate::image::Reference;

/// One layer to bring in: where its blob is in the source, and what it must be.
#[derive(Debug, Clone)]
pub(crate) struct LayerSrc {
    pub rel: PathBuf,
    /// The descriptor's digest hex and size (OCI); None for a docker archive's layer
    /// files, which are checked by their diff_id alone.
    pub blob_hex: Option<String>,
    pub size: Option<u64>,
    /// The descriptor's media type (OCI).
    pub media_type: Option<String>,
}

/// One image to load.
#[derive(Debug)]
pub(crate) struct Plan {
    pub names: Vec<Reference>,
    /// The manifest's bytes, verified (OCI); None for a docker archive.
    pub manifest: Option<Vec<u8>>,
    pub config_bytes: Vec<u8>,
    pub config: ImageConfiguration,
    pub layers: Vec<LayerSrc>,
}

/// The root of an unpacked archive or a layout directory.
pub(crate) struct Source {
    root: OwnedFd,
    shown: PathBuf,
}

impl Source {
    pub(crate) fn open(dir: &Path) -> Result<Source> {
        let root = File::open(dir)
            .map(OwnedFd::from)
            .ctx(|| format!("opening {}", dir.display()))?;
        Ok(Source {
            root,
            shown: dir.to_path_buf(),
        })
    }

    /// Opens a regular file by its path inside the archive.
    pub(crate) fn file(&self, rel: &Path) -> Result<File> {
        let fd = crate::copy::in_root(
            std::os::fd::AsFd::as_fd(&self.root),
            rel,
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOENT) {
                Error::invalid(
                    "source",
                    format!(
                        "{}: {} is missing from the archive",
                        self.shown.display(),
                        rel.display()
                    ),
                )
            } else {
                Error::Io {
                    context: format!("opening {} in {}", rel.display(), self.shown.display()),
                    cause: e,
                }
            }
        })?;
        let file = File::from(fd);
        let md = file
            .metadata()
            .ctx(|| format!("reading {}", rel.display()))?;
        if !md.is_file() {
            return Err(Error::invalid(
                "source",
                format!(
                    "{}: {} is not a regular file",
                    self.shown.display(),
                    rel.display()
                ),
            ));
        }
        Ok(file)
    }

    pub(crate) fn has(&self, rel: &str) -> bool {
        self.file(Path::new(rel)).is_ok()
    }

    fn small(&self, rel: &Path, expect: Option<Expect<'_>>, what: &str) -> Result<Vec<u8>> {
        read_small(&mut self.file(rel)?, expect, what)
    }
}

/// The path of a blob in an OCI layout.
fn blob_rel(d: &Descriptor, what: &str) -> Result<(PathBuf, String)> {
    let hex = descriptor_hex(d, what)?;
    Ok((PathBuf::from("blobs/sha256").join(hex), hex.to_string()))
}

/// The images of an OCI layout, one per entry of its `index.json` (an index entry picks
/// its platform's manifest).
pub(crate) fn oci_plans(src: &Source, want: &Platform) -> Result<Vec<Plan>> {
    let layout = src.small(Path::new("oci-layout"), None, "oci-layout")?;
    let v: serde_json::Value = serde_json::from_slice(&layout)
        .map_err(|e| Error::invalid("source", format!("oci-layout: not JSON: {e}")))?;
    if v.get("imageLayoutVersion").and_then(|s| s.as_str()) != Some("1.0.0") {
        return Err(Error::invalid(
            "source",
            format!(
                "oci-layout: imageLayoutVersion {:?} is not 1.0.0",
                v.get("imageLayoutVersion")
            ),
        ));
    }
    let top = src.small(Path::new("index.json"), None, "index.json")?;
    let Parsed::Index(index) = manifest::parse(&top, Some(manifest::OCI_INDEX), "index.json")?
    else {
        return Err(Error::invalid(
            "manifest",
            "index.json: is a manifest, not an index",
        ));
    };
    let mut plans: Vec<Plan> = Vec::new();
    for (i, d) in index.manifests().iter().enumerate() {
        let what = format!("index.json manifests[{i}]");
        let names = names_of(d);
        let (bytes, m) = resolve(src, d, want, &what, 0)?;
        if let Some(p) = plans
            .iter_mut()
            .find(|p| p.manifest.as_deref() == Some(&bytes[..]))
        {
            p.names.extend(names);
            continue;
        }
        let (crel, chex) = blob_rel(m.config(), &format!("{what} config"))?;
        let config_bytes = src.small(
            &crel,
            Some(Expect {
                hex: &chex,
                size: Some(m.config().size()),
            }),
            &format!("config sha256:{chex}"),
        )?;
        let config = manifest::parse_config(
            &config_bytes,
            m.layers().len(),
            &format!("config sha256:{chex}"),
        )?;
        let mut layers = Vec::new();
        for (j, l) in m.layers().iter().enumerate() {
            let (rel, hex) = blob_rel(l, &format!("{what} layers[{j}]"))?;
            layers.push(LayerSrc {
                rel,
                blob_hex: Some(hex),
                size: Some(l.size()),
                media_type: Some(l.media_type().to_string()),
            });
        }
        plans.push(Plan {
            names,
            manifest: Some(bytes),
            config_bytes,
            config,
            layers,
        });
    }
    if plans.is_empty() {
        return Err(Error::invalid("source", "index.json lists no images"));
    }
    Ok(plans)
}

/// Follows a descriptor to an image manifest: (its bytes, parsed).
fn resolve(
    src: &Source,
    d: &Descriptor,
    want: &Platform,
    what: &str,
    depth: u32,
) -> Result<(Vec<u8>, Box<oci_spec::image::ImageManifest>)> {
    if depth > 4 {
        return Err(Error::invalid(
            "manifest",
            format!("{what}: indexes nested too deep"),
        ));
    }
    let (rel, hex) = blob_rel(d, what)?;
    let media = d.media_type().to_string();
    let bytes = src.small(
        &rel,
        Some(Expect {
            hex: &hex,
            size: Some(d.size()),
        }),
        &format!("{what} (sha256:{hex})"),
    )?;
    match manifest::parse(&bytes, Some(&media), &format!("manifest sha256:{hex}"))? {
        Parsed::Manifest(m) => Ok((bytes, m)),
        Parsed::Index(index) => {
            let next = manifest::pick(&index, want, &format!("index sha256:{hex}"))?;
            resolve(src, next, want, what, depth + 1)
        }
    }
}

/// A descriptor's image name: containerd's full-name annotation, or an OCI ref.name
/// that is a whole reference. A bare tag (skopeo's `oci:DIR:TAG`) names no repository.
fn names_of(d: &Descriptor) -> Vec<Reference> {
    let Some(a) = d.annotations() else {
        return Vec::new();
    };
    let full = a.get("io.containerd.image.name").or_else(|| {
        a.get("org.opencontainers.image.ref.name")
            .filter(|n| n.contains(':') || n.contains('/'))
    });
    full.and_then(|n| Reference::parse(n.strip_prefix("docker.io/library/").unwrap_or(n)).ok())
        .into_iter()
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The images of a docker archive (`docker save`, `podman save`, skopeo's
/// `docker-archive:`).
pub(crate) fn docker_plans(src: &Source) -> Result<Vec<Plan>> {
    let text = src.small(Path::new("manifest.json"), None, "manifest.json")?;
    let entries: Vec<DockerEntry> = serde_json::from_slice(&text)
        .map_err(|e| Error::invalid("manifest", format!("manifest.json: {e}")))?;
    if entries.is_empty() {
        return Err(Error::invalid("manifest", "manifest.json lists no images"));
    }
    let mut plans = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        let what = format!("manifest.json[{i}]");
        let config_bytes = src.small(
            Path::new(&e.config),
            None,
            &format!("{what} config {}", e.config),
        )?;
        let config =
            manifest::parse_config(&config_bytes, e.layers.len(), &format!("{what} config"))?;
        let mut names = Vec::new();
        for t in e.repo_tags.unwrap_or_default() {
            let t = t.strip_prefix("docker.io/library/").unwrap_or(&t);
            names
                .push(Reference::parse(t).map_err(|err| {
                    Error::invalid("manifest", format!("{what} RepoTags: {err}"))
                })?);
        }
        let layers = e
            .layers
            .iter()
            .map(|l| LayerSrc {
                rel: PathBuf::from(l),
                blob_hex: None,
                size: None,
                media_type: None,
            })
            .collect();
        plans.push(Plan {
            names,
            manifest: None,
            config_bytes,
            config,
            layers,
        });
    }
    Ok(plans)
}
