//! `runtime-state/`, the engine's other files: the image store's (`images/index.json`,
//! `images/manifests/<id>.json`, `images/layers/<hex>/layer.json`), a container's
//! `lowers` and its `container.log` (JSON lines). Every golden example loads through the
//! engine's own load path and fits its version's JSON Schema, and what the engine writes
//! now fits the current schemas. `registry_schema.rs` does the same for `registry.json`
//! and `state.json`. See runtime-state/README.md for the rule these tests keep.
//!
//! Everything here runs without root except the image import (unpacking a layer sets
//! owners), which is skipped, saying so, when not root.

mod runtime_state;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use codex_engine::config::{ContainerConfig, Isolation, Volume};
use codex_engine::engine::{Engine, LOG_FILE};
use codex_engine::image::{ImageConfig, ImageRecord, ImageStore, STORE_VERSION};
use codex_engine::logread::{parse_since, LogQuery};
use codex_engine::registry::{INDEX_VERSION, RECORD_VERSION, STATE_FILE};
use codex_engine::supervisor::logs::{self, LogLine, LogWriter, Rotation};
use codex_engine::Error;
use runtime_state::{
    assert_fits, golden_examples, has_version_field, latest_version, read_json, runtime_state,
    schema_versions, single, validator, Golden, KINDS,
};
use serde_json::{json, Value};

const IMAGE_KINDS: [&str; 3] = ["image-index", "image-manifest", "image-layer"];

fn examples_of(kind: &str) -> Vec<Golden> {
    golden_examples()
        .into_iter()
        .filter(|g| g.kind == kind)
        .collect()
}

/// Checks what every example of `kind` must be: named for a version that has a schema,
/// with that version in its `version` field (or, for a kind without one, no such field),
/// and fitting that schema. Returns the examples.
fn checked_examples(kind: &str) -> Vec<Golden> {
    let examples = examples_of(kind);
    assert!(!examples.is_empty(), "no golden example of {kind}");
    for g in &examples {
        let schema = validator(kind, g.version);
        for (i, instance) in g.instances.iter().enumerate() {
            let what = format!("{} #{}", g.file_name, i + 1);
            if has_version_field(kind) {
                assert_eq!(
                    instance["version"],
                    json!(g.version),
                    "{what}: version field vs file name"
                );
            } else {
                assert!(
                    instance.get("version").is_none(),
                    "{what}: this kind has no version field"
                );
            }
            assert_fits(&schema, instance, &what);
        }
    }
    examples
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").expect("a sha256: digest")
}

/// An image record for a store test: dangling, one made-up layer.
fn record_for(id: &str) -> ImageRecord {
    ImageRecord {
        version: STORE_VERSION,
        id: id.to_string(),
        name: None,
        tag: None,
        created: "2026-05-01T00:00:00.000000000Z".into(),
        layers: vec![format!("sha256:{}", "0".repeat(64))],
        size: 0,
        config: ImageConfig::default(),
        manifest: None,
        platform: "linux/amd64".into(),
    }
}

