//! `process.terminal` with `--console-socket`: the runtime sends the PTY master over the
//! socket with SCM_RIGHTS; the container's stdio is the slave.

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
    ctx.create(&b, &id, &[]).assert_fails();
    assert!(!ctx.rt.root_has_entry(&id));
}
