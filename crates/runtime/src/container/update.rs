//! `update`: new resource limits for a running container, applied to its cgroups and
//! remembered in its state (so a later `update` or `exec` sees them).

use oci_spec::runtime::LinuxResources;
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

impl Runtime {
    pub fn update(&self, id: &str, res: &LinuxResources) -> Result<()> {
        let mut c = self.load(id)?;
        if c.status() == Status::Stopped {
            return Err(c.wrong_state("update", "needs a running container"));
        }
        let linux = c.state.config.linux().clone().unwrap_or_default();
        let devices = linux.devices().clone().unwrap_or_default();
        apply_resources(&c.state.cgroups, res, &devices, false)?;
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
    use super::merge;
    use serde_json::json;

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
