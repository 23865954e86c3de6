use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use super::*;

#[test]
fn whiteout_and_opaque_paths() {
    assert_eq!(whiteout_path(b"a"), b".wh.a");
    assert_eq!(whiteout_path(b"etc/passwd"), b"etc/.wh.passwd");
    assert_eq!(whiteout_path(b"a/b/c d"), b"a/b/.wh.c d");
    assert_eq!(opaque_path(b""), b".wh..wh..opq");
    assert_eq!(opaque_path(b"var/lib"), b"var/lib/.wh..wh..opq");
}

#[test]
fn id_map_maps_back_and_refuses_unmapped() {
    assert_eq!(IdMap::default().to_container(1234), Some(1234));
    let m = IdMap(vec![
        IdRange {
            container: 0,
            host: 100_000,
            size: 65536,
        },
        IdRange {
            container: 70000,
            host: 5000,
            size: 10,
        },
    ]);
    assert_eq!(m.to_container(100_000), Some(0));
    assert_eq!(m.to_container(100_042), Some(42));
    assert_eq!(m.to_container(165_535), Some(65535));
    assert_eq!(m.to_container(165_536), None);
    assert_eq!(m.to_container(5009), Some(70009));
    assert_eq!(m.to_container(0), None);
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: valid C strings and a buffer of value.len() bytes.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {name} on {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

fn mknod_whiteout(path: &Path) {
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
}

/// (path -> (type byte, mode, size, link target)) of every entry of a tar file.
fn entries(tar_path: &Path) -> BTreeMap<String, (u8, u32, u64, String)> {
    let mut a = tar::Archive::new(fs::File::open(tar_path).unwrap());
    let mut out = BTreeMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let p = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let h = e.header().clone();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(
            p,
            (
                h.entry_type().as_byte(),
                h.mode().unwrap(),
                data.len() as u64,
                link,
            ),
        );
    }
    out
}

fn pack_to(upper: &Path, opts: &UpperOptions, out: &Path) -> Result<(String, u64)> {
    pack_upper(upper, opts, fs::File::create(out).unwrap())
}

/// An upper dir as overlayfs leaves it (whiteout, opaque dir, setuid file, symlink out,
/// fifo) becomes OCI entries, recorded as data; unpacking the tar gives back the overlay
/// markers.
#[test]
fn overlay_markers_become_oci_whiteouts_and_round_trip() {
    if !is_root() {
        codex_tests::skip("needs root (mknod of a whiteout, trusted.* xattrs)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let upper = t.path().join("upper");
    fs::create_dir_all(upper.join("etc")).unwrap();
    fs::write(upper.join("etc/new"), b"hello").unwrap();
    mknod_whiteout(&upper.join("etc/passwd"));
    fs::create_dir_all(upper.join("var/cache")).unwrap();
    set_xattr(&upper.join("var/cache"), "trusted.overlay.opaque", b"y");
    fs::write(upper.join("var/cache/kept"), b"k").unwrap();
    fs::write(upper.join("suid"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(upper.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    symlink("/etc/shadow", upper.join("escape")).unwrap();
    nix::unistd::mkfifo(
        &upper.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    fs::create_dir(upper.join("proc")).unwrap();
    fs::write(upper.join("proc/skipped"), b"x").unwrap();

    let mut opts = UpperOptions::default();
    opts.exclude.insert(b"proc".to_vec());
    let tar = t.path().join("layer.tar");
    let (hex, size) = pack_to(&upper, &opts, &tar).unwrap();
    assert_eq!(size, fs::metadata(&tar).unwrap().len());
    assert_eq!(hex.len(), 64);
    let e = entries(&tar);
    let names: Vec<&str> = e.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "escape",
            "etc/",
            "etc/.wh.passwd",
            "etc/new",
            "fifo",
            "suid",
            "var/",
            "var/cache/",
            "var/cache/.wh..wh..opq",
            "var/cache/kept"
        ]
    );
    assert_eq!(e["etc/.wh.passwd"].0, b'0');
    assert_eq!(e["etc/.wh.passwd"].2, 0);
    assert_eq!(e["etc/new"].2, 5);
    // The setuid bit is recorded as data; the symlink's target is its text, never read.
    assert_eq!(e["suid"].1, 0o4755);
    assert_eq!(e["escape"].0, b'2');
    assert_eq!(e["escape"].3, "/etc/shadow");
    assert_eq!(e["fifo"].0, b'6');

    // The same tree packs to the same bytes.
    let (again, _) = pack_to(&upper, &opts, &t.path().join("again.tar")).unwrap();
    assert_eq!(again, hex);

    // Unpacked as a layer, the OCI markers are overlay markers again.
    let back = t.path().join("back");
    fs::create_dir(&back).unwrap();
    crate::image::layer::unpack(
        std::io::BufReader::new(fs::File::open(&tar).unwrap()),
        &back,
        &tar,
    )
    .unwrap();
    let wh = fs::symlink_metadata(back.join("etc/passwd")).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    let dir = crate::copy::open_dir_nofollow(&back.join("var/cache")).unwrap();
    assert_eq!(
        xattr(dir.as_fd(), OVERLAY_OPAQUE_XATTR).unwrap().as_deref(),
        Some(b"y".as_slice())
    );
    assert_eq!(fs::read(back.join("var/cache/kept")).unwrap(), b"k");
    assert!(!back.join("proc").exists());
}

#[test]
fn names_that_read_as_whiteouts_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let upper = t.path().join("upper");
    fs::create_dir_all(upper.join("etc")).unwrap();
    // Control: without the hostile name the pack works.
    fs::write(upper.join("etc/ok"), b"x").unwrap();
    pack_to(&upper, &UpperOptions::default(), &t.path().join("a.tar")).unwrap();
    fs::write(upper.join("etc/.wh.passwd"), b"").unwrap();
    let err = pack_to(&upper, &UpperOptions::default(), &t.path().join("b.tar"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("etc/.wh.passwd") && err.contains("reserved"),
        "{err}"
    );
}

#[test]
fn unmapped_owners_are_refused_and_mapped_ones_translated() {
    if !is_root() {
        codex_tests::skip("needs root (chown)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let upper = t.path().join("upper");
    fs::create_dir(&upper).unwrap();
    fs::write(upper.join("f"), b"x").unwrap();
    nix::unistd::chown(&upper.join("f"), Some(100_005.into()), Some(100_007.into())).unwrap();
    let map = IdMap(vec![IdRange {
        container: 0,
        host: 100_000,
        size: 65536,
    }]);
    let opts = UpperOptions {
        uids: map.clone(),
        gids: map,
        ..Default::default()
    };
    let tar = t.path().join("l.tar");
    pack_to(&upper, &opts, &tar).unwrap();
    let mut a = tar::Archive::new(fs::File::open(&tar).unwrap());
    let e = a.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(
        (e.header().uid().unwrap(), e.header().gid().unwrap()),
        (5, 7)
    );
    nix::unistd::chown(&upper.join("f"), Some(0.into()), None).unwrap();
    let err = pack_to(&upper, &opts, &t.path().join("m.tar"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not mapped") && err.contains("uid 0"), "{err}");
}

#[test]
fn redirect_and_metacopy_are_refused() {
    if !is_root() {
        codex_tests::skip("needs root (trusted.* xattrs)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let upper = t.path().join("upper");
    fs::create_dir_all(upper.join("moved")).unwrap();
    pack_to(&upper, &UpperOptions::default(), &t.path().join("a.tar")).unwrap();
    set_xattr(&upper.join("moved"), "trusted.overlay.redirect", b"/old");
    let err = pack_to(&upper, &UpperOptions::default(), &t.path().join("b.tar"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("redirect_dir"), "{err}");
}
