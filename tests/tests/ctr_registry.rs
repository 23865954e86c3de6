//! `codex-ctr pull` from a real registry: Debian's `docker-registry` (distribution 2.8)
//! started by the test on 127.0.0.1 (a free port, storage in the test's temp dir), the
//! image pushed into it with skopeo; anonymous, with basic auth (htpasswd), and a
//! multi-platform index.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use codex_tests::ctr::Ctr;
use codex_tests::*;

fn tools() -> bool {
    for (t, pkg) in [
        ("docker-registry", "docker-registry"),
        ("skopeo", "skopeo"),
        ("umoci", "umoci"),
        ("htpasswd", "apache2-utils"),
        ("python3", "python3"),
    ] {
        if !have_tool(t) {
            skip(&format!(
                "{t} is not installed (apt-get install -y {pkg}; make deps)"
            ));
            return false;
        }
    }
    true
}

/// A registry process, stopped (its process group killed) when dropped.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    fn start(dir: &Path, htpasswd: Option<&Path>) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let auth = htpasswd
            .map(|p| {
                format!(
                    "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                    p.display()
                )
            })
            .unwrap_or_default();
        let config = dir.join(format!("registry-{port}.yml"));
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
                dir.join(format!("data-{port}")).display()
            ),
        )
        .expect("write registry config");
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        own_group(&mut cmd);
        let child = cmd.spawn().expect("start docker-registry");
        let r = Registry { child, port };
        let up = wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "docker-registry did not listen on {port}");
        r
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        kill_group(&mut self.child);
        let _ = wait_child(&mut self.child, Duration::from_secs(10));
    }
}

fn work(c: &Ctr) -> PathBuf {
    let d = c.root.parent().expect("parent").join("work");
    std::fs::create_dir_all(&d).expect("mkdir work");
    d
}

fn sh(script: &str) {
    let o = host_sh(&format!("set -e\n{script}"));
    assert!(o.ok(), "{script}\n{}\n{}", o.stdout, o.stderr);
}

/// A one-layer busybox OCI layout `DIR/oci:bb` (umoci), with an env to tell it by.
fn busybox_layout(dir: &Path) -> PathBuf {
    sh(&format!(
        "cd {d}
umoci init --layout oci
umoci new --image oci:bb
umoci unpack --image oci:bb b >/dev/null
cp -a {rootfs}/. b/rootfs/
umoci repack --image oci:bb b
umoci config --image oci:bb --config.env FROM=registry",
        d = dir.display(),
        rootfs = fixture_dir().join("rootfs").display()
    ));
    dir.join("oci")
}

fn pulled_id(o: &Out) -> String {
    o.assert_ok();
    let id = o.stdout.trim().trim_start_matches("sha256:").to_string();
    assert_eq!(id.len(), 64, "{o:?}");
    id
}