/// Writes `<root>/images/<rel>` (its directories too).
fn put(root: &Path, rel: &str, data: &[u8]) {
    let path = root.join("images").join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn copy_golden(root: &Path, rel: &str, golden: &Golden) {
    put(
        root,
        rel,
        &std::fs::read(&golden.path).expect("read golden"),
    );
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------------------
// The runtime-state directory itself
// ---------------------------------------------------------------------------------------

/// Every schema and example is of a known kind; every kind has a schema for each of its
/// versions from 1 up (released ones are never deleted) and a golden example of each.
#[test]
fn runtime_state_has_schemas_and_golden_examples_for_every_kind() {
    for entry in std::fs::read_dir(runtime_state()).expect("runtime-state/") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name == "README.md" || name == "examples" {
            continue;
        }
        assert!(
            name.ends_with(".schema.json"),
            "runtime-state/{name}: only README.md, examples/ and <kind>.v<N>.schema.json belong here"
        );
        let (kind, _) = runtime_state::kind_and_version(&name);
        has_version_field(&kind);
    }
    let examples = golden_examples();
    for (kind, _) in KINDS {
        let versions = schema_versions(kind);
        assert_eq!(
            versions,
            (1..=latest_version(kind)).collect::<Vec<_>>(),
            "{kind}: a schema for every version from 1"
        );
        for v in versions {
            validator(kind, v);
            assert!(
                examples.iter().any(|g| g.kind == *kind && g.version == v),
                "{kind} v{v} has no golden example in runtime-state/examples"
            );
        }
    }
    for g in &examples {
        assert!(
            schema_versions(&g.kind).contains(&g.version),
            "{}: no schema {}.v{}.schema.json",
            g.file_name,
            g.kind,
            g.version
        );
    }
    // The engine's version constants have their schemas, and nothing newer does.
    for (kind, version) in [
        ("registry", INDEX_VERSION),
        ("state", RECORD_VERSION),
        ("image-index", STORE_VERSION),
        ("image-manifest", STORE_VERSION),
        ("image-layer", STORE_VERSION),
    ] {
        assert_eq!(latest_version(kind), version, "{kind}");
    }
}

// ---------------------------------------------------------------------------------------
// Golden examples load
// ---------------------------------------------------------------------------------------

#[test]
fn every_image_index_example_loads() {
    for g in checked_examples("image-index") {
        let file = &g.file_name;
        assert!(
            g.version <= STORE_VERSION,
            "{file} is newer than the engine"
        );
        let golden = single(&g);
        let tmp = tempfile::tempdir().expect("temp dir");
        let store = ImageStore::open(tmp.path()).expect("open");
        copy_golden(tmp.path(), "index.json", &g);
        let references = golden["references"].as_object().expect("references");
        let ids: BTreeSet<&str> = references
            .values()
            .map(|v| v.as_str().expect("id"))
            .collect();
        // Records that do not name themselves: the index gives them their names.
        for id in &ids {
            let rec = serde_json::to_vec(&record_for(id)).expect("json");
            put(tmp.path(), &format!("manifests/{id}.json"), &rec);
        }
        for (reference, id) in references {
            let rec = store
                .get(reference)
                .unwrap_or_else(|e| panic!("{file}: {reference}: {e}"));
            assert_eq!(json!(rec.id), *id, "{file}: {reference}");
            let named = rec.reference().expect("named by the index");
            assert_eq!(
                references.get(&named),
                Some(id),
                "{file}: {reference} read as {named}"
            );
        }
        let listed = store.list().unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(listed.len(), ids.len(), "{file}");
        assert!(listed.iter().all(|r| r.reference().is_some()), "{file}");
    }
}

#[test]
fn every_image_manifest_example_loads() {
    for g in checked_examples("image-manifest") {
        let file = &g.file_name;
        assert!(
            g.version <= STORE_VERSION,
            "{file} is newer than the engine"
        );
        let golden = single(&g);
        let id = golden["id"].as_str().expect("id");
        let tmp = tempfile::tempdir().expect("temp dir");
        let store = ImageStore::open(tmp.path()).expect("open");
        copy_golden(tmp.path(), &format!("manifests/{id}.json"), &g);
        let reference = match (golden["name"].as_str(), golden["tag"].as_str()) {
            (Some(name), Some(tag)) => Some(format!("{name}:{tag}")),
            _ => None,
        };
        let refs: BTreeMap<&str, &str> = reference.iter().map(|r| (r.as_str(), id)).collect();
        let index = json!({"version": STORE_VERSION, "references": refs});
        put(tmp.path(), "index.json", index.to_string().as_bytes());
        let mut layer_dirs = Vec::new();
        for diff_id in golden["layers"].as_array().expect("layers") {
            let dir = tmp
                .path()
                .join("images/layers")
                .join(hex_of(diff_id.as_str().expect("diff_id")))
                .join("rootfs");
            std::fs::create_dir_all(&dir).expect("mkdir");
            layer_dirs.push(dir.canonicalize().expect("canonical"));
        }

        let rec = store.get(id).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(rec.id, id, "{file}");
        assert_eq!(rec.reference(), reference, "{file}");
        if let Some(r) = &reference {
            assert_eq!(store.get(r).expect("by reference"), rec, "{file}");
        }
        if g.version == STORE_VERSION {
            assert_eq!(serde_json::to_value(&rec).expect("json"), *golden, "{file}");
        }
        assert_eq!(
            store.list().expect("list"),
            std::slice::from_ref(&rec),
            "{file}"
        );
        // What a container of this image is made of: its layers, top first.
        let lowers: Vec<PathBuf> = store
            .rootfs_layers(&rec)
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .into_iter()
            .map(|p| p.canonicalize().expect("canonical"))
            .collect();
        layer_dirs.reverse();
        assert_eq!(lowers, layer_dirs, "{file}");
    }
}

#[test]
fn every_image_layer_example_loads() {
    for g in checked_examples("image-layer") {
        let file = &g.file_name;
        assert!(
            g.version <= STORE_VERSION,
            "{file} is newer than the engine"
        );
        let golden = single(&g);
        let diff_id = golden["diff_id"].as_str().expect("diff_id");
        let tmp = tempfile::tempdir().expect("temp dir");
        let store = ImageStore::open(tmp.path()).expect("open");
        copy_golden(
            tmp.path(),
            &format!("layers/{}/layer.json", hex_of(diff_id)),
            &g,
        );
        let layer = store
            .layer(diff_id)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(layer.diff_id, diff_id, "{file}");
        if g.version == STORE_VERSION {
            assert_eq!(
                serde_json::to_value(&layer).expect("json"),
                *golden,
                "{file}"
            );
        }
    }
}

/// The current version's image examples together are one consistent store: every
/// reference resolves, every record lists, every layer is there.
#[test]
fn the_current_image_examples_make_one_store() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let store = ImageStore::open(tmp.path()).expect("open");
    let current: Vec<Golden> = IMAGE_KINDS
        .iter()
        .flat_map(|k| examples_of(k))
        .filter(|g| g.version == STORE_VERSION)
        .collect();
    let mut manifests = Vec::new();
    let mut references = serde_json::Map::new();
    let mut layers = Vec::new();
    for g in &current {
        let golden = single(g);
        match g.kind.as_str() {
            "image-index" => {
                assert!(references.is_empty(), "one current image-index example");
                references = golden["references"].as_object().expect("refs").clone();
                copy_golden(tmp.path(), "index.json", g);
            }
            "image-manifest" => {
                let id = golden["id"].as_str().expect("id");
                copy_golden(tmp.path(), &format!("manifests/{id}.json"), g);
                manifests.push(golden.clone());
            }
            "image-layer" => {
                let diff_id = golden["diff_id"].as_str().expect("diff_id").to_string();
                copy_golden(
                    tmp.path(),
                    &format!("layers/{}/layer.json", hex_of(&diff_id)),
                    g,
                );
                layers.push((diff_id, golden.clone()));
            }
            _ => unreachable!(),
        }
    }
    let listed = store.list().expect("list");
    assert_eq!(listed.len(), manifests.len());
    for m in &manifests {
        let rec = store.get(m["id"].as_str().expect("id")).expect("get");
        assert_eq!(serde_json::to_value(&rec).expect("json"), *m);
    }
    for (reference, id) in &references {
        assert_eq!(json!(store.get(reference).expect(reference).id), *id);
    }
    for (diff_id, golden) in &layers {
        let layer = store.layer(diff_id).expect("layer");
        assert_eq!(serde_json::to_value(&layer).expect("json"), *golden);
    }
}

