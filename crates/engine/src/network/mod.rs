//! Networks: a Linux bridge, a subnet and the addresses handed out on it, recorded in
//! `registry.json`'s `networks` map under the registry lock, like volumes (see
//! `volume.rs`). This module is the record and its rules; the kernel layer (bridges,
//! veths, addresses, routes, NAT) creates what a record describes, and the engine's
//! create/start wires the two together. See docs/networking.md.
//!
//! Every change to a network, an address handed out included, happens inside one
//! [`Registry::update`]: two concurrent creates can never get the same address, and a
//! crash leaves either the old record or the new one.

mod api;
pub mod connect;
pub mod files;
pub mod hostfiles;
pub mod hostsync;
pub mod ipam;
pub mod join;
pub mod link;
mod live;
pub mod mode;
pub mod netstats;
pub mod peers;
pub mod ports;
pub mod publish;
pub mod rate;
pub mod rules;
pub mod sync;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::config::valid_name;
use crate::error::{Error, Result};
use crate::registry::{self, Index, Registry};

pub use api::{LabelFilter, NetworkInfo, NetworkSpec};
pub use connect::ConnectOptions;
pub use mode::{AddHost, NetworkMode, DEFAULT_NETWORK};

/// The only driver: a Linux bridge on the host.
pub const DRIVER_BRIDGE: &str = "bridge";

/// Bridge interface names are `cx-` and the first 10 hex digits of the network's id:
/// 13 bytes, under the kernel's 15 (IFNAMSIZ - 1), and recognisably ours after a crash.
pub const BRIDGE_PREFIX: &str = "cx-";
const BRIDGE_ID_DIGITS: usize = 10;

/// Names a user cannot give a network: the `--network` modes that are not networks, and
/// the default network's (which the engine makes itself).
pub const RESERVED_NAMES: &[&str] = &["none", "host", DEFAULT_NETWORK, "default"];

/// One network's record in `registry.json`'s `networks` map (keyed by its name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkRecord {
    pub name: String,
    /// 64 lowercase hex characters, random.
    pub id: String,
    /// [`DRIVER_BRIDGE`].
    pub driver: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// The bridge interface on the host (`cx-<10 hex of the id>`).
    pub bridge: String,
    /// No route out: no NAT, no default route in its containers.
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// RFC 3339.
    pub created: String,
    /// Container id -> its address on this network.
    #[serde(default)]
    pub endpoints: BTreeMap<String, Endpoint>,
}

/// A container's place on a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    /// [`ipam::mac_for`] of `ip`.
    pub mac: String,
    /// Names it is also known by on this network, besides its container name.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The ports published to it while its container runs (set by the start, cleared
    /// when the container ends; only a running container's reach the rules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ports::Binding>,
}

impl NetworkRecord {
    /// The subnet as the kernel layer configures the bridge: gateway/prefix.
    pub fn gateway_cidr(&self) -> Ipv4Net {
        // The prefix comes from a valid Ipv4Net, so it is always in range.
        Ipv4Net::new(self.gateway, self.subnet.prefix_len()).unwrap_or(self.subnet)
    }

    fn check(&self, key: &str) -> std::result::Result<(), String> {
        if self.name != key {
            return Err(format!("its name is {:?}", self.name));
        }
        if !registry::is_full_id(&self.id) {
            return Err(format!(
                "id {:?} is not 64 lowercase hex characters",
                self.id
            ));
        }
        if !self.subnet.contains(&self.gateway) {
            return Err(format!(
                "gateway {} is outside {}",
                self.gateway, self.subnet
            ));
        }
        Ok(())
    }
}

