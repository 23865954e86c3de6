//! Hardening of the runtime against its own containers and embedders (issue 11,
//! "Runtime"), one module per area: `process` (exec's set-up is not ptrace-able, the
//! bounding set, kill --all / delete --force, timeOffsets), `rootfs` (bind sources, ptmx,
//! device modes, tmpcopyup), `hooks` (timeouts and pipes); what the library refuses is in
//! `tests/library.rs`. Every test failed on the code before its fix unless its comment says
//! otherwise (docs/security-runtime.md has the evidence). Tests named `codex_*` rely on
//! a codex-only hook or on cases runc 1.1.5 cannot run or gets wrong; the others pass
//! with `CODEX_OCI=/usr/sbin/runc ... -- --skip codex_`.

use codex_tests::*;
use serde_json::json;
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod hooks;
mod process;
mod rootfs;

/// Compiles `src` with `cc -static` into `<rootfs>/bin/<name>` (None, with a SKIP line,
/// when there is no C compiler or static libc).
pub fn compile_static(ctx: &TestCtx, b: &Bundle, name: &str, src: &str) -> Option<PathBuf> {
    if !have_tool("cc") {
        skip("no cc to build a static helper");
        return None;
    }
    let c = ctx.path(&format!("{name}.c"));
    fs::write(&c, src).unwrap();
    let out = b.rootfs().join("bin").join(name);
    let o = host_sh(&format!(
        "cc -static -O2 -o {} {} 2>&1",
        out.display(),
        c.display()
    ));
    if !o.ok() {
        skip(&format!("cc -static failed: {}", o.stdout));
        return None;
    }
    Some(out)
}

/// `create` of `b` as `id`, killed (and reported as Err) after `limit`. The container's
/// stdout goes to [`created_stdout`].
pub fn create_within(ctx: &TestCtx, b: &Bundle, id: &str, limit: Duration) -> Result<Out, String> {
    b.save();
    let d = b.dir.to_string_lossy().into_owned();
    let out = ctx.path(&format!("{id}.create.out"));
    let err = ctx.path(&format!("{id}.create.err"));
    try_run_to(
        &mut ctx.rt.command(&["create", "--bundle", &d, id]),
        &out,
        &err,
        limit,
    )
}

pub fn created_stdout(ctx: &TestCtx, id: &str) -> String {
    read_lossy(&ctx.path(&format!("{id}.create.out")))
}