#[test]
fn every_lowers_example_loads() {
    for g in checked_examples("lowers") {
        let file = &g.file_name;
        let golden = single(&g);
        // The type the supervisor reads it into before it mounts the overlay.
        let lowers: Vec<PathBuf> = serde_json::from_slice(&std::fs::read(&g.path).expect("read"))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!lowers.is_empty(), "{file}");
        assert!(lowers.iter().all(|p| p.is_absolute()), "{file}");
        if g.version == latest_version("lowers") {
            // ... and the engine writes it back the same (Engine::create's encoding).
            assert_eq!(serde_json::to_value(&lowers).expect("json"), *golden);
            assert_eq!(
                serde_json::to_vec(&lowers).expect("json"),
                std::fs::read(&g.path).expect("read"),
                "{file}: byte for byte"
            );
        }
    }
}

#[test]
fn every_container_log_example_loads() {
    for g in checked_examples("container-log") {
        let file = &g.file_name;
        let text = std::fs::read_to_string(&g.path).expect("read");
        let lines: Vec<LogLine> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{file}: {l}: {e}")))
            .collect();
        if g.version == latest_version("container-log") {
            // Byte for byte as the writer encodes a record (serde_json's encoding, which
            // codex-shim's writer reproduces).
            for (line, raw) in lines.iter().zip(text.lines()) {
                assert_eq!(serde_json::to_string(line).expect("json"), raw, "{file}");
            }
        }
        // Read back as `logs` reads a container's log: rotated files first.
        let tmp = tempfile::tempdir().expect("temp dir");
        let live = tmp.path().join(LOG_FILE);
        std::fs::write(&live, &text).expect("write");
        assert_eq!(logs::read_all(&live, 1).expect("read"), lines, "{file}");
        let raw: Vec<&str> = text.split_inclusive('\n').collect();
        let (older, newer) = raw.split_at(raw.len() / 2);
        std::fs::write(tmp.path().join(format!("{LOG_FILE}.1")), older.concat()).expect("write");
        std::fs::write(&live, newer.concat()).expect("write");
        assert_eq!(
            logs::read_all(&live, 2).expect("read"),
            lines,
            "{file}: rotated"
        );
        // Every time is one that `logs --since` compares: the lines before the third's
        // time are left out (the example's times ascend).
        assert!(lines.len() >= 3, "{file}: at least three lines");
        let query = LogQuery {
            since: Some(parse_since(&lines[2].time).expect("since")),
            ..LogQuery::default()
        };
        let later: Vec<LogLine> = lines[2..].to_vec();
        assert_eq!(query.select(lines.clone()), later, "{file}: --since");
    }
}

