//! The image layer unpacker as `image import` runs it: compression detected from the
//! bytes (plain, gzip, zstd tar), entries applied by fd under the layer directory.
//!
//! Properties:
//! - nothing escapes the layer directory: a sentinel directory beside it (reachable as
//!   `../outside` from the layer root) and one at a fixed absolute path keep exactly their
//!   one file, unchanged and with one link;
//! - unpack applies exactly what pack records: a layer that unpacks packs to a canonical
//!   tar, which unpacks and packs again to the same bytes;
//! - the work directory is removed after every input.
#![no_main]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use codex_engine::image::fuzzing::{pack_layer, unpack_layer};
use libfuzzer_sys::fuzz_target;

/// The fixed absolute sentinel: an input can name it in an absolute symlink or path.
const FIXED_SENTINEL_DIR: &str = "/dev/shm/codex-fuzz-escape";
const SENTINEL: &str = "sentinel";
const SENTINEL_TEXT: &[u8] = b"must not change\n";

struct Sandbox {
    /// `<base>/layer`, `<base>/layer2`, `<base>/a.tar`, `<base>/b.tar` come and go;
    /// `<base>/outside/sentinel` stays.
    base: PathBuf,
    sentinels: Vec<(PathBuf, u64)>,
}

fn make_sentinel(dir: &Path) -> (PathBuf, u64) {
    fs::create_dir_all(dir).expect("creating a sentinel dir");
    let file = dir.join(SENTINEL);
    fs::write(&file, SENTINEL_TEXT).expect("writing a sentinel");
    let ino = fs::symlink_metadata(&file).expect("stat sentinel").ino();
    (dir.to_path_buf(), ino)
}

fn sandbox() -> &'static Sandbox {
    static S: OnceLock<Sandbox> = OnceLock::new();
    S.get_or_init(|| {
        // tmpfs: the unpacker syncfs()es its destination after every layer.
        sweep_stale(Path::new("/dev/shm"), "codex-fuzz-layer-");
        let base = PathBuf::from(format!("/dev/shm/codex-fuzz-layer-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).expect("creating the fuzz sandbox");
        let sentinels = vec![
            make_sentinel(&base.join("outside")),
            make_sentinel(Path::new(FIXED_SENTINEL_DIR)),
        ];
        Sandbox { base, sentinels }
    })
}

fn check_sentinels(s: &Sandbox) {
    for (dir, ino) in &s.sentinels {
        let names: Vec<_> = fs::read_dir(dir)
            .expect("sentinel dir still a dir")
            .map(|e| e.expect("readdir").file_name())
            .collect();
        assert_eq!(names, [SENTINEL], "something was created in {dir:?}");
        let file = dir.join(SENTINEL);
        let md = fs::symlink_metadata(&file).expect("sentinel still there");
        assert!(md.is_file(), "{file:?} replaced");
        assert_eq!(md.ino(), *ino, "{file:?} replaced");
        assert_eq!(md.nlink(), 1, "{file:?} hard-linked from somewhere");
        assert_eq!(md.mode() & 0o7777, 0o644, "{file:?} chmod-ed");
        assert_eq!(fs::read(&file).expect("read sentinel"), SENTINEL_TEXT);
    }
    let mut top: Vec<_> = fs::read_dir(&s.base)
        .expect("sandbox still a dir")
        .map(|e| e.expect("readdir").file_name())
        .collect();
    top.sort();
    assert_eq!(top, ["outside"], "left behind or created beside the layer");
}

/// Every run leaves its directory behind (libFuzzer exits, or aborts on a crash, with
/// no hook on the way out): remove those whose process is gone.
fn sweep_stale(parent: &Path, prefix: &str) {
    let Ok(dir) = fs::read_dir(parent) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

fn fresh_dir(p: &Path) {
    fs::create_dir(p).expect("creating a layer dir");
}

fn pack_to(root: &Path, tar: &Path) -> Vec<u8> {
    let out = fs::File::create(tar).expect("creating a tar");
    pack_layer(root, out).unwrap_or_else(|e| panic!("packing an unpacked layer: {e}"));
    fs::read(tar).expect("reading the tar back")
}

fuzz_target!(|data: &[u8]| {
    let s = sandbox();
    let layer = s.base.join("layer");
    fresh_dir(&layer);
    let unpacked = unpack_layer(data, &layer);
    check_sentinels_with(s, &["layer"]);
    if unpacked.is_ok() {
        let a = pack_to(&layer, &s.base.join("a.tar"));
        let layer2 = s.base.join("layer2");
        fresh_dir(&layer2);
        if let Err(e) = unpack_layer(&a, &layer2) {
            panic!("the canonical tar of an unpacked layer does not unpack: {e}");
        }
        let b = pack_to(&layer2, &s.base.join("b.tar"));
        assert!(a == b, "unpack(pack(layer)) packs to different bytes");
    }
    for name in ["layer", "layer2", "a.tar", "b.tar"] {
        let p = s.base.join(name);
        match fs::symlink_metadata(&p) {
            Ok(md) if md.is_dir() => fs::remove_dir_all(&p).expect("cleaning up"),
            Ok(_) => fs::remove_file(&p).expect("cleaning up"),
            Err(_) => {}
        }
    }
    check_sentinels(s);
});

/// The sentinels, while `extra` entries of the sandbox are still allowed.
fn check_sentinels_with(s: &Sandbox, extra: &[&str]) {
    for (dir, ino) in &s.sentinels {
        let md = fs::symlink_metadata(dir.join(SENTINEL)).expect("sentinel still there");
        assert_eq!(md.ino(), *ino);
        assert_eq!(md.nlink(), 1, "sentinel hard-linked from the layer");
        assert_eq!(
            fs::read_dir(dir).expect("sentinel dir").count(),
            1,
            "something was created in {dir:?}"
        );
    }
    for e in fs::read_dir(&s.base).expect("sandbox") {
        let name = e.expect("readdir").file_name();
        let name = name.to_string_lossy();
        assert!(
            name == "outside" || extra.contains(&name.as_ref()),
            "{name:?} created beside the layer"
        );
    }
}
