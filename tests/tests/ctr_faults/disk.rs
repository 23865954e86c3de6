//! The engine root on a small loop-mounted ext4 that fills up during `create`, `start`,
//! log writing and `image import`.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use codex_tests::ctr::Ctr;
use codex_tests::*;
use serde_json::Value;

use crate::{assert_ps_truthful, assert_records_whole, other_tar, run_within, tar};

const LIMIT: Duration = Duration::from_secs(30);

/// An ext4 image in a temp dir, loop-mounted; unmounted and its loop device detached on
/// drop, even when the test failed.
struct LoopFs {
    dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl LoopFs {
    fn mount_at(mnt: &Path, mib: u64) -> LoopFs {
        let dir = tempfile::Builder::new()
            .prefix("codex-faults-disk-")
            .tempdir()
            .unwrap();
        let fs = LoopFs {
            mnt: mnt.to_path_buf(),
            dir,
        };
        let img = fs.image();
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(mib << 20))
            .unwrap();
        // -m 0: root may use every block, so "full" means full for the engine too.
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&img)
            .status()
            .unwrap();
        assert!(mkfs.success(), "mkfs.ext4 failed");
        std::fs::create_dir_all(mnt).unwrap();
        let mount = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(mnt)
            .status()
            .unwrap();
        assert!(mount.success(), "mount -o loop failed");
        fs
    }

    fn image(&self) -> PathBuf {
        self.dir.path().join("fs.img")
    }

    fn filler(&self) -> PathBuf {
        self.mnt.join(".filler")
    }

    fn available(&self) -> u64 {
        let path = std::ffi::CString::new(self.mnt.to_string_lossy().as_bytes()).unwrap();
        // SAFETY: zeroed statvfs is a valid out-parameter.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a NUL-terminated path and a valid out-pointer.
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
        assert_eq!(rc, 0, "statvfs {}", self.mnt.display());
        st.f_bavail * st.f_frsize
    }

    /// Takes all the free space but about `leave` bytes (to a block).
    fn fill(&self, leave: u64) {
        self.free();
        let f = std::fs::File::create(self.filler()).unwrap();
        let (mut offset, mut step) = (0u64, 1u64 << 20);
        // In steps that shrink near the end: ext4 needs blocks for the file's extents too.
        while self.available() > leave && step >= 4096 {
            let len = step.min(self.available() - leave).max(4096);
            // SAFETY: fallocate on an fd we own, with integer arguments.
            let rc = unsafe {
                libc::fallocate(f.as_raw_fd(), 0, offset as libc::off_t, len as libc::off_t)
            };
            if rc == 0 {
                offset += len;
            } else {
                step /= 2;
            }
        }
        f.sync_all().unwrap();
    }

    fn free(&self) {
        let _ = std::fs::remove_file(self.filler());
    }

    /// The positive control: a 64 KiB write on the filesystem really fails.
    #[track_caller]
    fn assert_full(&self) {
        use std::io::Write;
        let probe = self.mnt.join(".probe");
        let r = std::fs::File::create(&probe)
            .and_then(|mut f| f.write_all(&[0u8; 64 << 10]).and_then(|_| f.sync_all()));
        let _ = std::fs::remove_file(&probe);
        let e = r.expect_err("the filesystem is not full: a 64 KiB write succeeded");
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        self.free();
        // Usually already gone: the Ctr fixture unmounts everything under its root.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mnt)
            .stderr(std::process::Stdio::null())
            .status();
        let out = Command::new("losetup").arg("-j").arg(self.image()).output();
        let text = out.map(|o| o.stdout).unwrap_or_default();
        for line in String::from_utf8_lossy(&text).lines() {
            if let Some((dev, _)) = line.split_once(':') {
                let _ = Command::new("losetup").args(["-d", dev]).status();
            }
        }
    }
}

/// A `Ctr` whose root is a small filesystem of its own, with busybox imported there.
/// Fields drop in order: the containers go before the filesystem.
struct OnLoop {
    c: Ctr,
    fs: LoopFs,
}

impl OnLoop {
    fn new(mib: u64) -> OnLoop {
        let c = Ctr::new();
        let fs = LoopFs::mount_at(&c.root, mib);
        let t = OnLoop { c, fs };
        t.c.run(&["image", "import", &tar(), "busybox"]).assert_ok();
        t
    }
}

/// A failure for want of space says so, and names the file it could not write.
#[track_caller]
fn assert_clear_enospc(c: &Ctr, o: &Out) {
    assert!(!o.ok());
    assert!(o.stderr.contains("No space left on device"), "{o:?}");
    let root = c.root.to_string_lossy().into_owned();
    assert!(o.stderr.contains(&root), "the error names no file: {o:?}");
}

