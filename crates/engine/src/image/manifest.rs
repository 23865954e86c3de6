//! Manifests, indexes and platforms: what an image is made of, decided from JSON alone.
//!
//! Accepted: the OCI image manifest and index, Docker's schema 2 manifest and manifest
//! list (the same shapes under other media types). Docker's schema 1 (signed JSON with
//! `fsLayers`, no config blob) is refused by name: its layers have no diff_ids to verify.
//! Everything here is pure and unit-tested; reading blobs is the caller's job.

use std::fmt;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

use crate::error::{Error, Result};

/// Manifests, indexes and configs are small JSON documents: anything bigger is refused
/// before it is read into memory.
pub(crate) const JSON_MAX: u64 = 4 << 20;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// A manifest or an index, parsed.
#[derive(Debug)]
pub(crate) enum Parsed {
    Manifest(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

fn bad(what: &str, why: impl fmt::Display) -> Error {
    Error::invalid("manifest", format!("{what}: {why}"))
}

/// Parses a manifest or index. `declared` is the media type the referring descriptor gave
/// (if any); `what` names the document in errors.
pub(crate) fn parse(bytes: &[u8], declared: Option<&str>, what: &str) -> Result<Parsed> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(what, format!("not JSON: {e}")))?;
    let own = v.get("mediaType").and_then(|m| m.as_str());
    let schema = v.get("schemaVersion").and_then(|s| s.as_u64());
    let media = own.or(declared);
    if schema == Some(1) || media.is_some_and(|m| DOCKER_SCHEMA1.contains(&m)) {
        return Err(bad(
            what,
            "is a Docker schema 1 manifest (application/vnd.docker.distribution.manifest.v1+json), \
             which is not supported: its layers cannot be verified; convert it to schema 2 or OCI \
             (e.g. skopeo copy)",
        ));
    }
    if schema != Some(2) {
        return Err(bad(
            what,
            format!("schemaVersion is {schema:?}, expected 2"),
        ));
    }
    let is_index = match media {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => {
            return Err(bad(
                what,
                format!("media type {other:?} is not an image manifest or index"),
            ))
        }
        // The OCI spec makes mediaType optional: tell them apart by shape.
        None => v.get("manifests").is_some(),
    };
    if is_index {
        let index: ImageIndex =
            serde_json::from_value(v).map_err(|e| bad(what, format!("bad index: {e}")))?;
        Ok(Parsed::Index(Box::new(index)))
    } else {
        let m: ImageManifest =
            serde_json::from_value(v).map_err(|e| bad(what, format!("bad manifest: {e}")))?;
        check_manifest(&m, what)?;
        Ok(Parsed::Manifest(Box::new(m)))
    }
}

/// The config and layer media types a runnable image may have.
fn check_manifest(m: &ImageManifest, what: &str) -> Result<()> {
    let cfg = m.config().media_type().to_string();
    if cfg != OCI_CONFIG && cfg != DOCKER_CONFIG {
        return Err(bad(
            what,
            format!(
                "config media type {cfg:?} is not an image config (an artifact, not an image?)"
            ),
        ));
    }
    for (i, l) in m.layers().iter().enumerate() {
        let t = l.media_type().to_string();
        if layer_media_type(&t).is_none() {
            return Err(bad(
                what,
                format!("layers[{i}]: media type {t:?} is not a layer this engine can unpack"),
            ));
        }
    }
    Ok(())
}

/// The compression a layer media type names (None: not a layer type), so that a blob
/// whose bytes say otherwise is refused.
pub(crate) fn layer_media_type(t: &str) -> Option<&'static str> {
    match t {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some("tar"),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some("gzip"),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Some("zstd"),
        _ => None,
    }
}

/// The OCI media type of a layer blob of the given compression.
pub(crate) fn oci_layer_media_type(compression: &str) -> &'static str {
    match compression {
        "gzip" => "application/vnd.oci.image.layer.v1.tar+gzip",
        "zstd" => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => "application/vnd.oci.image.layer.v1.tar",
    }
}

