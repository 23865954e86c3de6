//! The changes of an upper dir over image layers: additions, modifications, unchanged
//! copied-up directories, excluded mount points (no root); whiteouts and opaque
//! directories (root: mknod and trusted.* xattrs).

use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use super::*;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn c(path: &str, kind: ChangeKind) -> Change {
    Change {
        path: path.into(),
        kind,
    }
}

fn mknod_whiteout(p: &Path) {
    nix::sys::stat::mknod(
        p,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
}

fn set_opaque(path: &Path) {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C strings and a one-byte value.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    };
    assert_eq!(rc, 0, "{}", io::Error::last_os_error());
}

/// Two layers (top first) and an upper dir, with the same mode on the shared dirs.
fn tree(t: &Path) -> (PathBuf, Vec<PathBuf>) {
    let upper = t.join("upper");
    let top = t.join("l1");
    let base = t.join("l0");
    for d in [&upper, &top, &base] {
        fs::create_dir_all(d.join("etc")).unwrap();
        fs::set_permissions(d.join("etc"), fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::write(base.join("etc/passwd"), b"root").unwrap();
    fs::write(top.join("etc/group"), b"g").unwrap();
    fs::create_dir_all(base.join("usr/bin")).unwrap();
    (upper, vec![top, base])
}

#[test]
fn additions_and_modifications_against_every_layer() {
    let t = tempfile::tempdir().unwrap();
    let (upper, lowers) = tree(t.path());
    // Modified: a file of the base layer and one of the top layer; added: a new file.
    fs::write(upper.join("etc/passwd"), b"root\nme").unwrap();
    fs::write(upper.join("etc/group"), b"g2").unwrap();
    fs::write(upper.join("etc/new"), b"n").unwrap();
    // A new directory with a file: both added.
    fs::create_dir_all(upper.join("srv/app")).unwrap();
    fs::write(upper.join("srv/app/x"), b"x").unwrap();
    // A copied-up directory with nothing changed under it but a mount point: not shown.
    fs::create_dir_all(upper.join("usr/bin")).unwrap();
    fs::set_permissions(upper.join("usr"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(lowers[1].join("usr"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(upper.join("usr/bin"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(lowers[1].join("usr/bin"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(upper.join("usr/bin/mounted"), b"").unwrap();
    let opts = UpperOptions {
        exclude: HashSet::from([b"usr/bin/mounted".to_vec()]),
        ..Default::default()
    };
    let got = changes(&upper, &lowers, &opts).unwrap();
    assert_eq!(
        got,
        [
            c("/etc", ChangeKind::Modified),
            c("/etc/group", ChangeKind::Modified),
            c("/etc/new", ChangeKind::Added),
            c("/etc/passwd", ChangeKind::Modified),
            c("/srv", ChangeKind::Added),
            c("/srv/app", ChangeKind::Added),
            c("/srv/app/x", ChangeKind::Added),
        ]
    );
    // A chmod of a copied-up directory alone is a modification.
    fs::set_permissions(upper.join("usr/bin"), fs::Permissions::from_mode(0o700)).unwrap();
    let got = changes(&upper, &lowers, &opts).unwrap();
    assert!(
        got.contains(&c("/usr/bin", ChangeKind::Modified)),
        "{got:?}"
    );
    assert!(got.contains(&c("/usr", ChangeKind::Modified)), "{got:?}");
}

/// A symlinked directory in the image is an entry, never followed: `lib/x` in the upper
/// dir under an image whose `lib` is a symlink to a host directory that has `x` is an
/// addition (the image has no directory `lib` with an `x`), and the host is not read.
#[test]
fn a_symlink_in_the_image_is_not_followed() {
    let t = tempfile::tempdir().unwrap();
    let (upper, lowers) = tree(t.path());
    let host = t.path().join("host");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("x"), b"secret").unwrap();
    // Positive control: through the symlink the name exists.
    symlink(&host, lowers[1].join("lib")).unwrap();
    assert!(lowers[1].join("lib/x").exists());
    fs::create_dir_all(upper.join("lib")).unwrap();
    fs::write(upper.join("lib/x"), b"mine").unwrap();
    let got = changes(&upper, &lowers, &UpperOptions::default()).unwrap();
    assert_eq!(
        got,
        [
            c("/lib", ChangeKind::Modified),
            c("/lib/x", ChangeKind::Added)
        ]
    );
}

#[test]
fn whiteouts_are_deletions_and_opaque_dirs_delete_what_they_lost() {
    if !is_root() {
        codex_tests::skip("needs root (mknod of a whiteout, trusted.* xattrs)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (upper, lowers) = tree(t.path());
    // rm /etc/passwd
    mknod_whiteout(&upper.join("etc/passwd"));
    // rm -rf /var/lib; mkdir /var/lib; touch /var/lib/kept /var/lib/fresh
    for l in &lowers {
        fs::create_dir_all(l.join("var/lib")).unwrap();
        fs::set_permissions(l.join("var"), fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::write(lowers[0].join("var/lib/a"), b"").unwrap();
    fs::write(lowers[1].join("var/lib/b"), b"").unwrap();
    fs::write(lowers[1].join("var/lib/kept"), b"").unwrap();
    // A name the top layer deleted is not the base's to lose again.
    fs::write(lowers[1].join("var/lib/gone"), b"").unwrap();
    mknod_whiteout(&lowers[0].join("var/lib/gone"));
    fs::create_dir_all(upper.join("var/lib")).unwrap();
    fs::set_permissions(upper.join("var"), fs::Permissions::from_mode(0o755)).unwrap();
    set_opaque(&upper.join("var/lib"));
    fs::write(upper.join("var/lib/kept"), b"").unwrap();
    fs::write(upper.join("var/lib/fresh"), b"").unwrap();
    // A whiteout of a name the image never had is nothing to report.
    mknod_whiteout(&upper.join("etc/never"));
    let got = changes(&upper, &lowers, &UpperOptions::default()).unwrap();
    assert_eq!(
        got,
        [
            c("/etc", ChangeKind::Modified),
            c("/etc/passwd", ChangeKind::Deleted),
            c("/var", ChangeKind::Modified),
            c("/var/lib", ChangeKind::Modified),
            c("/var/lib/a", ChangeKind::Deleted),
            c("/var/lib/b", ChangeKind::Deleted),
            c("/var/lib/fresh", ChangeKind::Added),
            c("/var/lib/kept", ChangeKind::Modified),
        ]
    );
    // An opaque directory in the image hides the layers below it.
    let t2 = tempfile::tempdir().unwrap();
    let (upper, lowers) = tree(t2.path());
    fs::create_dir_all(lowers[0].join("opt")).unwrap();
    fs::create_dir_all(lowers[1].join("opt")).unwrap();
    fs::write(lowers[1].join("opt/old"), b"").unwrap();
    set_opaque(&lowers[0].join("opt"));
    fs::create_dir_all(upper.join("opt")).unwrap();
    fs::write(upper.join("opt/old"), b"").unwrap();
    let got = changes(&upper, &lowers, &UpperOptions::default()).unwrap();
    assert!(got.contains(&c("/opt/old", ChangeKind::Added)), "{got:?}");
    // rm -rf of an empty directory of the image, then mkdir: replaced, so modified.
    fs::create_dir_all(lowers[1].join("home")).unwrap();
    fs::create_dir_all(upper.join("home")).unwrap();
    set_opaque(&upper.join("home"));
    let got = changes(&upper, &lowers, &UpperOptions::default()).unwrap();
    assert!(got.contains(&c("/home", ChangeKind::Modified)), "{got:?}");
}
