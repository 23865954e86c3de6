//! `codex-ctr commit`: a container's changes as a new image, run back; whiteouts and
//! opaque directories; the image outliving its container; hostile names and symlinks
//! recorded as data, never acted on on the host.

use std::os::unix::fs::PermissionsExt;

use codex_tests::ctr::Ctr;
use codex_tests::*;

fn out(c: &Ctr, args: &[&str]) -> String {
    let o = c.run(args);
    o.assert_ok();
    o.stdout
}

fn images(c: &Ctr) -> usize {
    out(c, &["image", "ls", "-q"]).lines().count()
}

/// Writes, deletes, replaces a directory and sets a setuid bit; the committed image shows
/// exactly that, with the --change config, also once the container is gone.
#[test]
fn commit_records_writes_deletions_and_replaced_dirs() {
    let c = Ctr::new();
    // Control: the base image has the file to delete and the directory's old content.
    let base = out(
        &c,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "ls /etc/group /usr; ls /var",
        ],
    );
    assert!(base.contains("/etc/group"), "{base}");
    c.run(&[
        "run",
        "--name",
        "w",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /usr/keep /var/old && echo o > /var/old/f && echo kept > /usr/keep/k",
    ])
    .assert_ok();
    let mid = out(&c, &["commit", "w", "mid:1"]);
    assert!(mid.trim().starts_with("sha256:"), "{mid}");
    c.run(&[
        "run",
        "--name",
        "x",
        "--network",
        "none",
        "mid:1",
        "sh",
        "-c",
        "echo hello > /new && chmod 4755 /new && rm /etc/group && rm -rf /var/old \
         && mkdir /var/old && echo fresh > /var/old/g",
    ])
    .assert_ok();
    let id = out(
        &c,
        &[
            "commit",
            "-c",
            "ENV GREETING=hi",
            "-c",
            "CMD [\"sh\", \"-c\", \"echo $GREETING\"]",
            "-m",
            "a message",
            "--author",
            "tester",
            "x",
            "done:1",
        ],
    );
    let id = id.trim().trim_start_matches("sha256:").to_string();
    assert_eq!(id.len(), 64, "{id}");
    c.run(&["rm", "x"]).assert_ok();
    c.run(&["rm", "w"]).assert_ok();

    // The image's CMD and ENV from --change.
    assert_eq!(
        out(&c, &["run", "--rm", "--network", "none", "done:1"]).trim(),
        "hi"
    );
    let seen = out(
        &c,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "done:1",
            "sh",
            "-c",
            "cat /new; stat -c %a /new; [ -e /etc/group ] || echo group-gone; ls /var/old; \
             cat /usr/keep/k; ls /etc/passwd",
        ],
    );
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        ["hello", "4755", "group-gone", "g", "kept", "/etc/passwd"],
        "{seen}"
    );
    let h = c.run(&["image", "history", "--format", "json", "done:1"]);
    h.assert_ok();
    let text = h.stdout.clone();
    assert!(
        text.contains("a message") && text.contains("rm /etc/group"),
        "{text}"
    );
    let inspect = c.run(&["image", "inspect", "done:1"]).json();
    let cfg = &inspect[0]["config"];
    let text = inspect.to_string();
    assert!(text.contains("\"author\":\"tester\""), "{text}");
    assert!(text.contains("GREETING=hi"), "{cfg}");
    // Three layers: busybox, mid, done.
    assert!(text.matches("sha256:").count() >= 3, "{text}");
}

/// A running container is committed (frozen while read by default) and keeps running.
#[test]
fn commit_of_a_running_container_leaves_it_running() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--name",
        "r",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo live > /state; touch /ready; sleep 600",
    ])
    .assert_ok();
    assert!(wait_until(std::time::Duration::from_secs(20), || {
        c.run(&["exec", "r", "test", "-e", "/ready"]).ok()
    }));
    out(&c, &["commit", "r", "live:1"]);
    let st = c.inspect("r");
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(
        out(
            &c,
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "live:1",
                "cat",
                "/state"
            ]
        )
        .trim(),
        "live"
    );
    c.run(&["rm", "-f", "r"]).assert_ok();
}