/// Parses an image config and checks that it has one sha256 diff_id per layer.
pub(crate) fn parse_config(bytes: &[u8], layers: usize, what: &str) -> Result<ImageConfiguration> {
    let c: ImageConfiguration = serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid("config", format!("{what}: bad image config: {e}")))?;
    let diff_ids = c.rootfs().diff_ids();
    if diff_ids.len() != layers {
        return Err(Error::invalid(
            "config",
            format!(
                "{what}: rootfs.diff_ids has {} entries but the image has {layers} layers",
                diff_ids.len()
            ),
        ));
    }
    for (i, d) in diff_ids.iter().enumerate() {
        if sha256_hex_of(d).is_none() {
            return Err(Error::invalid(
                "config",
                format!("{what}: rootfs.diff_ids[{i}] {d:?} is not a sha256 digest"),
            ));
        }
    }
    Ok(c)
}

/// The hex of a `sha256:<64 hex>` digest.
pub(crate) fn sha256_hex_of(d: &str) -> Option<&str> {
    let hex = d.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hex)
}

/// The sha256 hex of a descriptor's digest; other algorithms are refused.
pub(crate) fn descriptor_hex<'a>(d: &'a Descriptor, what: &str) -> Result<&'a str> {
    let s: &str = d.digest().as_ref();
    sha256_hex_of(s).ok_or_else(|| {
        Error::invalid(
            "digest",
            format!("{what}: digest {s:?} is not sha256 (the only algorithm supported)"),
        )
    })
}

/// `OS/ARCH[/VARIANT]`, with Go's names (`linux/amd64`, `linux/arm/v7`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// Parses `OS/ARCH[/VARIANT]`.
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok) {
            return Err(Error::invalid(
                "platform",
                format!("{s:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm/v7"),
            ));
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }

    /// The host's platform, in Go's architecture names.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "arm" => "arm",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// Whether an image for (`os`, `arch`, `variant`) runs as this platform. A wanted
    /// variant must match (arm64's implied `v8` included); no wanted variant takes any.
    pub fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        if self.os != os || self.architecture != arch {
            return false;
        }
        match (&self.variant, variant) {
            (None, _) => true,
            (Some(w), Some(v)) => w == v,
            (Some(w), None) => arch == "arm64" && w == "v8",
        }
    }
}

