//! Pull and push over HTTPS: Debian's docker-registry in the fixture's private network
//! namespace, serving a certificate from a CA the test makes with openssl. The CA is
//! trusted through the per-registry certs dir (Docker's `certs.d/HOST:PORT/ca.crt`
//! layout, here `$CODEX_REGISTRY_CERTS_DIR` or `--cert-dir`); without it the pull fails
//! naming the certificate; `--insecure` skips the check.

use std::path::{Path, PathBuf};

use codex_tests::ctr::{ctr_binary, Ctr};
use codex_tests::nsregistry::{NsRegistry, RegistryConfig};
use codex_tests::*;

fn ns_ctr(c: &Ctr, root: &Path, args: &[&str], certs: &Path) -> Out {
    let bin = ctr_binary();
    let mut cmd = c.netns().cmd(&[&bin.to_string_lossy()]);
    cmd.env("CODEX_CTR_ROOT", root)
        .env("CODEX_REGISTRY_CERTS_DIR", certs)
        .args(args);
    let mut o = run_command(&mut cmd);
    o.cmdline = format!("codex-ctr {}", args.join(" "));
    o
}

/// An address (TEST-NET-1) the tests give the namespace's `lo`, so a registry is reached
/// off the loopback range.
const FAR_ADDR: &str = "192.0.2.10";

/// A CA and a server certificate for 127.0.0.1 and [`FAR_ADDR`] signed by it:
/// (ca.crt, srv.crt, srv.key).
fn make_certs(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    if !have_tool("openssl") {
        skip("openssl is not installed (apt-get install -y openssl; make deps)");
        return None;
    }
    let o = host_sh(&format!(
        "set -e; cd {d}
ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'
openssl req -x509 $ec -keyout ca.key -out ca.crt -days 2 -subj /CN=codex-test-ca \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req $ec -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,IP:{far}\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext
openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt -days 2 -extfile ext 2>/dev/null",
        d = dir.display(),
        far = FAR_ADDR
    ));
    o.assert_ok();
    Some((dir.join("ca.crt"), dir.join("srv.crt"), dir.join("srv.key")))
}

fn pulled(o: &Out) -> String {
    o.assert_ok();
    let id = o.stdout.trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{o:?}");
    id
}

