//! A layer shared by two loads or two pulls running at once is unpacked once, and a blob
//! shared by two pulls is fetched once, and both succeed. What happened is read from
//! each process's `CODEX_TRACE=1` lines on stderr: `image: unpacked layer sha256:H` for
//! every layer a process unpacked, `image: waited for layer ...` when another load held
//! its unpack lock, `pull: GET blob sha256:H ...` for every blob request sent to the
//! registry, `pull: waited for blob ...` when another pull held its download. An attempt
//! where neither process waited proves nothing about concurrency, so each test tries up
//! to three times (fresh stores) until the two overlapped, and fails if they never did.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use codex_tests::ctr::{ctr_binary, Ctr};
use codex_tests::nsregistry::NsRegistry;
use codex_tests::*;

const ATTEMPTS: usize = 3;

fn sh(script: &str) {
    let o = host_sh(&format!("set -e\n{script}"));
    assert!(o.ok(), "{}\n{}\n{}", script, o.stdout, o.stderr);
}

/// How many times each `prefix HEX` trace line appears in `outs`' stderr, by hex.
fn count(outs: &[&Out], prefix: &str) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for o in outs {
        for line in o.stderr.lines() {
            if let Some(rest) = line.split_once(prefix).map(|(_, r)| r) {
                let hex = rest.split_whitespace().next().unwrap_or_default();
                *n.entry(hex.to_string()).or_insert(0) += 1;
            }
        }
    }
    n
}

/// Runs `a` and `b` at once (two threads, each its own process).
fn both(a: std::process::Command, b: std::process::Command) -> (Out, Out) {
    let (mut a, mut b) = (a, b);
    std::thread::scope(|s| {
        let ta = s.spawn(move || run_command(&mut a));
        let tb = s.spawn(move || run_command(&mut b));
        (ta.join().expect("a"), tb.join().expect("b"))
    })
}

/// Two docker archives `DIR/a.tar` (`one:a`) and `DIR/b.tar` (`two:b`): two images (their
/// configs differ) with the same single layer, the busybox rootfs plus `/big`, 64 MiB of
/// random bytes (so unpacking it takes a while and the two loads overlap).
fn two_archives(dir: &Path) {
    let rootfs = fixture_dir().join("rootfs");
    sh(&format!(
        "cd {d}
umoci init --layout oci
umoci new --image oci:a
umoci unpack --image oci:a b >/dev/null
cp -a {rootfs}/. b/rootfs/
head -c 64M /dev/urandom > b/rootfs/big
umoci repack --image oci:a b
rm -rf b
umoci config --image oci:a --config.env B=2 --tag b
skopeo copy -q oci:oci:a docker-archive:a.tar:one:a
skopeo copy -q oci:oci:b docker-archive:b.tar:two:b",
        d = dir.display(),
        rootfs = rootfs.display()
    ));
}

fn load_cmd(root: &Path, tar: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(ctr_binary());
    cmd.env("CODEX_CTR_ROOT", root)
        .env("CODEX_TRACE", "1")
        .args(["image", "load", "-q", "-i"])
        .arg(tar);
    cmd
}

#[test]
fn two_loads_sharing_a_layer_at_once_unpack_it_once() {
    for t in ["umoci", "skopeo"] {
        if !have_tool(t) {
            skip(&format!(
                "{t} is not installed (apt-get install -y {t}; make deps)"
            ));
            return;
        }
    }
    let c = Ctr::new();
    let dir = c.root.parent().expect("parent").join("work");
    std::fs::create_dir_all(&dir).expect("mkdir work");
    two_archives(&dir);
    let mut overlapped = false;
    for attempt in 0..ATTEMPTS {
        let root: PathBuf = c.root.with_file_name(format!("store-{attempt}"));
        let (a, b) = both(
            load_cmd(&root, &dir.join("a.tar")),
            load_cmd(&root, &dir.join("b.tar")),
        );
        a.assert_ok();
        b.assert_ok();
        assert_ne!(a.stdout, b.stdout, "two images");
        let unpacked = count(&[&a, &b], "image: unpacked layer sha256:");
        assert_eq!(unpacked.len(), 1, "one layer: {a:?} {b:?}");
        assert!(
            unpacked.values().all(|n| *n == 1),
            "attempt {attempt}: the layer was unpacked more than once: {unpacked:?}\n{a:?}\n{b:?}"
        );
        assert_eq!(
            std::fs::read_dir(root.join("images/layers"))
                .expect("layers")
                .count(),
            1
        );
        let waited = count(&[&a, &b], "image: waited for layer sha256:");
        if waited.is_empty() {
            continue;
        }
        // The one that waited reused what the other unpacked.
        let reused = count(&[&a, &b], "image: reused layer sha256:");
        assert_eq!(reused, waited, "{a:?}\n{b:?}");
        eprintln!("attempt {attempt}: the loads overlapped, one waited: {waited:?}");
        // The unpack lock file stays until `image prune` (nobody holds it now).
        let locks = |root: &Path| {
            std::fs::read_dir(root.join("images/unpacking"))
                .map(|d| d.count())
                .unwrap_or(0)
        };
        assert_eq!(locks(&root), 1, "the layer's lock file");
        let mut prune = std::process::Command::new(ctr_binary());
        prune.env("CODEX_CTR_ROOT", &root).args(["image", "prune"]);
        run_command(&mut prune).assert_ok();
        assert_eq!(locks(&root), 0, "pruned");
        overlapped = true;
        for r in ["one:a", "two:b"] {
            let mut cmd = c.netns().cmd(&[&ctr_binary().to_string_lossy()]);
            cmd.env("CODEX_CTR_ROOT", &root).args([
                "run",
                "--rm",
                "--network",
                "none",
                r,
                "sh",
                "-c",
                "wc -c < /big",
            ]);
            let o = run_command(&mut cmd);
            assert_eq!(o.stdout.trim(), (64 << 20).to_string(), "{r}: {o:?}");
        }
        break;
    }
    assert!(
        overlapped,
        "in {ATTEMPTS} attempts the two loads never overlapped (neither waited for the other)"
    );
}

