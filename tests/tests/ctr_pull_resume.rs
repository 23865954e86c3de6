//! Resumable pulls: a `codex-ctr pull` killed with SIGKILL while a big layer arrives
//! leaves the bytes it had in `<store>/partial/<hex>` and nothing else; the next pull
//! asks for the rest (it reports `Resuming` from exactly the bytes on disk), checks the
//! whole file's digest, and the image runs with the big file intact. A partial file
//! with wrong bytes is caught by the digest check and thrown away. Progress is JSON
//! lines when stdout is not a terminal. docker-registry runs in the fixture's private
//! network namespace, as does codex-ctr.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use codex_tests::ctr::{ctr_binary, Ctr};
use codex_tests::nsregistry::NsRegistry;
use codex_tests::*;

fn ns_cmd(c: &Ctr, root: &Path, args: &[&str]) -> std::process::Command {
    let bin = ctr_binary();
    let mut cmd = c.netns().cmd(&[&bin.to_string_lossy()]);
    cmd.env("CODEX_CTR_ROOT", root).args(args);
    cmd
}

fn ns_ctr(c: &Ctr, root: &Path, args: &[&str]) -> Out {
    let mut o = run_command(&mut ns_cmd(c, root, args));
    o.cmdline = format!("codex-ctr {}", args.join(" "));
    o
}

/// The partial downloads of a store: (path, size).
fn partials(root: &Path) -> Vec<(PathBuf, u64)> {
    std::fs::read_dir(root.join("images/partial"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| Some((e.path(), e.metadata().ok()?.len())))
                .collect()
        })
        .unwrap_or_default()
}