#[test]
fn full_disk_during_create_and_start_fails_clearly_and_leaves_records_whole() {
    let t = OnLoop::new(24);
    let c = &t.c;
    let mut outcomes = Vec::new();
    for (i, leave) in [0u64, 4 << 10, 16 << 10, 64 << 10, 256 << 10]
        .into_iter()
        .enumerate()
    {
        let (s, n) = (format!("s{i}"), format!("c{i}"));
        c.run(&["create", "--name", &s, "busybox", "sleep", "1000"])
            .assert_ok();
        t.fs.fill(leave);
        if leave == 0 {
            t.fs.assert_full();
        }
        let start = run_within(c, &["start", &s], LIMIT);
        let create = run_within(c, &["create", "--name", &n, "busybox", "true"], LIMIT);
        outcomes.push((leave, start.ok(), create.ok()));
        for o in [&start, &create].into_iter().filter(|o| !o.ok()) {
            assert_clear_enospc(c, o);
        }
        assert_records_whole(&c.root);
        assert_ps_truthful(c);
        // Space returns: whatever did not start now starts.
        t.fs.free();
        for r in assert_ps_truthful(c) {
            let id = r["id"].as_str().unwrap();
            if r["status"] != "running" && r["name"] != n {
                run_within(c, &["start", id], LIMIT).assert_ok();
            }
        }
        assert_eq!(c.inspect(&s)["status"], "running");
        run_within(c, &["rm", "-f", &s], LIMIT).assert_ok();
        run_within(c, &["rm", "-f", &n], LIMIT);
    }
    eprintln!("(bytes left, start ok, create ok): {outcomes:?}");
    // The full disk really got in the way at least once.
    assert!(outcomes.iter().any(|(_, s, c)| !s || !c), "{outcomes:?}");
    run_within(
        c,
        &["run", "-d", "--name", "after", "busybox", "sleep", "100"],
        LIMIT,
    )
    .assert_ok();
    run_within(c, &["rm", "-f", "after"], LIMIT).assert_ok();
    assert_eq!(assert_ps_truthful(c), Vec::<Value>::new());
    assert_eq!(c.containers(), 0);
    assert_records_whole(&c.root);
}

#[test]
fn full_disk_during_exec_volume_create_and_rm_fails_clearly_and_the_next_command_finishes() {
    let t = OnLoop::new(24);
    let c = &t.c;
    let mut outcomes = Vec::new();
    for (i, leave) in [0u64, 16 << 10].into_iter().enumerate() {
        let (r, x, v) = (format!("r{i}"), format!("x{i}"), format!("v{i}"));
        let run = ["run", "-d", "--name", &r, "busybox", "sleep", "1000"];
        run_within(c, &run, LIMIT).assert_ok();
        run_within(c, &["create", "--name", &x, "busybox", "true"], LIMIT).assert_ok();
        t.fs.fill(leave);
        if leave == 0 {
            t.fs.assert_full();
        }
        let exec = run_within(c, &["exec", &r, "echo", "hi"], LIMIT);
        let vol = run_within(c, &["volume", "create", &v], LIMIT);
        let rm = run_within(c, &["rm", "-f", &x], LIMIT);
        let stop = run_within(c, &["stop", "--time", "1", &r], LIMIT);
        let all = [&exec, &vol, &rm, &stop];
        outcomes.push((leave, all.map(|o| o.ok())));
        for o in all.into_iter().filter(|o| !o.ok()) {
            assert_clear_enospc(c, o);
        }
        assert_records_whole(&c.root);
        assert_ps_truthful(c);
        // Space returns: each of them works now, and finishes what failed.
        t.fs.free();
        run_within(c, &["volume", "create", &v], LIMIT).assert_ok();
        if !rm.ok() {
            run_within(c, &["rm", "-f", &x], LIMIT).assert_ok();
        }
        assert!(!c.run(&["inspect", &x]).ok(), "{x} survived rm -f");
        if c.inspect(&r)["status"] == "running" {
            let o = run_within(c, &["exec", &r, "echo", "hi"], LIMIT);
            assert_eq!(o.assert_ok().stdout, "hi\n");
        }
        run_within(c, &["rm", "-f", &r], LIMIT).assert_ok();
        run_within(c, &["volume", "rm", &v], LIMIT).assert_ok();
        assert_eq!(assert_ps_truthful(c), Vec::<Value>::new());
    }
    eprintln!("(bytes left, [exec, volume create, rm -f, stop] ok): {outcomes:?}");
    assert!(
        outcomes.iter().any(|(_, o)| o.contains(&false)),
        "{outcomes:?}"
    );
    assert_eq!(c.containers(), 0);
    let vols = std::fs::read_dir(c.root.join("volumes")).unwrap().count();
    assert_eq!(vols, 0, "volumes left");
    assert_records_whole(&c.root);
}

/// The container's log files: every line a whole JSON record.
fn assert_log_whole(c: &Ctr, id: &str) -> usize {
    let dir = c.root.join("containers").join(id);
    let mut lines = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.contains(".log") {
            continue;
        }
        for l in read_lossy(&e.path()).lines() {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|err| panic!("{name}: torn log record ({err}): {l:?}"));
            assert!(v["log"].is_string(), "{l}");
            lines += 1;
        }
    }
    lines
}

