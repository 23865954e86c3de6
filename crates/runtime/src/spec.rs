//! Loading and validating a bundle's config.json.
//!
//! Parsing goes through `serde_path_to_error`, so a wrong type is reported with its
//! JSON path (`process.args`), and validation names the field it rejects. Fields this
//! runtime cannot honour yet are rejected here, never silently ignored.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde_json::Value;

use crate::error::{Context, Error, Result};

/// The runtime-spec version this runtime implements and writes.
pub const OCI_VERSION: &str = "1.2.1";

/// A validated spec together with the absolute bundle and rootfs paths.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub spec: Spec,
}

impl Bundle {
    /// Reads `<dir>/config.json`, parses and validates it.
    pub fn load(dir: &Path) -> Result<Bundle> {
        let dir = std::fs::canonicalize(dir).ctx(|| format!("bundle {}", dir.display()))?;
        let config = dir.join("config.json");
        let text = std::fs::read(&config).ctx(|| format!("reading {}", config.display()))?;
        let spec = parse_spec(&text)?;
        let rootfs = validate(&spec, &dir)?;
        Ok(Bundle { dir, rootfs, spec })
    }
}

/// Parses config.json text: syntax, `ociVersion`, types (with JSON paths).
pub fn parse_spec(text: &[u8]) -> Result<Spec> {
    let value: Value = serde_json::from_slice(text).map_err(|e| {
        Error::config(
            format!("line {} column {}", e.line(), e.column()),
            format!("invalid JSON: {e}"),
        )
    })?;
    if !value.is_object() {
        return Err(Error::config("(top level)", "must be a JSON object"));
    }
    check_version(value.get("ociVersion"))?;
    reject_unsupported_fields(&value)?;
    let spec: Spec = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        Error::config(
            if path == "." {
                "(top level)".into()
            } else {
                path
            },
            e.inner().to_string(),
        )
    })?;
    Ok(spec)
}

fn check_version(v: Option<&Value>) -> Result<()> {
    let v = match v {
        None => return Err(Error::config("ociVersion", "missing (required)")),
        Some(Value::String(s)) => s,
        Some(_) => return Err(Error::config("ociVersion", "must be a string")),
    };
    let mut parts = v.splitn(3, '.');
    let major = parts.next().and_then(|p| p.parse::<u64>().ok());
    let minor_ok = parts
        .next()
        .map(|p| p.parse::<u64>().is_ok())
        .unwrap_or(false);
    match major {
        Some(1) if minor_ok => Ok(()),
        Some(m) if minor_ok => Err(Error::config(
            "ociVersion",
            format!("version {v:?} (major {m}) is not supported; this runtime implements 1.x"),
        )),
        _ => Err(Error::config(
            "ociVersion",
            format!("{v:?} is not a valid version (expected like \"1.2.0\")"),
        )),
    }
}

