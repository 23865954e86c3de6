//! Image store tests. Run as root (whiteouts are 0:0 character devices and a
//! `trusted.overlay.opaque` xattr; ownership and device nodes need root too). Each test has
//! its own temporary store root; the busybox fixture is built once by
//! `rootfs-fixtures/make-busybox-bundle.sh` into `target/codex-tests/busybox-bundle`
//! (shared with the workspace's integration tests, under the same lock).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use codex_engine::image::{ImageRecord, ImageStore};
use codex_engine::Error;
use tar::{EntryType, Header};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// Fixtures and helpers
// ---------------------------------------------------------------------------------------

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The busybox bundle (`rootfs/`, `rootfs.tar`), built once, rebuilt when the script is
/// newer than the cache.
fn fixture() -> &'static Path {
    static FIXTURE: OnceLock<PathBuf> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let base = workspace_dir().join("target/codex-tests");
        fs::create_dir_all(&base).expect("create target/codex-tests");
        let lock = File::create(base.join("fixture.lock")).expect("create fixture lock");
        // SAFETY: flock on an fd we own; released when `lock` is closed.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
        let out = base.join("busybox-bundle");
        let stamp = base.join("busybox-bundle.stamp");
        let script = workspace_dir().join("rootfs-fixtures/make-busybox-bundle.sh");
        let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
        let fresh = match (mtime(&stamp), mtime(&script)) {
            (Some(s), Some(sc)) => {
                s >= sc
                    && out.join("config.json").exists()
                    && out.join("rootfs/bin/busybox").exists()
                    && out.join("rootfs.tar").exists()
            }
            _ => false,
        };
        if !fresh {
            let st = Command::new("bash")
                .arg(&script)
                .arg(&out)
                .env_remove("CODEX_OCI")
                .stdout(Stdio::null())
                .status()
                .expect("run make-busybox-bundle.sh");
            assert!(st.success(), "make-busybox-bundle.sh failed: {st}");
            fs::write(&stamp, b"ok\n").expect("write fixture stamp");
        }
        drop(lock);
        out
    })
}

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the image tests must run as root"
    );
}

struct Env {
    tmp: TempDir,
    store: ImageStore,
}

impl Env {
    fn new() -> Env {
        require_root();
        let tmp = tempfile::Builder::new()
            .prefix("codex-image-test")
            .tempdir()
            .expect("tempdir");
        let store = ImageStore::open(tmp.path().join("root")).expect("open store");
        Env { tmp, store }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn images(&self) -> PathBuf {
        self.tmp.path().join("root/images")
    }

    fn count(&self, rel: &str) -> usize {
        fs::read_dir(self.images().join(rel))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn index(&self) -> BTreeMap<String, String> {
        match fs::read(self.images().join("index.json")) {
            Ok(d) => {
                let v: serde_json::Value = serde_json::from_slice(&d).expect("index is JSON");
                serde_json::from_value(v["references"].clone()).expect("references map")
            }
            Err(_) => BTreeMap::new(),
        }
    }

    /// Nothing was committed and no work dir was left behind.
    fn assert_empty(&self) {
        for d in ["layers", "blobs/sha256", "manifests", "tmp"] {
            assert_eq!(self.count(d), 0, "{d} is not empty");
        }
        assert!(self.index().is_empty(), "index: {:?}", self.index());
    }

    fn layer_root(&self, rec: &ImageRecord) -> PathBuf {
        let layers = self.store.rootfs_layers(rec).expect("rootfs_layers");
        assert_eq!(layers.len(), 1);
        layers[0].clone()
    }
}

/// A tar built byte by byte, so that it can hold what `tar::Builder` refuses to write.
#[derive(Default)]
struct RawTar(Vec<u8>);

struct E<'a> {
    name: &'a [u8],
    kind: EntryType,
    link: &'a [u8],
    data: &'a [u8],
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    dev: (u32, u32),
    pax: Vec<(&'a str, &'a [u8])>,
}

fn e(name: &str, kind: EntryType) -> E<'_> {
    E {
        name: name.as_bytes(),
        kind,
        link: b"",
        data: b"",
        mode: if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        },
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
        dev: (0, 0),
        pax: Vec::new(),
    }
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> E<'a> {
    E {
        data,
        ..e(name, EntryType::Regular)
    }
}

