//! The full check of a root (`codex-ctr system check`): the registry's reconcile (what an
//! interrupted create, rm or rename left), the addresses and rules of containers that are
//! gone, and every live record looked at (a supervisor that died is reported and its
//! container's record corrected).
//!
//! Opening the engine runs it only when [`Registry::reconcile_due`] says so (a new boot,
//! an abandoned change): every other command touches only the containers it names, so its
//! cost does not grow with the number of containers (docs/engine.md, "Cost model").

use crate::engine::{is_live, starting, Engine};
use crate::error::Result;
use crate::registry::{Due, Problem, Reconciled, Registry, Repair};

/// What [`Engine::check`] did.
#[derive(Debug, Default)]
pub struct Checked {
    /// What the registry's reconcile repaired and left.
    pub registry: Reconciled,
    /// Live records whose supervisor had died: `(name, what the record says now)`.
    pub corrected: Vec<(String, String)>,
    /// Records that could not be read or corrected.
    pub problems: Vec<Problem>,
}

impl Checked {
    /// Nothing was wrong.
    pub fn is_clean(&self) -> bool {
        self.registry.is_clean() && self.corrected.is_empty() && self.problems.is_empty()
    }
}

/// How much of the check an open runs for `due`: the registry's reconcile always; every
/// record too after a reboot (no supervisor survives one).
pub(crate) fn records_too(due: &Due) -> bool {
    matches!(due, Due::NewBoot)
}

impl Engine {
    /// The full check (see the module's doc). O(number of containers); the registry lock
    /// is held only while the registry's files are reconciled.
    pub fn check(&self) -> Result<Checked> {
        let registry = reconcile(&self.registry, false)?;
        self.delete_leftover_runtime_containers(&registry);
        let (corrected, problems) = self.refresh_all();
        Ok(Checked {
            registry,
            corrected,
            problems,
        })
    }

    /// What an open runs when the check is due. After a reboot also: the runtime's
    /// leftovers of the containers the reconcile removed, and every ephemeral (`run
    /// --rm`) container, whose run ended with the host (as its supervisor would have
    /// removed it), best effort: what fails stays for `rm`.
    pub(crate) fn check_due(&self, due: &Due) -> Result<()> {
        if !records_too(due) {
            let repaired = reconcile(&self.registry, false)?;
            self.delete_leftover_runtime_containers(&repaired);
            return Ok(());
        }
        let repaired = reconcile(&self.registry, true)?;
        self.delete_leftover_runtime_containers(&repaired);
        for id in repaired.repairs.iter().filter_map(removed_container) {
            let _ = self.delete_runtime_container(id);
        }
        let _ = self.refresh_all();
        self.remove_ephemeral();
        Ok(())
    }

    /// Removes every ephemeral container made on an earlier boot that nothing runs or
    /// starts (after a reboot: none). One made on this boot may be a `run --rm` of
    /// another CLI under way; and where the boot id cannot be read, none is removed.
    fn remove_ephemeral(&self) {
        let boot = crate::registry::boot_id();
        let Ok(names) = self.registry.container_names() else {
            return;
        };
        if boot.is_empty() {
            return;
        }
        let ids: std::collections::BTreeSet<String> = names.into_values().collect();
        for id in &ids {
            let Ok(rec) = self.registry.get(id) else {
                continue;
            };
            let earlier_boot = rec.ephemeral_boot.as_ref().is_some_and(|b| *b != boot);
            if earlier_boot && !is_live(rec.status) && !starting(&rec) {
                let _ = self.remove(id, true, true);
            }
        }
    }

