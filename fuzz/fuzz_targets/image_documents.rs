//! What `image load` and `image pull` decide from untrusted bytes before touching a file:
//! manifests and indexes (media types, schema 1, the platform pick), image configs
//! (diff_ids, run defaults), platform strings, registry auth challenges and image user
//! names. Properties (asserted in `codex_engine::image::fuzzing::image_documents`): no
//! panic; an accepted manifest has only layer types the unpacker knows; a pick comes from
//! the index; an accepted config has one sha256 diff_id per layer; a platform prints back
//! to itself; a resolved user is numeric UID:GID.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    codex_engine::image::fuzzing::image_documents(data);
});