/// `name` as a network name a user may give.
pub fn check_name(name: &str) -> Result<()> {
    if !valid_name(name) {
        return Err(Error::invalid(
            "name",
            format!("{name:?}: use letters, digits, _ . - (first a letter or digit), up to 128"),
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(Error::invalid(
            "name",
            format!(
                "{name:?} is reserved ({}): choose another",
                RESERVED_NAMES.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The records in `idx`, by name. An unreadable record is an error naming it.
pub fn records_in(registry: &Registry, idx: &Index) -> Result<BTreeMap<String, NetworkRecord>> {
    idx.networks
        .iter()
        .map(|(name, v)| {
            let rec: NetworkRecord =
                serde_json::from_value(v.clone()).map_err(|e| Error::Corrupt {
                    path: registry.index_path(),
                    reason: format!("networks.{name}: {e}"),
                })?;
            rec.check(name).map_err(|reason| Error::Corrupt {
                path: registry.index_path(),
                reason: format!("networks.{name}: {reason}"),
            })?;
            Ok((name.clone(), rec))
        })
        .collect()
}

/// Every recorded network, by name (read without the lock).
pub fn list(registry: &Registry) -> Result<Vec<NetworkRecord>> {
    Ok(records_in(registry, &registry.index()?)?
        .into_values()
        .collect())
}

/// The network named `reference`: its exact name, else its id or a unique id prefix.
pub fn find_in(registry: &Registry, idx: &Index, reference: &str) -> Result<NetworkRecord> {
    let recs = records_in(registry, idx)?;
    if let Some(r) = recs.get(reference) {
        return Ok(r.clone());
    }
    let hits: Vec<&NetworkRecord> = recs
        .values()
        .filter(|r| !reference.is_empty() && r.id.starts_with(reference))
        .collect();
    match hits.as_slice() {
        [r] => Ok((*r).clone()),
        [] => Err(Error::NotFound {
            kind: "network",
            name: reference.to_string(),
        }),
        many => Err(Error::Ambiguous {
            kind: "network",
            reference: reference.to_string(),
            matches: many.iter().map(|r| r.name.clone()).collect(),
        }),
    }
}

fn put(idx: &mut Index, rec: &NetworkRecord) -> Result<()> {
    let v = serde_json::to_value(rec).map_err(|e| Error::invalid("network", e.to_string()))?;
    idx.networks.insert(rec.name.clone(), v);
    Ok(())
}

/// What a new network's subnet must avoid on the host, as the kernel layer reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostNetworks {
    pub routes: Vec<Ipv4Net>,
    pub addresses: Vec<Ipv4Net>,
}

impl HostNetworks {
    /// The routes of the caller's network namespace from `/proc/net/route` (root-free;
    /// the netlink layer can give a fuller view). Unreadable means none known.
    pub fn from_proc() -> HostNetworks {
        let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
        HostNetworks {
            routes: ipam::parse_proc_net_route(&text),
            addresses: Vec::new(),
        }
    }
}

/// Adds a network to `idx`: validates `spec`, picks the subnet (avoiding `host` and every
/// other network) unless given, the gateway, a fresh id and its bridge name. The caller
/// holds the lock (inside [`Registry::update`]). `default` allows the reserved name of
/// the default network.
pub(crate) fn create_in(
    registry: &Registry,
    idx: &mut Index,
    spec: &NetworkSpec,
    host: &HostNetworks,
    default: bool,
) -> Result<NetworkRecord> {
    if !(default && spec.name == DEFAULT_NETWORK) {
        check_name(&spec.name)?;
    }
    let existing = records_in(registry, idx)?;
    if existing.contains_key(&spec.name) {
        return Err(Error::NameInUse {
            kind: "network",
            name: spec.name.clone(),
        });
    }
    if spec.labels.keys().any(String::is_empty) {
        return Err(Error::invalid("labels", "a label needs a key"));
    }
    let mut taken = ipam::Taken {
        host_routes: host.routes.clone(),
        host_addresses: host.addresses.clone(),
        networks: existing.values().map(|r| r.subnet).collect(),
    };
    let subnet = match &spec.subnet {
        Some(s) => {
            // A user's subnet may overlap the host's routes (Docker allows it: the user
            // may know better); never another network's.
            taken.host_routes.clear();
            taken.host_addresses.clear();
            if let Some(c) = taken.conflict(*s) {
                let owner = existing
                    .values()
                    .find(|r| ipam::overlaps(r.subnet, *s))
                    .map(|r| format!(" (network {})", r.name))
                    .unwrap_or_default();
                return Err(Error::invalid("subnet", format!("{s} overlaps {c}{owner}")));
            }
            *s
        }
        None if spec.gateway.is_some() => {
            return Err(Error::invalid("gateway", "a gateway needs a --subnet"))
        }
        None => ipam::pick_subnet(&taken)?,
    };
    let gateway = ipam::gateway(subnet, spec.gateway)?;
    let bridges: BTreeSet<&str> = existing.values().map(|r| r.bridge.as_str()).collect();
    let (id, bridge) = loop {
        let id = registry::new_volume_name()?;
        let bridge = format!(
            "{BRIDGE_PREFIX}{}",
            id.get(..BRIDGE_ID_DIGITS).unwrap_or(&id)
        );
        if !bridges.contains(bridge.as_str()) && !existing.values().any(|r| r.id == id) {
            break (id, bridge);
        }
    };
    let rec = NetworkRecord {
        name: spec.name.clone(),
        id,
        driver: DRIVER_BRIDGE.to_string(),
        subnet,
        gateway,
        bridge,
        internal: spec.internal,
        labels: spec.labels.clone(),
        created: codex_runtime::state::now_rfc3339(),
        endpoints: BTreeMap::new(),
    };
    put(idx, &rec)?;
    Ok(rec)
}

/// Gives container `id` an address on network `network` in `idx` (the caller holds the
/// lock): the lowest free one, or the one it already has (its aliases then replaced).
/// Call it inside the container's create (`Registry::create_container_with`) or after:
/// an address held by an id the index does not list is freed by the next reconcile.
pub fn allocate_in(
    registry: &Registry,
    idx: &mut Index,
    network: &str,
    id: &str,
    aliases: &[String],
) -> Result<Endpoint> {
    if !registry::is_full_id(id) {
        return Err(Error::invalid(
            "container",
            format!("{id:?} is not a full id"),
        ));
    }
    let mut rec = find_in(registry, idx, network)?;
    let ep = match rec.endpoints.get(id) {
        Some(ep) => Endpoint {
            aliases: aliases.to_vec(),
            ..ep.clone()
        },
        None => {
            let ip = ipam::lowest_free(
                rec.subnet,
                rec.gateway,
                rec.endpoints.values().map(|e| e.ip),
            )
            .map_err(|e| match e {
                Error::Invalid { reason, .. } => {
                    Error::invalid("network", format!("{}: {reason}", rec.name))
                }
                other => other,
            })?;
            Endpoint {
                ip,
                mac: ipam::mac_for(ip),
                aliases: aliases.to_vec(),
                ports: Vec::new(),
            }
        }
    };
    rec.endpoints.insert(id.to_string(), ep.clone());
    put(idx, &rec)?;
    Ok(ep)
}

/// Frees container `id`'s address on `network`; what it had, if anything.
pub fn release_in(
    registry: &Registry,
    idx: &mut Index,
    network: &str,
    id: &str,
) -> Result<Option<Endpoint>> {
    let mut rec = find_in(registry, idx, network)?;
    let old = rec.endpoints.remove(id);
    if old.is_some() {
        put(idx, &rec)?;
    }
    Ok(old)
}

/// Frees every address of container `id`, on every network (its `rm`).
pub fn release_container(registry: &Registry, id: &str) -> Result<Vec<(String, Endpoint)>> {
    registry.update(|idx| {
        let mut freed = Vec::new();
        for (name, mut rec) in records_in(registry, idx)? {
            if let Some(ep) = rec.endpoints.remove(id) {
                put(idx, &rec)?;
                freed.push((name, ep));
            }
        }
        Ok(freed)
    })
}

/// What [`release_orphans`] found.
pub(crate) enum Orphan {
    Freed {
        network: String,
        id: String,
        ip: Ipv4Addr,
    },
    Unreadable {
        network: String,
        reason: String,
    },
}

/// For `Registry::reconcile`, under its lock: frees every address held by a container id
/// that `live` does not hold (a container removed by a crashed `rm`, or a create that
/// never finished). A record that does not parse is reported and left alone.
pub(crate) fn release_orphans(idx: &mut Index, live: &BTreeSet<String>) -> Vec<Orphan> {
    let mut out = Vec::new();
    let names: Vec<String> = idx.networks.keys().cloned().collect();
    for name in names {
        let Some(v) = idx.networks.get(&name) else {
            continue;
        };
        let mut rec: NetworkRecord = match serde_json::from_value(v.clone()) {
            Ok(r) => r,
            Err(e) => {
                out.push(Orphan::Unreadable {
                    network: name,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let dead: Vec<String> = rec
            .endpoints
            .keys()
            .filter(|id| !live.contains(*id))
            .cloned()
            .collect();
        if dead.is_empty() {
            continue;
        }
        for id in dead {
            if let Some(ep) = rec.endpoints.remove(&id) {
                out.push(Orphan::Freed {
                    network: name.clone(),
                    id,
                    ip: ep.ip,
                });
            }
        }
        match serde_json::to_value(&rec) {
            Ok(v) => {
                idx.networks.insert(name, v);
            }
            Err(e) => out.push(Orphan::Unreadable {
                network: name,
                reason: e.to_string(),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests;