    /// Every live record refreshed (a dead supervisor noticed), one at a time.
    fn refresh_all(&self) -> (Vec<(String, String)>, Vec<Problem>) {
        let (mut corrected, mut problems) = (Vec::new(), Vec::new());
        let Ok(names) = self.registry.container_names() else {
            return (corrected, problems);
        };
        let ids: std::collections::BTreeSet<String> = names.into_values().collect();
        for id in &ids {
            let rec = match self.registry.get(id) {
                Ok(r) => r,
                // Removed meanwhile.
                Err(crate::error::Error::NotFound { .. }) => continue,
                Err(e) => {
                    problems.push(Problem {
                        path: self.registry.containers_dir().join(id),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            if !is_live(rec.status) {
                continue;
            }
            let before = (rec.status, rec.error.clone());
            match self.refresh(rec) {
                Ok(now) if (now.status, now.error.clone()) != before => corrected.push((
                    now.name.clone(),
                    format!("{}: {}", now.status, now.error.unwrap_or_default()),
                )),
                Ok(_) => {}
                Err(e) => problems.push(Problem {
                    path: self.registry.containers_dir().join(id),
                    reason: e.to_string(),
                }),
            }
        }
        (corrected, problems)
    }
}

/// The id of a container `repair` removed.
fn removed_container(repair: &Repair) -> Option<&str> {
    match repair {
        Repair::RemovedIncomplete { id }
        | Repair::RemovedOrphan { id, .. }
        | Repair::DroppedName { id, .. }
        | Repair::RemovedLostInCrash { id, .. } => Some(id),
        _ => None,
    }
}

impl Engine {
    /// The runtime containers of removals the reconcile finished (`.removing-<id>`
    /// leftovers): an attached `run --rm`'s supervisor deletes its runtime container
    /// after the step that removed the container (see `supervisor::finish`), and one
    /// killed in between leaves it. Best effort: what fails stays for `system check`.
    fn delete_leftover_runtime_containers(&self, repaired: &Reconciled) {
        for id in repaired.repairs.iter().filter_map(removed_leftover) {
            let _ = self.delete_runtime_container(id);
        }
    }
}

/// The container id of a deleted `.removing-<id>` leftover.
fn removed_leftover(repair: &Repair) -> Option<&str> {
    let Repair::RemovedLeftover { path } = repair else {
        return None;
    };
    path.file_name()?
        .to_str()?
        .strip_prefix(crate::registry::REMOVING_PREFIX)
        .filter(|id| crate::registry::is_full_id(id))
}

/// The registry's reconcile (`after_reboot`: see [`Registry::reconcile_after_reboot`]),
/// and the network rules of addresses it freed.
fn reconcile(registry: &Registry, after_reboot: bool) -> Result<Reconciled> {
    let repaired = match after_reboot {
        true => registry.reconcile_after_reboot()?,
        false => registry.reconcile()?,
    };
    if repaired
        .repairs
        .iter()
        .any(|r| matches!(r, Repair::ReleasedAddress { .. }))
    {
        // Addresses of containers a crash left half-removed: their rules go too. Best
        // effort: a failing nft must not stop every command (the next sync retries, and
        // the plan skips containers that are not running anyway).
        let _ = crate::network::sync::sync(registry, crate::network::sync::When::IfApplied);
    }
    Ok(repaired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_new_boot_makes_an_open_look_at_every_record() {
        assert!(records_too(&Due::NewBoot));
        assert!(!records_too(&Due::Abandoned("/r/intents/1-0-rm".into())));
    }

    #[test]
    fn an_open_repairs_after_an_abandoned_change_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let open = || Engine::open(&root, "/nonexistent".into()).unwrap();
        let eng = open();
        let spec = crate::network::NetworkSpec {
            name: "n".into(),
            ..Default::default()
        };
        eng.create_network(spec).unwrap();
        let reg = eng.registry();
        let id = reg
            .create_container(None, serde_json::json!({}), Default::default())
            .unwrap()
            .id;
        eng.allocate_endpoint("n", &id, &[]).unwrap();
        // An rm killed between the index and the addresses: gone, its address held.
        reg.remove_container(&id).unwrap();
        let held = |e: &Engine| {
            let n = e.inspect_network("n").unwrap();
            n.record.endpoints.contains_key(&id)
        };
        // Nothing says a crash happened: the open repairs nothing (it reads no record).
        assert!(held(&open()));
        // What the killed rm leaves: its intent, with nobody's lock on it.
        let left = reg.intents_dir().join("1-0-rm");
        std::fs::write(&left, b"").unwrap();
        let eng = open();
        assert!(
            !held(&eng),
            "the open after an abandoned rm frees its address"
        );
        assert!(!left.exists());
        assert_eq!(eng.registry().reconcile_due().unwrap(), None);
        assert!(eng.check().unwrap().is_clean());
    }
}
