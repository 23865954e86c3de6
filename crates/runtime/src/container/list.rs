//! `list`: every container in the state root.

use serde::Serialize;

use super::Runtime;
use crate::error::{Context, Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct ListEntry {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: String,
    pub bundle: String,
    pub rootfs: String,
    pub created: String,
    pub owner: String,
}

impl Runtime {
    pub fn list(&self) -> Result<Vec<ListEntry>> {
        let entries = match std::fs::read_dir(self.root()) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).ctx(|| format!("reading {}", self.root().display())),
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let Some(id) = e.file_name().to_str().map(String::from) else {
                continue;
            };
            // A directory without a state file is a create in progress (or a crashed
            // one): it is not a container yet. One whose record a host crash cut short
            // is named, for `delete --force` to remove.
            let c = match self.load(&id) {
                Ok(c) => c,
                Err(e @ Error::CorruptState { .. }) => {
                    self.warn(&e.to_string());
                    continue;
                }
                Err(_) => continue,
            };
            let st = c.state.oci_state(&c.dir);
            let s = |k: &str| st[k].as_str().unwrap_or_default().to_string();
            out.push(ListEntry {
                oci_version: s("ociVersion"),
                id,
                pid: st["pid"].as_i64().unwrap_or(0) as i32,
                status: s("status"),
                bundle: s("bundle"),
                rootfs: s("rootfs"),
                created: s("created"),
                owner: s("owner"),
            });
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }
}
