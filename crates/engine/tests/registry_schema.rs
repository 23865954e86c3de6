//! `runtime-state/`, the registry's files (`registry.json`, `containers/<id>/state.json`):
//! every golden example still loads through the engine's own load path and fits its
//! version's JSON Schema, and what the engine writes now fits the current schema. The
//! image store's files, `lowers` and the container log are in `state_files_schema.rs`.
//! See runtime-state/README.md for the rule these tests keep.

use std::collections::BTreeMap;

use codex_engine::network::{self, NetworkRecord, NetworkSpec};
use codex_engine::registry::{
    self, ContainerStatus, Registry, INDEX_FILE, INDEX_VERSION, RECORD_VERSION, STATE_FILE,
};
use codex_engine::volume::{self, VolumeRecord};
use serde_json::{json, Value};

mod runtime_state;

use runtime_state::{assert_fits, golden_examples, read_json, runtime_state, single, validator};

/// A root holding `index` as registry.json and each record as containers/<id>/state.json.
fn root_with(index: &Value, records: &[Value]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(tmp.path().join("containers")).expect("mkdir");
    std::fs::write(tmp.path().join(INDEX_FILE), index.to_string()).expect("write index");
    for record in records {
        let id = record["id"].as_str().expect("golden record has an id");
        let dir = tmp.path().join("containers").join(id);
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join(STATE_FILE), record.to_string()).expect("write state");
    }
    tmp
}

#[test]
fn every_golden_example_loads_and_fits_its_schema() {
    let mut seen = BTreeMap::<String, usize>::new();
    for example in golden_examples() {
        let (file_name, kind, version) = (&example.file_name, &example.kind, example.version);
        if kind != "registry" && kind != "state" {
            continue; // state_files_schema.rs
        }
        let golden = single(&example).clone();
        assert_eq!(
            golden["version"],
            json!(version),
            "{file_name}: version field vs file name"
        );
        assert_fits(&validator(kind, version), &golden, file_name);

        // Load it the way the engine loads a root from disk.
        match kind.as_str() {
            "registry" => {
                assert!(
                    version <= INDEX_VERSION,
                    "{file_name} is newer than the engine"
                );
                let tmp = root_with(&golden, &[]);
                let reg = Registry::open(tmp.path()).expect("open");
                let index = reg.index().unwrap_or_else(|e| panic!("{file_name}: {e}"));
                // Version 1 kept container names in the file; opening moves them to names/.
                let links = reg
                    .container_names()
                    .unwrap_or_else(|e| panic!("{file_name}: {e}"));
                let no_names = serde_json::Map::new();
                let golden_names = golden
                    .get("containers")
                    .map(|c| c.as_object().expect("containers"))
                    .unwrap_or(&no_names);
                let want: BTreeMap<String, String> = golden_names
                    .iter()
                    .map(|(name, id)| (name.clone(), id.as_str().expect("id").to_string()))
                    .collect();
                assert_eq!(links, want, "{file_name}");
                assert!(
                    read_json(&reg.index_path()).get("containers").is_none(),
                    "{file_name}: the names stayed in registry.json"
                );
                for (reference, id) in golden["images"].as_object().expect("images") {
                    assert_eq!(index.images.get(reference).map(String::as_str), id.as_str());
                }
                // Volume records load as the volume code reads them, each under its name.
                let golden_volumes = golden["volumes"].as_object().expect("volumes");
                let mut want = Vec::new();
                for (name, v) in golden_volumes {
                    let rec: VolumeRecord = serde_json::from_value(v.clone())
                        .unwrap_or_else(|e| panic!("{file_name}: volume {name}: {e}"));
                    assert_eq!(&rec.name, name, "{file_name}: a volume's key is its name");
                    want.push(rec);
                }
                let listed = volume::list(&reg).unwrap_or_else(|e| panic!("{file_name}: {e}"));
                assert_eq!(listed, want, "{file_name}");
                // Network records too, and every endpoint's container is in the index.
                let golden_networks = golden["networks"].as_object().expect("networks");
                let mut want = Vec::new();
                for (name, v) in golden_networks {
                    let rec: NetworkRecord = serde_json::from_value(v.clone())
                        .unwrap_or_else(|e| panic!("{file_name}: network {name}: {e}"));
                    assert_eq!(&rec.name, name, "{file_name}: a network's key is its name");
                    // (Since version 2 the names are in names/, which a golden file
                    // cannot hold: only version 1's endpoints are checked.)
                    for id in rec.endpoints.keys().filter(|_| version == 1) {
                        assert!(
                            links.values().any(|v| v == id),
                            "{file_name}: network {name}: endpoint {id} is no container"
                        );
                    }
                    want.push(rec);
                }
                let listed = network::list(&reg).unwrap_or_else(|e| panic!("{file_name}: {e}"));
                assert_eq!(listed, want, "{file_name}");
                if version == INDEX_VERSION {
                    assert_eq!(
                        serde_json::to_value(&index).expect("json"),
                        golden,
                        "{file_name}"
                    );
                }
            }
            "state" => {
                assert!(
                    version <= RECORD_VERSION,
                    "{file_name} is newer than the engine"
                );
                let id = golden["id"].as_str().expect("id");
                let name = golden["name"].as_str().expect("name");
                let index = json!({
                    "version": 1, "containers": {name: id},
                    "images": {}, "volumes": {}, "networks": {}
                });
                let tmp = root_with(&index, std::slice::from_ref(&golden));
                let reg = Registry::open(tmp.path()).expect("open");
                let record = reg.get(name).unwrap_or_else(|e| panic!("{file_name}: {e}"));
                assert_eq!((record.id.as_str(), record.name.as_str()), (id, name));
                assert_eq!(json!(record.status), golden["status"], "{file_name}");
                if version == RECORD_VERSION {
                    assert_eq!(
                        serde_json::to_value(&record).expect("json"),
                        golden,
                        "{file_name}"
                    );
                }
                // And the engine can go on using it.
                reg.update_container(id, |r| {
                    r.restart_count += 1;
                    Ok(())
                })
                .unwrap_or_else(|e| panic!("{file_name}: {e}"));
                assert!(
                    reg.reconcile().expect("reconcile").is_clean(),
                    "{file_name}"
                );
            }
            _ => unreachable!(),
        }
        *seen.entry(kind.clone()).or_default() += 1;
    }
    assert!(seen.get("registry").is_some_and(|n| *n >= 1), "{seen:?}");
    assert!(seen.get("state").is_some_and(|n| *n >= 1), "{seen:?}");
    // The current version of each file has a golden example.
    for (kind, version) in [("registry", INDEX_VERSION), ("state", RECORD_VERSION)] {
        let path = runtime_state().join(format!("examples/{kind}.v{version}.json"));
        assert!(path.is_file(), "{} is missing", path.display());
    }
}