/// A store file written by a newer codex-ctr is refused, naming the file, rather than
/// read without what this engine does not know.
#[test]
fn an_image_store_file_of_a_newer_version_is_refused() {
    let newer = STORE_VERSION + 1;
    let manifest = examples_of("image-manifest")
        .into_iter()
        .find(|g| g.version == STORE_VERSION)
        .expect("a current manifest example");
    let mut rec = single(&manifest).clone();
    rec["version"] = json!(newer);
    rec["pulled_from"] = json!("registry.example.com");
    let id = rec["id"].as_str().expect("id").to_string();
    let diff_id = format!("sha256:{}", "ab".repeat(32));
    let layer = json!({"version": newer, "diff_id": diff_id, "blob": diff_id, "size": 1,
                       "media_type": "application/vnd.oci.image.layer.v1.tar"});

    let tmp = tempfile::tempdir().expect("temp dir");
    let store = ImageStore::open(tmp.path()).expect("open");
    let manifest_path = tmp.path().join(format!("images/manifests/{id}.json"));
    put(
        tmp.path(),
        &format!("manifests/{id}.json"),
        rec.to_string().as_bytes(),
    );
    put(
        tmp.path(),
        &format!("layers/{}/layer.json", hex_of(&diff_id)),
        layer.to_string().as_bytes(),
    );
    let refused = |what: &str, r: Result<(), Error>, file: &str| match r {
        Err(Error::Corrupt { path, reason }) => {
            assert!(path.ends_with(file), "{what}: {}", path.display());
            assert!(reason.contains(&newer.to_string()), "{what}: {reason}");
        }
        other => panic!("{what}: {other:?}"),
    };
    refused(
        "get",
        store.get(&id).map(drop),
        &format!("manifests/{id}.json"),
    );
    refused(
        "list",
        store.list().map(drop),
        &format!("manifests/{id}.json"),
    );
    refused(
        "layer",
        store.layer(&diff_id).map(drop),
        &format!("layers/{}/layer.json", hex_of(&diff_id)),
    );
    assert_eq!(
        read_json(&manifest_path),
        rec,
        "the newer record is left as it was"
    );
    put(
        tmp.path(),
        "index.json",
        json!({"version": newer, "references": {}})
            .to_string()
            .as_bytes(),
    );
    refused("index", store.list().map(drop), "images/index.json");
}

// ---------------------------------------------------------------------------------------
// What the engine writes now
// ---------------------------------------------------------------------------------------