fn dir(name: &str) -> E<'_> {
    e(name, EntryType::Directory)
}

fn symlink<'a>(name: &'a str, target: &'a str) -> E<'a> {
    E {
        link: target.as_bytes(),
        mode: 0o777,
        ..e(name, EntryType::Symlink)
    }
}

fn hardlink<'a>(name: &'a str, target: &'a str) -> E<'a> {
    E {
        link: target.as_bytes(),
        ..e(name, EntryType::Link)
    }
}

impl RawTar {
    fn add(&mut self, e: E<'_>) -> &mut Self {
        if !e.pax.is_empty() {
            let mut data = Vec::new();
            for (k, v) in &e.pax {
                let rest = 3 + k.len() + v.len();
                let mut len = rest + 1;
                while len != rest + len.to_string().len() {
                    len = rest + len.to_string().len();
                }
                data.extend_from_slice(format!("{len} {k}=").as_bytes());
                data.extend_from_slice(v);
                data.push(b'\n');
            }
            let mut h = Header::new_ustar();
            h.as_old_mut().name[..9].copy_from_slice(b"PaxHeader");
            h.set_entry_type(EntryType::XHeader);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            self.push(&h, &data);
        }
        let mut h = Header::new_gnu();
        assert!(e.name.len() < 100 && e.link.len() < 100);
        h.as_old_mut().name[..e.name.len()].copy_from_slice(e.name);
        h.as_old_mut().linkname[..e.link.len()].copy_from_slice(e.link);
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        h.set_size(e.data.len() as u64);
        h.set_device_major(e.dev.0).unwrap();
        h.set_device_minor(e.dev.1).unwrap();
        h.set_cksum();
        self.push(&h, e.data);
        self
    }

    fn push(&mut self, h: &Header, data: &[u8]) {
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
    }

    fn write(&mut self, path: &Path) -> PathBuf {
        let mut bytes = self.0.clone();
        bytes.extend_from_slice(&[0; 1024]);
        fs::write(path, bytes).expect("write tar");
        path.to_path_buf()
    }
}

fn gzip(src: &Path, dst: &Path) {
    let mut enc = flate2::write::GzEncoder::new(File::create(dst).unwrap(), Default::default());
    enc.write_all(&fs::read(src).unwrap()).unwrap();
    enc.finish().unwrap();
}

fn zstd(src: &Path, dst: &Path) {
    let data = zstd::encode_all(&fs::read(src).unwrap()[..], 3).unwrap();
    fs::write(dst, data).unwrap();
}

/// Everything a layer keeps about a tree, by relative path.
fn tree(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        for entry in fs::read_dir(&p).unwrap() {
            let path = entry.unwrap().path();
            let md = fs::symlink_metadata(&path).unwrap();
            let ft = md.file_type();
            let what = if ft.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else if ft.is_symlink() {
                format!("link->{}", fs::read_link(&path).unwrap().display())
            } else if ft.is_file() {
                format!("file size={}", md.len())
            } else {
                format!("special rdev={}", md.rdev())
            };
            let mode = if ft.is_symlink() {
                0o777
            } else {
                md.mode() & 0o7777
            };
            out.insert(
                path.strip_prefix(root).unwrap().to_path_buf(),
                format!(
                    "{what} mode={mode:o} {}:{} mtime={}",
                    md.uid(),
                    md.gid(),
                    md.mtime()
                ),
            );
        }
    }
    out
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: lgetxattr writes at most buf.len() bytes.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| {
        buf.truncate(r as usize);
        buf
    })
}

fn tar_names(path: &Path) -> Vec<String> {
    let mut a = tar::Archive::new(File::open(path).unwrap());
    a.entries()
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned())
        .collect()
}

