//! `cp` and `export --rootfs` of a running container whose processes fight back: a loop
//! inside the container swaps files and directories for symlinks to a host file while the
//! host copies (the CVE-2018-15664 class, Docker's `cp` race), swaps regular files for
//! FIFOs, and leaves setuid files and special files for the host to copy.
//!
//! The "host secret" is a fake: `<tmp>/fake-root/etc/shadow`, holding a marker unique to
//! the run. Nothing from outside the container (the marker) may appear in any copy.

use codex_tests::ctr::Ctr;
use codex_tests::*;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The swap loop must run at least this many times during a race.
const MIN_SWAPS: u64 = 2000;
/// How long the host keeps copying at most (the race ends earlier once both the swap
/// loop and the copies have done enough rounds).
const RACE_FOR: Duration = Duration::from_secs(120);

/// A running container with a swap loop, and the fake host secret it points at.
struct Race {
    c: Ctr,
    tmp: tempfile::TempDir,
    marker: String,
    /// `<tmp>/fake-root/etc`: the host directory the container's symlinks point to.
    host_etc: PathBuf,
    /// The container's merged root as the host sees it (for the positive controls).
    live: PathBuf,
}

impl Race {
    /// Starts container `race` running `swap` (a shell loop body; `$SHADOW` and `$ETC`
    /// are the host paths of the fake secret and its directory) after `setup`, counting
    /// its rounds in `/count`.
    fn start(setup: &str, swap: &str) -> Race {
        let c = Ctr::new();
        let tmp = tempfile::Builder::new()
            .prefix("codex-copy-race-")
            .tempdir()
            .unwrap();
        let host_etc = tmp.path().join("fake-root/etc");
        fs::create_dir_all(&host_etc).unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let marker = format!("HOST-ONLY-MARKER-{}-{nanos}", std::process::id());
        fs::write(host_etc.join("shadow"), format!("root:{marker}:0:0\n")).unwrap();
        let script = format!(
            "SHADOW={shadow}; ETC={etc}; {setup}; n=0; while :; do {swap}; n=$((n+1)); \
             if [ $((n % 50)) = 0 ]; then echo $n > /count.t; mv -f /count.t /count; fi; done",
            shadow = host_etc.join("shadow").display(),
            etc = host_etc.display(),
        );
        c.run(&[
            "run", "-d", "--name", "race", "busybox", "sh", "-c", &script,
        ])
        .assert_ok();
        let live = c.live_rootfs("race");
        Race {
            c,
            tmp,
            marker,
            host_etc,
            live,
        }
    }

