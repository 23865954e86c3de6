//! `codex-ctr network ...`: parse, call the engine, print.

use anyhow::Result;
use codex_engine::engine::Engine;
use codex_engine::network::{ConnectOptions, LabelFilter, NetworkInfo, NetworkSpec};

use super::args::NetworkCommand;
use super::commands::each;
use crate::oci::commands::print_table;

fn filters(given: &[String]) -> Result<Vec<LabelFilter>> {
    given
        .iter()
        .enumerate()
        .map(|(i, f)| Ok(LabelFilter::parse(&format!("filter[{i}]"), f)?))
        .collect()
}

pub(super) fn network(eng: &Engine, cmd: NetworkCommand) -> Result<i32> {
    match cmd {
        NetworkCommand::Create {
            subnet,
            gateway,
            internal,
            label,
            name,
        } => {
            let spec = NetworkSpec::parse(
                &name,
                subnet.as_deref(),
                gateway.as_deref(),
                internal,
                &label,
            )?;
            println!("{}", eng.create_network(spec)?.id);
            Ok(0)
        }
        NetworkCommand::Ls {
            filter,
            quiet,
            format,
        } => {
            let filters = filters(&filter)?;
            let nets: Vec<NetworkInfo> = eng
                .networks()?
                .into_iter()
                .filter(|n| filters.iter().all(|f| f.matches(&n.record.labels)))
                .collect();
            if quiet {
                nets.iter().for_each(|n| println!("{}", n.record.name));
            } else if format == "json" {
                println!("{}", serde_json::to_string(&nets)?);
            } else {
                let mut rows = vec![[
                    "ID", "NAME", "DRIVER", "SUBNET", "GATEWAY", "BRIDGE", "INTERNAL", "USED BY",
                ]
                .map(String::from)
                .to_vec()];
                for n in &nets {
                    let r = &n.record;
                    rows.push(vec![
                        r.id.get(..12).unwrap_or(&r.id).to_string(),
                        r.name.clone(),
                        r.driver.clone(),
                        r.subnet.to_string(),
                        r.gateway.to_string(),
                        r.bridge.clone(),
                        r.internal.to_string(),
                        n.used_by.join(","),
                    ]);
                }
                print_table(&rows);
            }
            Ok(0)
        }
        NetworkCommand::Inspect { names } => {
            let mut out = Vec::new();
            let code = each(&names, |n| {
                out.push(eng.inspect_network(n)?);
                Ok(())
            })?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(code)
        }
        NetworkCommand::Rm { force, names } => each(&names, |n| {
            eng.remove_network(n, force)?;
            println!("{n}");
            Ok(())
        }),
        NetworkCommand::Connect {
            alias,
            ip,
            network,
            container,
        } => {
            let opts = ConnectOptions::parse(&alias, ip.as_deref())?;
            eng.connect_network(&network, &container, &opts)?;
            Ok(0)
        }
        NetworkCommand::Disconnect {
            force,
            network,
            container,
        } => {
            eng.disconnect_network(&network, &container, force)?;
            Ok(0)
        }
        NetworkCommand::Prune { filter } => {
            for r in eng.prune_networks(&filters(&filter)?)? {
                println!("{}", r.name);
            }
            Ok(0)
        }
    }
}
