//! Fifty processes, each opening the engine (which reconciles), creating a container and
//! taking an address on one network at the same moment: fifty distinct addresses, every
//! one recorded, none freed by another process's reconcile.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use codex_engine::engine::Engine;
use codex_engine::network::NetworkSpec;
use serde_json::json;

const N: usize = 50;

fn open(root: &Path) -> Engine {
    Engine::open(root, "/nonexistent".into()).expect("open")
}

fn spawn_workers(root: &Path, go: &Path) -> Vec<Child> {
    let exe = std::env::current_exe().expect("current exe");
    (0..N)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "worker",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("NET_WORKER_ROOT", root)
                .env("NET_WORKER_GO", go)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn worker")
        })
        .collect()
}

/// A worker process: not a test of its own (ignored; does nothing without its env).
#[test]
#[ignore = "run by fifty_processes_allocating_at_once_get_distinct_addresses"]
fn worker() {
    let Some(root) = std::env::var_os("NET_WORKER_ROOT").map(PathBuf::from) else {
        return;
    };
    let go = PathBuf::from(std::env::var_os("NET_WORKER_GO").expect("NET_WORKER_GO"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !go.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let eng = open(&root);
    let id = eng
        .registry()
        .create_container(None, json!({}), BTreeMap::new())
        .expect("create")
        .id;
    match eng.allocate_endpoint("shared", &id, &[]) {
        Ok(ep) => println!("RESULT {id} {}", ep.ip),
        Err(e) => println!("RESULT error {e}"),
    }
}

#[test]
fn fifty_processes_allocating_at_once_get_distinct_addresses() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("root");
    let go = tmp.path().join("go");
    open(&root)
        .create_network(NetworkSpec {
            name: "shared".into(),
            subnet: Some("10.66.0.0/24".parse().expect("cidr")),
            ..NetworkSpec::default()
        })
        .expect("network");
    let children = spawn_workers(&root, &go);
    std::fs::write(&go, b"").expect("go");
    let mut got = BTreeMap::new();
    for child in children {
        let out = child.wait_with_output().expect("wait worker");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
            .unwrap_or_else(|| panic!("worker printed no result ({}): {stdout}", out.status));
        let (id, ip) = line.split_once(' ').expect("id ip");
        let ip: Ipv4Addr = ip.parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(got.insert(id.to_string(), ip).is_none(), "{line}");
    }
    let ips: BTreeSet<Ipv4Addr> = got.values().copied().collect();
    assert_eq!(ips.len(), N, "{got:?}");
    let eng = open(&root);
    let rec = eng.inspect_network("shared").expect("inspect").record;
    let recorded: BTreeMap<String, Ipv4Addr> = rec
        .endpoints
        .iter()
        .map(|(id, e)| (id.clone(), e.ip))
        .collect();
    assert_eq!(recorded, got);
    assert!(eng.registry().reconcile().expect("reconcile").is_clean());
}
