//! A Dockerfile as stages, which of them a build runs, and the build cache.
//!
//! The cache maps a key to the image a step made: the key is the sha256 of the parent
//! image's id (which names its whole layer chain and config), the step as resolved
//! (variables substituted) and, for COPY/ADD, the digest of what is copied. A hit is
//! used only while the image is still in the store. Entries are small files under
//! `<root>/build-cache/`, each written atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::parse::{Args, Dockerfile, Raw};
use crate::error::{Context, Error, Result};

/// One `FROM` and what follows it.
#[derive(Debug, Clone)]
pub struct Stage {
    pub index: usize,
    /// `AS name`, lower-cased (read from the raw FROM; checked again when resolved).
    pub name: Option<String>,
    pub from: Raw,
    pub steps: Vec<Raw>,
}

/// The ARGs before the first FROM, and the stages.
#[derive(Debug, Clone)]
pub struct Plan {
    pub global_args: Vec<Raw>,
    pub stages: Vec<Stage>,
}

impl Plan {
    pub fn of(df: &Dockerfile) -> Result<Plan> {
        let mut global_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for raw in &df.instructions {
            if raw.keyword == "FROM" {
                let name = match &raw.args {
                    Args::Text(t) => {
                        let w: Vec<&str> = t.split_whitespace().collect();
                        match w.as_slice() {
                            [_, a, n] if a.eq_ignore_ascii_case("as") => {
                                Some(n.to_ascii_lowercase())
                            }
                            _ => None,
                        }
                    }
                    Args::Json(_) => None,
                };
                if let Some(n) = &name {
                    if stages.iter().any(|s| s.name.as_ref() == Some(n)) {
                        return Err(Error::invalid(
                            "Dockerfile",
                            format!("line {}: the stage name {n:?} is used twice", raw.line),
                        ));
                    }
                }
                stages.push(Stage {
                    index: stages.len(),
                    name,
                    from: raw.clone(),
                    steps: Vec::new(),
                });
                continue;
            }
            match stages.last_mut() {
                Some(s) => s.steps.push(raw.clone()),
                None if raw.keyword == "ARG" => global_args.push(raw.clone()),
                None => {
                    return Err(Error::invalid(
                        "Dockerfile",
                        format!(
                            "line {}: {} before the first FROM (only ARG may come first)",
                            raw.line, raw.keyword
                        ),
                    ))
                }
            }
        }
        if stages.is_empty() {
            return Err(Error::invalid("Dockerfile", "no FROM instruction"));
        }
        Ok(Plan {
            global_args,
            stages,
        })
    }

    /// The stage `--target` names (by name or index), else the last one.
    pub fn target(&self, target: Option<&str>) -> Result<usize> {
        let Some(t) = target else {
            return Ok(self.stages.len() - 1);
        };
        let t = t.to_ascii_lowercase();
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(t.as_str()))
            .map(|s| s.index)
            .ok_or_else(|| {
                Error::invalid("target", format!("no stage named {t:?} in the Dockerfile"))
            })
    }

    /// The stage an earlier `FROM`/`COPY --from` names (`name` or its index), if any
    /// before `before`.
    pub fn stage_ref(&self, name: &str, before: usize) -> Option<usize> {
        let n = name.to_ascii_lowercase();
        self.stages[..before]
            .iter()
            .find(|s| s.name.as_deref() == Some(n.as_str()) || s.index.to_string() == n)
            .map(|s| s.index)
    }

    /// Steps a build up to `target` runs (the FROMs included), for `Step N/M`.
    pub fn step_count(&self, target: usize) -> usize {
        self.stages[..=target]
            .iter()
            .map(|s| s.steps.len() + 1)
            .sum()
    }
}

/// Docker's predefined ARGs: usable without an ARG line.
pub const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The build cache under `<root>/build-cache`.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn open(root: &Path) -> Result<Cache> {
        let dir = root.join("build-cache");
        std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        Ok(Cache { dir })
    }

    /// The key of a step on `parent` (an image id, or `scratch`).
    pub fn key(parent: &str, step: &str, extra: &BTreeMap<String, String>) -> String {
        let mut h = Sha256::new();
        h.update(parent.as_bytes());
        h.update(b"\n");
        h.update(step.as_bytes());
        for (k, v) in extra {
            h.update(format!("\n{k}={v}").as_bytes());
        }
        crate::image::fsutil_hex(&h.finalize())
    }

    /// The image id cached for `key`, if any.
    pub fn get(&self, key: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join(key))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| s.len() == 64)
    }

    pub fn put(&self, key: &str, id: &str) -> Result<()> {
        let p = self.dir.join(key);
        codex_sys::write_atomic(&p, id.as_bytes()).ctx(|| format!("writing {}", p.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;

    #[test]
    fn stages_targets_and_steps() {
        let df = parse(
            "ARG V=1\nFROM busybox AS Build\nRUN a\nFROM build\nCOPY --from=build /x /y\nFROM scratch AS final\nCMD [\"x\"]\n",
        )
        .unwrap();
        let p = Plan::of(&df).unwrap();
        assert_eq!(p.global_args.len(), 1);
        assert_eq!(p.stages.len(), 3);
        assert_eq!(p.stages[0].name.as_deref(), Some("build"));
        assert_eq!(p.target(None).unwrap(), 2);
        assert_eq!(p.target(Some("BUILD")).unwrap(), 0);
        assert!(p
            .target(Some("nope"))
            .unwrap_err()
            .to_string()
            .contains("nope"));
        // Global ARGs are not steps: 2 + 2 + 2.
        assert_eq!(p.step_count(2), 6);
        assert_eq!(p.step_count(0), 2);
        assert_eq!(p.stage_ref("build", 1), Some(0));
        assert_eq!(p.stage_ref("0", 1), Some(0));
        assert_eq!(
            p.stage_ref("final", 2),
            None,
            "a later stage is not visible"
        );
    }

    #[test]
    fn bad_plans_are_refused() {
        let e = Plan::of(&parse("RUN x\nFROM a\n").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("before the first FROM"), "{e}");
        assert!(Plan::of(&parse("ARG x\n").unwrap()).is_err());
        let e = Plan::of(&parse("FROM a AS x\nFROM b AS X\n").unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("used twice"), "{e}");
    }

    #[test]
    fn cache_keys_follow_parent_step_and_extra() {
        let none = BTreeMap::new();
        let k = Cache::key("p", "RUN a", &none);
        assert_eq!(k, Cache::key("p", "RUN a", &none));
        assert_ne!(k, Cache::key("q", "RUN a", &none));
        assert_ne!(k, Cache::key("p", "RUN b", &none));
        let mut extra = BTreeMap::new();
        extra.insert("content".to_string(), "d1".to_string());
        assert_ne!(k, Cache::key("p", "RUN a", &extra));
    }
}
