//! `codex-ctr top` (no name): the live view, driven in a real terminal (tmux: keys sent,
//! the pane captured), as a person would use it. Its own engine root and tmux server.

use std::process::Command;
use std::time::{Duration, Instant};

use codex_tests::ctr::Ctr;
use codex_tests::*;

/// A tmux server of this test's own (`-L`), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn tmux(&self, args: &[&str]) -> Out {
        let mut c = Command::new("tmux");
        c.arg("-L").arg(&self.socket).args(args);
        run_timeout(&mut c, Duration::from_secs(20))
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "top"]).stdout
    }

    /// Waits until the screen satisfies `ok`; panics with the screen if it never does.
    #[track_caller]
    fn until(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the view never showed {what}:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// `cmd` as one shell word list, for tmux to run.
fn shell_line(cmd: &Command) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_str()?, quote(v?.to_str()?))))
        .collect();
    if !parts.is_empty() {
        parts.insert(0, "env".into());
    }
    parts.push(quote(&cmd.get_program().to_string_lossy()));
    parts.extend(cmd.get_args().map(|a| quote(&a.to_string_lossy())));
    parts.join(" ")
}

/// The line of the view that starts with `name`.
fn row<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.starts_with(name))
}

#[test]
fn the_live_view_shows_containers_follows_their_state_and_quits_on_q() {
    if !have_tool("tmux") {
        skip("top: tmux is not installed (apt-get install -y tmux)");
        return;
    }
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--name",
        "busy",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "while :; do :; done",
    ])
    .assert_ok();
    c.run(&[
        "run",
        "-d",
        "--name",
        "idle",
        "--network",
        "none",
        "busybox",
        "sleep",
        "300",
    ])
    .assert_ok();
    let t = Tmux {
        socket: format!("codex-top-{}", std::process::id()),
    };
    let line = shell_line(&c.cmd(&["top", "--interval", "0.5"]));
    t.tmux(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "150",
        "-y",
        "20",
        &line,
    ])
    .assert_ok();
    // Both, running; the busy one's CPU % shows once two samples exist.
    let s = t.until("both containers running with a CPU figure", |s| {
        row(s, "busy").is_some_and(|r| {
            r.contains("running")
                && r.split_whitespace()
                    .nth(4)
                    .is_some_and(|c| c.parse::<f64>().is_ok_and(|v| v > 1.0))
        }) && row(s, "idle").is_some_and(|r| r.contains("running"))
    });
    assert!(s.contains("codex-ctr top"), "{s}");
    // A state change made elsewhere shows up.
    c.run(&["stop", "-t", "1", "idle"]).assert_ok();
    t.until("idle no longer running", |s| {
        row(s, "idle").is_some_and(|r| !r.contains("running"))
    });
    // Filter: only what matches the typed name.
    t.tmux(&["send-keys", "-t", "top", "/", "bu", "Enter"])
        .assert_ok();
    t.until("only busy after the filter", |s| {
        row(s, "busy").is_some() && row(s, "idle").is_none()
    });
    // q ends it: the pane (and with it the session) is gone.
    t.tmux(&["send-keys", "-t", "top", "q"]).assert_ok();
    let deadline = Instant::now() + Duration::from_secs(20);
    while t.tmux(&["has-session", "-t", "top"]).ok() {
        assert!(
            Instant::now() < deadline,
            "q did not end the view:\n{}",
            t.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_live_view_refuses_a_pipe_and_names_what_to_use() {
    let c = Ctr::new();
    let o = c.run(&["top"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(
        o.stderr.contains("terminal") && o.stderr.contains("stats"),
        "{o:?}"
    );
}
