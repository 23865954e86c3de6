//! A docker-registry (Debian's distribution) inside a `Ctr` fixture's network namespace,
//! where codex-ctr runs, so the engine reaches it on 127.0.0.1; with the fixture's
//! busybox pushed into it by skopeo. Stopped by its process group when dropped.

use std::process::{Child, Stdio};
use std::time::Duration;

use crate::ctr::Ctr;
use crate::{have_tool, kill_group, own_group, run_command, skip, wait_child, wait_until};

pub struct NsRegistry {
    child: Child,
    pub port: u16,
}

/// What the registry asks of its clients.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// Basic auth against this htpasswd file (bcrypt: `htpasswd -Bbn`).
    pub htpasswd: Option<std::path::PathBuf>,
    /// HTTPS with this certificate and key (PEM).
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Listen on every address of the namespace, not only 127.0.0.1 (for a registry
    /// the engine must treat as off the loopback).
    pub all_addresses: bool,
}

impl NsRegistry {
    /// The registry on `port` in `c`'s namespace, or `None` after a visible skip when
    /// docker-registry or skopeo is missing.
    pub fn start(c: &Ctr, port: u16) -> Option<NsRegistry> {
        Self::start_with(c, port, &RegistryConfig::default())
    }

    /// [`NsRegistry::start`] with basic auth and/or TLS.
    pub fn start_with(c: &Ctr, port: u16, rc: &RegistryConfig) -> Option<NsRegistry> {
        for (t, pkg) in [("docker-registry", "docker-registry"), ("skopeo", "skopeo")] {
            if !have_tool(t) {
                skip(&format!(
                    "{t} is not installed (apt-get install -y {pkg}; make deps)"
                ));
                return None;
            }
        }
        let dir = c
            .root
            .parent()
            .expect("the root has a parent")
            .to_path_buf();
        let config = dir.join(format!("registry-{port}.yml"));
        let tls = rc
            .tls
            .as_ref()
            .map(|(cert, key)| {
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    cert.display(),
                    key.display()
                )
            })
            .unwrap_or_default();
        let auth = rc
            .htpasswd
            .as_ref()
            .map(|p| {
                format!(
                    "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                    p.display()
                )
            })
            .unwrap_or_default();
        let host = if rc.all_addresses {
            "0.0.0.0"
        } else {
            "127.0.0.1"
        };
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}:{port}\n{tls}{auth}",
                dir.join(format!("registry-data-{port}")).display()
            ),
        )
        .expect("write the registry's config");
        let mut cmd = c
            .netns()
            .cmd(&["docker-registry", "serve", &config.to_string_lossy()]);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        own_group(&mut cmd);
        let reg = NsRegistry {
            child: cmd.spawn().expect("start docker-registry"),
            port,
        };
        let up = wait_until(Duration::from_secs(20), || {
            let probe = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
            run_command(&mut c.netns().cmd(&["bash", "-c", &probe])).ok()
        });
        assert!(up, "docker-registry did not listen on {port}");
        Some(reg)
    }

    /// Pushes the fixture's busybox (saved by codex-ctr as a docker archive) as
    /// `127.0.0.1:PORT/{name}`; returns that reference.
    pub fn push_busybox(&self, c: &Ctr, name: &str) -> String {
        let tar = c.root.with_file_name(format!("push-{}.tar", self.port));
        c.run(&[
            "image",
            "save",
            "--format",
            "docker-archive",
            "-o",
            &tar.to_string_lossy(),
            "busybox",
        ])
        .assert_ok();
        let r = format!("127.0.0.1:{}/{name}", self.port);
        run_command(&mut c.netns().cmd(&[
            "skopeo",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("docker-archive:{}", tar.display()),
            &format!("docker://{r}"),
        ]))
        .assert_ok();
        r
    }
}

impl Drop for NsRegistry {
    fn drop(&mut self) {
        kill_group(&mut self.child);
        let _ = wait_child(&mut self.child, Duration::from_secs(10));
    }
}