#[test]
fn the_log_the_engine_writes_fits_the_current_schema() {
    let schema = validator("container-log", latest_version("container-log"));
    let tmp = tempfile::tempdir().expect("temp dir");
    let live = tmp.path().join(LOG_FILE);
    let rotation = Rotation {
        max_size: 400,
        max_files: 3,
    };
    let mut w = LogWriter::open(&live, rotation).expect("open");
    let mut lines_fed = 1; // the unterminated last line, written by flush
    for i in 0..12 {
        w.feed(
            0,
            format!("line {i}: caf\u{e9} \"q\" \\ \t\x1b[0m\n").as_bytes(),
        )
        .expect("feed");
        w.feed(1, b"bad \xff\xfe utf-8 \x00 \r\n").expect("feed");
        lines_fed += 2;
    }
    w.feed(0, b"").expect("feed");
    w.feed(1, b"no newline at the end").expect("feed");
    w.flush().expect("flush");
    drop(w);

    let mut files: Vec<PathBuf> = (1..rotation.max_files)
        .rev()
        .map(|i| tmp.path().join(format!("{LOG_FILE}.{i}")))
        .collect();
    files.push(live.clone());
    let mut count = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(text.ends_with('\n'), "{}", f.display());
        for (i, line) in text.lines().enumerate() {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{} line {}: {e}", f.display(), i + 1));
            assert_fits(&schema, &value, &format!("{} line {}", f.display(), i + 1));
            count += 1;
        }
    }
    assert!(
        !tmp.path().join(format!("{LOG_FILE}.3")).exists(),
        "max_files"
    );
    // Rotation dropped the oldest lines; what is kept reads back whole.
    let read = logs::read_all(&live, rotation.max_files).expect("read");
    assert_eq!(read.len(), count);
    assert!(count < lines_fed, "rotation dropped the oldest lines");
    assert_eq!(
        read.last().map(|l| (l.stream.as_str(), l.log.as_str())),
        Some(("stderr", "no newline at the end"))
    );
}

/// `Engine::create` with a root filesystem and volumes writes `state.json`, `lowers`,
/// the volumes' records and their `_data` directories; all fit the current schemas.
#[test]
fn what_engine_create_writes_fits_the_current_schemas() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let rootfs = tmp.path().join("some-rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir");
    let root = tmp.path().join("root");
    let engine = Engine::open(&root, PathBuf::from("/nonexistent/codex-ctr")).expect("engine");
    let config = ContainerConfig {
        name: Some("schema-check".into()),
        rootfs: Some(rootfs.clone()),
        command: vec!["/bin/true".into()],
        volumes: vec![
            Volume::parse("volumes[0]", "pgdata:/var/lib/pg").expect("named"),
            Volume::parse("volumes[1]", "/scratch").expect("anonymous"),
        ],
        isolation: Isolation::Standard,
        ..ContainerConfig::default()
    };
    let anonymous = match &config.volumes[1].source {
        codex_engine::config::VolumeSource::Named { name } => name.clone(),
        other => panic!("{other:?}"),
    };
    let rec = engine.create(config).expect("create");
    let dir = engine.container_dir(&rec.id).expect("dir");

    assert_fits(
        &validator("state", RECORD_VERSION),
        &read_json(&dir.join(STATE_FILE)),
        "state.json",
    );
    let index = read_json(&engine.registry().index_path());
    assert_fits(
        &validator("registry", INDEX_VERSION),
        &index,
        "registry.json",
    );
    assert_eq!(index["volumes"]["pgdata"]["anonymous"], json!(false));
    assert_eq!(index["volumes"][&anonymous]["anonymous"], json!(true));
    for name in ["pgdata", anonymous.as_str()] {
        assert!(
            root.join("volumes").join(name).join("_data").is_dir(),
            "volumes/{name}/_data"
        );
    }

    let lowers = read_json(&dir.join("lowers"));
    assert_fits(
        &validator("lowers", latest_version("lowers")),
        &lowers,
        "lowers",
    );
    assert_eq!(lowers, json!([rootfs]));
    for d in ["upper", "work", "rootfs"] {
        assert!(dir.join(d).is_dir(), "containers/<id>/{d}");
    }
    // The container's directory is its bundle.
    assert!(dir.join("config.json").is_file());
    assert!(!dir.join("bundle").exists());
}