    /// Rounds of the swap loop so far.
    fn swaps(&self) -> u64 {
        fs::read_to_string(self.live.join("count"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Positive control: following `rel` (inside the live root) by path from the host,
    /// as the old code did, reaches the marker within a few seconds. Proves the loop runs
    /// and that its symlinks lead to the host secret.
    fn assert_following_leaks(&self, rel: &str) {
        let p = self.live.join(rel);
        let leaked = wait_until(Duration::from_secs(20), || {
            fs::read_to_string(&p).is_ok_and(|s| s.contains(&self.marker))
        });
        assert!(
            leaked,
            "positive control: {} never showed the host marker",
            p.display()
        );
    }

    fn out(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Runs codex-ctr with a timeout: a copy that blocks (on a FIFO) fails the test.
    fn ctr(&self, args: &[&str]) -> Out {
        let log = self.out("cmd");
        try_run_to(
            &mut self.c.cmd(args),
            &log.with_extension("out"),
            &log.with_extension("err"),
            Duration::from_secs(30),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Fails if the host marker appears anywhere under `path` (a file or a tree, never
    /// following symlinks), then removes it.
    fn assert_clean(&self, path: &Path, what: &str) {
        let hits = files_containing(path, self.marker.as_bytes());
        assert!(
            hits.is_empty(),
            "{what}: host content leaked into the copy: {hits:?}"
        );
        let _ = fs::remove_dir_all(path);
        let _ = fs::remove_file(path);
    }
}

/// Regular files under `path` (itself included) whose bytes contain `needle`; symlinks
/// are not followed.
fn files_containing(path: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let Ok(md) = fs::symlink_metadata(path) else {
        return Vec::new();
    };
    if md.is_dir() {
        let mut hits = Vec::new();
        for e in fs::read_dir(path).unwrap() {
            hits.extend(files_containing(&e.unwrap().path(), needle));
        }
        return hits;
    }
    if md.is_file() {
        let bytes = fs::read(path).unwrap();
        if bytes.windows(needle.len()).any(|w| w == needle) {
            return vec![path.to_path_buf()];
        }
    }
    Vec::new()
}

#[test]
fn cp_out_and_export_racing_symlink_swaps_never_copy_host_files() {
    // `f` flips between a regular file and a symlink to the host secret; `d` between a
    // directory holding `shadow` and a symlink to the host directory holding the secret.
    let r = Race::start(
        "mkdir -p /race/d; echo inside > /race/d/shadow; echo inside > /race/f",
        "ln -s $SHADOW /race/l; mv -f /race/l /race/f; \
         echo inside > /race/t; mv -f /race/t /race/f; \
         mv /race/d /race/d.old; ln -s $ETC /race/d; rm /race/d; mv /race/d.old /race/d",
    );
    r.assert_following_leaks("race/f");
    r.assert_following_leaks("race/d/shadow");

    let start = Instant::now();
    let (mut rounds, mut cp_ok, mut export_ok) = (0u64, 0u64, 0u64);
    while start.elapsed() < RACE_FOR && (r.swaps() < MIN_SWAPS || rounds < 30) {
        let dir = r.out(&format!("dir{rounds}"));
        if r.ctr(&["cp", "race:/race", dir.to_str().unwrap()]).ok() {
            cp_ok += 1;
        }
        r.assert_clean(&dir, "cp race:/race");
        for src in ["race:/race/f", "race:/race/d", "race:/race/d/shadow"] {
            let one = r.out(&format!("one{rounds}"));
            let _ = r.ctr(&["cp", src, one.to_str().unwrap()]);
            r.assert_clean(&one, src);
        }
        let tar = r.out(&format!("rootfs{rounds}.tar"));
        if r.ctr(&["export", "--rootfs", "-o", tar.to_str().unwrap(), "race"])
            .ok()
        {
            export_ok += 1;
        }
        r.assert_clean(&tar, "export --rootfs");
        rounds += 1;
    }
    let swaps = r.swaps();
    eprintln!("{rounds} rounds, {cp_ok} cp and {export_ok} exports succeeded, {swaps} swaps");
    assert!(swaps >= MIN_SWAPS, "the swap loop ran only {swaps} times");
    // Copies that always failed would prove nothing.
    assert!(cp_ok * 2 >= rounds, "cp failed too often: {cp_ok}/{rounds}");
    assert!(
        export_ok * 2 >= rounds,
        "export failed too often: {export_ok}/{rounds}"
    );
    // The secret itself is untouched.
    let shadow = fs::read_to_string(r.host_etc.join("shadow")).unwrap();
    assert!(shadow.contains(&r.marker));
}

#[test]
fn cp_into_a_container_racing_symlink_swaps_never_writes_outside_it() {
    // `in` flips between a directory and a symlink to the host directory of the secret;
    // `f` between a regular file and a symlink to the secret itself.
    let r = Race::start(
        "mkdir -p /race/in; echo inside > /race/f",
        "mv /race/in /race/in.old; ln -s $ETC /race/in; rm /race/in; mv /race/in.old /race/in; \
         ln -s $SHADOW /race/l; mv -f /race/l /race/f; \
         echo inside > /race/t; mv -f /race/t /race/f",
    );
    r.assert_following_leaks("race/in/shadow");
    r.assert_following_leaks("race/f");
    let payload_dir = r.out("payload");
    fs::create_dir(&payload_dir).unwrap();
    fs::write(payload_dir.join("shadow"), "PAYLOAD\n").unwrap();
    let payload = payload_dir.join("shadow");
    let before: Vec<_> = fs::read_dir(&r.host_etc)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();

    let start = Instant::now();
    let (mut rounds, mut ok) = (0u64, 0u64);
    while start.elapsed() < RACE_FOR && (r.swaps() < MIN_SWAPS || rounds < 100) {
        let p = payload.to_str().unwrap();
        for dst in ["race:/race/in/shadow", "race:/race/in", "race:/race/f"] {
            if r.ctr(&["cp", p, dst]).ok() {
                ok += 1;
            }
        }
        if r.ctr(&["cp", payload_dir.to_str().unwrap(), "race:/race/in"])
            .ok()
        {
            ok += 1;
        }
        rounds += 1;
    }
    let swaps = r.swaps();
    eprintln!("{rounds} rounds, {ok} copies in succeeded, {swaps} swaps");
    assert!(swaps >= MIN_SWAPS, "the swap loop ran only {swaps} times");
    assert!(ok >= rounds, "cp in failed too often: {ok}/{}", rounds * 4);
    let shadow = fs::read_to_string(r.host_etc.join("shadow")).unwrap();
    assert_eq!(
        shadow,
        format!("root:{}:0:0\n", r.marker),
        "the host secret was overwritten"
    );
    let after: Vec<_> = fs::read_dir(&r.host_etc)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "cp created files in the host directory");
}

#[test]
fn cp_out_racing_fifo_swaps_never_blocks() {
    // A FIFO swapped in between the look and the open must not block the copy.
    let r = Race::start(
        "mkdir -p /race; echo inside > /race/f",
        "mkfifo /race/p; mv -f /race/p /race/f; echo inside > /race/t; mv -f /race/t /race/f",
    );
    wait_until(Duration::from_secs(20), || r.swaps() >= 50);
    let start = Instant::now();
    let (mut rounds, mut cp_ok) = (0u64, 0u64);
    while start.elapsed() < RACE_FOR && (r.swaps() < MIN_SWAPS || rounds < 100) {
        let dir = r.out(&format!("dir{rounds}"));
        // `ctr` fails the test when a copy hangs; a copy that finds the FIFO (as `f` or
        // under its temporary name `p`) says which.
        let o = r.ctr(&["cp", "race:/race", dir.to_str().unwrap()]);
        if o.ok() {
            cp_ok += 1;
        } else {
            o.assert_stderr_mentions("FIFO");
            assert!(
                o.stderr.contains("/race/f ") || o.stderr.contains("/race/p "),
                "{o:?}"
            );
        }
        let _ = fs::remove_dir_all(&dir);
        let tar = r.out("rootfs.tar");
        r.ctr(&["export", "--rootfs", "-o", tar.to_str().unwrap(), "race"])
            .assert_ok();
        rounds += 1;
    }
    let swaps = r.swaps();
    eprintln!("{rounds} rounds, {cp_ok} cp succeeded, {swaps} swaps");
    assert!(swaps >= MIN_SWAPS, "the swap loop ran only {swaps} times");
    // Both outcomes were met: copies that found a file and copies that found the FIFO.
    assert!(
        0 < cp_ok && cp_ok < rounds,
        "{cp_ok}/{rounds} copies succeeded"
    );
}

#[test]
fn cp_out_refuses_fifos_and_device_nodes_by_name() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--name",
        "special",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /sp/sub && mkfifo /sp/fifo && echo ok > /sp/sub/ok && sleep 300",
    ])
    .assert_ok();
    let live = c.live_rootfs("special");
    assert!(wait_until(Duration::from_secs(20), || live
        .join("sp/sub/ok")
        .exists()));
    // The default profile denies mknod in the container; an image can still carry device
    // nodes. Plant one as an image layer would: in the container's root, from the host.
    host_sh(&format!(
        "mkdir -p {d}/dev2 && mknod {d}/dev2/null c 1 3",
        d = live.display()
    ))
    .assert_ok();
    let tmp = tempfile::tempdir().unwrap();
    let dst = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();

    c.run(&["cp", "special:/sp/fifo", &dst("fifo")])
        .assert_fails()
        .assert_stderr_mentions("/sp/fifo");
    assert!(!tmp.path().join("fifo").exists());
    c.run(&["cp", "special:/dev2/null", &dst("null")])
        .assert_fails()
        .assert_stderr_mentions("/dev2/null");
    assert!(!tmp.path().join("null").exists());
    // Inside a directory tree as well, not silently skipped.
    c.run(&["cp", "special:/sp", &dst("sp")])
        .assert_fails()
        .assert_stderr_mentions("/sp/fifo");
    c.run(&["cp", "special:/dev2", &dst("dev2")])
        .assert_fails()
        .assert_stderr_mentions("/dev2/null");
    for e in walk(tmp.path()) {
        let ft = fs::symlink_metadata(&e).unwrap().file_type();
        assert!(
            !ft.is_fifo() && !ft.is_char_device() && !ft.is_block_device(),
            "{} was created on the host",
            e.display()
        );
    }
}

#[test]
fn cp_out_masks_setuid_setgid_and_sticky_bits() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "--name",
        "suid",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /s/dir && cp /bin/busybox /s/su && chmod 6755 /s/su && \
         echo x > /s/dir/g && chmod 2750 /s/dir/g && chmod 3777 /s/dir",
    ])
    .assert_ok();
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("su");
    c.run(&["cp", "suid:/s/su", one.to_str().unwrap()])
        .assert_ok();
    let tree = tmp.path().join("tree");
    c.run(&["cp", "suid:/s", tree.to_str().unwrap()])
        .assert_ok();
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&one), 0o755, "cp of one setuid file");
    assert_eq!(mode(&tree.join("su")), 0o755, "setuid file in a tree");
    assert_eq!(mode(&tree.join("dir/g")), 0o750, "setgid file in a tree");
    assert_eq!(mode(&tree.join("dir")), 0o777, "setgid+sticky directory");
    for e in walk(tmp.path()) {
        let m = fs::symlink_metadata(&e).unwrap().permissions().mode();
        assert_eq!(m & 0o7000, 0, "{} has mode {m:o}", e.display());
    }
}

#[test]
fn cp_into_a_fifo_or_device_in_the_container_replaces_it() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--name",
        "sink",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /in && mkfifo /in/fifo && sleep 300",
    ])
    .assert_ok();
    let live = c.live_rootfs("sink");
    assert!(wait_until(Duration::from_secs(20), || live
        .join("in/fifo")
        .exists()));
    host_sh(&format!("mknod {}/in/null c 1 3", live.display())).assert_ok();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("payload");
    fs::write(&src, "PAYLOAD\n").unwrap();
    for dst in ["sink:/in/fifo", "sink:/in/null"] {
        // Writing into the FIFO would block (nobody reads it); writing into a device
        // node would write to the host's device.
        let o = try_run_to(
            &mut c.cmd(&["cp", src.to_str().unwrap(), dst]),
            &tmp.path().join("o"),
            &tmp.path().join("e"),
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        o.assert_ok();
        let inside = live.join(dst.trim_start_matches("sink:/"));
        assert!(
            fs::symlink_metadata(&inside).unwrap().is_file(),
            "{dst} is not a regular file after the copy"
        );
        assert_eq!(fs::read_to_string(&inside).unwrap(), "PAYLOAD\n");
    }
}

/// Every path under `root` (not following symlinks), `root` excluded.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
