//! The network records through the engine's API on a real (temporary) root: no root
//! privileges and no kernel networking needed.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::*;
use crate::engine::Engine;
use crate::registry::Repair;

fn engine() -> (tempfile::TempDir, Engine) {
    let tmp = tempfile::tempdir().unwrap();
    let eng = Engine::open(&tmp.path().join("root"), "/nonexistent".into()).unwrap();
    (tmp, eng)
}

fn spec(name: &str) -> NetworkSpec {
    NetworkSpec {
        name: name.into(),
        ..NetworkSpec::default()
    }
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

/// A host whose LAN is 10.88.0.0/24 and whose VPN routes 10.88.1.0/24.
fn host() -> HostNetworks {
    HostNetworks {
        routes: vec![net("0.0.0.0/0"), net("10.88.0.0/24"), net("10.88.1.0/24")],
        addresses: vec![net("10.88.0.7/24")],
    }
}

fn container(eng: &Engine) -> String {
    eng.registry()
        .create_container(None, json!({}), BTreeMap::new())
        .unwrap()
        .id
}

#[test]
fn created_networks_get_free_subnets_gateways_and_bridge_names() {
    let (_t, eng) = engine();
    let a = eng.create_network_avoiding(spec("a"), &host()).unwrap();
    assert_eq!(a.subnet, net("10.88.2.0/24"));
    assert_eq!(a.gateway.to_string(), "10.88.2.1");
    assert_eq!(a.driver, "bridge");
    assert!(a.bridge.starts_with("cx-") && a.bridge.len() == 13 && a.bridge.len() <= 15);
    assert!(a.id.starts_with(&a.bridge[3..]));
    let b = eng.create_network_avoiding(spec("b"), &host()).unwrap();
    assert_eq!(b.subnet, net("10.88.3.0/24"));
    assert_ne!(a.bridge, b.bridge);
    let mut given = spec("c");
    given.subnet = Some(net("192.168.77.0/24"));
    given.gateway = Some("192.168.77.254".parse().unwrap());
    given.internal = true;
    given.labels = BTreeMap::from([("team".into(), "db".into())]);
    let c = eng.create_network(given).unwrap();
    assert_eq!(c.gateway.to_string(), "192.168.77.254");
    assert!(c.internal);
    let listed: Vec<String> = list(eng.registry())
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(listed, ["a", "b", "c"]);
    assert_eq!(eng.inspect_network(&a.id[..8]).unwrap().record, a);
}

#[test]
fn bad_networks_are_refused_naming_the_field() {
    let (_t, eng) = engine();
    let mut first = spec("first");
    first.subnet = Some(net("10.99.0.0/16"));
    eng.create_network(first).unwrap();
    let cases: Vec<(NetworkSpec, &str)> = vec![
        (spec("none"), "name:"),
        (spec("host"), "name:"),
        (spec("bridge"), "name:"),
        (spec("-bad"), "name:"),
        (
            NetworkSpec {
                subnet: Some(net("10.99.3.0/24")),
                ..spec("inside")
            },
            "subnet:",
        ),
        (
            NetworkSpec {
                subnet: Some(net("10.0.0.0/8")),
                ..spec("around")
            },
            "subnet:",
        ),
        (
            NetworkSpec {
                subnet: Some(net("10.98.0.0/24")),
                gateway: Some("10.98.1.1".parse().unwrap()),
                ..spec("gw")
            },
            "gateway:",
        ),
        (
            NetworkSpec {
                gateway: Some("10.98.1.1".parse().unwrap()),
                ..spec("gw2")
            },
            "gateway:",
        ),
    ];
    for (s, field) in cases {
        let e = eng.create_network(s.clone()).unwrap_err().to_string();
        assert!(e.starts_with(field), "{}: {e}", s.name);
    }
    let e = eng
        .create_network(NetworkSpec {
            subnet: Some(net("10.99.128.0/17")),
            ..spec("inside")
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("network first"), "{e}");
    assert!(matches!(
        eng.create_network(spec("first")),
        Err(Error::NameInUse { .. })
    ));
    // Nothing half-made was recorded.
    assert_eq!(list(eng.registry()).unwrap().len(), 1);
}

#[test]
fn the_default_network_is_made_on_first_use_and_stays() {
    let (_t, eng) = engine();
    assert!(list(eng.registry()).unwrap().is_empty());
    let all = eng.networks().unwrap();
    assert_eq!(all.len(), 1);
    assert!(all[0].default && all[0].record.name == DEFAULT_NETWORK);
    let again = eng.default_network().unwrap();
    assert_eq!(again, all[0].record);
    let e = eng
        .remove_network(DEFAULT_NETWORK, true)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("network:"), "{e}");
    assert!(eng.prune_networks(&[]).unwrap().is_empty());
    // Its subnet is avoided by the next network.
    let n = eng
        .create_network_avoiding(spec("n"), &HostNetworks::default())
        .unwrap();
    assert!(!ipam::overlaps(n.subnet, again.subnet));
}

#[test]
fn fifty_concurrent_allocations_get_fifty_distinct_addresses() {
    let (_t, eng) = engine();
    let rec = eng.create_network(spec("busy")).unwrap();
    let ids: Vec<String> = (0..50).map(|_| container(&eng)).collect();
    let got: Vec<Endpoint> = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .map(|id| s.spawn(|| eng.allocate_endpoint("busy", id, &[]).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ips: BTreeSet<Ipv4Addr> = got.iter().map(|e| e.ip).collect();
    assert_eq!(ips.len(), 50, "{got:?}");
    assert!(ips
        .iter()
        .all(|ip| rec.subnet.contains(ip) && *ip != rec.gateway));
    // The lowest 50 after the gateway: nothing skipped, nothing lost.
    let want: BTreeSet<Ipv4Addr> = rec.subnet.hosts().skip(1).take(50).collect();
    assert_eq!(ips, want);
    let stored = eng.inspect_network("busy").unwrap().record;
    assert_eq!(stored.endpoints.len(), 50);
    for (id, ep) in &stored.endpoints {
        assert_eq!(ep.mac, ipam::mac_for(ep.ip), "{id}");
    }
}

#[test]
fn addresses_are_reused_lowest_first_and_kept_for_the_same_container() {
    let (_t, eng) = engine();
    let rec = eng.create_network(spec("n")).unwrap();
    let (a, b, c) = (container(&eng), container(&eng), container(&eng));
    let ea = eng.allocate_endpoint("n", &a, &[]).unwrap();
    let eb = eng.allocate_endpoint("n", &b, &["db".into()]).unwrap();
    assert_eq!(ea.ip, rec.subnet.hosts().nth(1).unwrap());
    // Asking again keeps the address and takes the new aliases.
    let again = eng.allocate_endpoint("n", &b, &["cache".into()]).unwrap();
    assert_eq!(
        (again.ip, again.aliases.clone()),
        (eb.ip, vec!["cache".to_string()])
    );
    assert_eq!(eng.release_endpoint("n", &a).unwrap(), Some(ea.clone()));
    assert_eq!(eng.release_endpoint("n", &a).unwrap(), None);
    assert_eq!(eng.allocate_endpoint("n", &c, &[]).unwrap().ip, ea.ip);
    let e = eng.allocate_endpoint("n", "nope", &[]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::NotFound {
                kind: "container",
                ..
            }
        ),
        "{e}"
    );
    let e = eng.allocate_endpoint("missing", &a, &[]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::NotFound {
                kind: "network",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_full_subnet_is_an_error_naming_the_network() {
    let (_t, eng) = engine();
    let mut s = spec("tiny");
    s.subnet = Some(net("10.77.0.0/30")); // one address besides the gateway
    eng.create_network(s).unwrap();
    let (a, b) = (container(&eng), container(&eng));
    eng.allocate_endpoint("tiny", &a, &[]).unwrap();
    let e = eng
        .allocate_endpoint("tiny", &b, &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("network: tiny:") && e.contains("no address left"),
        "{e}"
    );
}

#[test]
fn remove_is_refused_while_a_container_is_on_it_unless_forced() {
    let (_t, eng) = engine();
    eng.create_network(spec("n")).unwrap();
    let a = container(&eng);
    eng.allocate_endpoint("n", &a, &[]).unwrap();
    let e = eng.remove_network("n", false).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InUse {
                kind: "network",
                ..
            }
        ),
        "{e}"
    );
    assert!(e
        .to_string()
        .contains(eng.registry().get(&a).unwrap().name.as_str()));
    let gone = eng.remove_network("n", true).unwrap();
    assert_eq!(
        gone.endpoints.len(),
        1,
        "the caller learns what to tear down"
    );
    assert!(matches!(
        eng.remove_network("n", false),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn a_container_configured_for_a_network_counts_as_its_user() {
    let (_t, eng) = engine();
    eng.create_network(spec("n")).unwrap();
    let name = eng
        .registry()
        .create_container(None, json!({"network": "n"}), BTreeMap::new())
        .unwrap()
        .name;
    assert_eq!(eng.inspect_network("n").unwrap().used_by, [name]);
    assert!(eng.remove_network("n", false).is_err());
    assert!(eng.prune_networks(&[]).unwrap().is_empty());
}

#[test]
fn prune_removes_unused_networks_matching_every_label_filter() {
    let (_t, eng) = engine();
    let labelled = |name: &str, labels: &[(&str, &str)]| {
        let mut s = spec(name);
        s.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        eng.create_network(s).unwrap();
    };
    labelled("ci-1", &[("ci", "yes"), ("run", "1")]);
    labelled("ci-2", &[("ci", "yes"), ("run", "2")]);
    labelled("keep", &[]);
    labelled("busy", &[("ci", "yes")]);
    let a = container(&eng);
    eng.allocate_endpoint("busy", &a, &[]).unwrap();
    let f = |s: &str| LabelFilter::parse("filter", s).unwrap();
    let names = |v: Vec<NetworkRecord>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(
        names(
            eng.prune_networks(&[f("label=ci"), f("label=run=2")])
                .unwrap()
        ),
        ["ci-2"]
    );
    assert_eq!(
        names(eng.prune_networks(&[f("label=ci=yes")]).unwrap()),
        ["ci-1"]
    );
    assert_eq!(names(eng.prune_networks(&[]).unwrap()), ["keep"]);
    let left: Vec<String> = list(eng.registry())
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(left, ["busy"]);
}

#[test]
fn rm_and_reconcile_free_the_addresses_of_containers_that_are_gone() {
    let (_t, eng) = engine();
    eng.create_network(spec("n")).unwrap();
    let (kept, removed, crashed) = (container(&eng), container(&eng), container(&eng));
    for id in [&kept, &removed, &crashed] {
        eng.allocate_endpoint("n", id, &[]).unwrap();
    }
    let crashed_ip = eng.inspect_network("n").unwrap().record.endpoints[&crashed].ip;
    // An rm that finishes frees the address itself.
    eng.remove(&removed, true, false).unwrap();
    assert!(!eng
        .inspect_network("n")
        .unwrap()
        .record
        .endpoints
        .contains_key(&removed));
    // An rm that dies after removing the container leaves the address held...
    eng.registry().remove_container(&crashed).unwrap();
    assert!(eng
        .inspect_network("n")
        .unwrap()
        .record
        .endpoints
        .contains_key(&crashed));
    // ...until the next reconcile (the open after an abandoned rm's intent runs one:
    // check.rs has that test).
    let out = eng.registry().reconcile().unwrap();
    assert_eq!(
        out.repairs,
        [Repair::ReleasedAddress {
            network: "n".into(),
            id: crashed.clone(),
            ip: crashed_ip,
        }]
    );
    let eps = eng.inspect_network("n").unwrap().record.endpoints;
    assert_eq!(eps.keys().collect::<Vec<_>>(), [&kept]);
    assert!(eng.registry().reconcile().unwrap().is_clean());
}

#[test]
fn an_unreadable_network_record_is_reported_and_left_alone() {
    let (_t, eng) = engine();
    eng.registry()
        .update(|idx| {
            idx.networks.insert("odd".into(), json!({"name": "odd"}));
            Ok(())
        })
        .unwrap();
    let out = eng.registry().reconcile().unwrap();
    assert_eq!(out.problems.len(), 1, "{out:?}");
    assert!(out.problems[0].reason.starts_with("networks.odd:"));
    let e = eng.networks().unwrap_err().to_string();
    assert!(e.contains("networks.odd"), "{e}");
}

#[test]
fn hosts_and_inspect_follow_the_records_as_containers_join_and_leave() {
    let (_t, eng) = engine();
    let mut s = spec("shop");
    s.subnet = Some(net("10.70.0.0/24"));
    eng.create_network(s).unwrap();
    let reg = eng.registry();
    let web = reg
        .create_container(
            Some("web"),
            json!({"hostname": "www", "add_hosts": [{"host": "gw", "ip": "host-gateway"}]}),
            BTreeMap::new(),
        )
        .unwrap()
        .id;
    let db = reg
        .create_container(Some("db"), json!({}), BTreeMap::new())
        .unwrap()
        .id;
    eng.allocate_endpoint("shop", &web, &[]).unwrap();
    eng.allocate_endpoint("shop", &db, &["pg".into()]).unwrap();
    let text = hostfiles::hosts_file(&eng.hosts_of("web").unwrap());
    assert!(text.contains("10.70.0.1\tgw\n"), "{text}");
    assert!(text.contains("10.70.0.2\twww web\n"), "{text}");
    assert!(text.contains("10.70.0.3\tdb pg\n"), "{text}");
    let v = eng.inspect("db").unwrap();
    assert_eq!(v["networks"]["shop"]["ip"], "10.70.0.3");
    assert_eq!(v["networks"]["shop"]["gateway"], "10.70.0.1");
    assert_eq!(v["networks"]["shop"]["mac"], "02:42:0a:46:00:03");
    assert_eq!(v["networks"]["shop"]["aliases"], json!(["pg"]));
    // db leaves: web's hosts file no longer names it.
    eng.remove("db", true, false).unwrap();
    let text = hostfiles::hosts_file(&eng.hosts_of("web").unwrap());
    assert!(!text.contains("db"), "{text}");
    let conf = eng.resolv_conf_of("web").unwrap();
    assert!(conf.starts_with("nameserver "), "{conf}");
}
