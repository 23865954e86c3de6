//! The steps that make layers: RUN (a started container) and COPY/ADD (files written into
//! a created container's rootfs, or into an empty directory on `scratch`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use serde_json::Value;

use super::config;
use super::context::{self, SourceTree};
use super::copy::{copy_sources, head_of, is_archive, make_dir, unpack_archive, Attrs};
use super::exec::{dest_path, parent_id, say, Builder};
use super::instr::{CopySpec, Instruction};
use super::parse::Raw;
use super::plan::Cache;
use crate::config::ContainerConfig;
use crate::engine::Engine;
use crate::error::{Context, Error, Result};
use crate::image::layer::UpperOptions;
use crate::image::{CommitSpec, ImageRecord};
use crate::logread::{Followed, LogQuery};
use crate::network::NetworkMode;

/// A step's container, removed (with its mounts, cgroups and anonymous volumes) when
/// dropped, whether the step worked or not.
pub(super) struct Holder<'e> {
    eng: &'e Engine,
    pub(super) id: String,
}

impl<'e> Holder<'e> {
    fn create(eng: &'e Engine, mut config: ContainerConfig) -> Result<Holder<'e>> {
        config.labels.insert("codex.build".into(), "step".into());
        let rec = eng.create(config)?;
        Ok(Holder { eng, id: rec.id })
    }

    /// A container that is never started: its rootfs is mounted to copy into or from.
    fn idle(eng: &'e Engine, image: &str) -> Result<Holder<'e>> {
        Holder::create(
            eng,
            ContainerConfig {
                image: Some(image.to_string()),
                entrypoint: vec!["/.codex-build-never-run".into()],
                // Never run: the image's USER (which may not exist yet) is not resolved.
                user: Some("0:0".into()),
                network: Some(NetworkMode::None),
                ..Default::default()
            },
        )
    }
}

impl Drop for Holder<'_> {
    fn drop(&mut self) {
        let _ = self.eng.remove(&self.id, true, true);
    }
}

/// A private empty directory under `<root>/build-tmp` (a COPY on `scratch`), removed
/// when dropped.
struct Staging(PathBuf);

impl Staging {
    fn new(root: &Path) -> Result<Staging> {
        use std::os::unix::fs::DirBuilderExt;
        let base = root.join("build-tmp");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&base)
            .ctx(|| format!("creating {}", base.display()))?;
        let dir = base.join(crate::image::unique_work_name("copy-"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .ctx(|| format!("creating {}", dir.display()))?;
        Ok(Staging(dir))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a RUN step's argv in a container of `parent`; its changes as the new image.
pub(super) fn run_container(
    b: &mut Builder<'_>,
    parent: &ImageRecord,
    raw: &Raw,
    argv: &[String],
    network: &str,
    args: &BTreeMap<String, String>,
) -> Result<ImageRecord> {
    let Some((first, rest)) = argv.split_first() else {
        return Err(Error::invalid(
            "RUN",
            format!("line {}: an empty command", raw.line),
        ));
    };
    let eng = b.eng;
    let holder = Holder::create(
        eng,
        ContainerConfig {
            image: Some(parent.id.clone()),
            entrypoint: vec![first.clone()],
            command: rest.to_vec(),
            env: args.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            network: Some(if network == "host" {
                NetworkMode::Host
            } else {
                NetworkMode::None
            }),
            ..Default::default()
        },
    )?;
    say!(
        b,
        " ---> Running in {}",
        holder.id.get(..12).unwrap_or(&holder.id)
    );
    let mut follow = eng.follow_logs(
        &holder.id,
        LogQuery {
            tail: Some(0),
            ..Default::default()
        },
    )?;
    eng.start(&holder.id)?;
    loop {
        match follow.poll(Duration::from_millis(200))? {
            Followed::Lines(lines) => {
                for l in lines {
                    say!(b, "{}", l.log);
                }
            }
            Followed::Idle => {}
            Followed::Ended => break,
        }
        if let Err(e) = b.check_cancel() {
            // The guard removes the container once it is dead.
            let _ = eng.kill(&holder.id, libc::SIGKILL);
            say!(
                b,
                " ---> interrupted: removing {}",
                holder.id.get(..12).unwrap_or(&holder.id)
            );
            return Err(e);
        }
    }
    let rec = eng.get(&holder.id)?;
    match rec.exit_code {
        Some(0) => {}
        Some(code) => {
            return Err(Error::invalid(
                "RUN",
                format!(
                    "line {}: the command {argv:?} returned a non-zero code: {code}",
                    raw.line
                ),
            ))
        }
        None => {
            return Err(Error::invalid(
                "RUN",
                format!(
                    "line {}: {argv:?} did not finish: {}",
                    raw.line,
                    rec.error.as_deref().unwrap_or("no exit was recorded")
                ),
            ))
        }
    }
    let spec = CommitSpec {
        created_by: raw.text.clone(),
        ..Default::default()
    };
    eng.commit_container(&holder.id, false, &spec, |c| config::apply_step(c, None))
}

impl Builder<'_> {
    /// WORKDIR: the config's WorkingDir, and the directory made in the image when it is
    /// missing (a layer then), so that RUN and `run` can enter it.
    pub(super) fn workdir(
        &mut self,
        parent: Option<&ImageRecord>,
        instr: &Instruction,
        text: &str,
        config: &Value,
    ) -> Result<ImageRecord> {
        let key = Cache::key(parent_id(parent), &format!("{instr:?}"), &BTreeMap::new());
        if let Some(i) = self.cached(&key) {
            return Ok(i);
        }
        let mut next = config.clone();
        config::apply(&mut next, instr)?;
        let dir = next["WorkingDir"].as_str().unwrap_or("/").to_string();
        let commit = CommitSpec {
            created_by: text.to_string(),
            ..Default::default()
        };
        let eng = self.eng;
        let store = eng.images()?;
        let image = match parent.filter(|p| !p.layers.is_empty()) {
            Some(p) => {
                let holder = Holder::idle(eng, &p.id)?;
                if eng.with_rootfs(&holder.id, |root| make_dir(root, &dir))? {
                    eng.commit_container(&holder.id, false, &commit, |c| {
                        config::apply_step(c, Some(instr))
                    })?
                } else {
                    store.commit_image(Some(p), None, &commit, |c| {
                        config::apply_step(c, Some(instr))
                    })?
                }
            }
            None => store.commit_image(parent, None, &commit, |c| {
                config::apply_step(c, Some(instr))
            })?,
        };
        self.made(&key, image)
    }

    /// COPY/ADD: from the context or `--from` a stage or image.
    pub(super) fn copy(
        &mut self,
        parent: Option<&ImageRecord>,
        raw: &Raw,
        spec: &CopySpec,
        si: usize,
        config: &Value,
    ) -> Result<ImageRecord> {
        let Some(from) = &spec.from else {
            let tree = Rc::clone(&self.tree);
            return self.copy_from(&tree, parent, raw, spec, config);
        };
        let source = match self.plan.stage_ref(from, si) {
            Some(i) => self.results[i].clone(),
            None => Some(self.eng.images()?.get(from)?),
        };
        let source = source.filter(|s| !s.layers.is_empty()).ok_or_else(|| {
            Error::invalid("COPY", format!("--from={from}: that stage has no files"))
        })?;
        let eng = self.eng;
        let holder = Holder::idle(eng, &source.id)?;
        eng.with_rootfs(&holder.id, |root| {
            let tree = SourceTree::rootfs(root, &format!("stage {from}"))?;
            self.copy_from(&tree, parent, raw, spec, config)
        })
    }

    fn copy_from(
        &mut self,
        tree: &SourceTree,
        parent: Option<&ImageRecord>,
        raw: &Raw,
        spec: &CopySpec,
        config: &Value,
    ) -> Result<ImageRecord> {
        let mut sel = Vec::new();
        for s in &spec.sources {
            sel.extend(tree.select(s)?);
        }
        // ADD unpacks local archives (detected by content, as Docker) instead of copying.
        let mut archives = Vec::new();
        if spec.add {
            for (i, s) in sel.iter().enumerate() {
                if s.node.kind() == crate::copy::node::Kind::File && is_archive(&head_of(s)?) {
                    archives.push(i);
                }
            }
        }
        let digest = context::digest(tree, &sel)?;
        let dest = dest_path(&spec.dest, config);
        let mut extra = BTreeMap::new();
        extra.insert("\0content".to_string(), digest);
        let what = format!(
            "COPY add={:?} chown={:?} chmod={:?} n={} dest={dest}",
            archives,
            spec.chown,
            spec.chmod,
            sel.len()
        );
        let key = Cache::key(parent_id(parent), &what, &extra);
        if let Some(i) = self.cached(&key) {
            return Ok(i);
        }
        let attrs = self.attrs(parent, spec)?;
        let commit = CommitSpec {
            created_by: raw.text.clone(),
            ..Default::default()
        };
        let eng = self.eng;
        let image = match parent.filter(|p| !p.layers.is_empty()) {
            Some(p) => {
                let holder = Holder::idle(eng, &p.id)?;
                eng.with_rootfs(&holder.id, |root| {
                    write_sources(tree, &sel, &archives, root, &dest, attrs)
                })?;
                eng.commit_container(&holder.id, false, &commit, |c| config::apply_step(c, None))?
            }
            None => {
                let staging = Staging::new(eng.root())?;
                write_sources(tree, &sel, &archives, &staging.0, &dest, attrs)?;
                let store = eng.images()?;
                let staged = store.stage_upper(&staging.0, &UpperOptions::default())?;
                store.commit_image(parent, Some(staged), &commit, |c| {
                    config::apply_step(c, None)
                })?
            }
        };
        self.made(&key, image)
    }

    /// `--chown` (names from the image's own passwd/group; a lone user or uid also
    /// gives the group, as Docker) and `--chmod`.
    fn attrs(&self, parent: Option<&ImageRecord>, spec: &CopySpec) -> Result<Attrs> {
        let Some(chown) = &spec.chown else {
            return Ok(Attrs {
                uid: 0,
                gid: 0,
                chmod: spec.chmod,
            });
        };
        let lowers = match parent.filter(|p| !p.layers.is_empty()) {
            Some(p) => self.eng.images()?.rootfs_layers(p)?,
            None => Vec::new(),
        };
        let mut cfg = ContainerConfig {
            user: Some(chown.clone()),
            ..Default::default()
        };
        crate::image::resolve_named_user(&lowers, &mut cfg)
            .map_err(|e| Error::invalid("--chown", format!("{chown}: {e}")))?;
        let u = cfg.user.unwrap_or_default();
        let (a, g) = u.split_once(':').unwrap_or((u.as_str(), u.as_str()));
        let num = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| Error::invalid("--chown", format!("{chown}: not a user[:group]")))
        };
        Ok(Attrs {
            uid: num(a)?,
            gid: num(g)?,
            chmod: spec.chmod,
        })
    }
}

/// COPY's files, then ADD's archives (indexes into `sel`) unpacked into `dest`.
fn write_sources(
    tree: &SourceTree,
    sel: &[super::context::Selected],
    archives: &[usize],
    root: &Path,
    dest: &str,
    attrs: Attrs,
) -> Result<()> {
    if archives.len() == sel.len() && !sel.is_empty() {
        // Only archives: `dest` is a directory.
    } else {
        let plain: Vec<&super::context::Selected> = sel
            .iter()
            .enumerate()
            .filter(|(i, _)| !archives.contains(i))
            .map(|(_, s)| s)
            .collect();
        copy_sources(tree, &plain, root, dest, attrs)?;
    }
    for &i in archives {
        unpack_archive(&sel[i], root, dest, attrs)?;
    }
    Ok(())
}