#[test]
fn full_disk_while_a_container_logs_loses_log_lines_but_nothing_else() {
    let t = OnLoop::new(24);
    let c = &t.c;
    t.fs.fill(2 << 20);
    // About 20 MB of output into 2 MB of free space.
    let script =
        "yes line-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx | head -n 400000; echo done";
    let run = [
        "run", "-d", "--name", "chatty", "busybox", "sh", "-c", script,
    ];
    run_within(c, &run, LIMIT).assert_ok();
    let id = c.inspect("chatty")["id"].as_str().unwrap().to_string();
    let w = run_within(c, &["wait", "chatty"], Duration::from_secs(60));
    t.fs.assert_full();
    // It ran to its end, supervised: the log lost lines, the container nothing.
    let v = c.inspect("chatty");
    assert_eq!(
        (w.stdout.trim(), &v["status"]),
        ("0", &"exited".into()),
        "{w:?} {v}"
    );
    assert_eq!(v["exit_code"], 0, "{v}");
    assert_records_whole(&c.root);
    assert_ps_truthful(c);
    let logged = assert_log_whole(c, &id);
    let logs = run_within(c, &["logs", "chatty"], LIMIT);
    logs.assert_ok();
    for l in logs.stdout.lines() {
        assert!(
            l.starts_with("line-x") && l.len() == 51 || l == "done",
            "{l:?}"
        );
    }
    eprintln!("{logged} lines logged of 400001");
    assert!(logged < 400001, "the disk was not full while it logged");
    // Space returns: the same container runs again and logs, a new one too.
    t.fs.free();
    run_within(c, &["rm", "-f", "chatty"], LIMIT).assert_ok();
    let echo = ["run", "-d", "--name", "after", "busybox", "echo", "back"];
    run_within(c, &echo, LIMIT).assert_ok();
    run_within(c, &["wait", "after"], LIMIT).assert_ok();
    let logs = run_within(c, &["logs", "after"], LIMIT);
    assert_eq!(logs.stdout, "back\n", "{logs:?}");
    run_within(c, &["rm", "-f", "after"], LIMIT).assert_ok();
    assert_records_whole(&c.root);
}

/// Every layer in the store is whole (a layer.json that parses and a rootfs), no work
/// dir of a failed import is left, and `image ls` names exactly `want`.
#[track_caller]
fn assert_store_whole(c: &Ctr, want: &[&str]) {
    let images = c.root.join("images");
    for e in std::fs::read_dir(images.join("layers")).unwrap().flatten() {
        let rec = std::fs::read(e.path().join("layer.json")).unwrap_or_default();
        let parsed = serde_json::from_slice::<Value>(&rec);
        assert!(parsed.is_ok(), "partial layer {}", e.path().display());
        assert!(e.path().join("rootfs").is_dir(), "{}", e.path().display());
    }
    let tmp: Vec<_> = std::fs::read_dir(images.join("tmp"))
        .unwrap()
        .flatten()
        .collect();
    assert!(tmp.is_empty(), "work dirs left: {tmp:?}");
    let ls = run_within(c, &["image", "ls", "--format", "json"], LIMIT);
    ls.assert_ok();
    let mut names: Vec<String> = ls
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}:{}",
                i["name"].as_str().unwrap_or("<none>"),
                i["tag"].as_str().unwrap_or("<none>")
            )
        })
        .collect();
    names.sort();
    assert_eq!(names, want, "{}", ls.stdout);
}

#[test]
fn full_disk_during_image_import_fails_clearly_and_leaves_no_partial_layer() {
    let t = OnLoop::new(24);
    let c = &t.c;
    let scratch = tempfile::tempdir().unwrap();
    let other = other_tar(scratch.path());
    let mut outcomes = Vec::new();
    for (i, leave) in [0u64, 64 << 10, 1 << 20, 3 << 20].into_iter().enumerate() {
        let name = format!("other:v{i}");
        t.fs.fill(leave);
        if leave == 0 {
            t.fs.assert_full();
        }
        let o = run_within(c, &["image", "import", &other, &name], LIMIT);
        outcomes.push((leave, o.ok()));
        assert_records_whole(&c.root);
        if o.ok() {
            assert_store_whole(c, &["busybox:latest", &name]);
            run_within(c, &["image", "rm", &name], LIMIT).assert_ok();
        } else {
            assert_clear_enospc(c, &o);
            assert_store_whole(c, &["busybox:latest"]);
        }
        t.fs.free();
        run_within(c, &["image", "import", &other, &name], LIMIT).assert_ok();
        assert_store_whole(c, &["busybox:latest", &name]);
        let run = ["run", "--rm", &name, "cat", "/etc/passwd"];
        run_within(c, &run, LIMIT).assert_ok();
        run_within(c, &["image", "rm", &name], LIMIT).assert_ok();
    }
    eprintln!("(bytes left, import ok): {outcomes:?}");
    assert!(
        outcomes.iter().filter(|(_, ok)| !ok).count() >= 3,
        "{outcomes:?}"
    );
}