/// Pushes an image with a 64 MiB random file at /big; returns its reference.
fn big_image(c: &Ctr, reg: &NsRegistry) -> String {
    let name = format!("oncesrc-{}", std::process::id());
    c.run(&[
        "run",
        "--name",
        &name,
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "head -c $((64 << 20)) /dev/urandom > /big",
    ])
    .assert_ok();
    let r = format!("127.0.0.1:{}/once/img:v1", reg.port);
    c.run(&["commit", &name, &r]).assert_ok();
    c.run(&["rm", &name]).assert_ok();
    let mut push = c.netns().cmd(&[&ctr_binary().to_string_lossy()]);
    push.env("CODEX_CTR_ROOT", &c.root)
        .args(["push", "-q", "--insecure", &r]);
    run_command(&mut push).assert_ok();
    r
}

fn pull_cmd(c: &Ctr, root: &Path, r: &str) -> std::process::Command {
    let mut cmd = c.netns().cmd(&[&ctr_binary().to_string_lossy()]);
    cmd.env("CODEX_CTR_ROOT", root)
        .env("CODEX_TRACE", "1")
        .args(["pull", "-q", "--insecure", r]);
    cmd
}

#[test]
fn two_pulls_sharing_a_layer_at_once_fetch_and_unpack_it_once() {
    let c = Ctr::new();
    let Some(reg) = NsRegistry::start(&c, 5000) else {
        return;
    };
    let r = big_image(&c, &reg);
    let mut overlapped = false;
    for attempt in 0..ATTEMPTS {
        let root = c.root.with_file_name(format!("pulls-{attempt}"));
        let (a, b) = both(pull_cmd(&c, &root, &r), pull_cmd(&c, &root, &r));
        a.assert_ok();
        b.assert_ok();
        assert_eq!(a.stdout, b.stdout, "the same image");
        let unpacked = count(&[&a, &b], "image: unpacked layer sha256:");
        assert_eq!(
            unpacked.len(),
            2,
            "busybox's layer and the big one: {a:?} {b:?}"
        );
        assert!(
            unpacked.values().all(|n| *n == 1),
            "attempt {attempt}: a layer was unpacked more than once: {unpacked:?}"
        );
        // A blob waited for was fetched once, by the pull that held it; the other
        // reused that download.
        let waited = count(&[&a, &b], "pull: waited for blob sha256:");
        let gets = count(&[&a, &b], "pull: GET blob sha256:");
        let reused = count(&[&a, &b], "pull: reused blob sha256:");
        // Only an attempt where they met on the 64 MiB layer counts.
        let met_on_big = waited.keys().any(|h| {
            std::fs::metadata(root.join("images/blobs/sha256").join(h))
                .map(|m| m.len() > 32 << 20)
                .unwrap_or(false)
        });
        if !met_on_big {
            continue;
        }
        for h in waited.keys() {
            assert_eq!(
                gets.get(h),
                Some(&1),
                "attempt {attempt}: blob {h} waited for, fetched more than once: {gets:?}\n{a:?}\n{b:?}"
            );
            assert_eq!(reused.get(h), Some(&1), "{h}: {a:?}\n{b:?}");
        }
        assert!(
            std::fs::read_dir(root.join("images/partial"))
                .map(|d| d.count())
                .unwrap_or(0)
                == 0,
            "no partial file left"
        );
        eprintln!("attempt {attempt}: the pulls overlapped, waited for {waited:?}");
        overlapped = true;
        break;
    }
    assert!(
        overlapped,
        "in {ATTEMPTS} attempts the two pulls never overlapped on the big layer"
    );
}