fn layer_count(root: &Path) -> usize {
    std::fs::read_dir(root.join("images/layers"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Pushes an image with a `mib` MiB random file at /big; returns (reference, sha256 of
/// the file).
fn big_image(c: &Ctr, reg: &NsRegistry, mib: u32) -> (String, String) {
    let name = format!("bigsrc-{}", std::process::id());
    let o = c.run(&[
        "run",
        "--name",
        &name,
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        &format!("head -c $(({mib} << 20)) /dev/urandom > /big && sha256sum /big"),
    ]);
    o.assert_ok();
    let sum = o.stdout.split(' ').next().unwrap_or_default().to_string();
    assert_eq!(sum.len(), 64, "{o:?}");
    let r = format!("127.0.0.1:{}/big/img:v1", reg.port);
    c.run(&["commit", &name, &r]).assert_ok();
    c.run(&["rm", &name]).assert_ok();
    ns_ctr(c, &c.root, &["push", "-q", "--insecure", &r]).assert_ok();
    (r, sum)
}

#[test]
fn a_killed_pull_resumes_with_a_range_and_never_uses_half_a_layer() {
    let c = Ctr::new();
    let Some(reg) = NsRegistry::start(&c, 5000) else {
        return;
    };
    let (r, sum) = big_image(&c, &reg, 64);
    let root = c.root.parent().expect("parent").join("root2");

    // The first pull, killed once 4 MiB of the big layer are on disk (more than the
    // busybox layer has: a partial file that big is the big layer's).
    let mut cmd = ns_cmd(&c, &root, &["pull", "--insecure", &r]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    own_group(&mut cmd);
    let mut child = cmd.spawn().expect("start the pull");
    let caught = wait_until(Duration::from_secs(120), || {
        partials(&root).iter().any(|(_, n)| *n >= 4 << 20)
    });
    kill_group(&mut child);
    let status = child.wait().expect("reap the pull");
    assert!(caught, "never saw the big layer arrive in partial/");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "the pull was killed mid-way, not finished: {status:?}"
    );
    // What it left: part of one blob in partial/, no image, no layer.
    let left = partials(&root);
    let (big_path, had) = left
        .iter()
        .max_by_key(|(_, n)| *n)
        .cloned()
        .expect("a partial file");
    assert!((4 << 20..64 << 20).contains(&had), "{had}");
    let big_hex = big_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    assert_eq!(big_hex.len(), 64, "{big_path:?}");
    ns_ctr(&c, &root, &["image", "inspect", &r]).assert_refused();
    assert_eq!(layer_count(&root), 0, "a killed pull left a layer");
    assert!(!root.join("images/blobs/sha256").join(&big_hex).exists());

    // The next pull resumes from exactly what is on disk (JSON lines: stdout is a file).
    let o = ns_ctr(&c, &root, &["pull", "--insecure", &r]);
    o.assert_ok();
    let mut events = Vec::new();
    for line in o.stdout.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        for k in ["id", "status", "current", "total"] {
            assert!(!v[k].is_null(), "{k} missing: {line}");
        }
        events.push(v);
    }
    assert!(
        o.stdout
            .lines()
            .last()
            .unwrap_or_default()
            .starts_with("Pulled "),
        "{}",
        o.stdout
    );
    let big_id = &big_hex[..12];
    let resumed: Vec<_> = events
        .iter()
        .filter(|v| v["id"] == big_id && v["status"] == "Resuming")
        .collect();
    assert_eq!(resumed.len(), 1, "{}", o.stdout);
    assert_eq!(resumed[0]["current"], had, "resumed from the bytes on disk");
    // Appended, not fetched again from 0 (a registry ignoring the range would send the
    // whole blob, whose progress starts below what was on disk).
    let downloading: Vec<u64> = events
        .iter()
        .filter(|v| v["id"] == big_id && v["status"] == "Downloading")
        .filter_map(|v| v["current"].as_u64())
        .collect();
    assert!(!downloading.is_empty(), "{}", o.stdout);
    assert!(
        downloading.iter().all(|n| *n > had),
        "the big layer was fetched again from 0: {}",
        o.stdout
    );
    assert!(events
        .iter()
        .any(|v| v["id"] == big_id && v["status"] == "Download complete"));
    assert!(partials(&root).is_empty(), "{:?}", partials(&root));
    let o = ns_ctr(
        &c,
        &root,
        &["run", "--rm", "--network", "none", &r, "sha256sum", "/big"],
    );
    o.assert_ok();
    assert!(o.stdout.starts_with(&sum), "{o:?} vs {sum}");

    // A partial file with wrong bytes (same length as a real prefix): the digest check
    // over the whole file refuses it, it is thrown away, nothing is stored; then the
    // pull after that starts over and succeeds.
    let root3 = c.root.parent().expect("parent").join("root3");
    std::fs::create_dir_all(root3.join("images/partial")).expect("mkdir");
    std::fs::write(
        root3.join("images/partial").join(&big_hex),
        vec![0u8; 1 << 20],
    )
    .expect("write a bad partial");
    let o = ns_ctr(&c, &root3, &["pull", "-q", "--insecure", &r]);
    o.assert_refused_naming("digest")
        .assert_stderr_mentions(&format!("sha256:{big_hex}"));
    assert!(partials(&root3).is_empty(), "{:?}", partials(&root3));
    ns_ctr(&c, &root3, &["image", "inspect", &r]).assert_refused();
    assert_eq!(layer_count(&root3), 0);
    ns_ctr(&c, &root3, &["pull", "-q", "--insecure", &r]).assert_ok();
    let o = ns_ctr(
        &c,
        &root3,
        &["run", "--rm", "--network", "none", &r, "sha256sum", "/big"],
    );
    o.assert_ok();
    assert!(o.stdout.starts_with(&sum), "{o:?} vs {sum}");
}

/// Two pulls of one image into one store at once: they take turns on each blob's
/// partial file (flock), both succeed with the same image, and nothing is left over.
#[test]
fn two_pulls_of_one_image_at_once_both_succeed() {
    let c = Ctr::new();
    let Some(reg) = NsRegistry::start(&c, 5000) else {
        return;
    };
    let (r, sum) = big_image(&c, &reg, 24);
    let root = c.root.parent().expect("parent").join("root2");
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| ns_ctr(&c, &root, &["pull", "-q", "--insecure", &r]));
        let b = s.spawn(|| ns_ctr(&c, &root, &["pull", "-q", "--insecure", &r]));
        (a.join().expect("pull a"), b.join().expect("pull b"))
    });
    a.assert_ok();
    b.assert_ok();
    assert_eq!(a.stdout, b.stdout, "the same image");
    assert!(partials(&root).is_empty(), "{:?}", partials(&root));
    assert_eq!(
        layer_count(&root),
        2,
        "busybox's layer and the big one, once each"
    );
    let o = ns_ctr(
        &c,
        &root,
        &["run", "--rm", "--network", "none", &r, "sha256sum", "/big"],
    );
    o.assert_ok();
    assert!(o.stdout.starts_with(&sum), "{o:?} vs {sum}");
    // `image prune` removes an interrupted download no pull holds.
    let stale = root.join("images/partial").join("ab".repeat(32));
    std::fs::write(&stale, b"half").expect("write a stale partial");
    assert_eq!(partials(&root).len(), 1);
    ns_ctr(&c, &root, &["image", "prune"]).assert_ok();
    assert!(partials(&root).is_empty(), "{:?}", partials(&root));
}
