//! Choosing the host ports of a start: each fixed port is checked against the other
//! running containers' bindings (under the registry lock, so two starts cannot both
//! take it) and against the host (a probe bind: a program listening there makes it a
//! clear error naming the port); an empty host port gets a free one from the kernel.
//! The bindings are recorded on the container's endpoint; the rules (rules.rs) DNAT
//! them, and the container's end clears them.
//!
//! Published ports are forwarded by DNAT, not by a process holding the socket: nothing
//! keeps the port reserved after the probe, so a program that binds it later on the
//! host is shadowed for connections arriving through the DNAT (as with Docker's
//! `--userland-proxy=false`). docs/networking.md says why and what was measured.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};

use super::ports::{Binding, PortSpec, Proto};
use super::{put, records_in};
use crate::error::{Error, Result};
use crate::registry::{ContainerRecord, ContainerStatus, Registry};

/// How many free ports the kernel is asked for before giving up on one that no
/// container holds (each try fails only on a port another container publishes).
const EPHEMERAL_TRIES: usize = 32;

/// Records the bindings of `specs` for container `id` on network `network`; returns them.
pub fn bind_ports(
    registry: &Registry,
    id: &str,
    network: &str,
    specs: &[PortSpec],
) -> Result<Vec<Binding>> {
    registry.update(|idx| {
        // Who holds ports is decided under the lock, from records read under it: a
        // container that is still starting (its supervisor bound its ports a moment
        // ago, its status not yet `running`) holds them as much as a running one, so
        // two starts can never both pass the check for one port. A binding left by a
        // supervisor that died is nobody's.
        let mut recs = records_in(registry, idx)?;
        // Only containers with bindings on some network can hold a port: their records
        // alone are read (one each, by id), not every container's.
        let bound: BTreeSet<&String> = recs
            .values()
            .flat_map(|n| n.endpoints.iter())
            .filter(|(cid, ep)| !ep.ports.is_empty() && cid.as_str() != id)
            .map(|(cid, _)| cid)
            .collect();
        let bound_recs: Vec<ContainerRecord> = bound
            .into_iter()
            .filter_map(|cid| registry.get(cid).ok())
            .collect();
        let holders = holders(&bound_recs, id);
        let mut taken: Vec<(Binding, String)> = recs
            .values()
            .flat_map(|n| n.endpoints.iter())
            .filter_map(|(cid, ep)| holders.get(cid).map(|name| (ep, name)))
            .flat_map(|(ep, name)| ep.ports.iter().map(|b| (b.clone(), name.clone())))
            .collect();
        let mut out = Vec::new();
        for spec in specs {
            let b = match spec.host_port {
                Some(port) => {
                    let b = Binding {
                        host_ip: spec.host_ip,
                        host_port: port,
                        container_port: spec.container_port,
                        proto: spec.proto,
                    };
                    if let Some((_, by)) = taken.iter().find(|(t, _)| t.clashes_with(&b)) {
                        return Err(Error::InUse {
                            kind: "host port",
                            name: format!("{}:{port}/{}", b.host_addr(), b.proto),
                            by: format!("container {by}"),
                        });
                    }
                    probe(b.host_addr(), port, b.proto).map_err(|e| in_use(&b, e))?;
                    b
                }
                None => ephemeral(spec, &taken)?,
            };
            taken.push((b.clone(), "this container".into()));
            out.push(b);
        }
        let rec = recs.get_mut(network).ok_or_else(|| Error::NotFound {
            kind: "network",
            name: network.to_string(),
        })?;
        let ep = rec.endpoints.get_mut(id).ok_or_else(|| {
            Error::invalid(
                "network",
                format!("{network}: the container has no address on it"),
            )
        })?;
        ep.ports = out.clone();
        put(idx, rec)?;
        Ok(out)
    })
}

/// The containers other than `id` whose recorded bindings hold their ports, by id, with
/// their names: those running or paused, and those being started by a live supervisor.
fn holders(recs: &[ContainerRecord], id: &str) -> BTreeMap<String, String> {
    recs.iter()
        .filter(|r| r.id != id)
        .filter(|r| {
            matches!(r.status, ContainerStatus::Running | ContainerStatus::Paused)
                || crate::engine::starting(r)
        })
        .map(|r| (r.id.clone(), r.name.clone()))
        .collect()
}