#[test]
fn pull_over_https_trusts_the_registry_ca_dir_and_refuses_an_unknown_ca() {
    let c = Ctr::new();
    let w = c.root.parent().expect("parent").join("tls");
    std::fs::create_dir_all(&w).expect("mkdir");
    let Some((ca, cert, key)) = make_certs(&w) else {
        return;
    };
    let rc = RegistryConfig {
        tls: Some((cert, key)),
        ..Default::default()
    };
    let Some(reg) = NsRegistry::start_with(&c, 5443, &rc) else {
        return;
    };
    let r = reg.push_busybox(&c, "tls/bb:v1");
    let empty = w.join("no-certs");
    let certs = w.join("certs");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let host_dir = certs.join(format!("127.0.0.1:{}", reg.port));
    std::fs::create_dir_all(&host_dir).expect("mkdir");
    std::fs::copy(&ca, host_dir.join("ca.crt")).expect("copy ca");

    // No CA for it: refused, naming the certificate and where a CA would go; nothing
    // pulled.
    let fresh = |n: &str| w.join(format!("root-{n}"));
    let o = ns_ctr(&c, &fresh("a"), &["pull", "-q", &r], &empty);
    o.assert_refused_naming("registry")
        .assert_stderr_mentions("certificate")
        .assert_stderr_mentions(&format!(
            "{}/127.0.0.1:{}/ca.crt",
            empty.display(),
            reg.port
        ));
    ns_ctr(&c, &fresh("a"), &["image", "inspect", &r], &empty).assert_refused();
    // Control for the refusal: --insecure (no verification) pulls it.
    let insecure = pulled(&ns_ctr(
        &c,
        &fresh("a"),
        &["pull", "-q", "--insecure", &r],
        &empty,
    ));
    // With the CA in the registry's dir: verified, the same image.
    let id = pulled(&ns_ctr(&c, &fresh("b"), &["pull", "-q", &r], &certs));
    assert_eq!(id, insecure);
    // --cert-dir names the dir on the command line (the env var points elsewhere).
    let certs_s = certs.to_string_lossy();
    let id2 = pulled(&ns_ctr(
        &c,
        &fresh("c"),
        &["pull", "-q", "--cert-dir", &certs_s, &r],
        &empty,
    ));
    assert_eq!(id2, id);
    // Another CA's certificate in the dir does not make it trusted.
    let other = w.join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    let Some((other_ca, _, _)) = make_certs(&other) else {
        return;
    };
    let wrong = w.join("wrong-certs");
    let wrong_host = wrong.join(format!("127.0.0.1:{}", reg.port));
    std::fs::create_dir_all(&wrong_host).expect("mkdir");
    std::fs::copy(&other_ca, wrong_host.join("ca.crt")).expect("copy");
    ns_ctr(&c, &fresh("d"), &["pull", "-q", &r], &wrong)
        .assert_refused()
        .assert_stderr_mentions("certificate");

    // Push over verified HTTPS, read back by a verified pull into another store.
    let r2 = format!("127.0.0.1:{}/tls/pushed:v2", reg.port);
    ns_ctr(&c, &c.root, &["image", "tag", "busybox", &r2], &certs).assert_ok();
    ns_ctr(&c, &c.root, &["push", "-q", &r2], &empty)
        .assert_refused()
        .assert_stderr_mentions("certificate");
    ns_ctr(&c, &c.root, &["push", "-q", &r2], &certs).assert_ok();
    let local = ns_ctr(
        &c,
        &c.root,
        &["image", "ls", "-q", "--filter", &format!("reference={r2}")],
        &certs,
    );
    local.assert_ok();
    let id3 = pulled(&ns_ctr(&c, &fresh("e"), &["pull", "-q", &r2], &certs));
    assert!(
        id3.trim_start_matches("sha256:")
            .starts_with(local.stdout.trim()),
        "{id3} vs {local:?}"
    );
}

/// `run` of an image the store lacks, named by a registry off the loopback: pulled over
/// verified HTTPS (the CA from the certs dir) and run; without the CA refused naming the
/// certificate, and nothing pulled.
#[test]
fn run_pulls_a_missing_image_from_an_https_registry_off_the_loopback() {
    let c = Ctr::new();
    let w = c.root.parent().expect("parent").join("tls-far");
    std::fs::create_dir_all(&w).expect("mkdir");
    let Some((ca, cert, key)) = make_certs(&w) else {
        return;
    };
    let rc = RegistryConfig {
        tls: Some((cert, key)),
        all_addresses: true,
        ..Default::default()
    };
    run_command(
        &mut c
            .netns()
            .cmd(&["ip", "addr", "add", &format!("{FAR_ADDR}/32"), "dev", "lo"]),
    )
    .assert_ok();
    let Some(reg) = NsRegistry::start_with(&c, 5444, &rc) else {
        return;
    };
    let near = reg.push_busybox(&c, "far/bb:v1");
    let far = near.replacen("127.0.0.1", FAR_ADDR, 1);
    let empty = w.join("no-certs");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let certs = w.join("certs");
    let host_dir = certs.join(format!("{FAR_ADDR}:{}", reg.port));
    std::fs::create_dir_all(&host_dir).expect("mkdir");
    std::fs::copy(&ca, host_dir.join("ca.crt")).expect("copy ca");
    let run = |certs: &Path| {
        ns_ctr(
            &c,
            &w.join("root"),
            &["run", "--rm", "--network", "none", &far, "echo", "far-ok"],
            certs,
        )
    };

    // No CA for it: verified, so refused naming the certificate; nothing stored.
    run(&empty)
        .assert_refused()
        .assert_stderr_mentions("certificate");
    ns_ctr(&c, &w.join("root"), &["image", "inspect", &far], &empty).assert_refused();
    // The CA in its certs dir: pulled and run.
    let o = run(&certs);
    o.assert_ok();
    assert_eq!(o.stdout.trim(), "far-ok", "{o:?}");
    ns_ctr(&c, &w.join("root"), &["image", "inspect", &far], &empty).assert_ok();
}