/// Fields that `oci-spec` parses but this runtime does not implement yet. Asking for
/// one is an error: a silently ignored confinement is worse than a refusal.
fn reject_unsupported_fields(v: &Value) -> Result<()> {
    const UNSUPPORTED: &[(&str, &str)] = &[
        ("/linux/intelRdt", "linux.intelRdt"),
        ("/linux/netDevices", "linux.netDevices"),
        ("/linux/resources/network", "linux.resources.network"),
        ("/linux/resources/rdma", "linux.resources.rdma"),
    ];
    for (pointer, name) in UNSUPPORTED {
        if let Some(x) = v.pointer(pointer) {
            if !is_empty(x) {
                return Err(Error::Unsupported(format!("config.json: {name}")));
            }
        }
    }
    for field in ["apparmorProfile", "selinuxLabel"] {
        if let Some(Value::String(s)) = v.pointer(&format!("/process/{field}")) {
            if !s.is_empty() {
                return Err(Error::Unsupported(format!(
                    "config.json: process.{field} (no LSM support on this host)"
                )));
            }
        }
    }
    if let Some(Value::Array(mounts)) = v.get("mounts") {
        for (i, m) in mounts.iter().enumerate() {
            for key in ["uidMappings", "gidMappings"] {
                if m.get(key).is_some_and(|x| !is_empty(x)) {
                    return Err(Error::Unsupported(format!(
                        "config.json: mounts[{i}].{key} (id-mapped mounts)"
                    )));
                }
            }
        }
    }
    Ok(())
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(o) => o.values().all(is_empty),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// Semantic checks that types cannot express. Returns the absolute rootfs path.
/// [`Bundle::load`] runs it after [`parse_spec`]; it is public so the two halves can be
/// exercised separately (the config fuzz target in `fuzz/`).
pub fn validate(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::config("root", "missing (required on Linux)"))?;
    if root.path().as_os_str().is_empty() {
        return Err(Error::config("root.path", "must not be empty"));
    }
    let rootfs = bundle.join(root.path());
    let rootfs = std::fs::canonicalize(&rootfs)
        .map_err(|e| Error::config("root.path", format!("{}: {e}", rootfs.display())))?;
    let meta = std::fs::metadata(&rootfs)
        .map_err(|e| Error::config("root.path", format!("{}: {e}", rootfs.display())))?;
    if !meta.is_dir() {
        return Err(Error::config(
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }

    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::config("process", "missing (required to create a container)"))?;
    match process.args() {
        Some(args) if !args.is_empty() => {}
        _ => return Err(Error::config("process.args", "must name a program")),
    }
    if !process.cwd().is_absolute() {
        return Err(Error::config(
            "process.cwd",
            format!("{:?} must be an absolute path", process.cwd()),
        ));
    }
    if let Some(env) = process.env() {
        for (i, e) in env.iter().enumerate() {
            if !e.contains('=') {
                return Err(Error::config(
                    format!("process.env[{i}]"),
                    format!("{e:?} is not KEY=VALUE"),
                ));
            }
        }
    }

    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let d = m.destination();
        if !d.is_absolute() {
            return Err(Error::config(
                format!("mounts[{i}].destination"),
                format!("{d:?} must be an absolute path"),
            ));
        }
        if d.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(Error::config(
                format!("mounts[{i}].destination"),
                format!("{d:?} must not contain '..'"),
            ));
        }
    }

    if let Some(linux) = spec.linux() {
        let mut seen = HashSet::new();
        let mut new_userns = false;
        for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
            if !seen.insert(ns.typ()) {
                return Err(Error::config(
                    format!("linux.namespaces[{i}].type"),
                    format!("namespace {} is listed twice", ns.typ()),
                ));
            }
            if let Some(p) = ns.path() {
                if !p.is_absolute() {
                    return Err(Error::config(
                        format!("linux.namespaces[{i}].path"),
                        format!("{p:?} must be an absolute path"),
                    ));
                }
            } else if ns.typ() == LinuxNamespaceType::User {
                new_userns = true;
            }
        }
        let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            && linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        if new_userns && !has_maps {
            return Err(Error::config(
                "linux.uidMappings",
                "a new user namespace needs uidMappings and gidMappings",
            ));
        }
        if !new_userns && (linux.uid_mappings().is_some() || linux.gid_mappings().is_some()) {
            let any = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty());
            if any {
                return Err(Error::config(
                    "linux.uidMappings",
                    "mappings need a new user namespace in linux.namespaces",
                ));
            }
        }
        if let Some(t) = linux.time_offsets() {
            if !t.is_empty() && !seen.contains(&LinuxNamespaceType::Time) {
                return Err(Error::config(
                    "linux.timeOffsets",
                    "time offsets need a new time namespace in linux.namespaces",
                ));
            }
            for k in t.keys() {
                if k != "monotonic" && k != "boottime" {
                    return Err(Error::config(
                        format!("linux.timeOffsets.{k}"),
                        "only monotonic and boottime clocks can be offset",
                    ));
                }
            }
        }
        if let Some(p) = linux.rootfs_propagation() {
            if crate::rootfs::propagation_flag(p).is_none() {
                return Err(Error::config(
                    "linux.rootfsPropagation",
                    format!("{p:?} is not one of shared, slave, private, unbindable"),
                ));
            }
        }
        for (i, d) in linux.devices().iter().flatten().enumerate() {
            if !d.path().is_absolute() {
                return Err(Error::config(
                    format!("linux.devices[{i}].path"),
                    format!("{:?} must be an absolute path", d.path()),
                ));
            }
        }
    }
    Ok(rootfs)
}

/// True when the spec asks for a new namespace of this type (no `path`).
pub fn creates_namespace(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    namespaces(spec).any(|n| n.typ() == typ && n.path().is_none())
}

/// True when the spec lists the namespace at all (new or joined).
pub fn has_namespace(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    namespaces(spec).any(|n| n.typ() == typ)
}

pub fn namespaces(spec: &Spec) -> impl Iterator<Item = &oci_spec::runtime::LinuxNamespace> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(extra: &str) -> String {
        format!(
            r#"{{"ociVersion":"1.2.0","process":{{"args":["sh"],"cwd":"/","user":{{"uid":0,"gid":0}}}},"root":{{"path":"rootfs"}}{extra}}}"#
        )
    }

    #[test]
    fn wrong_type_names_the_json_path() {
        let text =
            r#"{"ociVersion":"1.0.0","process":{"args":"sh","cwd":"/","user":{"uid":0,"gid":0}}}"#;
        let err = parse_spec(text.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("process.args"), "{err}");
    }

    #[test]
    fn unknown_namespace_names_the_field() {
        let err = parse_spec(minimal(r#","linux":{"namespaces":[{"type":"bogus"}]}"#).as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("linux.namespaces[0].type"), "{err}");
    }

    #[test]
    fn versions_other_than_1x_are_rejected_by_name() {
        for v in ["2.0.0", "x", "1"] {
            let text = minimal("").replace("1.2.0", v);
            let err = parse_spec(text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains("ociVersion"), "{v}: {err}");
        }
        for v in ["1.0.2-dev", "1.3.0", "1.9.99"] {
            let text = minimal("").replace("1.2.0", v);
            parse_spec(text.as_bytes()).unwrap();
        }
    }

    #[test]
    fn unsupported_fields_are_refused_not_ignored() {
        let err = parse_spec(minimal(r#","linux":{"intelRdt":{"closID":"x"}}"#).as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("linux.intelRdt"), "{err}");
        // Empty objects are not a request.
        parse_spec(minimal(r#","linux":{"resources":{"blockIO":{}}}"#).as_bytes()).unwrap();
    }

    #[test]
    fn relative_mount_destination_is_rejected() {
        let dir = std::env::temp_dir().join(format!("codex-spec-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        let spec = parse_spec(
            minimal(r#","mounts":[{"destination":"tmp","type":"tmpfs","source":"tmpfs"}]"#)
                .as_bytes(),
        )
        .unwrap();
        let err = validate(&spec, &dir).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("mounts[0].destination"), "{err}");
    }
}
