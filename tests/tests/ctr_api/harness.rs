//! The test server and the clients' helpers.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use codex_tests::ctr::Ctr;
use codex_tests::*;

/// The docker client and docker-py, or a visible skip.
pub fn clients(python: bool) -> bool {
    if !have_tool("docker") {
        skip("the docker CLI is not installed (make deps: Debian's docker.io, client only)");
        return false;
    }
    if python {
        let o = host_sh("python3 -c 'import docker'");
        if !o.ok() {
            skip("docker-py is not installed (make deps: apt-get install -y python3-docker)");
            return false;
        }
    }
    true
}

/// A `codex-ctr serve` on a socket in the fixture's temp dir, in its namespace.
pub struct Server {
    pub child: Child,
    pub sock: PathBuf,
    pub config: PathBuf,
}

impl Server {
    pub fn start(c: &Ctr, extra: &[&str]) -> Server {
        Server::start_with_env(c, extra, &[])
    }

    /// [`Server::start`] with `env` set for the server (and so for the supervisors it
    /// starts).
    pub fn start_with_env(c: &Ctr, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = c
            .root
            .parent()
            .expect("the root has a parent")
            .to_path_buf();
        let sock = dir.join("api.sock");
        let config = dir.join("docker-config");
        std::fs::create_dir_all(&config).expect("docker config dir");
        let s = sock.to_string_lossy().to_string();
        let mut args = vec!["serve", "--socket", &s];
        args.extend_from_slice(extra);
        let mut cmd = c.cmd(&args);
        cmd.envs(env.iter().copied());
        own_group(&mut cmd);
        let child = cmd.spawn().expect("spawn codex-ctr serve");
        let server = Server {
            child,
            sock,
            config,
        };
        assert!(
            wait_until(Duration::from_secs(10), || UnixStream::connect(
                &server.sock
            )
            .is_ok()),
            "the server never listened on {}",
            server.sock.display()
        );
        server
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// `docker args...` against this server, with a config dir of its own.
    #[track_caller]
    pub fn docker(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", &self.config)
            .args(args);
        let mut o = run_command(&mut cmd);
        o.cmdline = format!("docker {}", args.join(" "));
        o
    }

    /// One raw HTTP/1.0 request on the socket: the status line and the whole answer.
    pub fn raw(&self, method: &str, path: &str) -> (String, String) {
        let mut s = UnixStream::connect(&self.sock).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        write!(s, "{method} {path} HTTP/1.0\r\nHost: docker\r\n\r\n").expect("send");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let status = out.lines().next().unwrap_or_default().to_string();
        (status, out)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return; // already ended and reaped: its pid is no longer ours to signal
        }
        // SAFETY: kill(2) of the process group our unreaped child leads.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGTERM) };
        if wait_child(&mut self.child, Duration::from_secs(10)).is_none() {
            kill_group(&mut self.child);
        }
    }
}

pub fn stdout_of(o: &Out) -> String {
    o.assert_ok();
    o.stdout.trim().to_string()
}