/// Picks the manifest for `want` from an index: the first whose platform matches.
/// Entries without a platform are taken only when the index has exactly one entry
/// (attestations and other artifacts carry `unknown/unknown` and never match).
pub(crate) fn pick<'a>(
    index: &'a ImageIndex,
    want: &Platform,
    what: &str,
) -> Result<&'a Descriptor> {
    let manifests = index.manifests();
    if let [only] = manifests.as_slice() {
        if only.platform().is_none() {
            return Ok(only);
        }
    }
    let mut seen = Vec::new();
    for d in manifests {
        let Some(p) = d.platform() else { continue };
        let (os, arch) = (p.os().to_string(), p.architecture().to_string());
        if want.matches(&os, &arch, p.variant().as_deref()) {
            return Ok(d);
        }
        let mut s = format!("{os}/{arch}");
        if let Some(v) = p.variant() {
            s = format!("{s}/{v}");
        }
        seen.push(s);
    }
    Err(Error::invalid(
        "platform",
        format!(
            "{what}: no image for {want} (it has: {}); choose one with --platform",
            if seen.is_empty() {
                "no platform-tagged manifests".to_string()
            } else {
                seen.join(", ")
            }
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn manifest(media: &str, layer_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media}",
            "config":{{"mediaType":"{OCI_CONFIG}","digest":"sha256:{HEX}","size":2}},
            "layers":[{{"mediaType":"{layer_type}","digest":"sha256:{HEX}","size":3}}]}}"#
        )
    }

    fn index(entries: &[(&str, &str, Option<&str>)]) -> ImageIndex {
        let ms: Vec<String> = entries
            .iter()
            .enumerate()
            .map(|(i, (os, arch, var))| {
                let var = var
                    .map(|v| format!(r#","variant":"{v}""#))
                    .unwrap_or_default();
                format!(
                    r#"{{"mediaType":"{OCI_MANIFEST}","digest":"sha256:{}{i:02}","size":1,
                    "platform":{{"os":"{os}","architecture":"{arch}"{var}}}}}"#,
                    &HEX[..62]
                )
            })
            .collect();
        let text = format!(r#"{{"schemaVersion":2,"manifests":[{}]}}"#, ms.join(","));
        match parse(text.as_bytes(), None, "t").unwrap() {
            Parsed::Index(i) => *i,
            Parsed::Manifest(_) => panic!("index parsed as manifest"),
        }
    }

    #[test]
    fn manifests_of_both_families_parse() {
        for (m, l) in [
            (OCI_MANIFEST, "application/vnd.oci.image.layer.v1.tar+gzip"),
            (OCI_MANIFEST, "application/vnd.oci.image.layer.v1.tar+zstd"),
            (
                DOCKER_MANIFEST,
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            ),
        ] {
            assert!(matches!(
                parse(manifest(m, l).as_bytes(), None, "t").unwrap(),
                Parsed::Manifest(_)
            ));
        }
        let list = format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[]}}"#);
        assert!(matches!(
            parse(list.as_bytes(), None, "t").unwrap(),
            Parsed::Index(_)
        ));
    }

    #[test]
    fn schema1_and_strangers_are_refused_by_name() {
        let s1 = r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        let e = parse(s1.as_bytes(), None, "m").unwrap_err().to_string();
        assert!(e.contains("schema 1"), "{e}");
        let e = parse(b"{}", Some(DOCKER_SCHEMA1[1]), "m")
            .unwrap_err()
            .to_string();
        assert!(e.contains("schema 1"), "{e}");
        let e = parse(
            manifest(OCI_MANIFEST, "application/x-helm").as_bytes(),
            None,
            "m",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("layers[0]") && e.contains("x-helm"), "{e}");
        let e = parse(b"not json", None, "m").unwrap_err().to_string();
        assert!(e.starts_with("manifest: m: not JSON"), "{e}");
        let art = manifest("application/vnd.oci.artifact.manifest.v1+json", "x");
        assert!(parse(art.as_bytes(), None, "m").is_err());
    }

    #[test]
    fn platforms_parse_and_match() {
        let p = Platform::parse("linux/arm/v7").unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert!(p.matches("linux", "arm", Some("v7")));
        assert!(!p.matches("linux", "arm", Some("v6")));
        assert!(!p.matches("linux", "arm", None));
        let a = Platform::parse("linux/arm64/v8").unwrap();
        assert!(a.matches("linux", "arm64", None));
        let any = Platform::parse("linux/amd64").unwrap();
        assert!(any.matches("linux", "amd64", Some("v3")));
        assert!(!any.matches("windows", "amd64", None));
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/amd 64"] {
            let e = Platform::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("platform:"), "{bad}: {e}");
        }
        assert_eq!(Platform::host().os, "linux");
    }

    #[test]
    fn pick_takes_the_matching_platform() {
        let i = index(&[
            ("linux", "arm64", Some("v8")),
            ("linux", "amd64", None),
            ("linux", "arm", Some("v7")),
        ]);
        let want = |s| Platform::parse(s).unwrap();
        let hex = |d: &Descriptor| d.digest().to_string();
        assert!(hex(pick(&i, &want("linux/amd64"), "t").unwrap()).ends_with("01"));
        assert!(hex(pick(&i, &want("linux/arm/v7"), "t").unwrap()).ends_with("02"));
        assert!(hex(pick(&i, &want("linux/arm64"), "t").unwrap()).ends_with("00"));
        let e = pick(&i, &want("linux/s390x"), "t").unwrap_err().to_string();
        assert!(
            e.contains("linux/arm/v7") && e.contains("linux/s390x"),
            "{e}"
        );
        // Attestation-only entries never match.
        let att = index(&[("unknown", "unknown", None), ("linux", "amd64", None)]);
        assert!(hex(pick(&att, &want("linux/amd64"), "t").unwrap()).ends_with("01"));
    }

    #[test]
    fn configs_need_a_diff_id_per_layer() {
        let c = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["sha256:{HEX}"]}}}}"#
        );
        assert!(parse_config(c.as_bytes(), 1, "c").is_ok());
        let e = parse_config(c.as_bytes(), 2, "c").unwrap_err().to_string();
        assert!(e.contains("diff_ids has 1"), "{e}");
        let c = r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["md5:x"]}}"#;
        let e = parse_config(c.as_bytes(), 1, "c").unwrap_err().to_string();
        assert!(e.contains("diff_ids[0]"), "{e}");
    }
}
