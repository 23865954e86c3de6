//! The engine's network API: what `codex-ctr network ...` and the wiring call. These
//! change records only; the kernel layer makes (and removes) the bridge a record names.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use super::hostfiles::Hosts;
use super::peers::{attachments, Attachment};
use super::ports::Binding;
use super::{
    allocate_in, create_in, find_in, records_in, release_in, Endpoint, HostNetworks, NetworkRecord,
    DEFAULT_NETWORK,
};
use crate::config::ContainerConfig;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::registry::{ContainerRecord, ContainerStatus};

/// What `network create` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    /// Chosen from [`super::ipam::POOLS`] when absent.
    pub subnet: Option<Ipv4Net>,
    /// The subnet's first host address when absent.
    pub gateway: Option<Ipv4Addr>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

impl NetworkSpec {
    /// A spec from the CLI's strings; errors name the flag.
    pub fn parse(
        name: &str,
        subnet: Option<&str>,
        gateway: Option<&str>,
        internal: bool,
        labels: &[String],
    ) -> Result<NetworkSpec> {
        let mut map = BTreeMap::new();
        for (i, l) in labels.iter().enumerate() {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            if k.is_empty() {
                return Err(Error::invalid(
                    format!("label[{i}]"),
                    format!("{l:?} is not KEY=VALUE"),
                ));
            }
            map.insert(k.to_string(), v.to_string());
        }
        Ok(NetworkSpec {
            name: name.to_string(),
            subnet: subnet
                .map(|s| super::ipam::parse_subnet("subnet", s))
                .transpose()?,
            gateway: gateway
                .map(|g| super::ipam::parse_addr("gateway", g))
                .transpose()?,
            internal,
            labels: map,
        })
    }
}

/// A network as `network ls` / `inspect` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkInfo {
    #[serde(flatten)]
    pub record: NetworkRecord,
    /// The engine's default network (cannot be removed).
    pub default: bool,
    /// Names of the containers on it (with an address, or configured for it).
    pub used_by: Vec<String>,
}

/// `network ls --filter` / `network prune --filter`: `label=KEY` or `label=KEY=VALUE`
/// (each given filter must match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFilter {
    pub key: String,
    pub value: Option<String>,
}