/// Clears container `id`'s published ports on every network; whether it had any.
pub fn clear_ports(registry: &Registry, id: &str) -> Result<bool> {
    registry.update(|idx| {
        let mut had = false;
        for (_, mut rec) in records_in(registry, idx)? {
            if let Some(ep) = rec.endpoints.get_mut(id) {
                if !ep.ports.is_empty() {
                    ep.ports.clear();
                    had = true;
                    put(idx, &rec)?;
                }
            }
        }
        Ok(had)
    })
}

/// A container's run has ended: its ports go, and the rules with them. Best effort: a
/// binding left behind reaches no rule (the plan skips containers that are not running)
/// and the next sync drops it.
pub fn release(registry: &Registry, id: &str) {
    if clear_ports(registry, id).unwrap_or(true) {
        let _ = super::sync::sync(registry, super::sync::When::IfApplied);
    }
}

fn in_use(b: &Binding, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        Error::InUse {
            kind: "host port",
            name: format!("{}:{}/{}", b.host_addr(), b.host_port, b.proto),
            by: "another program on this host".into(),
        }
    } else {
        Error::Io {
            context: format!(
                "checking host port {}:{}/{}",
                b.host_addr(),
                b.host_port,
                b.proto
            ),
            cause: e,
        }
    }
}

/// Binds `ip:port` for a moment: fails while a program holds it. Returns the port (the
/// kernel's choice for port 0).
fn probe(ip: Ipv4Addr, port: u16, proto: Proto) -> std::io::Result<u16> {
    let addr = SocketAddrV4::new(ip, port);
    match proto {
        Proto::Tcp => TcpListener::bind(addr)?.local_addr().map(|a| a.port()),
        Proto::Udp => UdpSocket::bind(addr)?.local_addr().map(|a| a.port()),
    }
}

fn ephemeral(spec: &PortSpec, taken: &[(Binding, String)]) -> Result<Binding> {
    let ip = spec.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    for _ in 0..EPHEMERAL_TRIES {
        let port = probe(ip, 0, spec.proto).map_err(|e| Error::Io {
            context: format!(
                "choosing a free host port on {ip} for {}/{}",
                spec.container_port, spec.proto
            ),
            cause: e,
        })?;
        let b = Binding {
            host_ip: spec.host_ip,
            host_port: port,
            container_port: spec.container_port,
            proto: spec.proto,
        };
        if !taken.iter().any(|(t, _)| t.clashes_with(&b)) {
            return Ok(b);
        }
    }
    Err(Error::invalid(
        "ports",
        format!(
            "no free host port found for {}/{} in {EPHEMERAL_TRIES} tries",
            spec.container_port, spec.proto
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(c: char, status: &str, supervisor: Option<(i32, u64)>) -> ContainerRecord {
        let mut r: ContainerRecord = serde_json::from_value(serde_json::json!({
            "version": 1, "id": c.to_string().repeat(64), "name": format!("c-{c}"),
            "created": "2026-01-01T00:00:00Z", "status": status, "config": {}
        }))
        .unwrap();
        r.supervisor_pid = supervisor.map(|(p, _)| p);
        r.supervisor_start = supervisor.map(|(_, s)| s);
        r
    }

    #[test]
    fn starting_containers_hold_their_ports_and_dead_supervisors_hold_none() {
        let me = codex_sys::ProcessId::of(std::process::id() as i32).unwrap();
        let live = Some((me.pid, me.start_time));
        let dead = Some((me.pid, me.start_time + 1));
        let recs = [
            rec('a', "running", live),
            rec('b', "created", live),
            rec('c', "created", dead),
            rec('d', "exited", None),
            rec('e', "paused", live),
            rec('f', "running", live),
        ];
        let h = holders(&recs, &"f".repeat(64));
        let names: Vec<&str> = h.values().map(String::as_str).collect();
        assert_eq!(names, ["c-a", "c-b", "c-e"]);
    }
}