/// An import writes `images/index.json`, a manifest and a layer record; a second import
/// under the same reference leaves the first image dangling (its record rewritten); a
/// container of the image gets its layers as `lowers`. All fit the current schemas.
/// Needs root: unpacking a layer sets its files' owners.
#[test]
fn what_the_image_store_writes_fits_the_current_schemas() {
    if !is_root() {
        codex_tests::skip("importing an image needs root (it sets the layer's owners)");
        return;
    }
    let index_schema = validator("image-index", STORE_VERSION);
    let manifest_schema = validator("image-manifest", STORE_VERSION);
    let layer_schema = validator("image-layer", STORE_VERSION);
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("root");
    let store = ImageStore::open(&root).expect("open");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("etc")).expect("mkdir");
    std::fs::write(src.join("etc/hostname"), "one\n").expect("write");
    let first = store.import(&src, "schema-test/app:v1").expect("import");
    std::fs::write(src.join("etc/hostname"), "two\n").expect("write");
    let second = store.import(&src, "schema-test/app:v1").expect("import");
    let third = store
        .import(&src, "localhost:5000/schema-test/app")
        .expect("import");
    assert_ne!(first.id, second.id);

    let images = root.join("images");
    assert_fits(
        &index_schema,
        &read_json(&images.join("index.json")),
        "images/index.json",
    );
    let mut manifests = 0;
    for e in std::fs::read_dir(images.join("manifests")).expect("manifests") {
        let path = e.expect("entry").path();
        let value = read_json(&path);
        assert_fits(&manifest_schema, &value, &path.display().to_string());
        if value["id"] == json!(first.id) {
            assert_eq!(value["name"], Value::Null, "the first image is dangling");
        }
        manifests += 1;
    }
    assert_eq!(manifests, 3);
    let mut layers = 0;
    for e in std::fs::read_dir(images.join("layers")).expect("layers") {
        let path = e.expect("entry").path().join("layer.json");
        assert_fits(
            &layer_schema,
            &read_json(&path),
            &path.display().to_string(),
        );
        layers += 1;
    }
    assert_eq!(layers, 2, "the second and third imports share a layer");
    for rec in [&first, &second, &third] {
        assert_fits(
            &manifest_schema,
            &serde_json::to_value(rec).expect("json"),
            "an ImageRecord",
        );
    }

    let engine = Engine::open(&root, PathBuf::from("/nonexistent/codex-ctr")).expect("engine");
    let rec = engine
        .create(ContainerConfig {
            image: Some("schema-test/app:v1".into()),
            command: vec!["/bin/true".into()],
            ..ContainerConfig::default()
        })
        .expect("create");
    let lowers = read_json(&engine.container_dir(&rec.id).expect("dir").join("lowers"));
    assert_fits(
        &validator("lowers", latest_version("lowers")),
        &lowers,
        "lowers of an image's container",
    );
    assert_eq!(
        lowers,
        json!(store.rootfs_layers(&second).expect("layers")),
        "lowers are the image's layers, top first"
    );
}

/// A change that breaks a valid document.
type Edit = dyn Fn(&mut Value);

