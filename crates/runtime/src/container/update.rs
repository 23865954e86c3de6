//! `update`: new resource limits for a running container, applied to its cgroups and
//! remembered in its state (so a later `update` or `exec` sees them).

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};
use serde_json::Value;

use super::Runtime;
use crate::cgroups::apply_resources;
use crate::error::{Error, Result};
use crate::state::Status;

/// `b` over `a`, object by object; nulls in `b` change nothing.
fn merge(a: &mut Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    continue;
                }
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b.clone(),
    }
}

/// `res` without its device rules when they are the ones in force: containerd's shim
/// sends the spec's whole resources object on every update (UpdateContainerResources), so
/// the rules come back unchanged, and rewriting them is a no-op on v1 and would mean a new
/// eBPF program on v2.
fn without_unchanged_devices(
    res: &LinuxResources,
    current: Option<&Vec<LinuxDeviceCgroup>>,
) -> LinuxResources {
    let mut res = res.clone();
    if res.devices().is_some() && res.devices().as_ref() == current {
        res.set_devices(None);
    }
    res
}

impl Runtime {
    pub fn update(&self, id: &str, res: &LinuxResources) -> Result<()> {
        let mut c = self.load(id)?;
        if c.status() == Status::Stopped {
            return Err(c.wrong_state("update", "needs a running container"));
        }
        let linux = c.state.config.linux().clone().unwrap_or_default();
        let devices = linux.devices().clone().unwrap_or_default();
        let current = linux
            .resources()
            .as_ref()
            .and_then(|r| r.devices().as_ref());
        apply_resources(
            &c.state.cgroups,
            &without_unchanged_devices(res, current),
            &devices,
            false,
        )?;
        let mut merged = serde_json::to_value(linux.resources().clone().unwrap_or_default())
            .map_err(|e| Error::Other(e.to_string()))?;
        merge(
            &mut merged,
            &serde_json::to_value(res).map_err(|e| Error::Other(e.to_string()))?,
        );
        let merged: LinuxResources =
            serde_json::from_value(merged).map_err(|e| Error::Other(e.to_string()))?;
        let mut linux = linux;
        linux.set_resources(Some(merged));
        c.state.config.set_linux(Some(linux));
        c.state.save(&c.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::{merge, without_unchanged_devices};
    use oci_spec::runtime::LinuxResources;
    use serde_json::json;

    fn resources(v: serde_json::Value) -> LinuxResources {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn unchanged_device_rules_are_dropped_and_changed_ones_kept() {
        let deny_all = json!([{"allow": false, "access": "rwm"}]);
        let current = resources(json!({"devices": deny_all}));
        let current = current.devices().as_ref();
        let same = resources(json!({"memory": {"limit": 5}, "devices": deny_all}));
        let out = without_unchanged_devices(&same, current);
        assert_eq!(out.devices(), &None);
        assert_eq!(out.memory(), same.memory());
        let changed = resources(json!({"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rwm"}
        ]}));
        assert_eq!(
            without_unchanged_devices(&changed, current).devices(),
            changed.devices()
        );
        // no rules in force (an older state): anything sent is a change
        assert_eq!(
            without_unchanged_devices(&same, None).devices(),
            same.devices()
        );
    }

    #[test]
    fn merge_keeps_what_the_update_does_not_name() {
        let mut a = json!({"memory": {"limit": 1, "swap": 2}, "pids": {"limit": 5}});
        merge(
            &mut a,
            &json!({"memory": {"limit": 3, "swap": null}, "cpu": {"shares": 7}}),
        );
        assert_eq!(
            a,
            json!({"memory": {"limit": 3, "swap": 2}, "pids": {"limit": 5}, "cpu": {"shares": 7}})
        );
    }
}
