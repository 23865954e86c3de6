//! Shared by the `runtime-state/` tests (`registry_schema.rs`, `state_files_schema.rs`):
//! the schemas, the golden examples, and the kinds of file they describe.

// Each test crate that includes this module uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Every kind of file with a schema in `runtime-state/`, and whether its files carry a
/// `version` member. The others (a bare JSON array; Docker-style log lines) are versioned
/// by their schema alone: its `$id` and its file name say the version.
pub const KINDS: &[(&str, bool)] = &[
    ("registry", true),
    ("state", true),
    ("image-index", true),
    ("image-manifest", true),
    ("image-layer", true),
    ("lowers", false),
    ("container-log", false),
    ("events", false),
];

pub fn has_version_field(kind: &str) -> bool {
    KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .unwrap_or_else(|| panic!("unknown kind of file {kind:?}: add it to KINDS"))
        .1
}

pub fn runtime_state() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runtime-state")
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The validator of `<kind>.v<version>.schema.json`, after checking the schema itself: it
/// is draft 2020-12, valid against the meta-schema, and its `$id` names its kind and
/// version (`urn:codex-ctr:runtime-state:<kind>:v<version>`).
pub fn validator(kind: &str, version: u32) -> jsonschema::Validator {
    let path = runtime_state().join(format!("{kind}.v{version}.schema.json"));
    let schema = read_json(&path);
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema",
        "{}",
        path.display()
    );
    assert_eq!(
        schema["$id"],
        format!("urn:codex-ctr:runtime-state:{kind}:v{version}"),
        "{}",
        path.display()
    );
    jsonschema::meta::validate(&schema)
        .unwrap_or_else(|e| panic!("{} is not a valid schema: {e}", path.display()));
    jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn assert_fits(validator: &jsonschema::Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not fit its schema:\n{}",
        errors.join("\n")
    );
}

/// `registry.v1.json` -> ("registry", 1); `state.v1.created.json` -> ("state", 1);
/// `container-log.v1.jsonl` -> ("container-log", 1); `lowers.v2.schema.json` ->
/// ("lowers", 2).
pub fn kind_and_version(file_name: &str) -> (String, u32) {
    let mut parts = file_name.split('.');
    let kind = parts.next().unwrap_or_default().to_string();
    let version = parts
        .next()
        .and_then(|v| v.strip_prefix('v'))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{file_name} is not named <kind>.v<N>[.<what>].json"));
    (kind, version)
}

/// The versions of `kind` that have a schema, ascending.
pub fn schema_versions(kind: &str) -> Vec<u32> {
    let mut versions: Vec<u32> = std::fs::read_dir(runtime_state())
        .expect("runtime-state/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".schema.json"))
        .map(|n| kind_and_version(&n))
        .filter(|(k, _)| k == kind)
        .map(|(_, v)| v)
        .collect();
    versions.sort_unstable();
    versions
}

/// The newest version of `kind` that has a schema: the one the engine writes now for the
/// kinds without a version constant of their own.
pub fn latest_version(kind: &str) -> u32 {
    *schema_versions(kind)
        .last()
        .unwrap_or_else(|| panic!("no schema for {kind}"))
}

/// One golden example file.
pub struct Golden {
    pub path: PathBuf,
    pub file_name: String,
    pub kind: String,
    pub version: u32,
    /// The file's documents: one for `.json`, one per line for `.jsonl`.
    pub instances: Vec<Value>,
}

/// Every file in `runtime-state/examples/`, by name. A file whose kind is not in
/// [`KINDS`], or that is neither `.json` nor `.jsonl`, fails the test.
pub fn golden_examples() -> Vec<Golden> {
    let dir = runtime_state().join("examples");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("runtime-state/examples")
        .map(|e| e.expect("entry").path())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let file_name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("utf-8 name")
                .to_string();
            let (kind, version) = kind_and_version(&file_name);
            has_version_field(&kind);
            let instances = if file_name.ends_with(".jsonl") {
                let text =
                    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file_name}: {e}"));
                assert!(text.ends_with('\n'), "{file_name}: a line without its \\n");
                text.lines()
                    .enumerate()
                    .map(|(i, l)| {
                        serde_json::from_str(l)
                            .unwrap_or_else(|e| panic!("{file_name} line {}: {e}", i + 1))
                    })
                    .collect()
            } else if file_name.ends_with(".json") {
                vec![read_json(&path)]
            } else {
                panic!("{file_name}: a golden example is .json, or .jsonl for JSON lines")
            };
            assert!(!instances.is_empty(), "{file_name} is empty");
            Golden {
                path,
                file_name,
                kind,
                version,
                instances,
            }
        })
        .collect()
}

/// The one document of a `.json` example.
pub fn single(golden: &Golden) -> &Value {
    assert_eq!(golden.instances.len(), 1, "{}", golden.file_name);
    &golden.instances[0]
}
