//! The fixtures of the root-run codex-net tests: a network namespace per test (the
//! "host"), removed on drop even when the test panics, and "containers" that are plain
//! `unshare --net sleep` processes.

#![allow(dead_code)]

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use codex_net::{Handle, Netns};

/// A network namespace bound on a file in a temp dir.
pub struct TestNs {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestNs {
    pub fn new() -> TestNs {
        let dir = tempfile::Builder::new()
            .prefix("codex-net-test-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("netns");
        File::create(&path).unwrap();
        let st = Command::new("unshare")
            .arg(format!("--net={}", path.display()))
            .arg("true")
            .status()
            .unwrap();
        assert!(st.success(), "unshare --net={}", path.display());
        let ns = TestNs { path, _dir: dir };
        // Never act on the machine's own namespace by mistake.
        assert_ne!(
            ns_id(&ns.path),
            ns_id(Path::new("/proc/self/ns/net")),
            "the test namespace must not be the host's"
        );
        ns
    }

    pub fn handle(&self) -> Handle {
        Handle::in_netns(Netns::Path(&self.path)).unwrap()
    }

    /// Runs `args` inside the namespace (nsenter keeps /sys and the cgroups as they are).
    pub fn sh(&self, script: &str) -> Output {
        run_in(&self.path, script)
    }

    /// `ip -o link` names in the namespace.
    pub fn link_names(&self) -> Vec<String> {
        let out = self.sh("ip -o link show");
        ok(&out)
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        if let Ok(c) = std::ffi::CString::new(self.path.to_string_lossy().into_owned()) {
            // SAFETY: umount2 on a NUL-terminated path we made.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// The nsfs inode behind a namespace file.
pub fn ns_id(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(p).unwrap().ino()
}

pub fn run_in(ns: &Path, script: &str) -> Output {
    Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["sh", "-c", script])
        .env("PATH", path_with_busybox())
        .output()
        .unwrap()
}

#[track_caller]
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}: {}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A "container": a sleeping process in a network namespace of its own, killed on drop.
pub struct Container {
    pub child: Child,
}

impl Container {
    pub fn new() -> Container {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "600"])
            .spawn()
            .unwrap();
        let c = Container { child };
        // unshare runs in our namespace until its unshare(2): wait for it to move, or
        // the veth's inner end would land in ours.
        let own = ns_id(Path::new("/proc/self/ns/net"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while fs::metadata(c.ns_path())
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .ok()
            == Some(own)
        {
            assert!(
                Instant::now() < deadline,
                "unshare never made its namespace"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        c
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn ns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
    }

    pub fn sh(&self, script: &str) -> Output {
        run_in(&self.ns_path(), script)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fixture's busybox (ping, nc) first on PATH, else Debian's busybox-static.
pub fn path_with_busybox() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/codex-net-tests/bin");
    let busybox = [
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../rootfs-fixtures/out/busybox/rootfs/bin/busybox"),
        PathBuf::from("/bin/busybox"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .expect("busybox: run `make fixtures` or install busybox-static");
    if !dir.join("nc").exists() {
        fs::create_dir_all(&dir).unwrap();
        for applet in ["nc", "ping"] {
            let _ = std::os::unix::fs::symlink(&busybox, dir.join(applet));
        }
    }
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
    )
}
