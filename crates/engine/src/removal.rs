//! `rm`: a container and everything of it goes, after the removal has been claimed.
//!
//! The claim is the record's `removing` state, set under the registry lock once the
//! container is neither running nor being started. From then on no supervisor can claim
//! it (a start needs it created or exited), so the cleanup that follows (the runtime's
//! container, the rootfs mount, the directory) can never hit a run that a `start` began
//! meanwhile. An `rm` that dies after the claim leaves a `removing` record that the next
//! `rm` finishes.

use std::time::{Duration, Instant};

use crate::config::ContainerConfig;
use crate::engine::{is_live, starting, Engine};
use crate::error::{Context, Error, Result};
use crate::registry::{ContainerRecord, ContainerStatus};
use crate::volume;

/// The config field that makes the supervisor remove a container once it ends.
const AUTO_REMOVE: &str = "auto_remove";

/// Whether the record (as it is now, not as it was created) asks for removal at the end:
/// [`Engine::remove_when_ended`] may have set it after the supervisor read its config.
pub(crate) fn auto_remove_requested(rec: &ContainerRecord) -> bool {
    rec.config
        .get(AUTO_REMOVE)
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

/// How long `rm` waits for a container's last processes to die.
const RUNTIME_DELETE_PATIENCE: Duration = Duration::from_secs(5);

/// How many times `rm -f` stops a container that a racing `start` keeps starting.
const FORCE_ATTEMPTS: usize = 5;

impl Engine {
    /// Removes a container (`force` stops a running one first) and everything of it;
    /// with `volumes`, its anonymous volumes too.
    pub fn remove(&self, reference: &str, force: bool, volumes: bool) -> Result<()> {
        let mut rec = self.get(reference)?;
        if let Some(result) = self.remove_if_ended(&rec, volumes) {
            return result;
        }
        let mut attempt = 0;
        while rec.status != ContainerStatus::Removing {
            attempt += 1;
            rec = match self.quiesce(rec, force) {
                Ok(r) => r,
                // Removed by someone else meanwhile (an attached `run --rm` whose
                // container this stopped): gone, as asked.
                Err(Error::NotFound { .. }) => return Ok(()),
                // Anything else the quiesce says (a stopped supervisor that cannot record
                // the kill yet) is the answer: retrying would only wait again.
                Err(e) => return Err(e),
            };
            crate::testhook::pause("rm-claim");
            match self.claim_removal(&rec.id) {
                Ok(claimed) => rec = claimed,
                // Removed by someone else meanwhile (an attached `run --rm` whose
                // container this stopped): gone, as asked.
                Err(Error::NotFound { .. }) => return Ok(()),
                // A start won the race: with force, stop what it started and claim again.
                Err(e @ Error::WrongState { .. }) if !force || attempt >= FORCE_ATTEMPTS => {
                    return Err(e)
                }
                Err(Error::WrongState { .. }) => match self.get(&rec.id) {
                    // Another remover claimed it just now (an attached `run --rm` whose
                    // container this stopped): let it finish; only a claim it left
                    // behind (it died) is this call's to complete.
                    Ok(r) if r.status == ContainerStatus::Removing => {
                        if self.gone_within(&r.id, Duration::from_secs(10)) {
                            return Ok(());
                        }
                        rec = r;
                    }
                    Ok(r) => rec = r,
                    Err(Error::NotFound { .. }) => return Ok(()),
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
        // Whatever a supervisor (or a crashed one) left: the runtime's container, the
        // overlay. Nothing can start the container again now.
        self.delete_runtime_container(&rec.id)?;
        crate::supervisor::unmount_rootfs(&self.container_dir(&rec.id)?);
        // From here the container leaves the index first and its addresses after: a kill
        // in between leaves this intent abandoned, and the next command's open frees them.
        let _intent = self.registry.intent("rm")?;
        self.registry.remove_container(&rec.id)?;
        self.after_removal(&rec, volumes)
    }

    /// The removal of a container that has ended and whose supervisor cleaned up after
    /// it (no runtime container is left: that is what a claim would have protected from
    /// a racing `start`), in one step under the registry lock, with no claim written
    /// first: the common end of `run --rm`. `None` when the container is not such a one,
    /// or a `start` won the race to it (the claiming removal then takes over).
    fn remove_if_ended(&self, rec: &ContainerRecord, volumes: bool) -> Option<Result<()>> {
        let ended = |r: &ContainerRecord| !is_live(r.status) && !starting(r);
        if !ended(rec) || self.runtime().root().join(&rec.id).exists() {
            return None;
        }
        let dir = match self.container_dir(&rec.id) {
            Ok(d) => d,
            Err(e) => return Some(Err(e)),
        };
        crate::testhook::pause("rm-claim");
        // A `cp` of the stopped container may have the overlay mounted here.
        crate::supervisor::unmount_rootfs(&dir);
        let intent = match self.registry.intent("rm") {
            Ok(i) => i,
            Err(e) => return Some(Err(e)),
        };
        let mut deleter = None;
        let check = |r: &ContainerRecord| {
            deleter = r.running_deleter();
            if ended(r) {
                Ok(())
            } else {
                Err(Error::wrong_state(
                    &r.name,
                    r.status,
                    "it was started again meanwhile",
                ))
            }
        };
        // The one intent covers the whole removal, the deletion of its files included.
        let trash = match self.registry.retire_container_if(&rec.id, check, &intent) {
            Ok(t) => t,
            Err(Error::WrongState { .. }) => return None,
            // Removed by someone else meanwhile: gone, as asked.
            Err(Error::NotFound { .. }) => return Some(Ok(())),
            Err(e) => return Some(Err(e)),
        };
        let done = self.after_removal(rec, volumes);
        // The process that recorded the end waits for the attached `run --rm` to exit,
        // and deletes the files then (or, killed, leaves them to the full reconcile):
        // the command exits 0.7-0.9 ms sooner. Read under the lock that renamed them:
        // that process stops being named, under the same lock, only before it looks
        // for them.
        let deleted = match deleter {
            Some(_) => {
                crate::trace::phase("rm: files left to the supervisor");
                Ok(())
            }
            None => trash.delete(),
        };
        drop(intent);
        Some(done.and(deleted))
    }

    /// What follows a container's removal from the registry: its event, its addresses
    /// and the rules of its ports, its peers' hosts files, with `volumes` its anonymous
    /// volumes.
    fn after_removal(&self, rec: &ContainerRecord, volumes: bool) -> Result<()> {
        crate::events::emit_about(self.root(), rec, "destroy", &[]);
        // Its addresses go with it. Should this fail (or the process die first), the
        // next reconcile frees them: the container is no longer in the index.
        let freed = crate::network::release_container(&self.registry, &rec.id).unwrap_or_default();
        if freed.iter().any(|(_, ep)| !ep.ports.is_empty()) {
            // Its published ports, should a crashed supervisor have left them (an
            // address alone changes no rule).
            let _ =
                crate::network::sync::sync(&self.registry, crate::network::sync::When::IfApplied);
        }
        // Its peers' hosts files forget it.
        let nets = freed.into_iter().map(|(n, _)| n).collect();
        crate::network::hostsync::refresh(&self.registry, &nets, None);
        if volumes {
            let cfg: ContainerConfig =
                serde_json::from_value(rec.config.clone()).unwrap_or_default();
            volume::remove_anonymous(&self.registry, &cfg)?;
        }
        Ok(())
    }

    /// Whether the container's record is gone within `limit` (another remover finishing).
    fn gone_within(&self, id: &str, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        loop {
            match self.registry.get(id) {
                Err(Error::NotFound { .. }) => return true,
                _ if Instant::now() >= end => return false,
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Waits out a start in progress and stops a live container (with `force`; without,
    /// either is refused).
    fn quiesce(&self, mut rec: ContainerRecord, force: bool) -> Result<ContainerRecord> {
        if starting(&rec) {
            if !force {
                return Err(Error::wrong_state(
                    &rec.name,
                    "starting",
                    "wait for it or use force",
                ));
            }
            // Let the start finish (or fail), then stop what it started.
            let end = Instant::now() + Duration::from_secs(30);
            while starting(&rec) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
                rec = self.get(&rec.id)?;
            }
        }
        if is_live(rec.status) {
            if !force {
                return Err(Error::wrong_state(
                    &rec.name,
                    rec.status,
                    "stop it first or use force",
                ));
            }
            rec = self.stop(&rec.id, Duration::ZERO)?;
        }
        Ok(rec)
    }

    /// `delete --force` of the runtime's container, retried while its processes are
    /// still dying (a cgroup is removed only once empty). An error leaves the record
    /// `removing`, for the next `rm` to finish.
    pub(crate) fn delete_runtime_container(&self, id: &str) -> Result<()> {
        let rt = self.runtime();
        let end = Instant::now() + RUNTIME_DELETE_PATIENCE;
        loop {
            match rt.delete(id, true) {
                Ok(_) => return Ok(()),
                // Nothing (left) to delete, or a directory without a loadable state: the
                // removal is claimed, so no supervisor is creating it, and what is left
                // is no container (seen once under load: `rm -f` succeeded and left
                // `runtime/<id>` behind).
                Err(_) if rt.load(id).is_err() => {
                    let dir = rt.root().join(id);
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            return Err(e).ctx(|| format!("removing {}", dir.display()));
                        }
                    }
                    return Ok(());
                }
                Err(e) if Instant::now() >= end => return Err(e.into()),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Marks the container `removing` if, under the lock, it is neither live nor claimed
    /// by a supervisor.
    fn claim_removal(&self, id: &str) -> Result<ContainerRecord> {
        self.registry.update_container(id, |r| {
            if is_live(r.status) || starting(r) {
                return Err(Error::wrong_state(
                    &r.name,
                    r.status,
                    "it was started again meanwhile",
                ));
            }
            r.status = ContainerStatus::Removing;
            Ok(())
        })
    }

    /// Hands the removal of a started container to its supervisor, as `run -d --rm` does:
    /// for an attached `run --rm` whose reader went away. A container that has already
    /// ended (or never ran) is removed now. Returns whether it was removed now.
    pub fn remove_when_ended(&self, reference: &str) -> Result<bool> {
        let rec = self.get(reference)?;
        let handed = self.registry.update_container(&rec.id, |r| {
            if is_live(r.status) || starting(r) {
                if let Some(cfg) = r.config.as_object_mut() {
                    cfg.insert(AUTO_REMOVE.into(), serde_json::Value::Bool(true));
                }
            }
            Ok(())
        })?;
        if auto_remove_requested(&handed) {
            return Ok(false);
        }
        self.remove(&rec.id, true, true)?;
        Ok(true)
    }

    /// `rename`: the container named by `reference` is called `new` from now on (also
    /// while it runs). Peers on its networks see the new name in their hosts files from
    /// their next start.
    pub fn rename(&self, reference: &str, new: &str) -> Result<ContainerRecord> {
        let rec = self.get(reference)?;
        let renamed = self.registry.rename_container(&rec.id, new)?;
        crate::events::emit_about(
            self.root(),
            &renamed,
            "rename",
            &[("old_name", rec.name.clone())],
        );
        Ok(renamed)
    }

    /// Removes every container that is not running; returns their names.
    pub fn prune(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for r in self.list()? {
            if !matches!(
                r.status,
                ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Restarting
            ) {
                self.remove(&r.id, false, false)?;
                removed.push(r.name);
            }
        }
        Ok(removed)
    }
}
