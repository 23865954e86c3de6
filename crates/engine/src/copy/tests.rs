//! The walk on a tree that holds still; the races are in tests/tests/ctr_copy_race.rs.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::{copy_in, copy_out, export_rootfs};

fn mkfifo(p: &Path) {
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

fn tree(root: &Path) {
    fs::create_dir_all(root.join("d/sub")).unwrap();
    fs::write(root.join("d/f"), "file\n").unwrap();
    fs::set_permissions(root.join("d/f"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(root.join("d/f"), root.join("d/h")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("d/s")).unwrap();
    fs::set_permissions(root.join("d/sub"), fs::Permissions::from_mode(0o3775)).unwrap();
}

#[test]
fn copy_out_keeps_symlinks_as_links_and_drops_set_id_bits() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    tree(&root);
    let dst = t.path().join("out");
    copy_out(&root, Path::new("/d"), &dst).unwrap();
    assert_eq!(fs::read_to_string(dst.join("f")).unwrap(), "file\n");
    let mode = |p: &str| fs::symlink_metadata(dst.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("f"), 0o755);
    assert_eq!(mode("sub"), 0o775);
    assert_eq!(
        fs::read_link(dst.join("s")).unwrap(),
        Path::new("/etc/passwd")
    );
    // Into an existing directory: the source goes inside it, replacing what is there.
    std::os::unix::fs::symlink(t.path().join("victim"), dst.join("f2")).unwrap();
    copy_out(&root, Path::new("/d/f"), &dst.join("f2")).unwrap();
    assert!(fs::symlink_metadata(dst.join("f2")).unwrap().is_file());
    assert!(!t.path().join("victim").exists(), "wrote through a symlink");
}

#[test]
fn copy_out_refuses_a_fifo_by_its_path_in_the_container() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    tree(&root);
    mkfifo(&root.join("d/sub/p"));
    let err = copy_out(&root, Path::new("/d"), &t.path().join("out")).unwrap_err();
    assert!(err.to_string().contains("/d/sub/p is a FIFO"), "{err}");
    let err = copy_out(&root, Path::new("/d/sub/p"), &t.path().join("p")).unwrap_err();
    assert!(err.to_string().contains("/d/sub/p is a FIFO"), "{err}");
    assert!(!t.path().join("p").exists());
}

#[test]
fn copy_in_replaces_a_symlink_or_fifo_at_the_destination() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    tree(&root);
    let victim = t.path().join("victim");
    fs::write(&victim, "host\n").unwrap();
    std::os::unix::fs::symlink(&victim, root.join("d/link")).unwrap();
    mkfifo(&root.join("d/p"));
    let src = t.path().join("src");
    fs::write(&src, "in\n").unwrap();
    for name in ["/d/link", "/d/p"] {
        copy_in(&root, &src, Path::new(name)).unwrap();
        let inside = root.join(name.trim_start_matches('/'));
        assert_eq!(fs::read_to_string(&inside).unwrap(), "in\n");
        assert!(fs::symlink_metadata(&inside).unwrap().is_file());
    }
    assert_eq!(fs::read_to_string(&victim).unwrap(), "host\n");
    // An absolute symlink in the container resolves inside it, not on the host.
    std::os::unix::fs::symlink(t.path(), root.join("hostdir")).unwrap();
    assert!(copy_in(&root, &src, &Path::new("/hostdir").join("planted")).is_err());
    assert!(!t.path().join("planted").exists());
}

#[test]
fn export_archives_every_kind_without_following_links() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    tree(&root);
    mkfifo(&root.join("d/p"));
    let mut out = Vec::new();
    export_rootfs(&root, &mut out).unwrap();
    let mut entries = Vec::new();
    for e in tar::Archive::new(out.as_slice()).entries().unwrap() {
        let e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let mode = e.header().mode().unwrap();
        entries.push((path, e.header().entry_type(), link, mode));
    }
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        ["./", "d/", "d/f", "d/h", "d/p", "d/s", "d/sub/"],
        "{entries:?}"
    );
    let by = |n: &str| entries.iter().find(|e| e.0 == n).unwrap();
    assert_eq!(
        by("d/f").3,
        0o4755,
        "the archive keeps the container's modes"
    );
    assert!(by("d/h").1.is_hard_link());
    assert_eq!(by("d/h").2.as_deref(), Some("d/f"));
    assert!(by("d/p").1.is_fifo());
    assert!(by("d/s").1.is_symlink());
    assert_eq!(by("d/s").2.as_deref(), Some("/etc/passwd"));
}

#[test]
fn a_tree_deeper_than_the_limit_is_refused_not_a_fd_exhaustion() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let deep: std::path::PathBuf = std::iter::repeat_n("a", super::tree::MAX_DEPTH + 1).collect();
    fs::create_dir_all(root.join(&deep)).unwrap();
    let err = copy_out(&root, Path::new("/a"), &t.path().join("out")).unwrap_err();
    assert!(err.to_string().contains("directories deep"), "{err}");
    let err = export_rootfs(&root, &mut std::io::sink()).unwrap_err();
    assert!(err.to_string().contains("directories deep"), "{err}");
    // One level less is fine.
    let ok: std::path::PathBuf = std::iter::repeat_n("b", super::tree::MAX_DEPTH - 2).collect();
    fs::create_dir_all(root.join(&ok)).unwrap();
    copy_out(&root, Path::new("/b"), &t.path().join("ok")).unwrap();
}