/// What the container wrote is data in the image, never acted on on the host: a
/// symlink out of the rootfs is recorded as a symlink (the host file it names is neither
/// read into the layer nor written), a name that would read as a whiteout is refused and
/// leaves no image, and the store stays root-only.
#[test]
fn hostile_names_and_symlinks_are_data_or_refused() {
    let c = Ctr::new();
    let host_secret = c.root.with_file_name("host-secret");
    std::fs::write(&host_secret, "SECRET").unwrap();
    let target = host_secret.to_string_lossy().to_string();
    c.run(&[
        "run",
        "--name",
        "s",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        &format!("ln -s {target} /escape && mkdir /d && ln -s {target} /d/link"),
    ])
    .assert_ok();
    out(&c, &["commit", "s", "sym:1"]);
    // Control: the symlink is in the image, as a symlink with the text it had.
    let seen = out(
        &c,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "sym:1",
            "sh",
            "-c",
            "readlink /escape; readlink /d/link",
        ],
    );
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        [target.as_str(), target.as_str()]
    );
    // The host file was not read into the store: no layer file holds its content.
    let hits = host_sh(&format!(
        "grep -rl SECRET {}/images/layers || true",
        c.root.display()
    ));
    assert!(
        hits.stdout.trim().is_empty(),
        "host file copied: {}",
        hits.stdout
    );
    assert_eq!(std::fs::read_to_string(&host_secret).unwrap(), "SECRET");
    let mode = std::fs::metadata(c.root.join("images"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the store is root-only: {mode:o}");

    // A file named like a whiteout would delete /etc/passwd from the image: refused.
    c.run(&[
        "run",
        "--name",
        "wh",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "touch /etc/.wh.passwd",
    ])
    .assert_ok();
    let before = images(&c);
    c.run(&["commit", "wh", "bad:1"])
        .assert_refused_naming(".wh.passwd");
    assert_eq!(images(&c), before, "no image from a refused commit");
    let tmp = c.root.join("images/tmp");
    let left = std::fs::read_dir(&tmp).unwrap().count();
    assert_eq!(left, 0, "work dirs left in {}", tmp.display());
}

/// `codex-ctr diff`: writes, deletions in a lower layer, a replaced (opaque) directory and
/// a symlink, over a two-layer image, exactly; a volume's writes are not the container's
/// files; a container without an image has nothing to list.
#[test]
fn diff_lists_additions_changes_and_deletions_over_every_layer() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "--name",
        "w",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /usr/keep /var/old && echo o > /var/old/f && echo kept > /usr/keep/k",
    ])
    .assert_ok();
    out(&c, &["commit", "w", "mid:1"]);
    // Positive control: a container that changed nothing lists nothing.
    c.run(&[
        "run",
        "--name",
        "idle",
        "--network",
        "none",
        "mid:1",
        "true",
    ])
    .assert_ok();
    assert_eq!(out(&c, &["diff", "idle"]), "");
    c.run(&[
        "run",
        "--name",
        "x",
        "--network",
        "none",
        "-v",
        "/data",
        "mid:1",
        "sh",
        "-c",
        "rm -rf /var/old && mkdir /var/old && echo n > /var/old/new && rm /usr/keep/k \
         && echo z > /usr/keep/z && ln -s /etc/shadow /lnk && echo v > /data/in-volume",
    ])
    .assert_ok();
    assert_eq!(
        out(&c, &["diff", "x"]),
        "A /lnk\nC /usr\nC /usr/keep\nD /usr/keep/k\nA /usr/keep/z\nC /var\nC /var/old\nD /var/old/f\nA /var/old/new\n"
    );
    let o = c.run(&["diff", "--format", "json", "x"]);
    o.assert_ok();
    assert_eq!(
        o.json()[3],
        serde_json::json!({"path": "/usr/keep/k", "kind": "deleted"})
    );
    let o = c.run(&["diff", "nosuch"]);
    o.assert_code(125).assert_stderr_mentions("nosuch");
    c.run(&[
        "create",
        "--name",
        "host",
        "--isolation",
        "minimal",
        "/bin/true",
    ])
    .assert_ok();
    let o = c.run(&["diff", "host"]);
    o.assert_code(125)
        .assert_stderr_mentions("host's filesystem");
}
