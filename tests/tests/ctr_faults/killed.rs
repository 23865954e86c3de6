//! `kill -9` at every step of `image import` and `volume rm` (debug-build hooks,
//! `CODEX_TEST_DIE`), and during the deletion of a big volume's data (after increasing
//! delays). Afterwards the store and the registry load, `image ls` / `volume ls` tell the
//! truth, the next import / rm succeeds, and after it nothing half-done is left.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use codex_tests::ctr::Ctr;
use codex_tests::*;
use serde_json::Value;

use crate::{assert_records_whole, other_tar, run_bounded, run_within};

const LIMIT: Duration = Duration::from_secs(30);

/// Runs `args` with `CODEX_TEST_DIE=point` and checks the hook killed it (the control:
/// without it, a test of "killed at X" would pass on a command that was never killed).
#[track_caller]
fn killed_at(c: &Ctr, args: &[&str], point: &str) {
    let mut cmd = c.cmd(args);
    cmd.env("CODEX_TEST_DIE", point);
    let o = run_bounded(cmd, LIMIT).expect("the killed command hung");
    assert_eq!(o.status.signal(), Some(libc::SIGKILL), "{point}: {o:?}");
}

fn names(dir: &Path) -> BTreeSet<String> {
    let rd = std::fs::read_dir(dir).into_iter().flatten().flatten();
    rd.map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// `image ls` as `NAME:TAG` (or `<none>`) -> the image's JSON.
fn image_ls(c: &Ctr) -> Vec<(String, Value)> {
    let o = run_within(c, &["image", "ls", "--format", "json"], LIMIT);
    o.assert_ok();
    let list = o.json().as_array().unwrap().clone();
    let name = |i: &Value| match (i["name"].as_str(), i["tag"].as_str()) {
        (Some(n), Some(t)) => format!("{n}:{t}"),
        _ => "<none>".to_string(),
    };
    list.into_iter().map(|i| (name(&i), i)).collect()
}

/// The store holds exactly what `image ls` shows: a record, blobs and layers for each
/// listed image and nothing else (no orphan layer, blob or record, no work dir).
#[track_caller]
fn assert_store_exactly(c: &Ctr, want: &[&str]) {
    let listed = image_ls(c);
    let mut got: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    got.sort();
    assert_eq!(got, want);
    let images = c.root.join("images");
    let (mut layers, mut blobs, mut records) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for (_, i) in &listed {
        let id = i["id"].as_str().unwrap().to_string();
        records.insert(format!("{id}.json"));
        blobs.insert(id);
        for l in i["layers"].as_array().unwrap() {
            let hex = l
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:")
                .to_string();
            layers.insert(hex.clone());
            blobs.insert(hex);
        }
    }
    assert_eq!(names(&images.join("layers")), layers, "layers");
    assert_eq!(names(&images.join("blobs/sha256")), blobs, "blobs");
    assert_eq!(names(&images.join("manifests")), records, "records");
    assert_eq!(names(&images.join("tmp")), BTreeSet::new(), "work dirs");
    assert_records_whole(&c.root);
}

const IMPORT_STEPS: [&str; 7] = [
    "import-unpacked",
    "import-marked",
    "import-layer",
    "import-blob",
    "import-config",
    "import-manifest",
    "import-indexed",
];

#[test]
fn codex_image_import_killed_at_every_step_is_undone_or_done_and_cleaned_by_the_next() {
    let c = Ctr::new();
    let scratch = tempfile::tempdir().unwrap();
    let other = other_tar(scratch.path());
    for step in IMPORT_STEPS {
        let name = format!("other:{step}");
        killed_at(&c, &["image", "import", &other, &name], step);
        // Only an import killed after its index write happened; the rest never did.
        let done = step == "import-indexed";
        let listed = image_ls(&c);
        let mut listed: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
        listed.sort();
        let want: Vec<&str> = if done {
            vec!["busybox:latest", &name]
        } else {
            vec!["busybox:latest"]
        };
        assert_eq!(listed, want, "{step}");
        assert_records_whole(&c.root);
        // The next import succeeds and finishes the killed one's business.
        let again = format!("again:{step}");
        run_within(&c, &["image", "import", &other, &again], LIMIT).assert_ok();
        let mut want = want.clone();
        want.push(&again);
        want.sort();
        assert_store_exactly(&c, &want);
        run_within(&c, &["run", "--rm", &again, "ls", "/noise"], LIMIT).assert_ok();
        for n in want.iter().filter(|n| !n.starts_with("busybox")) {
            run_within(&c, &["image", "rm", n], LIMIT).assert_ok();
        }
        assert_store_exactly(&c, &["busybox:latest"]);
    }
}

/// Makes volume `name` with `files` files of data, written from the host.
fn volume_with_data(c: &Ctr, name: &str, files: usize) {
    run_within(c, &["volume", "create", name], LIMIT).assert_ok();
    let data = c.root.join("volumes").join(name).join("_data");
    for i in 0..files {
        std::fs::write(data.join(format!("f{i}")), b"old data").unwrap();
    }
}

fn volume_listed(c: &Ctr, name: &str) -> bool {
    let o = run_within(c, &["volume", "ls", "--format", "json"], LIMIT);
    o.assert_ok();
    let list = o.json();
    list.as_array().unwrap().iter().any(|v| v["name"] == name)
}

/// After a killed `volume rm`: the registry loads; a listed volume has all its data; an
/// unlisted one is gone for good (a new volume of its name starts empty); and after that
/// next operation nothing of the killed rm is left under `volumes/`.
#[track_caller]
fn assert_volume_truthful_then_clean(c: &Ctr, name: &str, files: usize, what: &str) {
    let data = c.root.join("volumes").join(name).join("_data");
    let listed = volume_listed(c, name);
    // After that first command (whose open repairs the registry's files under the lock).
    assert_records_whole(&c.root);
    if listed {
        assert_eq!(
            names(&data).len(),
            files,
            "{what}: a listed volume lost data"
        );
        run_within(c, &["volume", "rm", name], LIMIT).assert_ok();
    }
    run_within(c, &["volume", "create", name], LIMIT).assert_ok();
    let left = names(&data).len();
    assert_eq!(
        left, 0,
        "{what}: the new volume adopted {left} files of old data"
    );
    assert_eq!(
        names(&c.root.join("volumes")),
        BTreeSet::from([name.to_string()]),
        "{what}"
    );
    run_within(c, &["volume", "rm", name], LIMIT).assert_ok();
    assert_eq!(names(&c.root.join("volumes")), BTreeSet::new(), "{what}");
}

#[test]
fn codex_volume_rm_killed_at_every_step_leaves_the_volume_whole_or_gone() {
    let c = Ctr::new();
    let steps = [
        "volume-rm-counted",
        "volume-rm-marked",
        "volume-rm-recorded",
        "volume-rm-moved",
    ];
    for step in steps {
        volume_with_data(&c, "v", 3);
        killed_at(&c, &["volume", "rm", "v"], step);
        assert_volume_truthful_then_clean(&c, "v", 3, step);
    }
}

#[test]
fn a_volume_whose_record_was_lost_otherwise_keeps_its_data_through_the_sweeps() {
    let c = Ctr::new();
    volume_with_data(&c, "kept", 3);
    // Its record goes without an rm (a registry.json restored from an old copy).
    let path = c.root.join("registry.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    index["volumes"].as_object_mut().unwrap().remove("kept");
    std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    assert!(!volume_listed(&c, "kept"));
    // Volume operations sweep what killed rms left; this is not that.
    run_within(&c, &["volume", "create", "other"], LIMIT).assert_ok();
    run_within(&c, &["volume", "rm", "other"], LIMIT).assert_ok();
    let data = c.root.join("volumes/kept/_data");
    assert_eq!(names(&data).len(), 3, "the sweep deleted unmarked data");
    run_within(&c, &["volume", "create", "kept"], LIMIT).assert_ok();
    assert_eq!(names(&data).len(), 3);
}

#[test]
fn volume_rm_killed_while_deleting_the_data_is_finished_by_the_next_volume_command() {
    let c = Ctr::new();
    let files = 300;
    let mut interrupted = 0;
    let volumes = c.root.join("volumes");
    let trash = || {
        names(&volumes)
            .into_iter()
            .any(|n| n.starts_with(".removing-"))
    };
    for round in 0..3 {
        volume_with_data(&c, "big", files);
        let mut rm = c.cmd(&["volume", "rm", "big"]);
        rm.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = rm.spawn().unwrap();
        // Killed as soon as the data has been moved aside, while it is being deleted.
        while !trash() && child.try_wait().unwrap().is_none() {
            std::hint::spin_loop();
        }
        let _ = child.kill();
        let st = child.wait().unwrap();
        interrupted += usize::from(st.signal() == Some(libc::SIGKILL) && trash());
        assert_volume_truthful_then_clean(&c, "big", files, &format!("round {round}"));
    }
    // The control: at least one kill landed while the data was being deleted.
    assert!(interrupted > 0, "no kill interrupted a deletion");
}