impl LabelFilter {
    pub fn parse(field: &str, s: &str) -> Result<LabelFilter> {
        let rest = s.strip_prefix("label=").ok_or_else(|| {
            Error::invalid(field, format!("{s:?}: only label=KEY[=VALUE] is supported"))
        })?;
        let (key, value) = match rest.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (rest, None),
        };
        if key.is_empty() {
            return Err(Error::invalid(
                field,
                format!("{s:?}: the label needs a key"),
            ));
        }
        Ok(LabelFilter {
            key: key.to_string(),
            value,
        })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match (labels.get(&self.key), &self.value) {
            (Some(v), Some(want)) => v == want,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// Names of the containers among `recs` on network `rec`: those holding an address on
/// it, and those whose config names it (an address is handed out at create or start).
fn users_in(rec: &NetworkRecord, recs: &[ContainerRecord]) -> Vec<String> {
    recs.iter()
        .filter(|c| {
            rec.endpoints.contains_key(&c.id)
                || serde_json::from_value::<ContainerConfig>(c.config.clone())
                    .ok()
                    .and_then(|cfg| cfg.network)
                    .is_some_and(|m| m.network_name() == Some(rec.name.as_str()))
        })
        .map(|c| c.name.clone())
        .collect()
}

impl Engine {
    /// Records a new network, its subnet chosen to avoid the routes of this process's
    /// network namespace (`/proc/net/route`) when not given. See
    /// [`Engine::create_network_avoiding`].
    pub fn create_network(&self, spec: NetworkSpec) -> Result<NetworkRecord> {
        self.create_network_avoiding(spec, &HostNetworks::from_proc())
    }

    /// Records a new network whose subnet (when not given) overlaps nothing in `host` and
    /// no other network. Refused: a reserved or used name, a subnet overlapping another
    /// network's, a gateway outside the subnet. The kernel layer then makes its bridge.
    pub fn create_network_avoiding(
        &self,
        spec: NetworkSpec,
        host: &HostNetworks,
    ) -> Result<NetworkRecord> {
        self.registry
            .update(|idx| create_in(&self.registry, idx, &spec, host, false))
    }

    /// The default network, recorded on first use with a subnet chosen as for any other.
    pub fn default_network(&self) -> Result<NetworkRecord> {
        self.default_network_avoiding(&HostNetworks::from_proc())
    }

    /// [`Engine::default_network`], avoiding `host` if it must be made.
    pub fn default_network_avoiding(&self, host: &HostNetworks) -> Result<NetworkRecord> {
        let reg = &self.registry;
        if let Ok(rec) = find_in(reg, &reg.index()?, DEFAULT_NETWORK) {
            return Ok(rec);
        }
        reg.update(|idx| match records_in(reg, idx)?.remove(DEFAULT_NETWORK) {
            Some(rec) => Ok(rec),
            None => {
                let spec = NetworkSpec {
                    name: DEFAULT_NETWORK.to_string(),
                    ..NetworkSpec::default()
                };
                create_in(reg, idx, &spec, host, true)
            }
        })
    }

    /// Every network (the default one made if missing, as Docker always lists it), with
    /// the containers on each.
    pub fn networks(&self) -> Result<Vec<NetworkInfo>> {
        self.default_network()?;
        let recs = self.registry.list()?;
        Ok(super::list(&self.registry)?
            .into_iter()
            .map(|record| NetworkInfo {
                default: record.name == DEFAULT_NETWORK,
                used_by: users_in(&record, &recs),
                record,
            })
            .collect())
    }

    /// One network by name, id or unique id prefix.
    pub fn inspect_network(&self, reference: &str) -> Result<NetworkInfo> {
        if reference == DEFAULT_NETWORK {
            self.default_network()?;
        }
        let record = find_in(&self.registry, &self.registry.index()?, reference)?;
        let recs = self.registry.list()?;
        Ok(NetworkInfo {
            default: record.name == DEFAULT_NETWORK,
            used_by: users_in(&record, &recs),
            record,
        })
    }

    /// Removes a network's record; returns it (the kernel layer removes its bridge and,
    /// with `force`, the endpoints it still had). Refused while a container is on it
    /// unless `force`; the default network is never removed. Counting the users and
    /// removing the record is one hold of the lock: a container that joins meanwhile is
    /// counted or finds the network gone.
    pub fn remove_network(&self, reference: &str, force: bool) -> Result<NetworkRecord> {
        let reg = &self.registry;
        reg.update(|idx| {
            let rec = find_in(reg, idx, reference)?;
            if rec.name == DEFAULT_NETWORK {
                return Err(Error::invalid(
                    "network",
                    format!("{DEFAULT_NETWORK} is the default network and cannot be removed"),
                ));
            }
            let users = users_in(&rec, &reg.list()?);
            if !users.is_empty() && !force {
                return Err(Error::InUse {
                    kind: "network",
                    name: rec.name.clone(),
                    by: format!("container {} (rm -f to remove it anyway)", users.join(", ")),
                });
            }
            idx.networks.remove(&rec.name);
            Ok(rec)
        })
        .and_then(|rec| {
            // The record is gone first: a start can no longer plug into the bridge.
            // Its rules go before its bridge (a new bridge of that name could not
            // inherit them anyway: names come from random ids).
            // A failed sync still lets the bridge go (the next sync retries the rules).
            let synced = super::sync::sync(&self.registry, super::sync::When::IfApplied);
            // With -f, the containers that were on it: their hosts files forget its peers.
            for id in rec.endpoints.keys() {
                let _ = super::hostsync::rewrite_locked(&self.registry, id);
            }
            delete_bridge(&rec.bridge)?;
            synced?;
            Ok(rec)
        })
    }

    /// Removes every network that no container is on and that matches all `filters`
    /// (never the default one); returns the removed records.
    pub fn prune_networks(&self, filters: &[LabelFilter]) -> Result<Vec<NetworkRecord>> {
        let mut removed = Vec::new();
        for n in super::list(&self.registry)? {
            if n.name == DEFAULT_NETWORK || !filters.iter().all(|f| f.matches(&n.labels)) {
                continue;
            }
            match self.remove_network(&n.name, false) {
                Ok(rec) => removed.push(rec),
                // In use by now, or removed by someone else.
                Err(Error::InUse { .. } | Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// Gives a container an address on a network (persistence only: the wiring plugs
    /// the veth). The container must exist; an address it already has is kept.
    pub fn allocate_endpoint(
        &self,
        network: &str,
        container: &str,
        aliases: &[String],
    ) -> Result<Endpoint> {
        let reg = &self.registry;
        let id = reg.resolve(container)?;
        if network == DEFAULT_NETWORK {
            self.default_network()?;
        }
        reg.update(|idx| {
            // Re-checked under the lock: an `rm` that won the race leaves no address behind.
            if reg.name_of(&id)?.is_none() {
                return Err(Error::NotFound {
                    kind: "container",
                    name: container.to_string(),
                });
            }
            allocate_in(reg, idx, network, &id, aliases)
        })
    }

    /// A container's place on each network it is on (`inspect`'s `networks`).
    pub fn network_attachments(&self, reference: &str) -> Result<BTreeMap<String, Attachment>> {
        let id = self.registry.resolve(reference)?;
        Ok(attachments(&super::list(&self.registry)?, &id))
    }

    /// The ports each running (or paused) container publishes now, by container id
    /// (`ps`). A binding a crash left on a container that no longer runs is not shown:
    /// the rules leave it out too.
    pub fn published_ports(&self) -> Result<BTreeMap<String, Vec<Binding>>> {
        self.published_ports_among(&self.registry.list()?)
    }

    /// [`Engine::published_ports`] of the containers `recs` (records the caller has
    /// read already: `ps` reads each record once, not twice).
    pub fn published_ports_among(
        &self,
        recs: &[crate::registry::ContainerRecord],
    ) -> Result<BTreeMap<String, Vec<Binding>>> {
        let live: std::collections::BTreeSet<&str> = recs
            .iter()
            .filter(|r| matches!(r.status, ContainerStatus::Running | ContainerStatus::Paused))
            .map(|r| r.id.as_str())
            .collect();
        let mut out: BTreeMap<String, Vec<Binding>> = BTreeMap::new();
        for n in super::list(&self.registry)? {
            for (id, ep) in n.endpoints {
                if live.contains(id.as_str()) && !ep.ports.is_empty() {
                    out.entry(id).or_default().extend(ep.ports);
                }
            }
        }
        Ok(out)
    }

    /// The ports container `reference` publishes now (`port`, `inspect`).
    pub fn ports_of(&self, reference: &str) -> Result<Vec<Binding>> {
        // This container's record and the network records only: `inspect` of one
        // container must not read every other container's record.
        let rec = self.registry.get(reference)?;
        if !matches!(
            rec.status,
            ContainerStatus::Running | ContainerStatus::Paused
        ) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for n in super::list(&self.registry)? {
            if let Some(ep) = n.endpoints.get(&rec.id) {
                out.extend(ep.ports.iter().cloned());
            }
        }
        Ok(out)
    }

    /// What a container's `/etc/hosts` says now: its addresses, its peers on its
    /// networks, its `--add-host` entries (see [`super::hostfiles::hosts_file`]).
    pub fn hosts_of(&self, reference: &str) -> Result<Hosts> {
        let id = self.registry.resolve(reference)?;
        super::files::hosts_in(&self.registry, &id)
    }

    /// What a container's `/etc/resolv.conf` says: its `--dns` servers, else the host's
    /// usable ones (see [`super::hostfiles::resolv_conf`]).
    pub fn resolv_conf_of(&self, reference: &str) -> Result<String> {
        let rec = self.registry.get(reference)?;
        let cfg: ContainerConfig = serde_json::from_value(rec.config.clone())
            .map_err(|e| Error::invalid("config", e.to_string()))?;
        Ok(super::files::resolv_conf_for(&cfg))
    }

    /// Frees a container's address on a network; what it had.
    pub fn release_endpoint(&self, network: &str, container: &str) -> Result<Option<Endpoint>> {
        let reg = &self.registry;
        let id = reg.resolve(container)?;
        reg.update(|idx| release_in(reg, idx, network, &id))
    }
}

/// Deletes a network's bridge (absent is fine: never made, or already gone). The
/// veths of containers still on it (`rm -f` of a network in use) are left unplugged.
fn delete_bridge(name: &str) -> Result<()> {
    let fail = |e: codex_net::Error| Error::Io {
        context: format!("deleting the bridge {name}"),
        cause: std::io::Error::other(e.to_string()),
    };
    codex_net::Handle::current()
        .map_err(fail)?
        .delete_bridge(name)
        .map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_filters_name_the_flag() {
        let s = NetworkSpec::parse(
            "backend",
            Some("10.89.0.0/24"),
            Some("10.89.0.254"),
            true,
            &["team=db".into(), "tmp".into()],
        )
        .unwrap();
        assert_eq!(s.subnet.unwrap().to_string(), "10.89.0.0/24");
        assert_eq!(s.labels["tmp"], "");
        for (subnet, gw, label, field) in [
            (Some("10.89.0.1/24"), None, "a=b", "subnet:"),
            (None, Some("10.89"), "a=b", "gateway:"),
            (None, None, "=b", "label[0]:"),
        ] {
            let e = NetworkSpec::parse("n", subnet, gw, false, &[label.into()])
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(field), "{e}");
        }
        let f = LabelFilter::parse("filter", "label=team=db").unwrap();
        let labels = BTreeMap::from([("team".to_string(), "db".to_string())]);
        assert!(f.matches(&labels));
        assert!(LabelFilter::parse("filter", "label=team")
            .unwrap()
            .matches(&labels));
        assert!(!LabelFilter::parse("filter", "label=team=web")
            .unwrap()
            .matches(&labels));
        for bad in ["name=x", "label=", "label"] {
            let e = LabelFilter::parse("filter", bad).unwrap_err().to_string();
            assert!(e.starts_with("filter:"), "{bad}: {e}");
        }
    }
}
