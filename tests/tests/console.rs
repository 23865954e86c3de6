//! `process.terminal` with `--console-socket`: the runtime sends the PTY master over the
//! socket with SCM_RIGHTS; the container's stdio is the slave. Without `--console-socket` a
//! foreground `run` keeps the master and proxies it to its own stdin/stdout (`codex_*`: runc
//! 1.1.5 needs a controlling terminal for that).

use codex_tests::console::ConsoleSocket;
use codex_tests::*;

fn terminal_bundle(ctx: &TestCtx, script: &str) -> Bundle {
    let mut b = ctx.bundle();
    b.terminal(true).sh(script);
    b
}

#[test]
fn terminal_master_arrives_over_the_console_socket_and_carries_the_output() {
    let ctx = TestCtx::new("console");
    let b = terminal_bundle(
        &ctx,
        "[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-stdio-are-ttys; tty; echo hello-from-the-tty",
    );
    let sock = ConsoleSocket::bind(&ctx.path("console.sock"), Vec::new(), WAIT);
    let id = ctx.id("tty");
    ctx.create(&b, &id, &["--console-socket", &sock.arg()])
        .assert_ok();
    ctx.rt.run(&["start", &id]).assert_ok();
    let r = sock.finish().expect("console");
    assert!(r.is_tty, "the fd received is not a terminal");
    assert!(r.closed, "the console must close when the container exits");
    let text = r.text();
    assert!(text.contains("all-stdio-are-ttys"), "{text:?}");
    assert!(
        text.contains("/dev/pts/") || text.contains("/dev/console"),
        "{text:?}"
    );
    assert!(text.contains("hello-from-the-tty"), "{text:?}");
    ctx.rt.wait_status(&id, "stopped");
}

#[test]
fn terminal_input_reaches_the_container() {
    let ctx = TestCtx::new("console-input");
    let b = terminal_bundle(&ctx, "read line; echo got:$line:");
    let sock = ConsoleSocket::bind(&ctx.path("console.sock"), b"ping\n".to_vec(), WAIT);
    let id = ctx.id("input");
    ctx.create(&b, &id, &["--console-socket", &sock.arg()])
        .assert_ok();
    ctx.rt.run(&["start", &id]).assert_ok();
    let text = sock.finish().expect("console").text();
    assert!(text.contains("got:ping:"), "{text:?}");
}

#[test]
fn console_size_is_applied_to_the_terminal() {
    let ctx = TestCtx::new("console-size");
    let mut b = terminal_bundle(&ctx, "stty size");
    b.set(
        "/process/consoleSize",
        serde_json::json!({"height": 33, "width": 111}),
    );
    let sock = ConsoleSocket::bind(&ctx.path("console.sock"), Vec::new(), WAIT);
    let id = ctx.id("size");
    ctx.create(&b, &id, &["--console-socket", &sock.arg()])
        .assert_ok();
    ctx.rt.run(&["start", &id]).assert_ok();
    let r = sock.finish().expect("console");
    assert!(r.text().contains("33 111"), "{:?}", r.text());
}

#[test]
fn dev_console_is_the_terminal() {
    let ctx = TestCtx::new("dev-console");
    let b = terminal_bundle(&ctx, "stat -c '%F %t' /dev/console; echo hi > /dev/console");
    let sock = ConsoleSocket::bind(&ctx.path("console.sock"), Vec::new(), WAIT);
    let id = ctx.id("devconsole");
    ctx.create(&b, &id, &["--console-socket", &sock.arg()])
        .assert_ok();
    ctx.rt.run(&["start", &id]).assert_ok();
    let text = sock.finish().expect("console").text();
    // PTY slaves have major 136 (0x88)
    assert!(text.contains("character special file 88"), "{text:?}");
    assert!(text.contains("hi"), "{text:?}");
}

#[test]
fn detached_run_with_console_socket_works() {
    let ctx = TestCtx::new("console-run-d");
    let b = terminal_bundle(&ctx, "echo detached-tty");
    let sock = ConsoleSocket::bind(&ctx.path("console.sock"), Vec::new(), WAIT);
    let id = ctx.id("rund");
    ctx.run(&b, &id, &["-d", "--console-socket", &sock.arg()])
        .assert_ok();
    let text = sock.finish().expect("console").text();
    assert!(text.contains("detached-tty"), "{text:?}");
}

