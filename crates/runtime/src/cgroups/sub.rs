//! `exec --cgroup [CONTROLLER[,CONTROLLER]:]PATH`: an exec'd process placed in an existing
//! sub-cgroup of the container's cgroup instead of the container's own, as runc does.
//! A value without controllers applies to every hierarchy; with them, to the v1
//! hierarchies that have one of them (a v2 host has no controllers to name). The path
//! is relative to the container's cgroup and never leaves it.

use std::path::{Component, Path, PathBuf};

use super::{CgroupDir, Cgroups};
use crate::error::{Error, Result};

/// One `--cgroup` value, parsed.
#[derive(Debug, PartialEq, Eq)]
struct SubCgroup {
    controllers: Vec<String>,
    path: PathBuf,
}

/// An error about the flag `field` (a command-line flag, not a config.json field).
fn bad(field: &str, reason: String) -> Error {
    Error::Other(format!("{field}: {reason}"))
}

fn parse(field: &str, value: &str) -> Result<SubCgroup> {
    let (controllers, path) = match value.split_once(':') {
        Some((c, p)) => (c.split(',').map(str::to_string).collect::<Vec<_>>(), p),
        None => (Vec::new(), value),
    };
    if controllers.iter().any(String::is_empty) {
        return Err(bad(field, format!("{value:?}: an empty controller name")));
    }
    let path = Path::new(path);
    let inside = path.components().all(|c| {
        matches!(
            c,
            Component::Normal(_) | Component::CurDir | Component::RootDir
        )
    });
    if path.as_os_str().is_empty() || !inside {
        return Err(bad(
            field,
            format!("{value:?}: the path must name a sub-cgroup of the container's, without '..'"),
        ));
    }
    // Relative to the container's cgroup even when written with a leading '/'.
    let rel: PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    Ok(SubCgroup {
        controllers,
        path: rel,
    })
}

impl Cgroups {
    /// The container's cgroups with the `--cgroup` values applied (`field` names the
    /// flag in errors). Each named sub-cgroup must exist; a controller no hierarchy
    /// has is an error.
    pub fn with_sub_cgroups(&self, field: &str, values: &[String]) -> Result<Cgroups> {
        let mut dirs: Vec<CgroupDir> = self.dirs.clone();
        for value in values {
            let sub = parse(field, value)?;
            let mut matched = false;
            for (d, orig) in dirs.iter_mut().zip(&self.dirs) {
                let applies = if sub.controllers.is_empty() {
                    true
                } else {
                    !orig.is_v2() && sub.controllers.iter().any(|c| orig.has(c))
                };
                if !applies {
                    continue;
                }
                matched = true;
                let path = orig.path.join(&sub.path);
                if !path.is_dir() {
                    return Err(bad(
                        field,
                        format!("{value:?}: {} is not an existing cgroup", path.display()),
                    ));
                }
                d.path = path;
            }
            if !matched {
                return Err(bad(
                    field,
                    format!("{value:?}: no cgroup hierarchy of the container has that controller"),
                ));
            }
        }
        Ok(Cgroups { dirs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_into_controllers_and_a_path_inside_the_container() {
        assert_eq!(
            parse("f", "memory,pids:a/b").unwrap(),
            SubCgroup {
                controllers: vec!["memory".into(), "pids".into()],
                path: "a/b".into()
            }
        );
        assert_eq!(parse("f", "/a").unwrap().path, PathBuf::from("a"));
        assert!(parse("f", "sub").unwrap().controllers.is_empty());
        for bad in ["", "../x", "a/../../x", "memory:", ":a", "memory,:a"] {
            let err = parse("--cgroup", bad).unwrap_err().to_string();
            assert!(err.starts_with("--cgroup: "), "{bad}: {err}");
        }
    }
}
