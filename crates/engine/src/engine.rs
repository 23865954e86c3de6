//! The engine's API: what `codex-ctr` and an embedding program call. Containers are
//! records in the registry, bundles under `containers/<id>/`, and while they run, a
//! supervisor process each (see `supervisor`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use codex_sys::ProcessId;
use serde_json::Value;

use crate::config::{ContainerConfig, Isolation, VolumeSource};
use crate::error::{Context, Error, Result};
use crate::image::ImageStore;
use crate::logread::LogQuery;
use crate::registry::{ContainerRecord, ContainerStatus, Keeping, Registry};
use crate::supervisor::logs::{self, LogLine};
use crate::volume;

/// Where a container made by an earlier version keeps its OCI bundle (`config.json`),
/// in its directory. A container made now is its own bundle: its directory holds the
/// `config.json` (a directory less to make and delete per container; see
/// [`bundle_dir`]).
pub const OLD_BUNDLE_DIR: &str = "bundle";
/// The OCI config in a container's bundle.
pub const CONFIG_FILE: &str = "config.json";

/// The OCI bundle of the container whose directory is `dir`: `dir` itself, or its
/// `bundle/` for a container made by an earlier version.
pub(crate) fn bundle_dir(dir: &Path) -> PathBuf {
    let old = dir.join(OLD_BUNDLE_DIR);
    match dir.join(CONFIG_FILE).exists() || !old.is_dir() {
        true => dir.to_path_buf(),
        false => old,
    }
}
pub const ROOTFS_DIR: &str = "rootfs";
pub const LOG_FILE: &str = "container.log";

pub use crate::exec::ExecRequest;

pub use crate::follow::LogFollow;

/// An engine over one root directory.
pub struct Engine {
    pub(crate) root: PathBuf,
    pub(crate) registry: Registry,
    pub(crate) supervisor_exe: PathBuf,
}

