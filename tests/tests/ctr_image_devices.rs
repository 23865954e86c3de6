//! Device nodes in image layers. The OCI layer format allows character and block
//! devices and FIFOs, so the unpacker keeps them (a 0:0 character device, overlay's
//! whiteout, is refused: layers spell whiteouts `.wh.NAME`). What makes them harmless:
//! the host-side overlay rootfs is mounted nodev (a node opened through it is refused),
//! the store is 0700 root, and inside the container the device cgroup allows only the
//! default devices, so an image's /dev/mem-like node cannot be opened there either.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use codex_tests::ctr::Ctr;
use codex_tests::*;

/// The busybox rootfs tar plus x/null (1:3), x/mem (1:1), x/loop0 (block 7:0), x/fifo.
fn image_tar(dir: &Path) -> Option<PathBuf> {
    if !have_tool("python3") {
        skip("python3 is not installed (apt-get install -y python3; make deps)");
        return None;
    }
    let out = dir.join("devimg.tar");
    let script = format!(
        r#"
import tarfile
src = tarfile.open("{src}")
dst = tarfile.open("{out}", "w", format=tarfile.PAX_FORMAT)
for m in src.getmembers():
    dst.addfile(m, src.extractfile(m) if m.isfile() else None)
d = tarfile.TarInfo("x"); d.type = tarfile.DIRTYPE; d.mode = 0o755; dst.addfile(d)
for name, kind, major, minor in [("x/null", tarfile.CHRTYPE, 1, 3), ("x/mem", tarfile.CHRTYPE, 1, 1),
                                 ("x/loop0", tarfile.BLKTYPE, 7, 0), ("x/fifo", tarfile.FIFOTYPE, 0, 0)]:
    t = tarfile.TarInfo(name); t.type = kind; t.devmajor = major; t.devminor = minor; t.mode = 0o666
    dst.addfile(t)
dst.close()
"#,
        src = fixture_dir().join("rootfs.tar").display(),
        out = out.display()
    );
    run_command(std::process::Command::new("python3").arg("-c").arg(&script)).assert_ok();
    Some(out)
}

/// Overlay mounts under `root` in the mount namespace of process `pid` (from its
/// mountinfo): (mount point, options).
fn overlay_mounts_under(pid: &str, root: &Path) -> Vec<(PathBuf, String)> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            let (mp, opts, fstype) = (f.get(4)?, f.get(5)?, f.get(sep + 1)?);
            (*fstype == "overlay" && mp.starts_with(&*root.to_string_lossy()))
                .then(|| (PathBuf::from(mp), opts.to_string()))
        })
        .collect()
}

#[test]
fn image_device_nodes_are_kept_but_never_honoured_outside_the_allowed_devices() {
    let c = Ctr::new();
    let dir = c.root.parent().expect("parent").to_path_buf();
    let Some(tar) = image_tar(&dir) else {
        return;
    };
    c.run(&["image", "import", &tar.to_string_lossy(), "devimg"])
        .assert_ok();
    // Kept in the layer as the tar says.
    let layer = std::fs::read_dir(c.root.join("images/layers"))
        .expect("layers")
        .flatten()
        .map(|e| e.path().join("rootfs"))
        .find(|p| p.join("x").is_dir())
        .expect("the layer with x/");
    let md = |n: &str| std::fs::symlink_metadata(layer.join(n)).expect("node");
    assert!(md("x/null").file_type().is_char_device());
    assert_eq!(
        std::os::unix::fs::MetadataExt::rdev(&md("x/mem")),
        libc::makedev(1, 1)
    );
    assert!(md("x/loop0").file_type().is_block_device());
    assert!(md("x/fifo").file_type().is_fifo());

    // Inside the container: the allowed null works (control), mem and loop0 do not.
    let name = format!("devs-{}", std::process::id());
    c.run(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        "none",
        "devimg",
        "sleep",
        "300",
    ])
    .assert_ok();
    let o = c.run(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo hi > /x/null && cat /x/null && echo ok",
    ]);
    o.assert_ok();
    assert_eq!(o.stdout, "ok\n");
    for n in ["/x/mem", "/x/loop0"] {
        let o = c.run(&["exec", &name, "head", "-c", "1", n]);
        o.assert_fails();
        assert!(
            o.stderr.contains("not permitted") || o.stderr.contains("denied"),
            "{n}: {o:?}"
        );
    }

    // The host side: the container's overlay rootfs is mounted nodev (and nosuid), so
    // the same null node opened through it is refused, while through the layer dir
    // (the control: root on the host, the store is 0700) it opens.
    // The overlay is mounted in the supervisor's mount namespace (none in the host's),
    // and reached through the supervisor's root.
    assert!(
        overlay_mounts_under("self", &c.root).is_empty(),
        "an overlay in the host's namespace"
    );
    let sup = c.inspect(&name)["supervisor_pid"]
        .as_i64()
        .expect("supervisor")
        .to_string();
    let mounts = overlay_mounts_under(&sup, &c.root);
    assert!(
        !mounts.is_empty(),
        "no overlay rootfs mounted under the root"
    );
    let view = |mp: &Path| PathBuf::from(format!("/proc/{sup}/root{}", mp.display()));
    let (rootfs, opts) = mounts
        .iter()
        .map(|(mp, o)| (view(mp), o.clone()))
        .find(|(mp, _)| mp.join("x/null").exists())
        .expect("the container's rootfs mount");
    assert!(
        opts.split(',').any(|o| o == "nodev") && opts.split(',').any(|o| o == "nosuid"),
        "{opts}"
    );
    std::fs::File::open(layer.join("x/null")).expect("the control: the layer's null opens");
    let e = std::fs::File::open(rootfs.join("x/null")).expect_err("nodev refuses it");
    assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(c.root.join("images"))
            .expect("store")
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "the store is private to root");
}