#[test]
fn what_the_engine_writes_fits_the_current_schema() {
    let registry_schema = validator("registry", INDEX_VERSION);
    let state_schema = validator("state", RECORD_VERSION);
    let tmp = tempfile::tempdir().expect("temp dir");
    let reg = Registry::open(tmp.path()).expect("open");
    assert_fits(
        &registry_schema,
        &read_json(&reg.index_path()),
        "a fresh registry.json",
    );

    let labels = BTreeMap::from([("app".to_string(), "bot".to_string())]);
    let fresh = reg
        .create_container(
            Some("bot-1"),
            json!({"image": "busybox", "env": ["A=1"]}),
            labels,
        )
        .expect("create");
    let generated = reg
        .create_container(None, json!({}), BTreeMap::new())
        .expect("create");
    reg.update_container(&fresh.id, |r| {
        r.status = ContainerStatus::Exited;
        r.pid = Some(1234);
        r.supervisor_pid = Some(1233);
        r.exit_code = Some(137);
        r.signal = Some(9);
        r.oom_killed = true;
        r.error = Some("killed by the OOM killer".into());
        r.started_at = Some(codex_runtime::state::now_rfc3339());
        r.finished_at = Some(codex_runtime::state::now_rfc3339());
        r.restart_count = 3;
        Ok(())
    })
    .expect("update");
    reg.update(|index| {
        index.images.insert(
            "busybox:latest".into(),
            format!("sha256:{}", "0".repeat(64)),
        );
        Ok(())
    })
    .expect("update index");

    assert_fits(
        &registry_schema,
        &read_json(&reg.index_path()),
        "registry.json",
    );
    for rec in [&fresh, &generated] {
        let path = reg.container_dir(&rec.id).expect("dir").join(STATE_FILE);
        assert_fits(
            &state_schema,
            &read_json(&path),
            &path.display().to_string(),
        );
    }
    for status in ContainerStatus::ALL {
        let rec = reg
            .update_container(&generated.id, |r| {
                r.status = status;
                Ok(())
            })
            .expect("update");
        assert_fits(
            &state_schema,
            &serde_json::to_value(&rec).expect("json"),
            status.as_str(),
        );
    }
}

