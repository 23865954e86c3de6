//! `codex-ctr push` to a real registry: Debian's docker-registry in the fixture's private
//! network namespace (tests/src/nsregistry.rs), codex-ctr run in that namespace too.
//! What was pushed is read back by skopeo (digests) and pulled by codex-ctr into a
//! second store (same image id); with basic auth (htpasswd) too.

use std::path::{Path, PathBuf};

use codex_tests::ctr::{ctr_binary, Ctr};
use codex_tests::nsregistry::{NsRegistry, RegistryConfig};
use codex_tests::*;

/// `codex-ctr args...` on `root`, inside `c`'s network namespace (where the registry is).
fn ns_ctr(c: &Ctr, root: &Path, args: &[&str], env: &[(&str, &Path)]) -> Out {
    let bin = ctr_binary();
    let mut cmd = c.netns().cmd(&[&bin.to_string_lossy()]);
    cmd.env("CODEX_CTR_ROOT", root).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut o = run_command(&mut cmd);
    o.cmdline = format!("codex-ctr {}", args.join(" "));
    o
}

/// `skopeo args...` in `c`'s namespace; its stdout.
fn skopeo(c: &Ctr, args: &[&str]) -> String {
    let mut argv = vec!["skopeo"];
    argv.extend_from_slice(args);
    let o = run_command(&mut c.netns().cmd(&argv));
    o.assert_ok();
    o.stdout
}

/// The sha256 of what `skopeo args...` prints, exactly as printed.
fn skopeo_sha(c: &Ctr, args: &str) -> String {
    let o = run_command(&mut c.netns().cmd(&[
        "bash",
        "-c",
        &format!("set -o pipefail; skopeo {args} | sha256sum"),
    ]));
    o.assert_ok();
    o.stdout.split(' ').next().unwrap_or_default().to_string()
}

fn work(c: &Ctr) -> PathBuf {
    let d = c.root.parent().expect("parent").join("work");
    std::fs::create_dir_all(&d).expect("mkdir work");
    d
}

fn image_id(c: &Ctr, root: &Path, r: &str) -> String {
    let o = ns_ctr(c, root, &["image", "inspect", r], &[]);
    o.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("inspect json");
    let id = v[0]["id"]
        .as_str()
        .or_else(|| v[0]["Id"].as_str())
        .unwrap_or_default()
        .trim_start_matches("sha256:")
        .to_string();
    assert_eq!(id.len(), 64, "{o:?}");
    id
}

/// A two-layer image: busybox plus a commit of a container's change.
fn two_layer_image(c: &Ctr, name: &str) {
    let ctr = format!("pushsrc-{}", std::process::id());
    c.run(&[
        "run",
        "--name",
        &ctr,
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo pushed-layer > /marker",
    ])
    .assert_ok();
    c.run(&["commit", &ctr, name]).assert_ok();
    c.run(&["rm", &ctr]).assert_ok();
}