/// The new schemas are not vacuous: they refuse what the engine must never write.
#[test]
fn the_schemas_refuse_malformed_files() {
    fn current(kind: &str, file: &str) -> (jsonschema::Validator, Value) {
        let v = latest_version(kind);
        let golden = read_json(&runtime_state().join(format!("examples/{kind}.v{v}{file}")));
        let schema = validator(kind, v);
        assert!(schema.is_valid(&golden), "{kind}{file}");
        (schema, golden)
    }
    fn refuses(
        kind: &str,
        schema: &jsonschema::Validator,
        golden: &Value,
        cases: &[(&str, &Edit)],
    ) {
        for (what, edit) in cases {
            let mut bad = golden.clone();
            edit(&mut bad);
            assert!(!schema.is_valid(&bad), "{kind} schema accepted: {what}");
        }
    }
    let remove =
        |key: &'static str| move |v: &mut Value| drop(v.as_object_mut().map(|o| o.remove(key)));

    let (schema, golden) = current("image-index", ".json");
    refuses(
        "image-index",
        &schema,
        &golden,
        &[
            ("no version", &remove("version")),
            ("version 3", &|v| v["version"] = json!(3)),
            ("no references", &remove("references")),
            ("prefixed id", &|v| {
                v["references"]["a:b"] = json!(format!("sha256:{}", "0".repeat(64)))
            }),
            ("reference without a tag", &|v| {
                v["references"]["busybox"] = json!("0".repeat(64))
            }),
            ("uppercase name", &|v| {
                v["references"]["BusyBox:1"] = json!("0".repeat(64))
            }),
            ("unknown field", &|v| v["extra"] = json!({})),
        ],
    );

    let (schema, golden) = current("image-manifest", ".config.json");
    refuses(
        "image-manifest",
        &schema,
        &golden,
        &[
            ("no version", &remove("version")),
            ("prefixed id", &|v| {
                v["id"] = json!(format!("sha256:{}", "0".repeat(64)))
            }),
            ("name without tag", &|v| v["tag"] = Value::Null),
            ("tag without name", &|v| v["name"] = Value::Null),
            ("bare layer digest", &|v| {
                v["layers"][0] = json!("0".repeat(64))
            }),
            ("no layers", &|v| v["layers"] = json!([])),
            ("negative size", &|v| v["size"] = json!(-1)),
            ("relative working_dir", &|v| {
                v["config"]["working_dir"] = json!("srv")
            }),
            ("env without =", &|v| v["config"]["env"][0] = json!("PATH")),
            ("no config", &remove("config")),
            ("unknown config field", &|v| {
                v["config"]["volumes"] = json!([])
            }),
            ("bad time", &|v| v["created"] = json!("today")),
            ("bare manifest digest", &|v| {
                v["manifest"] = json!("0".repeat(64))
            }),
            ("no platform", &remove("platform")),
            ("negative interval", &|v| {
                v["config"]["healthcheck"]["interval"] = json!(-1)
            }),
            ("unknown healthcheck field", &|v| {
                v["config"]["healthcheck"]["shell"] = json!([])
            }),
            ("port without a number", &|v| {
                v["config"]["exposed_ports"][0] = json!("http")
            }),
        ],
    );

    let (schema, golden) = current("image-layer", ".json");
    refuses(
        "image-layer",
        &schema,
        &golden,
        &[
            ("no version", &remove("version")),
            ("bare diff_id", &|v| v["diff_id"] = json!("0".repeat(64))),
            ("no blob", &remove("blob")),
            ("not a layer media type", &|v| {
                v["media_type"] = json!("application/vnd.oci.image.config.v1+json")
            }),
        ],
    );

    let (schema, golden) = current("lowers", ".json");
    refuses(
        "lowers",
        &schema,
        &golden,
        &[
            ("empty", &|v| *v = json!([])),
            ("relative path", &|v| v[0] = json!("images/layers/x/rootfs")),
            ("an object", &|v| {
                *v = json!({"version": 1, "lowers": ["/a"]})
            }),
            ("not a string", &|v| v[0] = json!(1)),
        ],
    );

    let v = latest_version("container-log");
    let schema = validator("container-log", v);
    let line = golden_examples()
        .into_iter()
        .find(|g| g.kind == "container-log" && g.version == v)
        .expect("a log example")
        .instances[0]
        .clone();
    assert!(schema.is_valid(&line));
    refuses(
        "container-log",
        &schema,
        &line,
        &[
            ("no time", &remove("time")),
            ("no log", &remove("log")),
            ("stdin", &|v| v["stream"] = json!("stdin")),
            ("local time", &|v| {
                v["time"] = json!("2026-05-01T11:30:12+02:00")
            }),
            ("log not a string", &|v| v["log"] = json!(["a"])),
            ("a version field", &|v| v["version"] = json!(1)),
        ],
    );
}

#[test]
fn every_events_example_loads_and_reads_back() {
    use codex_engine::events::{Event, EventReader, EVENTS_FILE};
    for g in checked_examples("events") {
        let file = &g.file_name;
        let text = std::fs::read_to_string(&g.path).expect("read");
        let events: Vec<Event> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{file}: {l}: {e}")))
            .collect();
        if g.version == latest_version("events") {
            for (e, raw) in events.iter().zip(text.lines()) {
                assert_eq!(serde_json::to_string(e).expect("json"), raw, "{file}");
            }
        }
        // Read back as `events` reads them: the rotated file first.
        let tmp = tempfile::tempdir().expect("temp dir");
        let raw: Vec<&str> = text.split_inclusive('\n').collect();
        let (older, newer) = raw.split_at(raw.len() / 2);
        std::fs::write(tmp.path().join(format!("{EVENTS_FILE}.1")), older.concat()).expect("write");
        std::fs::write(tmp.path().join(EVENTS_FILE), newer.concat()).expect("write");
        let read = EventReader::open(tmp.path())
            .expect("open")
            .read_new()
            .expect("read");
        assert_eq!(read, events, "{file}");
    }
}
