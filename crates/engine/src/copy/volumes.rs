//! `cp` to and from paths inside a container's volumes. A volume is mounted in the
//! container's own mount namespace only: the merged rootfs on the host has just the
//! empty mount point under it, so a path inside a volume is resolved on the host side
//! instead, to the volume's directory (or the bind mount's source) and the rest of the
//! path below it, still with `RESOLVE_IN_ROOT` from that directory: a symlink inside a
//! volume cannot lead out of the volume.
//!
//! The match is by the path as written (`.` and `..` folded lexically): a path that
//! reaches a volume only through a symlink in the image is resolved in the rootfs.

use std::path::{Component, Path, PathBuf};

use crate::config::{ContainerConfig, Volume, VolumeSource};
use crate::error::{Error, Result};

/// Where a container path is, for `cp`.
#[derive(Debug, PartialEq)]
pub(crate) enum Place {
    /// In the container's rootfs (not inside any volume).
    Rootfs,
    /// In a volume: the host directory that stands for the mount point, the path
    /// below it, and whether the volume is read-only.
    Volume {
        root: PathBuf,
        rest: PathBuf,
        readonly: bool,
    },
}

/// `path` with `.` and `..` folded, as components below `/`.
fn lexical(path: &Path) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Which volume of `cfg` (the deepest mount point) holds `path`, if any.
pub(crate) fn place(
    cfg: &ContainerConfig,
    path: &Path,
    volume_dir: &dyn Fn(&str) -> PathBuf,
) -> Result<Place> {
    let want = lexical(path);
    let best: Option<(&Volume, usize)> = cfg
        .volumes
        .iter()
        .map(|v| (v, lexical(Path::new(&v.destination))))
        .filter(|(_, d)| want.starts_with(d))
        .max_by_key(|(_, d)| d.len())
        .map(|(v, d)| (v, d.len()));
    let Some((v, depth)) = best else {
        return Ok(Place::Rootfs);
    };
    let rest: PathBuf = want[depth..].iter().collect();
    let root = match &v.source {
        VolumeSource::Named { name } => volume_dir(name),
        VolumeSource::Bind { path } if path.is_dir() => path.clone(),
        // A file bound over a file: its directory, and its name below it.
        VolumeSource::Bind { path } => {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                return Err(Error::invalid("path", format!("{} cannot be copied", path.display())));
            };
            if !rest.as_os_str().is_empty() {
                return Err(Error::invalid(
                    "path",
                    format!("{} is a file (bound from {})", v.destination, path.display()),
                ));
            }
            return Ok(Place::Volume {
                root: parent.to_path_buf(),
                rest: PathBuf::from(name),
                readonly: v.readonly,
            });
        }
        VolumeSource::Tmpfs => {
            return Err(Error::invalid(
                "path",
                format!(
                    "{} is a tmpfs that exists only inside the running container: copy with exec (tar) instead",
                    v.destination
                ),
            ))
        }
    };
    Ok(Place::Volume {
        root,
        rest,
        readonly: v.readonly,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ContainerConfig {
        ContainerConfig {
            volumes: vec![
                Volume::parse("v", "data:/data").unwrap(),
                Volume::parse("v", "deep:/data/deep:ro").unwrap(),
                Volume::parse("v", "/etc/hostname:/etc/hn").unwrap(),
            ],
            ..Default::default()
        }
    }

    fn dir(n: &str) -> PathBuf {
        PathBuf::from(format!("/vols/{n}"))
    }

    #[test]
    fn the_deepest_mount_point_wins_and_the_rest_is_below_it() {
        let c = cfg();
        assert_eq!(
            place(&c, Path::new("/etc/passwd"), &dir).unwrap(),
            Place::Rootfs
        );
        assert_eq!(
            place(&c, Path::new("/data/a/b"), &dir).unwrap(),
            Place::Volume {
                root: dir("data"),
                rest: "a/b".into(),
                readonly: false
            }
        );
        assert_eq!(
            place(&c, Path::new("/data/deep/x"), &dir).unwrap(),
            Place::Volume {
                root: dir("deep"),
                rest: "x".into(),
                readonly: true
            }
        );
        // Folded lexically: /data/x/.. is /data; /datax is not /data.
        assert_eq!(
            place(&c, Path::new("/data/x/.."), &dir).unwrap(),
            Place::Volume {
                root: dir("data"),
                rest: "".into(),
                readonly: false
            }
        );
        assert_eq!(place(&c, Path::new("/datax"), &dir).unwrap(), Place::Rootfs);
        assert_eq!(
            place(&c, Path::new("/etc/hn"), &dir).unwrap(),
            Place::Volume {
                root: "/etc".into(),
                rest: "hostname".into(),
                readonly: false
            }
        );
        assert!(place(&c, Path::new("/etc/hn/x"), &dir).is_err());
    }
}