#[test]
fn push_uploads_what_the_registry_lacks_and_reads_back_byte_for_byte() {
    let c = Ctr::new();
    let Some(reg) = NsRegistry::start(&c, 5000) else {
        return;
    };
    let r = format!("127.0.0.1:{}/pushed/bb:v1", reg.port);
    two_layer_image(&c, &r);
    let id = image_id(&c, &c.root, &r);
    // Control: the registry does not have it yet.
    let mut probe = c.netns().cmd(&[
        "skopeo",
        "inspect",
        "--tls-verify=false",
        &format!("docker://{r}"),
    ]);
    run_command(&mut probe).assert_fails();

    let o = ns_ctr(&c, &c.root, &["push", "--insecure", &r], &[]);
    o.assert_ok();
    assert_eq!(o.stdout.matches("Pushed sha256:").count(), 3, "{o:?}");
    let digest = o
        .stdout
        .lines()
        .last()
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_default()
        .to_string();
    assert!(digest.starts_with("sha256:"), "{o:?}");

    // skopeo reads back the manifest we sent (its sha256 is the digest we reported) and
    // the config (its sha256 is the image id).
    let raw = skopeo_sha(
        &c,
        &format!("inspect --tls-verify=false --raw docker://{r}"),
    );
    assert_eq!(format!("sha256:{raw}"), digest);
    let config = skopeo_sha(
        &c,
        &format!("inspect --tls-verify=false --config --raw docker://{r}"),
    );
    assert_eq!(config, id);
    let v: serde_json::Value = serde_json::from_str(&skopeo(
        &c,
        &["inspect", "--tls-verify=false", &format!("docker://{r}")],
    ))
    .expect("skopeo json");
    assert_eq!(v["Digest"], digest.as_str());
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(2));

    // A second push uploads nothing (every blob exists) and names the same digest.
    let o = ns_ctr(&c, &c.root, &["image", "push", "--insecure", &r], &[]);
    o.assert_ok();
    assert_eq!(o.stdout.matches("Exists sha256:").count(), 3, "{o:?}");
    assert!(!o.stdout.contains("Pushed sha256:"), "{o:?}");
    assert!(o.stdout.ends_with(&format!("{digest}\n")), "{o:?}");

    // codex-ctr pulls it into another store: the same image, and it runs.
    let other = work(&c).join("root2");
    let o = ns_ctr(&c, &other, &["pull", "-q", "--insecure", &r], &[]);
    o.assert_ok();
    assert_eq!(o.stdout.trim(), format!("sha256:{id}"));
    let o = ns_ctr(
        &c,
        &other,
        &["run", "--rm", "--network", "none", &r, "cat", "/marker"],
        &[],
    );
    o.assert_ok();
    assert_eq!(o.stdout, "pushed-layer\n");

    // On a terminal (script(1) gives the pull a pty) the progress is drawn as bars, one
    // per blob named by its short digest; not JSON lines.
    if have_tool("script") {
        let third = work(&c).join("root3");
        let line = format!(
            "CODEX_CTR_ROOT={} {} pull --insecure {r}",
            third.display(),
            ctr_binary().display()
        );
        let o = run_command(&mut c.netns().cmd(&["script", "-qec", &line, "/dev/null"]));
        o.assert_ok();
        assert!(o.stdout.contains("Download complete"), "{}", o.stdout);
        assert!(
            o.stdout.contains(&id[..12]),
            "the config's bar: {}",
            o.stdout
        );
        assert!(!o.stdout.contains("{\"id\""), "{}", o.stdout);
    } else {
        skip("script is not installed (apt-get install -y bsdutils)");
    }

    // Push under another name (SOURCE DESTINATION), by id.
    let r2 = format!("127.0.0.1:{}/copy/bb:x", reg.port);
    let o = ns_ctr(
        &c,
        &c.root,
        &["push", "--insecure", "-q", &id[..12], &r2],
        &[],
    );
    o.assert_ok();
    assert_eq!(o.stdout.trim(), digest, "same manifest, same digest");
    // An id alone names nowhere to push to; an unknown image is not found.
    ns_ctr(&c, &c.root, &["push", "--insecure", &id[..12]], &[]).assert_refused_naming("reference");
    ns_ctr(
        &c,
        &c.root,
        &[
            "push",
            "--insecure",
            &format!("127.0.0.1:{}/no/such:1", reg.port),
        ],
        &[],
    )
    .assert_refused()
    .assert_stderr_mentions("no/such");
}

