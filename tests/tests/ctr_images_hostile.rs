//! Hostile image archives: each is refused with an error that says what is wrong, nothing
//! is written outside the store, and the store is as it was (no layer, blob, record or
//! work dir left). Every attack first has a positive control: the same crafted layout
//! with the attack removed loads, and the host path the attack aims at is reachable.

use std::path::{Path, PathBuf};

use codex_tests::ctr::Ctr;
use codex_tests::*;
use serde_json::json;

fn oci_py() -> PathBuf {
    workspace_dir().join("tests/tests/ctr_images/oci.py")
}

fn have_python() -> bool {
    if have_tool("python3") {
        return true;
    }
    skip("python3 is not installed (apt-get install -y python3)");
    false
}

fn work(c: &Ctr) -> PathBuf {
    let d = c.root.parent().expect("root has a parent").join("work");
    std::fs::create_dir_all(&d).expect("mkdir work");
    d
}

/// A one-image OCI layout at `dir/name` with these layers (entry lists, see oci.py).
fn craft(dir: &Path, name: &str, layers: serde_json::Value) -> PathBuf {
    let out = dir.join(name);
    let spec = json!({"ref": format!("hostile/{name}:x"), "layers": layers});
    let o = run_command(
        std::process::Command::new("python3")
            .arg(oci_py())
            .arg("craft")
            .arg(&out)
            .arg(spec.to_string()),
    );
    assert!(o.ok(), "craft {name}: {o:?}");
    out
}

fn py(args: &[&str]) {
    let o = run_command(
        std::process::Command::new("python3")
            .arg(oci_py())
            .args(args),
    );
    assert!(o.ok(), "oci.py {args:?}: {o:?}");
}