#[test]
fn pull_anonymously_runs_the_image_and_shares_its_layers() {
    if !tools() {
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    let oci = busybox_layout(&w);
    let reg = Registry::start(&w, None);
    let r = format!("{}/busybox:test", reg.host());
    sh(&format!(
        "skopeo copy -q --dest-tls-verify=false oci:{}:bb docker://{r}",
        oci.display()
    ));
    // Without --insecure: refused by name (plain HTTP only).
    c.run(&["pull", &r])
        .assert_refused_naming("registry")
        .assert_stderr_mentions("--insecure");
    let id = pulled_id(&c.run(&["pull", "-q", "--insecure", &r]));
    let local = pulled_id(&c.run(&["image", "load", "-q", "-i", &oci.to_string_lossy()]));
    assert_eq!(id, local, "the registry's image is the layout's");
    let o = c.run(&["run", "--rm", &r, "sh", "-c", "echo $FROM"]);
    o.assert_ok();
    assert_eq!(o.stdout, "registry\n");
    // A second pull brings nothing new and leaves no work dir.
    let layers = std::fs::read_dir(c.root.join("images/layers"))
        .expect("layers")
        .count();
    assert_eq!(
        pulled_id(&c.run(&["image", "pull", "-q", "--insecure", &r])),
        id
    );
    assert_eq!(
        std::fs::read_dir(c.root.join("images/layers"))
            .expect("layers")
            .count(),
        layers
    );
    assert_eq!(
        std::fs::read_dir(c.root.join("images/tmp"))
            .expect("tmp")
            .count(),
        0
    );
    // By host name: looked up through the host's getent (the release binary is static
    // and runs no NSS of its own). `localhost` may list ::1 first, where nothing listens.
    let by_name = format!("localhost:{}/busybox:test", reg.port);
    assert_eq!(
        pulled_id(&c.run(&["image", "pull", "-q", "--insecure", &by_name])),
        id
    );
    c.run(&[
        "pull",
        "--insecure",
        "no-such-registry.invalid/busybox:test",
    ])
    .assert_refused_naming("registry")
    .assert_stderr_mentions("no-such-registry.invalid");
    // A tag the registry does not have.
    c.run(&[
        "pull",
        "--insecure",
        &format!("{}/busybox:nope", reg.host()),
    ])
    .assert_refused_naming("registry")
    .assert_stderr_mentions("404");
}

#[test]
fn pull_with_basic_auth_needs_the_right_credentials() {
    if !tools() {
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    let oci = busybox_layout(&w);
    let pw = w.join("htpasswd");
    sh(&format!("htpasswd -Bbn alice s3cret > {}", pw.display()));
    let reg = Registry::start(&w, Some(&pw));
    let r = format!("{}/private/bb:v1", reg.host());
    sh(&format!(
        "skopeo copy -q --dest-tls-verify=false --dest-creds alice:s3cret oci:{}:bb docker://{r}",
        oci.display()
    ));
    let dc = w.join("docker-config");
    let pull = |extra: &[&str]| {
        let mut args = vec!["pull", "-q", "--insecure"];
        args.extend_from_slice(extra);
        args.push(&r);
        let mut cmd = c.cmd(&args);
        cmd.env("DOCKER_CONFIG", &dc);
        run_command(&mut cmd)
    };
    pull(&[])
        .assert_refused_naming("registry")
        .assert_stderr_mentions("login");
    pull(&["--creds", "alice:wrong"])
        .assert_refused()
        .assert_stderr_mentions("401");
    pulled_id(&pull(&["--creds", "alice:s3cret"]));
    // login stores Docker's format, 0600, and a later pull uses it.
    // (the harness gives commands no stdin: the shell redirects it)
    let o = host_sh(&format!(
        "DOCKER_CONFIG={} {} --root {} login -u alice --password-stdin {} < {}",
        dc.display(),
        codex_tests::ctr::ctr_binary().display(),
        c.root.display(),
        reg.host(),
        write_pw(&w).display()
    ));
    o.assert_ok();
    let cfg = dc.join("config.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&cfg).expect("config").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg).expect("read")).expect("json");
    assert_eq!(
        v["auths"][reg.host()]["auth"],
        "YWxpY2U6czNjcmV0",
        "base64 of alice:s3cret"
    );
    c.run(&["image", "rm", &r]).assert_ok();
    pulled_id(&pull(&[]));
}

fn write_pw(dir: &Path) -> PathBuf {
    let p = dir.join("pw");
    std::fs::write(&p, b"s3cret\n").expect("write pw");
    p
}

#[test]
fn pull_of_a_multi_platform_index_picks_the_platform() {
    if !tools() {
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    let oci = busybox_layout(&w);
    let amd = pulled_id(&c.run(&["image", "load", "-q", "-i", &oci.to_string_lossy()]));
    sh(&format!(
        "python3 {} multiarch {}",
        workspace_dir()
            .join("tests/tests/ctr_images/oci.py")
            .display(),
        oci.display()
    ));
    let reg = Registry::start(&w, None);
    let r = format!("{}/multi:x", reg.host());
    sh(&format!(
        "skopeo copy -q --all --dest-tls-verify=false oci:{}:bb docker://{r}",
        oci.display()
    ));
    let c2 = Ctr::new();
    assert_eq!(pulled_id(&c2.run(&["pull", "-q", "--insecure", &r])), amd);
    let arm = pulled_id(&c2.run(&["pull", "-q", "--insecure", "--platform", "linux/arm64", &r]));
    assert_ne!(arm, amd);
    c2.run(&["pull", "--insecure", "--platform", "linux/s390x", &r])
        .assert_refused_naming("platform");
}

/// A download of at least `min` bytes in the store's `partial/` (where pulls write).
fn blob_in_flight(root: &Path, min: u64) -> bool {
    std::fs::read_dir(root.join("images/partial"))
        .map(|d| {
            d.flatten()
                .any(|b| b.metadata().is_ok_and(|m| m.len() >= min))
        })
        .unwrap_or(false)
}

#[test]
fn a_pull_killed_mid_way_leaves_no_half_layer_and_the_next_pull_completes() {
    if !tools() {
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    let oci = busybox_layout(&w);
    // A big incompressible layer, so there is time to kill the pull mid-way.
    sh(&format!(
        "cd {d}
rm -rf b; umoci unpack --image oci:bb b >/dev/null
head -c $((48 << 20)) /dev/urandom > b/rootfs/big
sha256sum b/rootfs/big | cut -d' ' -f1 > big.sha
umoci repack --image oci:bb b",
        d = w.display()
    ));
    let want = std::fs::read_to_string(w.join("big.sha"))
        .expect("sha")
        .trim()
        .to_string();
    let reg = Registry::start(&w, None);
    let r = format!("{}/big:x", reg.host());
    sh(&format!(
        "skopeo copy -q --dest-tls-verify=false oci:{}:bb docker://{r}",
        oci.display()
    ));
    let layers_before: Vec<_> = std::fs::read_dir(c.root.join("images/layers"))
        .expect("layers")
        .flatten()
        .map(|e| e.file_name())
        .collect();

    let mut cmd = c.cmd(&["pull", "-q", "--insecure", &r]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    own_group(&mut cmd);
    let mut child = cmd.spawn().expect("start the pull");
    let caught = wait_until(Duration::from_secs(60), || blob_in_flight(&c.root, 1 << 20));
    kill_group(&mut child);
    let status = child.wait().expect("reap the pull");
    assert!(
        caught,
        "never saw the big blob arrive in the pull's work dir"
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "the pull was killed mid-way, not finished: {status:?}"
    );
    // Nothing of it is in the store: no image, no new layer (whole or half).
    c.run(&["image", "inspect", &r]).assert_refused();
    let layers_after: Vec<_> = std::fs::read_dir(c.root.join("images/layers"))
        .expect("layers")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(layers_after, layers_before, "a killed pull left a layer");

    // The next pull completes, the big file is whole, the dead pull's work dir is gone.
    pulled_id(&c.run(&["pull", "-q", "--insecure", &r]));
    let o = c.run(&["run", "--rm", &r, "sha256sum", "/big"]);
    o.assert_ok();
    assert!(o.stdout.starts_with(&want), "{o:?} vs {want}");
    assert_eq!(
        std::fs::read_dir(c.root.join("images/tmp"))
            .expect("tmp")
            .count(),
        0
    );
}

/// A stand-in registry demanding bearer tokens (tests/tests/ctr_images/token_registry.py).
struct TokenRegistry {
    child: Child,
    port: u16,
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

#[test]
fn pull_answers_a_bearer_challenge_with_a_token_from_the_realm() {
    if !tools() {
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    let oci = busybox_layout(&w);
    let local = pulled_id(&c.run(&["image", "load", "-q", "-i", &oci.to_string_lossy()]));
    let port_file = w.join("token-port");
    let mut cmd = Command::new("python3");
    cmd.arg(workspace_dir().join("tests/tests/ctr_images/token_registry.py"))
        .arg(&oci)
        .arg(&port_file)
        .args(["bob", "pa55"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    own_group(&mut cmd);
    let child = cmd.spawn().expect("start the token registry");
    let up = wait_until(Duration::from_secs(20), || port_file.exists());
    let port: u16 = std::fs::read_to_string(&port_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let reg = TokenRegistry { child, port };
    assert!(up && reg.port > 0, "the token registry did not start");
    let r = format!("127.0.0.1:{}/tok/bb:bb", reg.port);
    let c2 = Ctr::new();
    // Without credentials the token service refuses; with wrong ones too.
    let o = c2.run(&["pull", "--insecure", &r]);
    o.assert_refused_naming("registry")
        .assert_stderr_mentions("token service answered HTTP 401");
    c2.run(&["pull", "--insecure", "--creds", "bob:nope", &r])
        .assert_refused()
        .assert_stderr_mentions("token service answered HTTP 401");
    let id = pulled_id(&c2.run(&["pull", "-q", "--insecure", "--creds", "bob:pa55", &r]));
    assert_eq!(id, local);
}