#[test]
fn push_with_basic_auth_needs_the_right_credentials() {
    let c = Ctr::new();
    let w = work(&c);
    let pw = w.join("htpasswd");
    let o = host_sh(&format!("htpasswd -Bbn carol t0ps3cret > {}", pw.display()));
    if !o.ok() {
        skip("htpasswd failed (apt-get install -y apache2-utils; make deps)");
        return;
    }
    let rc = RegistryConfig {
        htpasswd: Some(pw),
        ..Default::default()
    };
    let Some(reg) = NsRegistry::start_with(&c, 5001, &rc) else {
        return;
    };
    let r = format!("127.0.0.1:{}/priv/bb:v1", reg.port);
    c.run(&["image", "tag", "busybox", &r]).assert_ok();
    let id = image_id(&c, &c.root, &r);
    let dc = w.join("docker-config");
    let env = [("DOCKER_CONFIG", dc.as_path())];
    ns_ctr(&c, &c.root, &["push", "--insecure", &r], &env)
        .assert_refused_naming("registry")
        .assert_stderr_mentions("login");
    ns_ctr(
        &c,
        &c.root,
        &["push", "--insecure", "--creds", "carol:wrong", &r],
        &env,
    )
    .assert_refused()
    .assert_stderr_mentions("401");
    let o = ns_ctr(
        &c,
        &c.root,
        &["push", "--insecure", "-q", "--creds", "carol:t0ps3cret", &r],
        &env,
    );
    o.assert_ok();
    let digest = o.stdout.trim().to_string();
    let v: serde_json::Value = serde_json::from_str(&skopeo(
        &c,
        &[
            "inspect",
            "--tls-verify=false",
            "--creds",
            "carol:t0ps3cret",
            &format!("docker://{r}"),
        ],
    ))
    .expect("skopeo json");
    assert_eq!(v["Digest"], digest.as_str());
    // The same with the credentials `login` stored (Docker's config.json).
    let o = host_sh(&format!(
        "echo t0ps3cret | DOCKER_CONFIG={} {} login -u carol --password-stdin 127.0.0.1:{}",
        dc.display(),
        ctr_binary().display(),
        reg.port
    ));
    o.assert_ok();
    let r2 = format!("127.0.0.1:{}/priv/again:v2", reg.port);
    let o = ns_ctr(&c, &c.root, &["push", "--insecure", "-q", &id, &r2], &env);
    o.assert_ok();
    assert_eq!(o.stdout.trim(), digest);
}

/// The stand-in bearer-token registry (tests/tests/ctr_images/token_registry.py) in
/// `c`'s namespace; stopped with its process group.
struct TokenRegistry {
    child: std::process::Child,
    port: u16,
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        kill_group(&mut self.child);
        let _ = wait_child(&mut self.child, std::time::Duration::from_secs(10));
    }
}

#[test]
fn push_answers_bearer_challenges_asking_again_for_the_push_scope() {
    if !have_tool("python3") {
        skip("python3 is not installed (apt-get install -y python3; make deps)");
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    // An empty layout for it to serve and to receive pushes into.
    let layout = w.join("tok-layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).expect("mkdir");
    std::fs::write(
        layout.join("index.json"),
        br#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .expect("index");
    let port_file = w.join("tok-port");
    let script = workspace_dir().join("tests/tests/ctr_images/token_registry.py");
    let mut cmd = c.netns().cmd(&[
        "python3",
        &script.to_string_lossy(),
        &layout.to_string_lossy(),
        &port_file.to_string_lossy(),
        "dave",
        "b3arer",
    ]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    own_group(&mut cmd);
    let child = cmd.spawn().expect("start the token registry");
    let up = wait_until(std::time::Duration::from_secs(20), || port_file.exists());
    let port: u16 = std::fs::read_to_string(&port_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let reg = TokenRegistry { child, port };
    assert!(up && reg.port > 0, "the token registry did not start");
    let r = format!("127.0.0.1:{}/tok/bb:v1", reg.port);
    c.run(&["image", "tag", "busybox", &r]).assert_ok();
    let id = image_id(&c, &c.root, &r);
    let dc = w.join("docker-config");
    let env = [("DOCKER_CONFIG", dc.as_path())];
    // Without credentials and with wrong ones the token service refuses.
    ns_ctr(&c, &c.root, &["push", "--insecure", &r], &env)
        .assert_refused_naming("registry")
        .assert_stderr_mentions("token service answered HTTP 401");
    ns_ctr(
        &c,
        &c.root,
        &["push", "--insecure", "--creds", "dave:nope", &r],
        &env,
    )
    .assert_refused()
    .assert_stderr_mentions("token service answered HTTP 401");
    // With them: a pull token for the HEADs, then (on the upload's 401 asking for
    // pull,push) a push token; every blob is checked by the server.
    let o = ns_ctr(
        &c,
        &c.root,
        &["push", "--insecure", "--creds", "dave:b3arer", &r],
        &env,
    );
    o.assert_ok();
    assert_eq!(o.stdout.matches("Pushed sha256:").count(), 2, "{o:?}");
    // Pulled back (with a pull token) into another store: the same image.
    let other = w.join("tok-root");
    let o = ns_ctr(
        &c,
        &other,
        &["pull", "-q", "--insecure", "--creds", "dave:b3arer", &r],
        &env,
    );
    o.assert_ok();
    assert_eq!(o.stdout.trim(), format!("sha256:{id}"));
}