#[test]
fn volume_records_the_engine_writes_fit_the_registry_schema() {
    let registry_schema = validator("registry", INDEX_VERSION);
    let tmp = tempfile::tempdir().expect("temp dir");
    let reg = Registry::open(tmp.path()).expect("open");
    let named = volume::ensure(&reg, "pgdata", false).expect("named volume");
    let anonymous_name = registry::new_volume_name().expect("name");
    let anonymous = volume::ensure(&reg, &anonymous_name, true).expect("anonymous volume");
    // A second ensure finds the record rather than writing another.
    assert_eq!(volume::ensure(&reg, "pgdata", true).expect("again"), named);
    assert!(anonymous.anonymous && !named.anonymous);

    let written = read_json(&reg.index_path());
    assert_fits(&registry_schema, &written, "registry.json with volumes");
    assert_eq!(written["volumes"]["pgdata"], json!(named));
    assert_eq!(written["volumes"][&anonymous_name], json!(anonymous));
    for name in ["pgdata", anonymous_name.as_str()] {
        assert!(volume::data_dir(reg.root(), name).is_dir(), "{name}");
        assert!(
            reg.root().join("volumes").join(name).join("_data").is_dir(),
            "volumes/{name}/_data"
        );
    }
    let mut listed = volume::list(&reg).expect("list");
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    let mut want = vec![named, anonymous];
    want.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(listed, want);

    volume::remove(&reg, "pgdata").expect("rm");
    assert_fits(
        &registry_schema,
        &read_json(&reg.index_path()),
        "registry.json after volume rm",
    );
}

#[test]
fn network_records_the_engine_writes_fit_the_registry_schema() {
    let registry_schema = validator("registry", INDEX_VERSION);
    let tmp = tempfile::tempdir().expect("temp dir");
    let eng = codex_engine::engine::Engine::open(tmp.path(), "/nonexistent".into()).expect("open");
    eng.default_network().expect("default network");
    let spec = NetworkSpec::parse(
        "backend",
        Some("10.99.0.0/24"),
        Some("10.99.0.254"),
        true,
        &["app=shop".into()],
    )
    .expect("spec");
    eng.create_network(spec).expect("create");
    let id = eng
        .registry()
        .create_container(Some("db"), json!({}), BTreeMap::new())
        .expect("container")
        .id;
    eng.allocate_endpoint("backend", &id, &["pg".into()])
        .expect("allocate");
    eng.allocate_endpoint("bridge", &id, &[]).expect("allocate");
    let written = read_json(&eng.registry().index_path());
    assert_fits(&registry_schema, &written, "registry.json with networks");
    assert_eq!(
        written["networks"]["backend"]["endpoints"][&id]["ip"],
        "10.99.0.1"
    );
    eng.remove_network("backend", true).expect("rm");
    assert_fits(
        &registry_schema,
        &read_json(&eng.registry().index_path()),
        "registry.json after network rm",
    );
}

