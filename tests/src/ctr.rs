//! `codex-ctr` test fixture: an engine root of its own (CODEX_CTR_ROOT) with the
//! busybox image imported; every container in it is removed and every mount under it
//! undone when the fixture drops, even when the test failed.

use std::path::PathBuf;
use std::process::Command;

use crate::{fixture_dir, unmount_under, workspace_dir, Out};

pub struct Ctr {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl Default for Ctr {
    fn default() -> Self {
        Ctr::new()
    }
}

impl Ctr {
    pub fn new() -> Ctr {
        let dir = tempfile::Builder::new()
            .prefix("codex-ctr-test-")
            .tempdir()
            .unwrap();
        let root = dir.path().join("root");
        let c = Ctr { _dir: dir, root };
        let tar = fixture_dir().join("rootfs.tar");
        c.run(&["image", "import", tar.to_str().unwrap(), "busybox"])
            .assert_ok();
        c
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(workspace_dir().join("target/debug/codex-ctr"));
        c.env("CODEX_CTR_ROOT", &self.root).args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Out {
        let o = self.cmd(args).output().expect("run codex-ctr");
        Out {
            cmdline: format!("codex-ctr {}", args.join(" ")),
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let o = self.run(&["inspect", name]);
        o.assert_ok();
        o.json()
    }

    pub fn containers(&self) -> usize {
        std::fs::read_dir(self.root.join("containers"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        if let Ok(o) = self.cmd(&["ps", "-a", "-q"]).output() {
            for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = self.cmd(&["rm", "-f", id]).output();
            }
        }
        unmount_under(&self.root);
    }
}