impl Engine {
    /// Opens (creating if needed) the engine root. It repairs what a crash left only when
    /// something says a crash happened (an abandoned change, a new boot: see
    /// [`crate::registry::Intent`]); otherwise it reads a few small files and takes no
    /// lock, whatever the number of containers. A dead supervisor is noticed by the
    /// next command that touches its container ([`Engine::refresh`]); [`Engine::check`]
    /// looks at everything.
    /// `supervisor_exe` is a binary whose `__supervise --root ROOT ID` runs
    /// [`crate::supervisor::run`] (the `codex-ctr` binary does).
    pub fn open(root: &Path, supervisor_exe: PathBuf) -> Result<Engine> {
        let registry = Registry::open(root)?;
        let due = registry.reconcile_due()?;
        let engine = Engine {
            root: root.to_path_buf(),
            registry,
            supervisor_exe,
        };
        if let Some(due) = due {
            crate::trace::phase("open: reconcile due");
            engine.check_due(&due)?;
        }
        crate::trace::phase("open");
        Ok(engine)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn images(&self) -> Result<ImageStore> {
        ImageStore::open(&self.root)
    }

    /// The codex-runtime state root the engine's containers live in.
    pub fn runtime(&self) -> codex_runtime::Runtime {
        codex_runtime::Runtime::new(self.root.join("runtime"))
    }

    pub fn container_dir(&self, id: &str) -> Result<PathBuf> {
        self.registry.container_dir(id)
    }

    /// Validates `config`, resolves its image, writes the OCI bundle and records the
    /// container as `created`. Nothing is left behind on error.
    pub fn create(&self, config: ContainerConfig) -> Result<ContainerRecord> {
        self.create_as(config, Keeping::Durable, None)
    }

    /// [`Engine::create`] for `run --rm`: the container's files are written without
    /// fsync, here and in every later change, since it goes when its run ends; a host
    /// crash may lose it (see [`ContainerRecord::ephemeral`]). `remover` is the attached
    /// command that will remove it once it has its exit code (this process, for an
    /// attached `run --rm`): should that command be gone first, the container is
    /// removed when it ends all the same ([`ContainerRecord::remover_pid`]). Without
    /// one, set `auto_remove` in the config.
    pub fn create_ephemeral(
        &self,
        config: ContainerConfig,
        remover: Option<ProcessId>,
    ) -> Result<ContainerRecord> {
        self.create_as(config, Keeping::Ephemeral { remover }, None)
    }

    /// [`Engine::create`] (`keeping` durable) or [`Engine::create_ephemeral`] of a
    /// container that `prepared` will start: when its supervisor is already known (one
    /// forked by this process), the record names it from the start, and the supervisor
    /// need not claim the container (a locked write of its record) once it has its id;
    /// and the supervisor mounts the rootfs while the create goes on.
    pub fn create_for(
        &self,
        config: ContainerConfig,
        keeping: Keeping,
        prepared: &mut crate::start::PreparedStart,
    ) -> Result<ContainerRecord> {
        self.create_as(config, keeping, Some(prepared))
    }

    fn create_as(
        &self,
        config: ContainerConfig,
        keeping: Keeping,
        ahead: Option<&mut crate::start::PreparedStart>,
    ) -> Result<ContainerRecord> {
        let supervisor = ahead.as_ref().and_then(|p| p.supervisor());
        let premounter = ahead.as_deref();
        // The container whose rootfs the supervisor was told to mount.
        let mut premounted: Option<String> = None;
        config.validate()?;
        let ephemeral = keeping != Keeping::Durable;
        let mut config = config;
        // Recorded as resolved: a later default (the bridge, once wired) does not
        // change what an existing container was made with.
        config.network = Some(crate::network::mode::effective(&config));
        let joined = crate::network::join::resolve_target(&self.registry, &mut config)?;
        let mut image_env = Vec::new();
        let mut image_cwd = None;
        let mut lowers: Vec<PathBuf> = Vec::new();
        if let Some(reference) = &config.image {
            let store = self.images()?;
            let image = store.get(reference)?;
            lowers = store.rootfs_layers(&image)?;
            if lowers.is_empty() {
                // Never fall back to the host's / (what an empty layer list means).
                return Err(Error::invalid(
                    "image",
                    format!("{reference} has no layers: nothing to run from"),
                ));
            }
            image_env = image.config.env.clone();
            image_cwd = Some(image.config.working_dir.clone()).filter(|w| !w.is_empty());
            crate::image::apply_defaults(&image.config, &lowers, &mut config)?;
            // Record the image by id: a later re-tag does not change this container.
            config.image = Some(image.id.clone());
        } else if let Some(r) = &config.rootfs {
            if !r.is_dir() {
                return Err(Error::invalid(
                    "rootfs",
                    format!("{} is not a directory", r.display()),
                ));
            }
            lowers = vec![r.clone()];
            crate::image::resolve_named_user(&lowers, &mut config)?;
        } else {
            // Minimal isolation: the host's root; a name is refused there.
            crate::image::resolve_named_user(&[], &mut config)?;
        }
        let network = crate::network::mode::effective(&config)
            .network_name()
            .map(str::to_string);
        if network.as_deref() == Some(crate::network::DEFAULT_NETWORK) {
            // Made on first use, with a subnet that avoids the host's.
            self.default_network()?;
        }
        crate::trace::phase("create: image resolved");
        let cfg_json =
            serde_json::to_value(&config).map_err(|e| Error::invalid("config", e.to_string()))?;
        // The bundle is written inside the registry's create: a create killed half-way
        // leaves no record (reconcile removes the directory), never an unstartable one.
        let created = self.registry.create_container_with(
            config.name.as_deref(),
            cfg_json,
            config.labels.clone(),
            keeping,
            |rec, dir, index| {
                rec.set_supervisor(supervisor);
                let id = rec.id.as_str();
                // Its address, handed out under the same lock as the container's entry.
                if let Some(net) = &network {
                    crate::network::allocate_in(&self.registry, index, net, id, &config.aliases)?;
                }
                // The volumes are made and recorded with the container, under the same
                // lock: a `volume rm` either counts this container or comes after it.
                for v in &config.volumes {
                    if let VolumeSource::Named { name } = &v.source {
                        let new = !index.volumes.contains_key(name);
                        volume::ensure_in(&self.root, index, name, v.anonymous)?;
                        if new && config.isolation == Isolation::Strict {
                            volume::give_to_mapped_root(&self.root, name)?;
                        }
                    }
                }
                if config.isolation == Isolation::Strict {
                    // Container root is an unprivileged host uid under `strict`: its group
                    // must pass through to the rootfs (the state file stays 0600).
                    crate::registry::ensure_shared_dir(dir)?;
                }
                let rootfs = if lowers.is_empty() {
                    PathBuf::from("/")
                } else {
                    for d in ["upper", "work", ROOTFS_DIR] {
                        std::fs::create_dir(dir.join(d))
                            .ctx(|| format!("creating {}", dir.join(d).display()))?;
                    }
                    let list = serde_json::to_vec(&lowers)
                        .map_err(|e| Error::invalid("image", format!("layer paths: {e}")))?;
                    // Its directory entry is made durable by the record's write below,
                    // which syncs this same directory: no sync of its own. Nobody reads
                    // the directory before that write commits it: written in place.
                    let lowers = dir.join("lowers");
                    let file = codex_sys::AtomicFile::new(&lowers)
                        .without_dir_sync()
                        .fresh();
                    match ephemeral {
                        true => file.not_durable(),
                        false => file,
                    }
                    .write(&list)
                    .ctx(|| format!("writing {}", lowers.display()))?;
                    if let Some(ahead) = premounter {
                        ahead.premount(id, ephemeral);
                        premounted = Some(id.to_string());
                        crate::testhook::pause("create-premounted");
                        crate::testhook::die("create-premounted");
                    }
                    dir.join(ROOTFS_DIR)
                };
                crate::trace::phase("create: layers listed");
                let mut spec = crate::profile::spec_value(
                    &config,
                    id,
                    &rootfs,
                    &image_env,
                    image_cwd.as_deref(),
                    &|name| Ok(volume::data_dir(&self.root, name)),
                )?;
                match &joined {
                    Some(t) => crate::network::join::share_files(&mut spec, &self.registry, t)?,
                    None if own_etc_files(&config) => {
                        crate::network::files::add_mounts(&mut spec, dir);
                        crate::network::files::write_at_create(
                            &self.registry,
                            index,
                            rec,
                            &config,
                            dir,
                        )?;
                    }
                    None => {}
                }
                crate::trace::phase("create: spec made");
                let text = serde_json::to_vec_pretty(&spec)
                    .map_err(|e| Error::invalid("spec", e.to_string()))?;
                // In place, as the layer list above; synced unless ephemeral (its
                // directory entry by the record's write).
                let config_json = dir.join(CONFIG_FILE);
                let file = codex_sys::AtomicFile::new(&config_json)
                    .without_dir_sync()
                    .fresh();
                match ephemeral {
                    true => file.not_durable(),
                    false => file,
                }
                .write(&text)
                .ctx(|| format!("writing {}", config_json.display()))?;
                crate::trace::phase("create: bundle written");
                Ok(())
            },
        );
        if let (Err(_), Some(ahead), Some(id)) = (&created, ahead, &premounted) {
            // The removal under the create may have met the overlay's work directory
            // being made: once the supervisor is gone, what is left goes.
            ahead.stop();
            let _ = self.registry.remove_failed_create(id);
        }
        if created.is_err() {
            // Anonymous volumes were made for this container only (and, the create having
            // failed, never recorded): their directories go.
            for v in config.volumes.iter().filter(|v| v.anonymous) {
                if let VolumeSource::Named { name } = &v.source {
                    let _ = std::fs::remove_dir_all(volume::volumes_dir(&self.root).join(name));
                }
            }
        }
        crate::trace::phase("create: recorded");
        if let Ok(rec) = &created {
            let image = config.image.clone().unwrap_or_default();
            crate::events::emit_about(&self.root, rec, "create", &[("image", image)]);
        }
        crate::trace::phase("create: event");
        created
    }

    /// The OCI spec a container runs with (`inspect --spec`).
    pub fn spec(&self, reference: &str) -> Result<Value> {
        let rec = self.get(reference)?;
        let p = bundle_dir(&self.container_dir(&rec.id)?).join(CONFIG_FILE);
        let text = std::fs::read(&p).ctx(|| format!("reading {}", p.display()))?;
        serde_json::from_slice(&text).map_err(|e| Error::Corrupt {
            path: p,
            reason: e.to_string(),
        })
    }

    /// A container's record, made truthful first if its supervisor died (see
    /// [`Engine::refresh`]).
    pub fn get(&self, reference: &str) -> Result<ContainerRecord> {
        let rec = self.registry.get(reference)?;
        self.refresh(rec)
    }

    pub fn list(&self) -> Result<Vec<ContainerRecord>> {
        crate::parallel::map(
            self.registry.list()?,
            crate::parallel::Spread::per_cpu(),
            |r| self.refresh(r),
        )
        .into_iter()
        .collect()
    }

    /// A record that says running while its supervisor is gone (killed, or the host's
    /// OOM killer) is corrected: if the container's init is gone too, it has exited
    /// with an unknown code; if the init still runs, it runs unsupervised (its output
    /// is no longer logged), which the record's error says. `rm -f` cleans either.
    pub fn refresh(&self, rec: ContainerRecord) -> Result<ContainerRecord> {
        if !matches!(
            rec.status,
            ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Restarting
        ) {
            return Ok(rec);
        }
        if rec.live_supervisor().is_some() {
            return Ok(rec);
        }
        if rec.status == ContainerStatus::Restarting {
            return self.repair_restarting(rec);
        }
        let init_alive = self
            .runtime()
            .load(&rec.id)
            .map(|c| c.state.init_alive())
            .unwrap_or(false);
        let note = "the supervisor died".to_string();
        if init_alive {
            if rec.error.as_deref() == Some("the supervisor died; output is no longer logged") {
                return Ok(rec);
            }
            return self.registry.update_container(&rec.id, |r| {
                r.error = Some(format!("{note}; output is no longer logged"));
                Ok(())
            });
        }
        // What the dead supervisor would have done once the init exited: kill what is
        // left in the cgroup (children of an init without a PID namespace), remove the
        // runtime container, unmount the rootfs. Only for the run the record knows (a
        // new supervisor may have started another meanwhile).
        let rt = self.runtime();
        if rt.load(&rec.id).is_ok_and(|c| Some(c.state.pid) == rec.pid) {
            let _ = rt.delete(&rec.id, true);
            crate::supervisor::unmount_rootfs(&self.container_dir(&rec.id)?);
        }
        // Re-check under the lock: a supervisor finishing normally wins the race.
        let mut ended = false;
        let rec = self.registry.update_container(&rec.id, |r| {
            if matches!(
                r.status,
                ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Restarting
            ) {
                r.status = ContainerStatus::Exited;
                r.pid = None;
                r.set_supervisor(None);
                r.finished_at
                    .get_or_insert_with(codex_runtime::state::now_rfc3339);
                r.error = Some(format!("{note}; the exit code is unknown"));
                ended = true;
            }
            Ok(())
        })?;
        if ended {
            crate::events::emit_about(&self.root, &rec, "die", &[("error", note.clone())]);
            // Its published ports end with it, as the supervisor would have ended them.
            crate::network::publish::release(&self.registry, &rec.id);
        }
        Ok(rec)
    }

    /// Blocks until the container is no longer running; its exit code, `None` when
    /// it is not known (it never ran, or its supervisor died before recording it: the
    /// record's `error` says which). Never a made-up 0.
    pub fn wait(&self, reference: &str) -> Result<Option<i32>> {
        let rec = self.get(reference)?;
        loop {
            if let Some(r) = self.wait_exit(&rec.id, Duration::from_secs(3600))? {
                return Ok(r.exit_code);
            }
        }
    }

    /// The lines of a container's log that `query` selects.
    pub fn logs(&self, reference: &str, query: &LogQuery) -> Result<Vec<LogLine>> {
        let rec = self.get(reference)?;
        let cfg: ContainerConfig = serde_json::from_value(rec.config.clone()).unwrap_or_default();
        let all = logs::read_all(
            &self.container_dir(&rec.id)?.join(LOG_FILE),
            cfg.log_rotation().max_files,
        )?;
        Ok(query.select(all))
    }

    /// Everything known about a container, as one JSON object.
    pub fn inspect(&self, reference: &str) -> Result<Value> {
        let rec = self.get(reference)?;
        let mut v =
            serde_json::to_value(&rec).map_err(|e| Error::invalid("record", e.to_string()))?;
        if let Ok(state) = self.runtime().load(&rec.id) {
            v["cgroups"] = serde_json::to_value(&state.state.cgroups.dirs).unwrap_or(Value::Null);
        }
        let cfg: ContainerConfig = serde_json::from_value(rec.config.clone()).unwrap_or_default();
        v["isolation"] = serde_json::to_value(cfg.isolation).unwrap_or(Value::Null);
        v["limits"] = serde_json::to_value(&cfg.limits).unwrap_or(Value::Null);
        // An unreadable network record (reconcile reports it) must not hide the rest.
        v["networks"] = self
            .network_attachments(&rec.id)
            .ok()
            .and_then(|a| serde_json::to_value(a).ok())
            .unwrap_or(Value::Null);
        v["ports"] = self
            .ports_of(&rec.id)
            .ok()
            .and_then(|p| serde_json::to_value(p).ok())
            .unwrap_or(Value::Null);
        if let Ok(spec) = self.spec(&rec.id) {
            v["mounts"] = spec["mounts"].clone();
            // The configured path (relative to the supervisor's cgroup); `cgroups` has
            // the directories themselves while the container runs.
            v["cgroup_path"] = spec["linux"]["cgroupsPath"].clone();
        }
        Ok(v)
    }
}

const RUNNING: ContainerStatus = ContainerStatus::Running;
const PAUSED: ContainerStatus = ContainerStatus::Paused;

impl Engine {
    /// The container's record if its status is one of `allowed`; else a `WrongState`
    /// error with `hint`.
    pub(crate) fn get_in(
        &self,
        reference: &str,
        allowed: &[ContainerStatus],
        hint: &str,
    ) -> Result<ContainerRecord> {
        let rec = self.get(reference)?;
        if !allowed.contains(&rec.status) {
            return Err(Error::wrong_state(&rec.name, rec.status, hint));
        }
        Ok(rec)
    }
}

/// A container with a network namespace of its own gets the engine's `/etc/hosts` and
/// `/etc/resolv.conf` (host networking keeps the host's, a minimal container is a host
/// program). A strict rootfs is read-only and owned by a uid its user namespace does not
/// map: the start makes the mount points an image lacks (files::prepare_rootfs).
fn own_etc_files(config: &ContainerConfig) -> bool {
    config.isolation != Isolation::Minimal
        && !matches!(
            crate::network::mode::effective(config),
            crate::network::NetworkMode::Host
        )
}

/// A supervisor has claimed the container and is starting it: not live yet, but its
/// supervisor process is.
pub(crate) fn starting(rec: &ContainerRecord) -> bool {
    !is_live(rec.status) && rec.live_supervisor().is_some()
}

/// Running, paused or between restarts: a supervisor is (or will be) there.
pub fn is_live(status: ContainerStatus) -> bool {
    matches!(
        status,
        ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Restarting
    )
}

/// A config's isolation, for callers that only have the record.
pub fn isolation_of(rec: &ContainerRecord) -> Isolation {
    rec.config
        .get("isolation")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

impl Engine {
    /// Freezes every process of a running container.
    pub fn pause(&self, reference: &str) -> Result<ContainerRecord> {
        let rec = self.get_in(reference, &[RUNNING], "it must be running")?;
        self.runtime().pause(&rec.id)?;
        let rec = self.registry.update_container(&rec.id, |r| {
            r.status = ContainerStatus::Paused;
            Ok(())
        })?;
        crate::events::emit_about(&self.root, &rec, "pause", &[]);
        Ok(rec)
    }

    pub fn unpause(&self, reference: &str) -> Result<ContainerRecord> {
        let rec = self.get_in(reference, &[PAUSED], "it must be paused")?;
        self.runtime().resume(&rec.id)?;
        let rec = self.registry.update_container(&rec.id, |r| {
            r.status = ContainerStatus::Running;
            Ok(())
        })?;
        crate::events::emit_about(&self.root, &rec, "unpause", &[]);
        Ok(rec)
    }

    /// Stops (if running) and starts again; counts a restart.
    pub fn restart(&self, reference: &str, timeout: Duration) -> Result<ContainerRecord> {
        let rec = self.stop(reference, timeout)?;
        self.registry.update_container(&rec.id, |r| {
            r.restart_count += 1;
            Ok(())
        })?;
        self.start_keeping_count(&rec.id, None)
    }

    /// Usage of a running container: CPU (ns total), memory used/limit, pids, block I/O,
    /// in the runtime's `events --stats` shape.
    pub fn stats(&self, reference: &str) -> Result<Value> {
        let rec = self.get_in(reference, &[RUNNING, PAUSED], "it must be running")?;
        let v = self.runtime().stats(&rec.id)?;
        Ok(v["data"].clone())
    }

    /// What `codex-ctr info` prints: host kind, kernel, root, counts.
    pub fn info(&self) -> Result<Value> {
        let recs = self.list()?;
        let count = |s: ContainerStatus| recs.iter().filter(|r| r.status == s).count();
        let kind = codex_runtime::cgroups::Cgroups::resolve(None, "probe")
            .map(|c| c.host_kind())
            .unwrap_or("unknown");
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        Ok(serde_json::json!({
            "root": self.root,
            "kernel": kernel.trim(),
            "cgroup_version": kind,
            "cgroup_driver": "cgroupfs",
            "containers": recs.len(),
            "running": count(ContainerStatus::Running),
            "paused": count(ContainerStatus::Paused),
            "stopped": recs.len() - count(ContainerStatus::Running) - count(ContainerStatus::Paused),
            "volumes": self.registry.index().map(|i| i.volumes.len()).unwrap_or(0),
            "images": self.images().and_then(|s| s.list()).map(|l| l.len()).unwrap_or(0),
        }))
    }
}

pub use crate::copy::api::CopyDirection;
