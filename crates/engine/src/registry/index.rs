//! `registry.json`: the index of the user's named objects.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The version of `registry.json` this engine writes. Every earlier version still loads.
pub const INDEX_VERSION: u32 = 1;

/// The index. Change it only inside [`super::Registry::update`]; the container map is
/// changed only by the registry's own container operations, which keep it in step with
/// `containers/<id>/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// Schema version of this file.
    pub version: u32,
    /// Container name -> container id.
    #[serde(default)]
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

impl Index {
    /// Container names and their ids, by name.
    pub fn containers(&self) -> &BTreeMap<String, String> {
        &self.containers
    }

    /// The id of the container with this exact name.
    pub fn container_id(&self, name: &str) -> Option<&str> {
        self.containers.get(name).map(String::as_str)
    }

    /// The name the index gives this container id.
    pub fn container_name(&self, id: &str) -> Option<&str> {
        self.containers
            .iter()
            .find(|(_, v)| v.as_str() == id)
            .map(|(k, _)| k.as_str())
    }

    pub(super) fn has_container_id(&self, id: &str) -> bool {
        self.containers.values().any(|v| v == id)
    }
}