fn find_named(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(rd) = fs::read_dir(&p) else { continue };
        for entry in rd.flatten() {
            let path = entry.path();
            if entry.file_name() == name {
                hits.push(path.clone());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    hits
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn busybox_as_dir_tar_gzip_and_zstd_gives_one_layer_digest() {
    let fx = fixture();
    let work = Env::new();
    let tar = fx.join("rootfs.tar");
    let gz = work.path("rootfs.tar.gz");
    let zst = work.path("rootfs.tzst");
    let renamed = work.path("no-extension");
    gzip(&tar, &gz);
    zstd(&tar, &zst);
    fs::copy(&zst, &renamed).unwrap();

    let expected = tree(&fx.join("rootfs"));
    let mut diff_ids = Vec::new();
    for (source, reference) in [
        (fx.join("rootfs"), "busybox"),
        (tar.clone(), "busybox:tar"),
        (gz, "localhost:5000/busybox:gz"),
        (zst, "busybox:zst"),
        (renamed, "busybox:sniffed"),
    ] {
        // A fresh store each time: the digest does not depend on what is already there.
        let env = Env::new();
        let rec = env
            .store
            .import(&source, reference)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rec.layers.len(), 1);
        assert_eq!(rec.id.len(), 64);
        let root = env.layer_root(&rec);
        assert_eq!(
            fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        let bb = fs::symlink_metadata(root.join("bin/busybox")).unwrap();
        let fx_bb = fs::symlink_metadata(fx.join("rootfs/bin/busybox")).unwrap();
        assert_eq!(bb.mode(), fx_bb.mode(), "bin/busybox mode");
        assert_eq!(bb.len(), fx_bb.len());
        assert_eq!(
            fs::symlink_metadata(root.join("tmp")).unwrap().mode() & 0o7777,
            0o1777
        );
        // Every entry: type, target, size, mode, owner, mtime (whole seconds).
        assert_eq!(tree(&root), expected, "layer from {}", source.display());
        // The blob is the layer tar, and its digest is the diff_id.
        let blob = env.store.blob_path(&rec.layers[0]).unwrap();
        let digest = {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(fs::read(&blob).unwrap());
            h.finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        assert_eq!(format!("sha256:{digest}"), rec.layers[0]);
        assert_eq!(rec.size, fs::metadata(&blob).unwrap().len());
        // The record on disk and get() agree.
        assert_eq!(env.store.get(reference).unwrap(), rec);
        assert_eq!(env.count("tmp"), 0, "work dirs left behind");
        diff_ids.push(rec.layers[0].clone());
    }
    assert!(diff_ids.windows(2).all(|w| w[0] == w[1]), "{diff_ids:#?}");
}

#[test]
fn a_second_import_of_the_same_content_reuses_layer_and_blob() {
    let fx = fixture();
    let env = Env::new();
    let a = env.store.import(&fx.join("rootfs"), "a").unwrap();
    let blob = env.store.blob_path(&a.layers[0]).unwrap();
    let blob_ino = fs::metadata(&blob).unwrap().ino();
    let layer_ino = fs::metadata(env.layer_root(&a)).unwrap().ino();

    let b = env.store.import(&fx.join("rootfs.tar"), "b:1").unwrap();
    assert_eq!(a.layers, b.layers);
    assert_ne!(a.id, b.id, "each import is its own image");
    assert_eq!(
        fs::metadata(&blob).unwrap().ino(),
        blob_ino,
        "blob rewritten"
    );
    assert_eq!(
        fs::metadata(env.layer_root(&b)).unwrap().ino(),
        layer_ino,
        "layer re-unpacked"
    );
    assert_eq!(env.count("layers"), 1);
    assert_eq!(
        env.count("blobs/sha256"),
        3,
        "one layer blob and two config blobs"
    );

    let c = env.store.import(&fx.join("rootfs"), "c").unwrap();
    assert_eq!(c.layers, a.layers);
    assert_eq!(fs::metadata(&blob).unwrap().ino(), blob_ino);
    assert_eq!(env.count("layers"), 1);

    // Shared layer: removing two of three images keeps it; the last one collects it.
    assert!(env.store.remove("a", |_| false).unwrap().layers.is_empty());
    assert!(env
        .store
        .remove("b:1", |_| false)
        .unwrap()
        .layers
        .is_empty());
    assert!(blob.exists());
    let r = env.store.remove("c:latest", |_| false).unwrap();
    assert_eq!(r.layers, a.layers);
    env.assert_empty();
}

#[test]
fn hostile_tars_write_nothing_outside_the_layer() {
    let env = Env::new();
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), b"secret").unwrap();
    let outside_s = outside.to_str().unwrap().to_string();
    let abs = format!("/codex-image-test-abs-{}", std::process::id());
    let abs_name = abs.trim_start_matches('/').to_string();
    // Every escape below would land in `outside`, in the temp dir (a `..` from the import's
    // work dir under it), or at `abs`: the places searched after each case. Control: the
    // search finds an `escape` planted in each of the first two.
    for planted in [outside.join("escape"), env.images().join("escape")] {
        fs::create_dir_all(planted.parent().unwrap()).unwrap();
        fs::write(&planted, b"x").unwrap();
        assert_eq!(find_named(env.tmp.path(), "escape"), vec![planted.clone()]);
        fs::remove_file(&planted).unwrap();
    }
    // a relative symlink that climbs out of any work dir and down into `outside`
    let up_to_outside = format!("../../../../../../../../../..{outside_s}");

    let cases: Vec<(&str, RawTar, &str)> = vec![
        (
            "dotdot",
            {
                let mut t = RawTar::default();
                t.add(file("ok", b"fine")).add(file("../escape", b"x"));
                t
            },
            "\"..\"",
        ),
        (
            "dotdot-inside",
            {
                let mut t = RawTar::default();
                t.add(dir("a/")).add(file("a/../../escape", b"x"));
                t
            },
            "\"..\"",
        ),
        (
            "absolute",
            {
                let mut t = RawTar::default();
                t.add(file(&abs, b"x"));
                t
            },
            "absolute",
        ),
        (
            "symlink-parent",
            {
                let mut t = RawTar::default();
                t.add(symlink("link", &outside_s))
                    .add(file("link/escape", b"x"));
                t
            },
            "symlink",
        ),
        (
            "relative-symlink-parent",
            {
                let mut t = RawTar::default();
                t.add(symlink("up", &up_to_outside))
                    .add(file("up/escape", b"x"));
                t
            },
            "symlink",
        ),
        (
            "hardlink-out",
            {
                let mut t = RawTar::default();
                t.add(hardlink("escape", "../outside/secret"));
                t
            },
            "\"..\"",
        ),
        (
            "hardlink-through-symlink",
            {
                let mut t = RawTar::default();
                t.add(symlink("link", &outside_s))
                    .add(hardlink("escape", "link/secret"));
                t
            },
            "symlink",
        ),
        (
            "hardlink-absolute",
            {
                let mut t = RawTar::default();
                t.add(hardlink("escape", &format!("{outside_s}/secret")));
                t
            },
            "absolute",
        ),
    ];
    for (what, mut t, why) in cases {
        let src = t.write(&env.path(&format!("{what}.tar")));
        let res = env.store.import(&src, "hostile");
        // what reached the disk first: a mutant that escapes and then errors (or not)
        // fails here, on the escape itself
        assert!(
            find_named(env.tmp.path(), "escape").is_empty(),
            "{what}: wrote escape"
        );
        assert!(!Path::new("/escape").exists(), "{what}: wrote /escape");
        assert!(!Path::new(&abs).exists(), "{what}: wrote {abs}");
        assert!(find_named(env.tmp.path(), &abs_name).is_empty(), "{what}");
        let mut left: Vec<_> = fs::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![outside.join("secret")],
            "{what}: outside changed"
        );
        assert_eq!(fs::read(outside.join("secret")).unwrap(), b"secret");
        assert_eq!(
            fs::metadata(outside.join("secret")).unwrap().nlink(),
            1,
            "{what}"
        );
        let err = res.expect_err(what).to_string();
        eprintln!("{what}: {err}");
        assert!(err.contains("source") && err.contains(why), "{what}: {err}");
        assert!(
            err.contains("tar entry"),
            "{what}: error names the entry: {err}"
        );
        env.assert_empty();
    }

    // A symlink that points outside is fine as long as nothing goes through it; an entry
    // that replaces it replaces the link, not its target.
    let mut t = RawTar::default();
    t.add(symlink("link", &outside_s))
        .add(file("link", b"now a file"));
    let rec = env
        .store
        .import(&t.write(&env.path("replace.tar")), "replace")
        .unwrap();
    let root = env.layer_root(&rec);
    assert_eq!(fs::read(root.join("link")).unwrap(), b"now a file");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let env = Env::new();
    let mut base = RawTar::default();
    base.add(dir("etc/"))
        .add(file("etc/hosts", b"127.0.0.1 localhost\n"))
        .add(file("etc/keep", b"kept\n"))
        .add(dir("opq/"))
        .add(file("opq/a", b"a\n"))
        .add(file("gone", b"gone\n"));
    let base = env
        .store
        .import(&base.write(&env.path("base.tar")), "base")
        .unwrap();

    let mut top = RawTar::default();
    top.add(dir("etc/"))
        .add(file("etc/.wh.hosts", b""))
        .add(dir("opq/"))
        .add(file("opq/.wh..wh..opq", b""))
        .add(file("opq/b", b"b\n"))
        .add(file(".wh.gone", b""))
        .add(file(".wh..wh.plnk", b""));
    let top = env
        .store
        .import(&top.write(&env.path("top.tar")), "top")
        .unwrap();
    let root = env.layer_root(&top);

    for w in ["etc/hosts", "gone"] {
        let md = fs::symlink_metadata(root.join(w)).unwrap();
        assert!(md.file_type().is_char_device(), "{w} is not a char device");
        assert_eq!(md.rdev(), 0, "{w} is not 0:0");
    }
    assert_eq!(
        xattr(&root.join("opq"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(xattr(&root.join("etc"), "trusted.overlay.opaque").is_none());
    assert!(!root.join(".wh..wh.plnk").exists() && !root.join("opq/.wh..wh..opq").exists());

    // The canonical blob spells them the OCI way again, and importing it gives the same
    // layer.
    let blob = env.store.blob_path(&top.layers[0]).unwrap();
    let names = tar_names(&blob);
    for n in ["etc/.wh.hosts", "opq/.wh..wh..opq", ".wh.gone", "opq/b"] {
        assert!(names.iter().any(|x| x == n), "{n} not in {names:?}");
    }
    let again = env.store.import(&blob, "again").unwrap();
    assert_eq!(again.layers, top.layers);

    // And overlayfs agrees: mount top over base.
    let lower: Vec<PathBuf> = env
        .store
        .rootfs_layers(&top)
        .unwrap()
        .into_iter()
        .chain(env.store.rootfs_layers(&base).unwrap())
        .collect();
    let merged = env.path("merged");
    fs::create_dir(&merged).unwrap();
    let opts = format!(
        "lowerdir={}",
        lower
            .iter()
            .map(|p| p.to_str().unwrap())
            .collect::<Vec<_>>()
            .join(":")
    );
    let c = |s: &str| CString::new(s).unwrap();
    let target = c(merged.to_str().unwrap());
    // SAFETY: mount(2) with valid C strings.
    let rc = unsafe {
        libc::mount(
            c("overlay").as_ptr(),
            target.as_ptr(),
            c("overlay").as_ptr(),
            libc::MS_RDONLY,
            c(&opts).as_ptr().cast(),
        )
    };
    assert_eq!(
        rc,
        0,
        "mount overlay {opts}: {}",
        std::io::Error::last_os_error()
    );
    struct Unmount(CString);
    impl Drop for Unmount {
        fn drop(&mut self) {
            // SAFETY: umount2 with a valid C string.
            unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
        }
    }
    let _guard = Unmount(target);
    assert!(
        !merged.join("etc/hosts").exists(),
        "whiteout did not hide etc/hosts"
    );
    assert!(!merged.join("gone").exists());
    assert_eq!(fs::read(merged.join("etc/keep")).unwrap(), b"kept\n");
    assert!(
        !merged.join("opq/a").exists(),
        "opaque dir did not hide opq/a"
    );
    assert_eq!(fs::read(merged.join("opq/b")).unwrap(), b"b\n");
}

#[test]
fn modes_owners_devices_hardlinks_xattrs_and_mtimes_are_kept() {
    let env = Env::new();
    let mut t = RawTar::default();
    t.add(E {
        mode: 0o4755,
        uid: 1000,
        gid: 1001,
        mtime: 12345,
        ..file("bin/suid", b"#!")
    })
    .add(hardlink("bin/suid-link", "bin/suid"))
    .add(E {
        dev: (1, 3),
        mode: 0o666,
        ..e("dev/null", EntryType::Char)
    })
    .add(E {
        dev: (7, 0),
        mode: 0o660,
        gid: 6,
        ..e("dev/loop0", EntryType::Block)
    })
    .add(E {
        mode: 0o600,
        ..e("run/fifo", EntryType::Fifo)
    })
    .add(E {
        pax: vec![
            ("SCHILY.xattr.user.note", b"hello"),
            ("SCHILY.xattr.security.selinux", b"x"),
        ],
        ..file("data", b"payload")
    })
    .add(E {
        mode: 0o700,
        uid: 5,
        mtime: 777,
        ..dir("private/")
    })
    .add(E {
        mtime: 999,
        ..symlink("private/link", "../data")
    })
    .add(E {
        mode: 0o444,
        ..file("private/ro", b"ro")
    });
    let rec = env
        .store
        .import(&t.write(&env.path("meta.tar")), "meta")
        .unwrap();
    let root = env.layer_root(&rec);
    let md = |p: &str| fs::symlink_metadata(root.join(p)).unwrap();

    let suid = md("bin/suid");
    assert_eq!(
        (suid.mode() & 0o7777, suid.uid(), suid.gid(), suid.mtime()),
        (0o4755, 1000, 1001, 12345)
    );
    assert_eq!(suid.nlink(), 2);
    assert_eq!(md("bin/suid-link").ino(), suid.ino());
    assert!(md("dev/null").file_type().is_char_device());
    assert_eq!(md("dev/null").rdev(), libc::makedev(1, 3));
    assert_eq!(md("dev/null").mode() & 0o7777, 0o666);
    assert!(md("dev/loop0").file_type().is_block_device());
    assert_eq!(
        (md("dev/loop0").rdev(), md("dev/loop0").gid()),
        (libc::makedev(7, 0), 6)
    );
    assert!(md("run/fifo").file_type().is_fifo());
    assert_eq!(md("run/fifo").mode() & 0o7777, 0o600);
    assert_eq!(
        xattr(&root.join("data"), "user.note").as_deref(),
        Some(&b"hello"[..])
    );
    assert!(
        xattr(&root.join("data"), "security.selinux").is_none(),
        "host xattr kept"
    );
    let private = md("private");
    assert_eq!(
        (private.mode() & 0o7777, private.uid(), private.mtime()),
        (0o700, 5, 777)
    );
    assert_eq!(
        fs::read_link(root.join("private/link")).unwrap(),
        Path::new("../data")
    );
    assert_eq!(md("private/link").mtime(), 999);
    assert_eq!(md("private/ro").mode() & 0o7777, 0o444);
    // Implicit parents (bin/, dev/, run/) are 0755 root with the epoch as mtime.
    assert_eq!(
        (
            md("bin").mode() & 0o7777,
            md("bin").uid(),
            md("bin").mtime()
        ),
        (0o755, 0, 0)
    );

    // Round trip: the blob unpacks to the same tree and the same digest.
    let blob = env.store.blob_path(&rec.layers[0]).unwrap();
    let names = tar_names(&blob);
    assert!(names.contains(&"bin/suid-link".to_string()), "{names:?}");
    let again = env.store.import(&blob, "again").unwrap();
    assert_eq!(again.layers, rec.layers);
}

#[test]
fn bad_references_and_sources_are_refused_by_name() {
    let fx = fixture();
    let env = Env::new();
    let long_tag = format!("busybox:{}", "t".repeat(129));
    for r in [
        "UPPER",
        "a//b",
        long_tag.as_str(),
        "",
        "busybox:",
        "a/B:1",
        "x@sha256:00",
    ] {
        let err = env.store.import(&fx.join("rootfs"), r).expect_err(r);
        assert!(
            matches!(err, Error::Invalid { ref field, .. } if field == "reference"),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with("reference: ") && msg.contains(&format!("{r:?}")),
            "{msg}"
        );
    }
    let msg = env
        .store
        .import(&fx.join("rootfs"), &long_tag)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("tag") && msg.contains("at most 128"), "{msg}");

    let missing = env.path("missing.tar");
    let msg = env.store.import(&missing, "x").unwrap_err().to_string();
    assert!(
        msg.starts_with("source: ") && msg.contains("missing.tar"),
        "{msg}"
    );
    fs::write(env.path("notatar"), b"hello, world\n").unwrap();
    let msg = env
        .store
        .import(&env.path("notatar"), "x")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not a tar archive"), "{msg}");
    fs::write(env.path("empty"), b"").unwrap();
    let msg = env
        .store
        .import(&env.path("empty"), "x")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("empty"), "{msg}");
    env.assert_empty();
}

#[test]
fn a_failed_import_leaves_nothing_behind() {
    let fx = fixture();
    let env = Env::new();
    // Truncated in the middle of bin/busybox, plain and compressed.
    let data = fs::read(fx.join("rootfs.tar")).unwrap();
    let cut = env.path("cut.tar");
    fs::write(&cut, &data[..data.len() / 2]).unwrap();
    let cut_gz = env.path("cut.tar.gz");
    gzip(&cut, &cut_gz);
    let mut garbage_gz = flate2::write::GzEncoder::new(Vec::new(), Default::default());
    garbage_gz.write_all(&[0x55; 4096]).unwrap();
    let garbage = env.path("garbage.gz");
    fs::write(&garbage, garbage_gz.finish().unwrap()).unwrap();
    for src in [cut, cut_gz, garbage] {
        let err = env
            .store
            .import(&src, "broken")
            .expect_err("import of a broken archive");
        eprintln!("{err}");
        assert!(err.to_string().contains(src.to_str().unwrap()), "{err}");
        env.assert_empty();
    }
    // A directory with a reserved name is refused before anything is committed.
    let d = env.path("reserved");
    fs::create_dir_all(d.join("etc")).unwrap();
    fs::write(d.join("etc/.wh.x"), b"").unwrap();
    let msg = env.store.import(&d, "reserved").unwrap_err().to_string();
    assert!(msg.contains(".wh."), "{msg}");
    env.assert_empty();
}

#[test]
fn remove_collects_unused_layers_and_respects_in_use() {
    let fx = fixture();
    let env = Env::new();
    let bb = env.store.import(&fx.join("rootfs"), "bb").unwrap();
    let mut t = RawTar::default();
    t.add(file("hello", b"hi\n"));
    let small = env
        .store
        .import(&t.write(&env.path("small.tar")), "small:v1")
        .unwrap();
    assert_eq!(env.count("layers"), 2);

    let r = env.store.remove("small:v1", |_| false).unwrap();
    assert_eq!(r.untagged, vec!["small:v1".to_string()]);
    assert_eq!(r.deleted, vec![small.id.clone()]);
    assert_eq!(r.layers, small.layers);
    assert!(!env.store.blob_path(&small.layers[0]).unwrap().exists());
    assert!(
        !env.store.blob_path(&small.id).unwrap().exists(),
        "config blob kept"
    );
    assert_eq!(env.count("layers"), 1);
    assert!(matches!(
        env.store.get("small:v1"),
        Err(Error::NotFound { .. })
    ));

    // In use: refused with a clear error, nothing changes.
    let err = env
        .store
        .remove("bb", |id| id == bb.id)
        .unwrap_err()
        .to_string();
    assert!(err.contains("in use") && err.contains("\"bb\""), "{err}");
    assert_eq!(env.store.get("bb").unwrap(), bb);
    assert_eq!(env.count("layers"), 1);

    // By id prefix.
    let r = env.store.remove(&bb.id[..10], |_| false).unwrap();
    assert_eq!(r.untagged, vec!["bb:latest".to_string()]);
    assert_eq!(r.layers, bb.layers);
    env.assert_empty();
    assert!(matches!(
        env.store.remove("bb", |_| false),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn get_list_retag_and_prune() {
    let fx = fixture();
    let env = Env::new();
    let first = env.store.import(&fx.join("rootfs"), "bb:1").unwrap();
    assert_eq!(env.store.get(&first.id[..6]).unwrap(), first);
    assert_eq!(
        env.store
            .get(&format!("sha256:{}", &first.id[..12]))
            .unwrap(),
        first
    );
    assert_eq!(
        env.store.get(&first.id).unwrap().reference().as_deref(),
        Some("bb:1")
    );
    assert!(
        matches!(env.store.get("bb"), Err(Error::NotFound { .. })),
        "bb:latest"
    );

    // Importing again under the same reference moves it; the old image is dangling.
    let second = env.store.import(&fx.join("rootfs.tar"), "bb:1").unwrap();
    assert_eq!(env.store.get("bb:1").unwrap().id, second.id);
    let list = env.store.list().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, second.id, "newest first");
    assert_eq!(
        (list[1].id.as_str(), list[1].name.as_deref()),
        (first.id.as_str(), None)
    );
    assert_eq!(env.count("layers"), 1);

    // prune keeps dangling images that are in use, then removes them.
    assert!(env
        .store
        .prune(|id| id == first.id)
        .unwrap()
        .deleted
        .is_empty());
    let r = env.store.prune(|_| false).unwrap();
    assert_eq!(r.deleted, vec![first.id.clone()]);
    assert!(r.layers.is_empty(), "the layer is still used by bb:1");
    assert_eq!(env.store.list().unwrap(), vec![second]);

    // Work dirs of crashed imports are collected once unlocked; one still being born
    // (hidden name, locked only after) stays while young, one whose owner holds its
    // lock stays.
    let tmp = env.images().join("tmp");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let mk = |name: &str, age: Option<std::time::SystemTime>| {
        let d = tmp.join(name);
        fs::create_dir_all(d.join("layer/rootfs/bin")).unwrap();
        fs::write(d.join("lock"), b"").unwrap();
        if let Some(t) = age {
            File::open(&d).unwrap().set_modified(t).unwrap();
        }
        d
    };
    let crashed = mk("import-crashed", Some(old));
    let young = mk(".import-young", None);
    let live = mk("import-live", Some(old));
    let held = File::open(live.join("lock")).unwrap();
    // SAFETY: flock on an fd we own.
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
    env.store.prune(|_| false).unwrap();
    assert!(!crashed.exists(), "stale work dir kept");
    assert!(young.exists() && live.exists(), "live work dir collected");
    drop(held);
}

#[test]
fn concurrent_imports_are_safe() {
    let fx = fixture();
    let env = Env::new();
    let tar = fx.join("rootfs.tar");
    let rootfs = fx.join("rootfs");
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let (store, tar, rootfs) = (&env.store, &tar, &rootfs);
                s.spawn(move || {
                    let src = if i % 2 == 0 { rootfs } else { tar };
                    let reference = if i < 4 {
                        format!("t{i}")
                    } else {
                        "same".to_string()
                    };
                    store.import(src, &reference)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let recs: Vec<ImageRecord> = results.into_iter().map(|r| r.unwrap()).collect();
    assert!(recs.windows(2).all(|w| w[0].layers == w[1].layers));
    assert_eq!(env.count("layers"), 1);
    assert_eq!(env.count("tmp"), 0);
    let index = env.index();
    assert_eq!(
        index.keys().cloned().collect::<Vec<_>>(),
        [
            "same:latest",
            "t0:latest",
            "t1:latest",
            "t2:latest",
            "t3:latest"
        ]
    );
    let list = env.store.list().unwrap();
    assert_eq!(list.len(), 6);
    assert_eq!(
        list.iter().filter(|r| r.name.is_none()).count(),
        1,
        "one 'same' is dangling"
    );
    // Every layer of every image is usable.
    for r in &list {
        let root = env.store.rootfs_layers(r).unwrap();
        let mut f = File::open(root[0].join("etc/passwd")).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert!(s.starts_with("root:x:0:0"));
    }
}
