//! The engine's persisted records as they are read back: the registry's `state.json`
//! (`ContainerRecord`) and `registry.json` (`Index`) through `parse_versioned`, and the
//! image store's `manifests/<id>.json` (`ImageRecord`) and `layer.json` (`LayerRecord`).
//!
//! Properties: a document that loads serializes (as the engine writes it: pretty JSON) and
//! loads again equal; `parse_versioned` never accepts a version outside 1..=supported.
#![no_main]

use codex_engine::image::{ImageRecord, LayerRecord};
use codex_engine::registry::{
    parse_versioned, ContainerRecord, Index, INDEX_VERSION, RECORD_VERSION,
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn versioned_round_trip<T>(data: &[u8], supported: u32)
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(rec) = parse_versioned::<T>(data, supported) else {
        return;
    };
    let version = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.get("version").and_then(|v| v.as_u64()));
    assert!(
        version.is_some_and(|v| (1..=u64::from(supported)).contains(&v)),
        "accepted version {version:?}"
    );
    let text = serde_json::to_vec_pretty(&rec).expect("a loaded record serializes");
    let again = parse_versioned::<T>(&text, supported).unwrap_or_else(|e| {
        panic!(
            "written record does not load: {e}\n{}",
            String::from_utf8_lossy(&text)
        )
    });
    assert_eq!(rec, again, "record changed across write + load");
}

fn plain_round_trip<T>(data: &[u8])
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(rec) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let text = serde_json::to_vec_pretty(&rec).expect("a loaded record serializes");
    let again: T = serde_json::from_slice(&text).unwrap_or_else(|e| {
        panic!(
            "written record does not load: {e}\n{}",
            String::from_utf8_lossy(&text)
        )
    });
    assert_eq!(rec, again, "record changed across write + load");
}

fuzz_target!(|data: &[u8]| {
    // Every type sees every input: the seeds of one are near-misses of the others.
    versioned_round_trip::<ContainerRecord>(data, RECORD_VERSION);
    versioned_round_trip::<Index>(data, INDEX_VERSION);
    plain_round_trip::<ImageRecord>(data);
    plain_round_trip::<LayerRecord>(data);
});
