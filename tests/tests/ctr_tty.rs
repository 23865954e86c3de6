//! `run -i`, `run -t`, `attach` (issue 20): a container's stdin and terminal, driven as a
//! user's terminal drives them: through a real pty whose slave is codex-ctr's
//! controlling terminal. Each test has its own engine root.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use codex_tests::ctr::Ctr;
use codex_tests::*;

/// codex-ctr running on a pty of the test's: what it prints, as a user's terminal
/// would show it, and a keyboard.
struct Terminal {
    master: std::fs::File,
    child: Child,
    seen: Vec<u8>,
}

fn winsize(rows: u16, cols: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Terminal {
    /// Starts `codex-ctr args...` with a `rows` x `cols` pty as its controlling
    /// terminal and stdio.
    fn start(c: &Ctr, args: &[&str], rows: u16, cols: u16) -> Terminal {
        let (mut m, mut s) = (0, 0);
        let ws = winsize(rows, cols);
        // SAFETY: openpty fills two fds; null name and termios are allowed.
        let rc =
            unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty returned two new fds that nothing else owns.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
        let mut cmd = c.cmd(args);
        cmd.stdin(Stdio::from(slave.try_clone().expect("dup slave")))
            .stdout(Stdio::from(slave.try_clone().expect("dup slave")))
            .stderr(Stdio::from(slave));
        // SAFETY: between fork and exec only async-signal-safe calls: setsid, ioctl.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn codex-ctr on a pty");
        drop(cmd);
        let flags = nix_flags(master.as_raw_fd());
        // SAFETY: F_SETFL on our own fd.
        unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) };
        Terminal {
            master: master.into(),
            child,
            seen: Vec::new(),
        }
    }

    /// Reads what is there now (the slave closed: nothing more will come).
    fn read_some(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: buf is valid for writes of its length; master is open.
            let n =
                unsafe { libc::read(self.master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                self.seen.extend_from_slice(&buf[..n as usize]);
                continue;
            }
            let e = std::io::Error::last_os_error();
            return n < 0 && e.kind() == std::io::ErrorKind::WouldBlock;
        }
    }

    /// Waits until the screen shows `text` (after `from`); panics with what it shows
    /// after a generous bound.
    #[track_caller]
    fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let open = self.read_some();
            if String::from_utf8_lossy(&self.seen).contains(text) {
                return;
            }
            if !open {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "the terminal never showed {text:?}; it shows {:?}",
            self.text()
        );
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    fn type_keys(&mut self, keys: &[u8]) {
        self.master.write_all(keys).expect("type into the pty");
    }

    fn resize(&self, rows: u16, cols: u16) {
        let ws = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer; master is open.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(rc, 0, "resize: {}", std::io::Error::last_os_error());
    }

    /// codex-ctr's exit code (it must end within a generous bound).
    #[track_caller]
    fn exit_code(mut self) -> i32 {
        let st = match wait_child(&mut self.child, cmd_timeout()) {
            Some(st) => st,
            None => {
                kill_group(&mut self.child);
                panic!(
                    "codex-ctr did not end; the terminal shows {:?}",
                    self.text()
                );
            }
        };
        self.read_some();
        st.code()
            .unwrap_or_else(|| panic!("codex-ctr was killed: {st:?}; screen {:?}", self.text()))
    }
}

fn nix_flags(fd: i32) -> i32 {
    // SAFETY: F_GETFL on our own fd.
    unsafe { libc::fcntl(fd, libc::F_GETFL) }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            kill_group(&mut self.child);
        }
    }
}

#[test]
fn run_it_gives_a_shell_on_a_terminal_of_the_callers_size_and_its_exit_code() {
    let c = Ctr::new();
    let mut t = Terminal::start(
        &c,
        &["run", "-it", "--rm", "--network", "none", "busybox", "sh"],
        33,
        101,
    );
    t.expect("/ # ");
    t.type_keys(b"echo $((6*7)); tty; stty size; echo $TERM\r");
    t.expect("42\r\n/dev/pts/0\r\n33 101\r\nxterm\r\n");
    // A resize of the caller's terminal reaches the container's.
    t.resize(40, 120);
    // The shell reads the size anew at each prompt; give the SIGWINCH a moment to
    // travel (codex-ctr -> the container's terminal) by asking until it shows.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        t.type_keys(b"stty size\r");
        std::thread::sleep(Duration::from_millis(100));
        t.read_some();
        if t.text().contains("40 120") || Instant::now() > deadline {
            break;
        }
    }
    t.expect("40 120");
    t.type_keys(b"exit 5\r");
    assert_eq!(t.exit_code(), 5);
    assert_eq!(c.run(&["ps", "-aq"]).stdout.trim(), "", "--rm removed it");
}

