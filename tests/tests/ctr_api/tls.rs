//! `serve --tcp`: the API over TCP with mutual TLS, driven by the docker CLI with
//! `DOCKER_TLS_VERIFY`; a client whose certificate another CA signed gets nothing.

use std::path::Path;
use std::time::Duration;

use codex_tests::ctr::Ctr;
use codex_tests::*;

use super::harness::*;

/// A CA, a server certificate for 127.0.0.1, a client certificate it signed (in
/// `dir/good`, the docker CLI's file names) and one a stranger CA signed (`dir/rogue`).
fn certificates(dir: &Path) {
    let script = r#"set -e
cd "$1"
mkdir -p good rogue
printf '[server]\nsubjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n[client]\nextendedKeyUsage = clientAuth\n' > ext.cnf
q() { "$@" >/dev/null 2>&1; }
q openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -days 2 -subj /CN=codex-test-ca
q openssl req -newkey rsa:2048 -nodes -keyout server-key.pem -out server.csr -subj /CN=127.0.0.1
q openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out server.pem -days 2 -extfile ext.cnf -extensions server
q openssl req -newkey rsa:2048 -nodes -keyout good/key.pem -out client.csr -subj /CN=client
q openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out good/cert.pem -days 2 -extfile ext.cnf -extensions client
cp ca.pem good/ca.pem
q openssl req -x509 -newkey rsa:2048 -nodes -keyout rogue-ca-key.pem -out rogue-ca.pem -days 2 -subj /CN=stranger
q openssl req -newkey rsa:2048 -nodes -keyout rogue/key.pem -out rogue.csr -subj /CN=client
q openssl x509 -req -in rogue.csr -CA rogue-ca.pem -CAkey rogue-ca-key.pem -CAcreateserial -out rogue/cert.pem -days 2 -extfile ext.cnf -extensions client
cp ca.pem rogue/ca.pem
"#;
    let o = run_command(
        std::process::Command::new("bash")
            .args(["-c", script, "certs"])
            .arg(dir),
    );
    o.assert_ok();
}

#[test]
fn tcp_serves_only_clients_with_a_certificate_the_ca_signed() {
    if !clients(false) {
        return;
    }
    if !have_tool("openssl") {
        skip("serve --tcp: openssl is not installed (apt-get install -y openssl)");
        return;
    }
    let c = Ctr::new();
    let dir = c.root.parent().unwrap().join("tls");
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    let port = 7000 + (std::process::id() % 1000) as u16;
    let addr = format!("127.0.0.1:{port}");
    let p = |n: &str| dir.join(n).to_string_lossy().to_string();
    let _s = Server::start(
        &c,
        &[
            "--tcp",
            &addr,
            "--tls-cert",
            &p("server.pem"),
            "--tls-key",
            &p("server-key.pem"),
            "--tls-ca",
            &p("ca.pem"),
        ],
    );
    // The docker CLI in the server's network namespace, as a remote client would be.
    let docker = |certs: &str, args: &[&str]| {
        let host = format!("DOCKER_HOST=tcp://{addr}");
        let path = format!("DOCKER_CERT_PATH={}", dir.join(certs).display());
        let config = format!("DOCKER_CONFIG={}", dir.join("cfg").display());
        let mut full = vec![
            "env",
            &host,
            "DOCKER_TLS_VERIFY=1",
            &path,
            &config,
            "docker",
        ];
        full.extend_from_slice(args);
        let mut cmd = c.netns().cmd(&full);
        run_timeout(&mut cmd, Duration::from_secs(60))
    };
    let up = wait_until(Duration::from_secs(20), || {
        docker("good", &["version", "--format", "{{.Server.APIVersion}}"]).ok()
    });
    assert!(up, "the TLS listener never answered");
    let o = docker(
        "good",
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "echo",
            "over-tls",
        ],
    );
    o.assert_ok();
    assert_eq!(o.stdout.trim(), "over-tls");
    // A stranger's certificate: refused in the handshake, nothing run.
    let o = docker(
        "rogue",
        &["run", "--rm", "--network", "none", "busybox", "true"],
    );
    assert!(!o.ok(), "a client the CA never signed was served: {o:?}");
    assert_eq!(
        c.run(&["ps", "-aq"]).stdout.trim(),
        "",
        "nothing ran for it"
    );
    // The server refuses to start without the CA (TCP is mutual TLS only).
    let o = c.run(&[
        "serve",
        "--socket",
        &p("other.sock"),
        "--tcp",
        "127.0.0.1:1",
        "--tls-cert",
        &p("server.pem"),
        "--tls-key",
        &p("server-key.pem"),
    ]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(o.stderr.contains("tls-ca"), "{o:?}");
}
