//! The store's records: images, layers, the index, and what a removal did.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a container from the image runs by default (the runtime part of an OCI image
/// config, plus Docker's `Healthcheck`). Empty for imports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub labels: BTreeMap<String, String>,
    /// `PORT/PROTO` (`80/tcp`), sorted: what `-P` publishes.
    pub exposed_ports: Vec<String>,
    /// A signal name or number, or empty for the default.
    pub stop_signal: String,
    /// Docker's `config.Healthcheck` (not in the OCI config; Docker and podman write it).
    pub healthcheck: Option<Healthcheck>,
}

/// An image's health check, as Docker's image config states it. Durations in nanoseconds
/// (0: the engine's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", arg...]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    pub interval: u64,
    pub timeout: u64,
    pub start_period: u64,
    pub start_interval: u64,
    pub retries: u32,
}

/// One image: `manifests/<id>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub version: u32,
    /// sha256 hex (64 characters, no `sha256:` prefix) of the image's OCI config blob.
    pub id: String,
    /// The repository name; `None` for a dangling image (its tag moved to a newer image).
    pub name: Option<String>,
    pub tag: Option<String>,
    /// RFC 3339, UTC.
    pub created: String,
    /// diff_ids (`sha256:<hex>` of the uncompressed layer tars), bottom layer first.
    pub layers: Vec<String>,
    /// Total size of the layer tars, in bytes.
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub config: ImageConfig,
    /// `sha256:<hex>` of the image's manifest blob in `blobs/` (an OCI image manifest: as
    /// loaded, or made from a docker archive's layers); `None` for imports.
    #[serde(default)]
    pub manifest: Option<String>,
    /// `OS/ARCH[/VARIANT]` from the image config.
    #[serde(default)]
    pub platform: String,
}

impl ImageRecord {
    /// `NAME:TAG`, or `None` for a dangling image.
    pub fn reference(&self) -> Option<String> {
        match (&self.name, &self.tag) {
            (Some(n), Some(t)) => Some(format!("{n}:{t}")),
            _ => None,
        }
    }

    /// The first 12 characters of the id, as `image ls` shows it.
    pub fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }
}

/// One unpacked layer: `layers/<hex>/layer.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub version: u32,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// The blob in `blobs/` this layer came from (equal to `diff_id` for uncompressed
    /// blobs; a pulled compressed layer will name its compressed digest here).
    pub blob: String,
    /// Size of the blob in bytes.
    pub size: u64,
    pub media_type: String,
}

/// What `remove` and `prune` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Removal {
    /// References (`NAME:TAG`) that no longer exist.
    pub untagged: Vec<String>,
    /// Image ids whose records were deleted.
    pub deleted: Vec<String>,
    /// diff_ids of layers garbage-collected because no image uses them any more.
    pub layers: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Index {
    pub(super) version: u32,
    /// `NAME:TAG` -> image id.
    #[serde(default)]
    pub(super) references: BTreeMap<String, String>,
}
