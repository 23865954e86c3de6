//! Running a build: stage by stage, step by step, each step's image cached.
//!
//! Every step that is not an ARG makes an image, as Docker's classic builder does: RUN in
//! a real container of the engine (the image's env, user and workdir, the build's ARGs as
//! env, `--network none` unless asked), COPY into a created, never started container's
//! mounted rootfs; both become one layer through `commit`. Metadata steps make an image
//! with the same layers and a changed config. The step containers are removed whatever
//! happens (a guard), so a failed build leaves no container, mount or cgroup; the images
//! of the steps that succeeded stay as the cache (untagged), and nothing is tagged.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::config::{self, join_workdir};
use super::context::SourceTree;
use super::instr::{resolve, Command, Instruction};
use super::parse::{parse, Raw};
use super::plan::{Cache, Plan, PREDEFINED_ARGS};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::image::ensure::PullPolicy;
use crate::image::{CommitSpec, ImageRecord, Reference};

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The build context: a directory.
    pub context: PathBuf,
    /// `-f`: the Dockerfile on the host (default: `Dockerfile`, else `Containerfile`, in
    /// the context).
    pub dockerfile: Option<PathBuf>,
    /// A Dockerfile named inside the context (the Docker API's `dockerfile=`), read
    /// from it as every context file is: nothing outside the context can be named.
    pub context_dockerfile: Option<String>,
    /// `-t NAME[:TAG]`, each naming the result.
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    /// `--target STAGE`: stop after that stage.
    pub target: Option<String>,
    pub no_cache: bool,
    /// `--label K=V` on the final image.
    pub labels: BTreeMap<String, String>,
    /// RUN's network when the step does not say: `none` (default) or `host`.
    pub network: Option<String>,
    /// Set (by a signal handler) to stop the build: the running step's container is
    /// killed and removed, and the build fails as interrupted.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// What a build did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BuildResult {
    /// The final image's id.
    pub id: String,
    /// Steps that ran (made a new image).
    pub executed: usize,
    /// Steps taken from the cache.
    pub cached: usize,
}

pub(super) struct Builder<'a> {
    pub(super) eng: &'a Engine,
    pub(super) opts: &'a BuildOptions,
    pub(super) out: &'a mut dyn Write,
    pub(super) plan: Plan,
    pub(super) tree: std::rc::Rc<SourceTree>,
    pub(super) cache: Cache,
    pub(super) escape: char,
    step: usize,
    total: usize,
    /// Each built stage's image (None: `scratch` with nothing on it).
    pub(super) results: Vec<Option<ImageRecord>>,
    pub(super) result: BuildResult,
    used_args: HashSet<String>,
}

/// A line of progress; a reader that went away does not stop the build.
macro_rules! say {
    ($b:expr, $($t:tt)*) => {{
        let _ = writeln!($b.out, $($t)*);
    }};
}
pub(super) use say;

impl Engine {
    /// Builds the Dockerfile of `opts` into the image store; progress lines go to `out`.
    pub fn build(&self, opts: &BuildOptions, out: &mut dyn Write) -> Result<BuildResult> {
        for t in &opts.tags {
            Reference::parse(t)?;
        }
        let tree = SourceTree::context(&opts.context)?;
        let text = match (&opts.dockerfile, &opts.context_dockerfile) {
            (Some(p), _) => std::fs::read(p)
                .map_err(|e| Error::invalid("file", format!("{}: {e}", p.display())))?,
            (None, Some(name)) => tree.read_file(name)?,
            (None, None) => tree
                .read_file("Dockerfile")
                .or_else(|_| tree.read_file("Containerfile"))
                .map_err(|e| {
                    Error::invalid(
                        "file",
                        format!("no Dockerfile or Containerfile in the context: {e}"),
                    )
                })?,
        };
        let text =
            String::from_utf8(text).map_err(|_| Error::invalid("Dockerfile", "not UTF-8 text"))?;
        let df = parse(&text)?;
        let plan = Plan::of(&df)?;
        let target = plan.target(opts.target.as_deref())?;
        let total = plan.step_count(target);
        let mut b = Builder {
            eng: self,
            opts,
            out,
            cache: Cache::open(self.root())?,
            escape: df.escape,
            step: 0,
            total,
            results: Vec::new(),
            result: BuildResult::default(),
            used_args: HashSet::new(),
            plan,
            tree: std::rc::Rc::new(tree),
        };
        let global = b.global_args()?;
        for si in 0..=target {
            let image = b.stage(si, &global)?;
            b.results.push(image);
        }
        let mut last = b.results.pop().flatten();
        if !opts.labels.is_empty() {
            let labels = Instruction::Label(
                opts.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            );
            last = Some(b.meta(last.as_ref(), &labels, "LABEL (--label)")?);
        }
        let Some(image) = last else {
            return Err(Error::invalid(
                "Dockerfile",
                "the build made no image (FROM scratch with nothing after it)",
            ));
        };
        let unused: Vec<&String> = opts
            .build_args
            .keys()
            .filter(|k| !b.used_args.contains(*k) && !PREDEFINED_ARGS.contains(&k.as_str()))
            .collect();
        if !unused.is_empty() {
            say!(
                b,
                "[Warning] build args not consumed by the Dockerfile: {unused:?}"
            );
        }
        let store = self.images()?;
        say!(b, "Successfully built {}", image.short_id());
        for t in &opts.tags {
            store.tag(&image.id, t)?;
            say!(b, "Successfully tagged {t}");
        }
        b.result.id = image.id;
        Ok(b.result)
    }
}