/// The schemas are not vacuous: they refuse what the engine must never write.
#[test]
fn the_schemas_refuse_malformed_files() {
    let state_schema = validator("state", RECORD_VERSION);
    let golden = read_json(&runtime_state().join(format!("examples/state.v{RECORD_VERSION}.json")));
    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut v = golden.clone();
        edit(&mut v);
        v
    };
    for (what, bad) in [
        (
            "no version",
            broken(&|v| drop(v.as_object_mut().map(|o| o.remove("version")))),
        ),
        ("unknown status", broken(&|v| v["status"] = json!("zombie"))),
        ("short id", broken(&|v| v["id"] = json!("abc"))),
        ("bad name", broken(&|v| v["name"] = json!("../etc"))),
        ("bad time", broken(&|v| v["created"] = json!("yesterday"))),
        ("unknown field", broken(&|v| v["extra"] = json!(1))),
        (
            "label not a string",
            broken(&|v| v["labels"]["n"] = json!(1)),
        ),
    ] {
        assert!(
            !state_schema.is_valid(&bad),
            "state schema accepted: {what}"
        );
    }
    let registry_schema = validator("registry", INDEX_VERSION);
    let golden =
        read_json(&runtime_state().join(format!("examples/registry.v{INDEX_VERSION}.json")));
    let mut bad = golden.clone();
    bad["containers"] = json!({"ok": "0".repeat(64)});
    assert!(
        !registry_schema.is_valid(&bad),
        "container names are in names/ since version 2"
    );
    let mut bad = golden;
    bad["version"] = json!(99);
    assert!(!registry_schema.is_valid(&bad));

    let golden = read_json(
        &runtime_state().join(format!("examples/registry.v{INDEX_VERSION}.volumes.json")),
    );
    assert!(registry_schema.is_valid(&golden));
    let (name, _) = golden["volumes"]
        .as_object()
        .and_then(|v| v.iter().next())
        .expect("a volume");
    let name = name.clone();
    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut v = golden.clone();
        edit(&mut v);
        v
    };
    for (what, bad) in [
        (
            "volume without a name",
            broken(&|v| {
                drop(
                    v["volumes"][&name]
                        .as_object_mut()
                        .map(|o| o.remove("name")),
                )
            }),
        ),
        (
            "volume without created",
            broken(&|v| {
                drop(
                    v["volumes"][&name]
                        .as_object_mut()
                        .map(|o| o.remove("created")),
                )
            }),
        ),
        (
            "volume with a bad time",
            broken(&|v| v["volumes"][&name]["created"] = json!("")),
        ),
        (
            "volume with an unknown field",
            broken(&|v| v["volumes"][&name]["driver"] = json!("local")),
        ),
        (
            "anonymous not a boolean",
            broken(&|v| v["volumes"][&name]["anonymous"] = json!("yes")),
        ),
        (
            "volume not an object",
            broken(&|v| v["volumes"][&name] = json!("pgdata")),
        ),
        (
            "bad volume name",
            broken(&|v| v["volumes"]["../x"] = v["volumes"][&name].clone()),
        ),
    ] {
        assert!(
            !registry_schema.is_valid(&bad),
            "registry schema accepted: {what}"
        );
    }
    // A record without `anonymous` is a named volume (serde default), and fits.
    let mut ok = golden;
    drop(
        ok["volumes"][&name]
            .as_object_mut()
            .map(|o| o.remove("anonymous")),
    );
    assert!(registry_schema.is_valid(&ok));

    let golden = read_json(
        &runtime_state().join(format!("examples/registry.v{INDEX_VERSION}.networks.json")),
    );
    assert!(registry_schema.is_valid(&golden));
    let id = "c0ffee00d15ea5e5b16b00b5deadbeef0123456789abcdef0123456789abcdef";
    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut v = golden.clone();
        edit(&mut v);
        v
    };
    for (what, bad) in [
        (
            "network without a subnet",
            broken(&|v| {
                drop(
                    v["networks"]["backend"]
                        .as_object_mut()
                        .map(|o| o.remove("subnet")),
                )
            }),
        ),
        (
            "subnet not a CIDR",
            broken(&|v| v["networks"]["backend"]["subnet"] = json!("10.88.1.0")),
        ),
        (
            "gateway not an address",
            broken(&|v| v["networks"]["backend"]["gateway"] = json!("10.88.1.256")),
        ),
        (
            "bridge name too long",
            broken(&|v| v["networks"]["backend"]["bridge"] = json!("cx-7f3a9c2e5b1d4")),
        ),
        (
            "unknown driver",
            broken(&|v| v["networks"]["backend"]["driver"] = json!("macvlan")),
        ),
        (
            "endpoint keyed by a name",
            broken(&|v| {
                v["networks"]["backend"]["endpoints"]["db"] =
                    v["networks"]["backend"]["endpoints"][id].clone()
            }),
        ),
        (
            "endpoint without a mac",
            broken(&|v| {
                drop(
                    v["networks"]["backend"]["endpoints"][id]
                        .as_object_mut()
                        .map(|o| o.remove("mac")),
                )
            }),
        ),
        (
            "endpoint with an unknown field",
            broken(&|v| v["networks"]["backend"]["endpoints"][id]["port"] = json!(80)),
        ),
        (
            "bad network name",
            broken(&|v| v["networks"]["../x"] = v["networks"]["backend"].clone()),
        ),
    ] {
        assert!(
            !registry_schema.is_valid(&bad),
            "registry schema accepted: {what}"
        );
    }
}
