//! Private network namespaces for networking tests: every codex-ctr command that makes
//! bridges, veths or packet-filter rules runs inside one (through `nsenter --net`, which
//! keeps the host's /sys and its cgroups visible, unlike `ip netns exec`), so the host's
//! own network is never changed. The namespace, and everything made in it, goes when
//! the holder process is killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::ctr::{ctr_binary, Ctr};
use crate::{run_command, wait_until, Out};

/// A network namespace held by a `sleep` that is killed on drop.
pub struct TestNetns {
    holder: Child,
}

impl TestNetns {
    pub fn new() -> TestNetns {
        let holder = Command::new("unshare")
            .args(["--net", "sleep", "100000"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare --net");
        let ns = TestNetns { holder };
        let mine = std::fs::read_link("/proc/self/ns/net").expect("own netns");
        assert!(
            wait_until(Duration::from_secs(5), || std::fs::read_link(ns.path())
                .is_ok_and(|n| n != mine)),
            "the holder did not get a namespace of its own"
        );
        // Loopback up, as in any namespace a program expects to use.
        run_command(&mut ns.cmd(&["ip", "link", "set", "lo", "up"])).assert_ok();
        ns
    }

    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.holder.id()))
    }

    /// `argv` in the namespace.
    pub fn cmd(&self, argv: &[&str]) -> Command {
        // By path: a test may clear the environment (and PATH) of the command.
        let nsenter = ["/usr/bin/nsenter", "/bin/nsenter"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nsenter");
        let mut c = Command::new(nsenter);
        c.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .args(argv);
        c
    }

    /// `sh -c script` in the namespace, to completion.
    #[track_caller]
    pub fn sh(&self, script: &str) -> Out {
        run_command(&mut self.cmd(&["sh", "-c", script]))
    }

    /// Interface names (`ip -o link`).
    pub fn links(&self) -> Vec<String> {
        let o = run_command(&mut self.cmd(&["ip", "-o", "link"]));
        o.assert_ok();
        o.stdout
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
            .collect()
    }

    /// `nft list ruleset` in the namespace.
    pub fn ruleset(&self) -> String {
        let o = run_command(&mut self.cmd(&["nft", "list", "ruleset"]));
        o.assert_ok();
        o.stdout
    }

    /// Joins this namespace and `other` with a veth pair: `here` (CIDR) on this side,
    /// `there` on the other, both up.
    pub fn link_to(&self, other: &TestNetns, name: &str, here: &str, there: &str) {
        let peer = format!("{name}p");
        let pid = other.pid().to_string();
        let steps: [&[&str]; 3] = [
            &[
                "ip", "link", "add", name, "type", "veth", "peer", "name", &peer, "netns", &pid,
            ],
            &["ip", "addr", "add", here, "dev", name],
            &["ip", "link", "set", name, "up"],
        ];
        for s in steps {
            run_command(&mut self.cmd(s)).assert_ok();
        }
        for s in [
            &["ip", "addr", "add", there, "dev", &peer][..],
            &["ip", "link", "set", &peer, "up"],
        ] {
            run_command(&mut other.cmd(s)).assert_ok();
        }
    }

    /// codex-ctr `args` on `c`'s root, inside this namespace.
    #[track_caller]
    pub fn ctr(&self, c: &Ctr, args: &[&str]) -> Out {
        let bin = ctr_binary();
        let mut cmd = self.cmd(&[bin.to_str().expect("utf-8 path")]);
        cmd.args(args).env("CODEX_CTR_ROOT", &c.root);
        let mut o = run_command(&mut cmd);
        o.cmdline = format!("codex-ctr {}", args.join(" "));
        o
    }
}

impl Default for TestNetns {
    fn default() -> Self {
        TestNetns::new()
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