/// What the store holds: (images, layers, blobs, work dirs).
fn store_state(c: &Ctr) -> (usize, usize, usize, usize) {
    let n = |rel: &str| {
        std::fs::read_dir(c.root.join("images").join(rel))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    (n("manifests"), n("layers"), n("blobs/sha256"), n("tmp"))
}

fn load(c: &Ctr, path: &Path, extra: &[&str]) -> Out {
    let p = path.to_string_lossy().into_owned();
    let mut args = vec!["image", "load", "-i", p.as_str()];
    args.extend_from_slice(extra);
    c.run(&args)
}

/// Loads `path` expecting a refusal naming `needle`, and checks the store did not change.
#[track_caller]
fn refused(c: &Ctr, path: &Path, extra: &[&str], needle: &str) {
    let before = store_state(c);
    let o = load(c, path, extra);
    o.assert_refused().assert_stderr_mentions(needle);
    assert_eq!(
        store_state(c),
        before,
        "a refused load changed the store: {o:?}"
    );
}

/// A directory on the host that the test owns, as an attack's target.
fn host_target(c: &Ctr) -> PathBuf {
    let t = c.root.parent().expect("parent").join("host-target");
    std::fs::create_dir_all(&t).expect("mkdir host target");
    // Control: the host path is writable by whoever unpacks (root), so an escape would land.
    std::fs::write(t.join("probe"), b"x").expect("host target is writable");
    std::fs::remove_file(t.join("probe")).expect("rm probe");
    t
}

fn empty(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

#[test]
fn the_crafting_itself_makes_loadable_images() {
    if !have_python() {
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    let ok = craft(
        &w,
        "benign",
        json!([[{"name": "dir", "type": "dir"}, {"name": "dir/f", "data": "hi"},
                {"name": "rel", "type": "symlink", "target": "dir/f"},
                {"name": "hl", "type": "link", "target": "dir/f"}]]),
    );
    let o = load(&c, &ok, &[]);
    o.assert_ok();
    assert!(o.stdout.contains("hostile/benign:x"), "{o:?}");
}

#[test]
fn path_traversal_and_absolute_paths_are_refused() {
    if !have_python() {
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    let target = host_target(&c);
    let rel = format!("../../../../../../../..{}/escaped", target.display());
    let bad = craft(&w, "dotdot", json!([[{"name": rel, "data": "pwned"}]]));
    refused(&c, &bad, &[], "..");
    let abs = format!("{}/escaped", target.display());
    let bad = craft(&w, "abs", json!([[{"name": abs, "data": "pwned"}]]));
    refused(&c, &bad, &[], "absolute path");
    assert!(empty(&target), "something landed on the host");
}

#[test]
fn a_write_through_an_absolute_symlink_never_reaches_the_host() {
    if !have_python() {
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    let target = host_target(&c);
    let t = target.to_string_lossy().into_owned();
    // Within one layer: the symlink is made, the write through it refused.
    let bad = craft(
        &w,
        "symlink",
        json!([[{"name": "evil", "type": "symlink", "target": t},
                {"name": "evil/pwned", "data": "pwned"}]]),
    );
    refused(&c, &bad, &[], "symlink");
    assert!(empty(&target), "written through the symlink");
    // Across layers: the link in one, the write in the next. Each layer unpacks on its
    // own, so the second layer gets a directory of its own; the load may succeed, but
    // the host directory stays empty and the container sees the file in the layer.
    let two = craft(
        &w,
        "symlink2",
        json!([[{"name": "evil", "type": "symlink", "target": t}],
               [{"name": "evil/pwned", "data": "pwned"}]]),
    );
    load(&c, &two, &[]).assert_ok();
    assert!(empty(&target), "written through a lower layer's symlink");
}

#[test]
fn a_hard_link_to_a_host_file_is_refused() {
    if !have_python() {
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    let target = host_target(&c);
    let secret = target.join("secret");
    std::fs::write(&secret, b"host secret").expect("write secret");
    let nlink =
        || std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata(&secret).expect("stat"));
    assert_eq!(nlink(), 1);
    let s = secret.to_string_lossy().into_owned();
    let bad = craft(
        &w,
        "hlabs",
        json!([[{"name": "h", "type": "link", "target": s}]]),
    );
    refused(&c, &bad, &[], "hard link target");
    let up = format!("../../../../../../../..{s}");
    let bad = craft(
        &w,
        "hlup",
        json!([[{"name": "h", "type": "link", "target": up}]]),
    );
    refused(&c, &bad, &[], "hard link target");
    assert_eq!(nlink(), 1, "the host file gained a link");
}

#[test]
fn a_digest_mismatch_and_a_missing_blob_are_refused() {
    if !have_python() {
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    let layers = json!([[{"name": "f", "data": "some content"}]]);
    let good = craft(&w, "good", layers.clone());
    load(&c, &good, &[]).assert_ok(); // control
    c.run(&["image", "rm", "hostile/good:x"]).assert_ok();
    let bad = craft(&w, "corrupt", layers.clone());
    py(&["corrupt", &bad.to_string_lossy()]);
    refused(&c, &bad, &[], "content has digest");
    let bad = craft(&w, "missing", layers);
    py(&["drop-layer", &bad.to_string_lossy()]);
    refused(&c, &bad, &[], "missing from the archive");
}

#[test]
fn a_decompression_bomb_stops_at_the_size_limit() {
    if !have_python() {
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    // 64 MiB of zeros: about 64 KiB gzip'd.
    let bomb = craft(
        &w,
        "bomb",
        json!([[{"name": "zeros", "type": "zeros", "size": 64 << 20}]]),
    );
    let on_disk: u64 = walk_size(&bomb);
    assert!(
        on_disk < 1 << 20,
        "the bomb is small on disk ({on_disk} bytes)"
    );
    refused(&c, &bomb, &["--max-unpacked-size", "8m"], "size limit");
    // Control: the same image under a limit that fits loads.
    load(&c, &bomb, &["--max-unpacked-size", "128m"]).assert_ok();
}

fn walk_size(p: &Path) -> u64 {
    let md = std::fs::symlink_metadata(p).expect("stat");
    if md.is_dir() {
        std::fs::read_dir(p)
            .expect("readdir")
            .map(|e| walk_size(&e.expect("entry").path()))
            .sum()
    } else {
        md.len()
    }
}

#[test]
fn a_docker_archive_cannot_name_a_host_file() {
    if !have_python() {
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    let target = host_target(&c);
    let host_cfg = target.join("config.json");
    // A host file that is a valid config: read, it would load.
    std::fs::write(
        &host_cfg,
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    )
    .expect("write host config");
    let a = w.join("ok.tar");
    py(&["docker", &a.to_string_lossy(), "real.json"]);
    load(&c, &a, &[]).assert_ok(); // control: the crafted archive itself is fine
    let by_path = w.join("abs.tar");
    py(&[
        "docker",
        &by_path.to_string_lossy(),
        &host_cfg.to_string_lossy(),
    ]);
    refused(&c, &by_path, &[], "missing from the archive");
    let up = w.join("up.tar");
    py(&[
        "docker",
        &up.to_string_lossy(),
        &format!("../../../../../../..{}", host_cfg.display()),
    ]);
    refused(&c, &up, &[], "missing from the archive");
    let link = w.join("link.tar");
    py(&[
        "docker",
        &link.to_string_lossy(),
        "cfg.json",
        "cfg.json",
        &host_cfg.to_string_lossy(),
    ]);
    refused(&c, &link, &[], "missing from the archive");
}

#[test]
fn a_truncated_archive_is_refused_and_leaves_nothing() {
    if !have_python() {
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    let layout = craft(
        &w,
        "whole",
        json!([[{"name": "big", "type": "zeros", "size": 1 << 20}, {"name": "f", "data": "x"}]]),
    );
    let tar = w.join("whole.tar");
    let o = host_sh(&format!(
        "tar -C {} -cf {} .",
        layout.display(),
        tar.display()
    ));
    assert!(o.ok(), "{o:?}");
    // Control: the whole archive loads (into another store, to compare against an
    // untouched one below).
    let c2 = Ctr::new();
    load(&c2, &tar, &[]).assert_ok();
    let len = std::fs::metadata(&tar).expect("stat").len();
    // (A cut that drops only the end-of-archive blocks leaves every file whole: it loads,
    // as with GNU tar; these cuts fall inside the content.)
    for cut in [len / 3, len / 2, 700] {
        let part = w.join(format!("cut-{cut}.tar"));
        let data = std::fs::read(&tar).expect("read");
        std::fs::write(&part, &data[..cut as usize]).expect("write");
        let before = store_state(&c);
        let o = load(&c, &part, &[]);
        o.assert_refused();
        assert_eq!(store_state(&c), before, "cut at {cut}: {o:?}");
    }
}
