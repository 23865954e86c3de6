//! Hooks cannot stall the runtime: the timeout starts at spawn, the pipes are pumped.

use super::*;

#[test]
fn hook_that_never_reads_a_large_state_still_times_out() {
    // The state JSON (with a 256 KiB annotation) does not fit in a pipe: a runtime that
    // writes it before starting the clock waits for as long as the hook lives.
    let ctx = TestCtx::new("hook-stdin");
    let mut b = ctx.bundle();
    b.annotation("big", &"x".repeat(256 * 1024)).add_hook(
        "createRuntime",
        "/bin/sh",
        &["sh", "-c", "exec sleep 30"],
        &[],
        Some(2),
    );
    let id = ctx.id("c");
    let t = Instant::now();
    let o = create_within(&ctx, &b, &id, Duration::from_secs(25))
        .unwrap_or_else(|e| panic!("create hung on the hook's stdin: {e}"));
    let took = t.elapsed();
    o.assert_fails();
    assert!(
        took < Duration::from_secs(15),
        "the 2 s timeout took {took:?} to fire"
    );
}

#[test]
fn hook_output_beyond_a_pipe_buffer_does_not_stall_it() {
    // 256 KiB on stdout and on stderr, then a marker: the runtime must drain both while
    // it waits, or the hook blocks on a full pipe, hits its 10 s timeout, is killed
    // before the marker and fails the create.
    let ctx = TestCtx::new("hook-output");
    let mut b = ctx.bundle();
    let marker = ctx.path("hook-finished");
    b.add_hook(
        "createRuntime",
        "/bin/sh",
        &[
            "sh",
            "-c",
            &format!(
                "head -c 262144 /dev/zero | tr '\\0' o; head -c 262144 /dev/zero | tr '\\0' e >&2; touch {}",
                marker.display()
            ),
        ],
        &[],
        Some(10),
    );
    let id = ctx.id("c");
    let o = create_within(&ctx, &b, &id, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    o.assert_ok();
    assert!(marker.exists(), "the hook did not run to its end");
}
