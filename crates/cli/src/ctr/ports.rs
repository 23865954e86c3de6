//! `codex-ctr port NAME [CPORT[/PROTO]]` and the PORTS column of `ps`.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use codex_engine::engine::Engine;
use codex_engine::network::ports::{parse_expose, Binding};

/// Docker's form: `80/tcp -> 0.0.0.0:8080` per binding, or only `0.0.0.0:8080` for one
/// container port. A port the container does not publish is an error naming it.
pub(super) fn port(eng: &Engine, container: &str, which: Option<&str>) -> Result<i32> {
    let ports = eng.ports_of(container)?;
    match which {
        None => {
            for b in &ports {
                println!(
                    "{}/{} -> {}:{}",
                    b.container_port,
                    b.proto,
                    b.host_addr(),
                    b.host_port
                );
            }
        }
        Some(w) => {
            let (cport, proto) = parse_expose("port", w)?;
            let hits: Vec<&Binding> = ports
                .iter()
                .filter(|b| b.container_port == cport && b.proto == proto)
                .collect();
            if hits.is_empty() {
                bail!("no public port {cport}/{proto} published for {container}");
            }
            for b in hits {
                println!("{}:{}", b.host_addr(), b.host_port);
            }
        }
    }
    Ok(0)
}

/// Each running container's bindings, comma-separated as `ps` shows them, by id.
pub(super) fn column(
    eng: &Engine,
    recs: &[codex_engine::registry::ContainerRecord],
) -> Result<BTreeMap<String, String>> {
    Ok(eng
        .published_ports_among(recs)?
        .into_iter()
        .map(|(id, ps)| {
            let text: Vec<String> = ps.iter().map(Binding::to_string).collect();
            (id, text.join(", "))
        })
        .collect())
}
