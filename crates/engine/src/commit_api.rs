//! `commit`: a container's changes (its overlay upper dir) as a new image on top of the
//! image it was made from. Packing is in `image/layer/upper.rs`, storing in
//! `image/commit.rs`; this file finds the container's pieces and pauses it.

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;

use crate::build::{config, instr, parse};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::image::layer::{IdMap, IdRange, UpperOptions};
use crate::image::{CommitSpec, ImageRecord};
use crate::registry::ContainerStatus;

/// What `commit` is asked for.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `NAME[:TAG]`; `None`: an untagged image.
    pub reference: Option<String>,
    /// Dockerfile instructions applied to the config (`--change`): CMD, ENTRYPOINT, ENV,
    /// EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL, HEALTHCHECK, SHELL.
    pub changes: Vec<String>,
    pub message: Option<String>,
    pub author: Option<String>,
    /// Freeze a running container while its files are read (Docker's default), so the
    /// layer is one moment's state.
    pub pause: bool,
}

/// The instructions `--change` accepts (Docker's list, plus STOPSIGNAL, HEALTHCHECK and
/// SHELL, which only touch the config too).
const CHANGES: &[&str] = &[
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "LABEL",
    "USER",
    "VOLUME",
    "WORKDIR",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];

/// Parses `--change` lines against the image's environment (as Docker substitutes
/// them) and applies them to `config` (an image config's `config` object).
pub fn apply_changes(config: &mut Value, changes: &[String]) -> Result<()> {
    for (i, line) in changes.iter().enumerate() {
        let raw = parse::instruction(i + 1, line.trim())
            .map_err(|e| Error::invalid("change", format!("{line:?}: {e}")))?;
        if !CHANGES.contains(&raw.keyword.as_str()) {
            return Err(Error::invalid(
                "change",
                format!(
                    "{line:?}: {} cannot be a commit change (one of {})",
                    raw.keyword,
                    CHANGES.join(", ")
                ),
            ));
        }
        let env = config::env_of(config);
        let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let ins = instr::resolve(&raw, &lookup, '\\')
            .map_err(|e| Error::invalid("change", format!("{line:?}: {e}")))?;
        config::apply(config, &ins)?;
    }
    Ok(())
}

impl Engine {
    /// Commits the container's changes as a new image: its image's layers, one new layer
    /// with what it changed (deletions as whiteouts), its image's config with `changes`.
    pub fn commit(&self, container: &str, opts: &CommitOptions) -> Result<ImageRecord> {
        let rec = self.get(container)?;
        let spec = self.spec(&rec.id)?;
        let created_by = spec["process"]["args"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let commit = CommitSpec {
            reference: opts.reference.clone(),
            created_by,
            comment: opts.message.clone(),
            author: opts.author.clone(),
        };
        // Check the changes before any work.
        let store = self.images()?;
        let parent = self.commit_parent(&rec.id)?;
        let mut probe = store.config_json(&parent)?;
        apply_changes(&mut probe["config"], &opts.changes)?;
        let image = self.commit_container(&rec.id, opts.pause, &commit, |c| {
            apply_changes(c, &opts.changes)
        })?;
        let name = opts.reference.clone().unwrap_or_default();
        crate::events::emit_about(
            self.root(),
            &rec,
            "commit",
            &[("image", image.id.clone()), ("reference", name)],
        );
        Ok(image)
    }

    /// The image a container was made from (refused for containers that have none).
    fn commit_parent(&self, id: &str) -> Result<ImageRecord> {
        let rec = self.get(id)?;
        let dir = self.container_dir(&rec.id)?;
        let image_id = rec
            .config
            .get("image")
            .and_then(Value::as_str)
            .filter(|_| dir.join("lowers").exists())
            .ok_or_else(|| {
                Error::invalid(
                    "container",
                    format!(
                        "{} was not made from an image (--rootfs or minimal isolation): nothing to commit onto",
                        rec.name
                    ),
                )
            })?;
        self.images()?.get(image_id)
    }

    /// [`Engine::commit`] with the history entry and config edit given (for `build`).
    pub(crate) fn commit_container(
        &self,
        id: &str,
        pause: bool,
        commit: &CommitSpec,
        edit: impl FnOnce(&mut Value) -> Result<()>,
    ) -> Result<ImageRecord> {
        let rec = self.get(id)?;
        let dir = self.container_dir(&rec.id)?;
        let parent = self.commit_parent(&rec.id)?;
        let store = self.images()?;
        let spec = self.spec(&rec.id)?;
        let upper_opts = upper_options(&spec);
        let paused = if pause && rec.status == ContainerStatus::Running {
            self.pause(&rec.id)?;
            true
        } else {
            false
        };
        let staged = store.stage_upper(&dir.join("upper"), &upper_opts);
        if paused {
            self.unpause(&rec.id)?;
        }
        store.commit_image(Some(&parent), Some(staged?), commit, edit)
    }
}

/// The paths the runtime mounts over (left out of the layer: they are the container's
/// mount points, not its image's files) and the user namespace's id maps.
pub(crate) fn upper_options(spec: &Value) -> UpperOptions {
    let mut exclude = HashSet::new();
    for m in spec["mounts"].as_array().into_iter().flatten() {
        if let Some(d) = m["destination"].as_str() {
            let rel: Vec<&str> = Path::new(d)
                .components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(s) => s.to_str(),
                    _ => None,
                })
                .collect();
            if !rel.is_empty() {
                exclude.insert(rel.join("/").into_bytes());
            }
        }
    }
    let map = |key: &str| {
        IdMap(
            spec["linux"][key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| {
                    Some(IdRange {
                        container: u32::try_from(r["containerID"].as_u64()?).ok()?,
                        host: u32::try_from(r["hostID"].as_u64()?).ok()?,
                        size: u32::try_from(r["size"].as_u64()?).ok()?,
                    })
                })
                .collect(),
        )
    };
    UpperOptions {
        exclude,
        uids: map("uidMappings"),
        gids: map("gidMappings"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_apply_with_the_image_env_and_refuse_file_instructions() {
        let mut c = json!({"Env": ["BASE=/opt"], "Cmd": ["sh"]});
        apply_changes(
            &mut c,
            &[
                "ENV APP=$BASE/app".into(),
                "CMD [\"/bin/true\"]".into(),
                "workdir /w".into(),
            ],
        )
        .unwrap();
        assert_eq!(c["Env"], json!(["BASE=/opt", "APP=/opt/app"]));
        assert_eq!(c["Cmd"], json!(["/bin/true"]));
        assert_eq!(c["WorkingDir"], json!("/w"));
        for bad in ["RUN true", "COPY a b", "FROM x", "ONBUILD RUN x", "NOPE x"] {
            let e = apply_changes(&mut c, &[bad.into()])
                .unwrap_err()
                .to_string();
            assert!(e.contains("change"), "{bad}: {e}");
        }
    }

    #[test]
    fn mount_points_are_excluded_and_id_maps_read() {
        let spec = json!({
            "mounts": [{"destination": "/proc"}, {"destination": "/etc/hosts"}, {"destination": "/"}],
            "linux": {"uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]}
        });
        let o = upper_options(&spec);
        assert!(o.exclude.contains(b"proc".as_slice()));
        assert!(o.exclude.contains(b"etc/hosts".as_slice()));
        assert_eq!(o.exclude.len(), 2);
        assert_eq!(o.uids.to_container(100_001), Some(1));
        assert!(o.gids.0.is_empty());
    }
}