impl Builder<'_> {
    /// The ARGs before the first FROM (what FROM lines may use).
    fn global_args(&mut self) -> Result<BTreeMap<String, String>> {
        let mut global = BTreeMap::new();
        for raw in self.plan.global_args.clone() {
            let g = global.clone();
            let lookup = |k: &str| g.get(k).cloned();
            if let Instruction::Arg(list) = resolve(&raw, &lookup, self.escape)? {
                for (k, default) in list {
                    self.used_args.insert(k.clone());
                    if let Some(v) = self.opts.build_args.get(&k).cloned().or(default) {
                        global.insert(k, v);
                    }
                }
            }
        }
        Ok(global)
    }

    fn stage(
        &mut self,
        si: usize,
        global: &BTreeMap<String, String>,
    ) -> Result<Option<ImageRecord>> {
        let stage = self.plan.stages[si].clone();
        self.begin(&stage.from);
        let lookup = |k: &str| global.get(k).cloned();
        let Instruction::From { image, .. } = resolve(&stage.from, &lookup, self.escape)? else {
            return Err(Error::invalid("Dockerfile", "a stage must start with FROM"));
        };
        let mut cur = self.base(&image, si)?;
        match &cur {
            Some(i) => say!(self, " ---> {}", i.short_id()),
            None => say!(self, " ---> scratch"),
        }
        let mut args: BTreeMap<String, String> = BTreeMap::new();
        for raw in &stage.steps {
            self.check_cancel()?;
            self.begin(raw);
            let config = self.config_of(cur.as_ref())?;
            let env = config::env_of(&config);
            let lookup = |k: &str| {
                env.iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
                    .or_else(|| args.get(k).cloned())
            };
            let instr = resolve(raw, &lookup, self.escape)?;
            cur = match &instr {
                Instruction::Arg(list) => {
                    for (k, default) in list {
                        self.used_args.insert(k.clone());
                        let v = self
                            .opts
                            .build_args
                            .get(k)
                            .cloned()
                            .or_else(|| default.clone())
                            .or_else(|| global.get(k).cloned());
                        if let Some(v) = v {
                            args.insert(k.clone(), v);
                        }
                    }
                    continue;
                }
                Instruction::Run { cmd, network } => {
                    let env_args = self.run_args(&args, &env);
                    Some(self.run(
                        cur.as_ref(),
                        raw,
                        cmd,
                        network.as_deref(),
                        &env_args,
                        &config,
                    )?)
                }
                Instruction::Copy(spec) => Some(self.copy(cur.as_ref(), raw, spec, si, &config)?),
                Instruction::Workdir(_) => {
                    Some(self.workdir(cur.as_ref(), &instr, &raw.text, &config)?)
                }
                Instruction::From { .. } => {
                    return Err(Error::invalid("Dockerfile", "FROM inside a stage"))
                }
                other => Some(self.meta(cur.as_ref(), other, &raw.text)?),
            };
        }
        Ok(cur)
    }

    /// ARG values a RUN sees as env (Docker's rule: ENV of the same name wins), plus the
    /// predefined proxy args given with --build-arg.
    fn run_args(
        &self,
        args: &BTreeMap<String, String>,
        env: &[(String, String)],
    ) -> BTreeMap<String, String> {
        let mut out: BTreeMap<String, String> = args
            .iter()
            .filter(|(k, _)| !env.iter().any(|(n, _)| n == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for p in PREDEFINED_ARGS {
            if let Some(v) = self.opts.build_args.get(*p) {
                out.entry(p.to_string()).or_insert_with(|| v.clone());
            }
        }
        out
    }

    /// An error when the build was asked to stop.
    pub(super) fn check_cancel(&self) -> Result<()> {
        let stop = self
            .opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed));
        if stop {
            return Err(Error::invalid("build", "interrupted"));
        }
        Ok(())
    }

    fn begin(&mut self, raw: &Raw) {
        self.step += 1;
        say!(self, "Step {}/{} : {}", self.step, self.total, raw.text);
    }

    /// FROM's image: `scratch`, an earlier stage, or an image in the store.
    fn base(&mut self, image: &str, si: usize) -> Result<Option<ImageRecord>> {
        if image.eq_ignore_ascii_case("scratch") {
            return Ok(None);
        }
        if let Some(i) = self.plan.stage_ref(image, si) {
            return Ok(self.results[i].clone());
        }
        let pulled = self
            .eng
            .ensure_image(image, PullPolicy::Missing)
            .map_err(|e| Error::invalid("FROM", format!("{image}: pulling it failed: {e}")))?;
        if pulled {
            say!(self, " ---> pulled {image}");
        }
        self.eng.images()?.get(image).map(Some).map_err(|e| match e {
            Error::NotFound { .. } => Error::invalid(
                "FROM",
                format!("{image}: not in the image store, and a short name is not pulled (name its registry, e.g. `docker.io/library/{image}`, or `codex-ctr pull` / `image load` it first)"),
            ),
            e => e,
        })
    }

    /// The image's config object (empty for scratch).
    pub(super) fn config_of(&self, image: Option<&ImageRecord>) -> Result<Value> {
        match image {
            Some(i) => Ok(self.eng.images()?.config_json(i)?["config"].clone()),
            None => Ok(json!({})),
        }
    }

    /// The cached image for `key`, if it is still in the store (never with --no-cache).
    pub(super) fn cached(&mut self, key: &str) -> Option<ImageRecord> {
        if self.opts.no_cache {
            return None;
        }
        let id = self.cache.get(key)?;
        let image = self.eng.images().ok()?.get(&id).ok()?;
        say!(self, " ---> Using cache");
        say!(self, " ---> {}", image.short_id());
        self.result.cached += 1;
        Some(image)
    }

    /// Records a step's new image.
    pub(super) fn made(&mut self, key: &str, image: ImageRecord) -> Result<ImageRecord> {
        self.cache.put(key, &image.id)?;
        say!(self, " ---> {}", image.short_id());
        self.result.executed += 1;
        Ok(image)
    }

    /// A metadata step: the same layers, the config changed.
    fn meta(
        &mut self,
        parent: Option<&ImageRecord>,
        instr: &Instruction,
        text: &str,
    ) -> Result<ImageRecord> {
        let key = Cache::key(parent_id(parent), &format!("{instr:?}"), &BTreeMap::new());
        if let Some(i) = self.cached(&key) {
            return Ok(i);
        }
        let spec = CommitSpec {
            created_by: text.to_string(),
            ..Default::default()
        };
        let image = self
            .eng
            .images()?
            .commit_image(parent, None, &spec, |c| config::apply_step(c, Some(instr)))?;
        self.made(&key, image)
    }

    /// RUN: a container of the engine on the parent image, committed when it exits 0.
    fn run(
        &mut self,
        parent: Option<&ImageRecord>,
        raw: &Raw,
        cmd: &Command,
        network: Option<&str>,
        args: &BTreeMap<String, String>,
        config: &Value,
    ) -> Result<ImageRecord> {
        let argv = cmd.argv(&config::shell_of(config));
        let network = match network.or(self.opts.network.as_deref()) {
            Some("host") => "host",
            _ => "none",
        };
        let mut extra = args.clone();
        extra.insert("\0network".into(), network.into());
        let key = Cache::key(parent_id(parent), &format!("RUN {argv:?}"), &extra);
        if let Some(i) = self.cached(&key) {
            return Ok(i);
        }
        let parent = parent.filter(|p| !p.layers.is_empty()).ok_or_else(|| {
            Error::invalid(
                "RUN",
                format!(
                    "line {}: RUN needs an image with files (FROM scratch has none)",
                    raw.line
                ),
            )
        })?;
        let image = super::step::run_container(self, parent, raw, &argv, network, args)?;
        self.made(&key, image)
    }
}

pub(super) fn parent_id(p: Option<&ImageRecord>) -> &str {
    p.map_or("scratch", |i| i.id.as_str())
}

/// Where a COPY destination lands: absolute, relative ones under the WORKDIR (a trailing
/// `/` kept: it means "into this directory").
pub(super) fn dest_path(dest: &str, config: &Value) -> String {
    let workdir = config["WorkingDir"]
        .as_str()
        .filter(|w| !w.is_empty())
        .unwrap_or("/");
    let joined = join_workdir(workdir, dest);
    if (dest.ends_with('/') || dest.ends_with("/.") || dest == ".") && joined != "/" {
        format!("{joined}/")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_destinations() {
        let c = json!({"WorkingDir": "/app"});
        assert_eq!(dest_path("x", &c), "/app/x");
        assert_eq!(dest_path("sub/", &c), "/app/sub/");
        assert_eq!(dest_path(".", &c), "/app/");
        assert_eq!(dest_path("/abs/f", &c), "/abs/f");
        assert_eq!(dest_path("/", &c), "/");
        assert_eq!(dest_path("./", &json!({})), "/");
    }
}