#[test]
fn terminal_without_a_console_socket_is_refused_by_create() {
    let ctx = TestCtx::new("console-missing");
    let b = terminal_bundle(&ctx, "true");
    let id = ctx.id("nosock");
    ctx.create(&b, &id, &[]).assert_refused_naming("console");
    assert!(!ctx.rt.root_has_entry(&id));
}

/// Foreground `run` of `b` with `input` piped into the runtime's stdin (closed afterwards);
/// stdout and stderr go to files.
fn run_with_stdin(ctx: &TestCtx, b: &Bundle, id: &str, input: &[u8]) -> Out {
    use std::io::Write;
    b.save();
    let d = b.dir.to_string_lossy().into_owned();
    let mut cmd = ctx.rt.command(&["run", "--bundle", &d, id]);
    let (out, err) = (ctx.path("run.stdout"), ctx.path("run.stderr"));
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut child = cmd.spawn().expect("spawn runtime");
    let mut stdin = child.stdin.take().expect("stdin pipe");
    // From a thread: a runtime that stops reading must not block the test (EPIPE once it
    // exits is fine; what arrived is judged by the container's output).
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let status = wait_child(&mut child, CMD_TIMEOUT);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    writer.join().expect("stdin writer");
    let (stdout, stderr) = (read_lossy(&out), read_lossy(&err));
    let status = status
        .unwrap_or_else(|| panic!("run did not exit\nstdout: {stdout:?}\nstderr: {stderr:?}"));
    Out {
        cmdline: format!("run --bundle {d} {id} < piped input"),
        status,
        stdout,
        stderr,
    }
}

#[test]
fn codex_foreground_run_with_a_terminal_and_no_console_socket_proxies_the_pty() {
    // The runtime keeps the PTY master itself: its stdin goes to the terminal, the terminal's
    // output comes out on its stdout, and it exits with the container's code. (codex: runc
    // 1.1.5 refuses to run without a controlling terminal: "open /dev/tty".)
    let ctx = TestCtx::new("console-proxy");
    let b = terminal_bundle(
        &ctx,
        "[ -t 0 ] && [ -t 1 ] && echo stdio-is-a-tty; tty; read x; echo got:$x:; exit 7",
    );
    let id = ctx.id("proxy");
    let o = run_with_stdin(&ctx, &b, &id, b"abc\n");
    o.assert_code(7);
    let lines: Vec<&str> = o.stdout.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(lines.contains(&"stdio-is-a-tty"), "{o:?}");
    assert!(
        lines.contains(&"/dev/pts/0"),
        "tty inside must be /dev/pts/0: {o:?}"
    );
    assert!(
        lines.contains(&"got:abc:"),
        "the piped input never reached `read`: {o:?}"
    );
    assert!(
        ctx.rt.state(&id).is_err(),
        "a foreground run deletes the container when it exits"
    );
}

#[test]
fn codex_foreground_run_with_a_terminal_passes_large_piped_input_intact() {
    // More input than the PTY's line buffer holds (~4 KiB): the proxy must wait until the
    // container has read some, not drop what the terminal cannot take yet.
    let ctx = TestCtx::new("console-proxy-big");
    let b = terminal_bundle(
        &ctx,
        // ends on the END line, not on a quiet spell (a loaded machine pauses the proxy for
        // longer than any short read timeout); 30 s only bounds a lost END
        "stty -echo; i=0; while read -t 30 l; do [ \"$l\" = END ] && break; i=$((i+1)); \
         last=$l; done; echo lines:$i:last:$last:; exit 0",
    );
    let id = ctx.id("proxy-big");
    let mut input: String = (0..3000)
        .map(|n| format!("line-{n:06}-{}\n", "x".repeat(30)))
        .collect();
    input.push_str("END\n");
    let o = run_with_stdin(&ctx, &b, &id, input.as_bytes());
    o.assert_ok();
    // (input that arrives before `stty -echo` is echoed, so the line may have a prefix)
    let want = format!("lines:3000:last:line-002999-{}:", "x".repeat(30));
    assert!(
        o.stdout.contains(&want),
        "piped input was lost on the way to the terminal (want {want:?}); output ends with {:?}",
        o.stdout.lines().rev().take(3).collect::<Vec<_>>()
    );
}