#[test]
fn run_i_passes_stdin_to_its_end_and_without_i_stdin_is_empty() {
    let c = Ctr::new();
    let run = |args: &[&str], input: &str| {
        let mut cmd = c.cmd(args);
        own_group(&mut cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn codex-ctr");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.as_bytes()).expect("write stdin");
        drop(stdin);
        let out = std::thread::spawn(move || {
            let o = child.wait_with_output().expect("wait");
            (
                o.status.code(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
            )
        });
        let deadline = Instant::now() + cmd_timeout();
        while !out.is_finished() {
            assert!(Instant::now() < deadline, "codex-ctr {args:?} hung");
            std::thread::sleep(Duration::from_millis(10));
        }
        out.join().expect("join")
    };
    // cat ends only when its stdin does: the caller's end reached the container.
    let (code, text) = run(
        &["run", "-i", "--rm", "--network", "none", "busybox", "cat"],
        "line one\nline two\n",
    );
    assert_eq!((code, text.as_str()), (Some(0), "line one\nline two\n"));
    let (code, text) = run(
        &[
            "run",
            "-i",
            "--rm",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "read x; echo got $x",
        ],
        "hello\n",
    );
    assert_eq!((code, text.as_str()), (Some(0), "got hello\n"));
    // Without -i the container's stdin is empty: the same input never arrives.
    let (code, text) = run(
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "read x; echo got $x",
        ],
        "hello\n",
    );
    assert_eq!((code, text.as_str()), (Some(0), "got\n"));
}

#[test]
fn attach_types_into_a_detached_terminal_and_the_detach_keys_leave_it_running() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-dit",
        "--name",
        "shell",
        "--network",
        "none",
        "busybox",
        "sh",
    ])
    .assert_ok();
    // Past the supervisor's handover to its shim (250 ms): the terminal is the shim's.
    std::thread::sleep(Duration::from_millis(400));
    let mut t = Terminal::start(&c, &["attach", "shell"], 24, 80);
    t.type_keys(b"echo in-$((40+2))\r");
    t.expect("in-42");
    t.type_keys(&[0x10, 0x11]);
    assert_eq!(t.exit_code(), 0, "the detach keys end attach with 0");
    assert_eq!(
        c.inspect("shell")["status"],
        "running",
        "detached, it runs on"
    );

    let mut t = Terminal::start(&c, &["attach", "shell"], 24, 80);
    t.type_keys(b"exit 7\r");
    assert_eq!(t.exit_code(), 7, "attach ends with the container's code");
    let logs = c.run(&["logs", "shell"]);
    logs.assert_ok();
    assert!(logs.stdout.contains("in-42"), "{logs:?}");
}

#[test]
fn a_terminals_unterminated_output_is_seen_before_its_newline() {
    let c = Ctr::new();
    let mut t = Terminal::start(
        &c,
        &[
            "run",
            "-t",
            "--rm",
            "--name",
            "prompt",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "printf 'name? '; sleep 30",
        ],
        24,
        80,
    );
    t.expect("name? ");
    // Seen while the container still waits: not flushed by its end.
    assert_eq!(c.inspect("prompt")["status"], "running");
    let logs = c.run(&["logs", "prompt"]);
    assert_eq!(
        logs.stdout, "name? ",
        "a partial record prints without a newline"
    );
    c.run(&["rm", "-f", "prompt"]).assert_ok();
    let _ = t.exit_code();
}

#[test]
fn attach_refuses_what_it_cannot_attach_to_by_name() {
    let c = Ctr::new();
    let o = c.run(&["attach", "nosuch"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    c.run(&[
        "create",
        "--name",
        "idle",
        "--network",
        "none",
        "busybox",
        "true",
    ])
    .assert_ok();
    let o = c.run(&["attach", "idle"]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(
        o.stderr.contains("idle") && o.stderr.contains("running"),
        "{o:?}"
    );
    // A running container without a terminal: its output from now on, its exit code.
    c.run(&[
        "run",
        "-d",
        "--name",
        "plain",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "sleep 1; echo later; exit 3",
    ])
    .assert_ok();
    let o = c.run(&["attach", "plain"]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert_eq!(o.stdout, "later\n", "{o:?}");
}

#[test]
fn attach_feeds_a_detached_i_containers_stdin_and_leaving_does_not_close_it() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-di",
        "--name",
        "reader",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "while read l; do echo got:$l; done; echo stdin-ended",
    ])
    .assert_ok();
    let logs_show = |text: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let o = c.run(&["logs", "reader"]);
            if o.stdout.contains(text) {
                return o.stdout;
            }
            assert!(
                Instant::now() < deadline,
                "the logs never showed {text:?}: {o:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    for line in ["one", "two"] {
        // An attach that sends a line, then leaves (killed, as a closed terminal would).
        let mut cmd = c.cmd(&["attach", "reader"]);
        own_group(&mut cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn attach");
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "{line}").expect("write");
        logs_show(&format!("got:{line}"));
        drop(stdin);
        kill_group(&mut child);
    }
    let out = logs_show("got:two");
    assert!(
        !out.contains("stdin-ended"),
        "leaving closed its stdin: {out}"
    );
    assert_eq!(c.inspect("reader")["status"], "running");
    c.run(&["rm", "-f", "reader"]).assert_ok();
}
