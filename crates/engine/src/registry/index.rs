//! `registry.json`: the index of the volumes and networks (and, in version 1, of the
//! container names, which now live in `names/`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The version of `registry.json` this engine writes. Every earlier version still loads.
pub const INDEX_VERSION: u32 = 2;

/// The index. Change it only inside [`super::Registry::update`]; the container map is
/// changed only by the registry's own container operations, which keep it in step with
/// `containers/<id>/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// Schema version of this file.
    pub version: u32,
    /// Version 1 only: container name -> container id. Names now live in `names/` (see
    /// `links`); a version 1 map is moved there once and never written again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) containers: BTreeMap<String, String>,
    /// Image reference (`name:tag`) -> image id (`sha256:<hex>`).
    #[serde(default)]
    pub images: BTreeMap<String, String>,
    /// Volume name -> its record: a [`crate::volume::VolumeRecord`], kept as JSON.
    #[serde(default)]
    pub volumes: BTreeMap<String, serde_json::Value>,
    /// Network name -> its record: a [`crate::network::NetworkRecord`], kept as JSON.
    #[serde(default)]
    pub networks: BTreeMap<String, serde_json::Value>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            version: INDEX_VERSION,
            containers: BTreeMap::new(),
            images: BTreeMap::new(),
            volumes: BTreeMap::new(),
            networks: BTreeMap::new(),
        }
    }
}
