//! Harness for the root-run integration tests of `codex-oci`.
//!
//! Every test makes a [`TestCtx`]: its own temp dir, its own state root (`--root`), its own
//! bundles (a copy of the busybox fixture) and container ids that no other test uses. Dropping
//! the context runs `delete --force` for every id it handed out, runs the registered cleanups,
//! unmounts whatever is still mounted under the temp dir and removes it, even when the test
//! panicked.
//!
//! The binary under test is `$CODEX_OCI` if set, else `<workspace>/target/debug/codex-oci`.
//! Tests about runc-compatible behaviour pass with `CODEX_OCI=/usr/sbin/runc`; tests whose name
//! starts with `codex_` check codex-specific behaviour (messages naming JSON paths, version and
//! features format, escape checks runc 1.1.5 fails) and are skipped for runc with
//! `-- --skip codex_`.

use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod console;
pub mod ctr;

pub use serde_json;

/// How long any single command may take before the harness kills it and fails the test.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for a container to reach a state or print something.
pub const WAIT: Duration = Duration::from_secs(20);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn next() -> usize {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// The workspace root (the parent of this crate).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The runtime binary under test: `$CODEX_OCI`, else `<workspace>/target/debug/codex-oci`.
pub fn runtime_binary() -> PathBuf {
    let p = match std::env::var_os("CODEX_OCI") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_dir().join("target/debug/codex-oci"),
    };
    assert!(
        p.exists(),
        "runtime binary {} does not exist: build it (cargo build -p codex-cli) or set CODEX_OCI",
        p.display()
    );
    p
}

/// True when the binary under test is runc (used only to explain a skip or a message).
pub fn runtime_is_runc() -> bool {
    runtime_binary()
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("runc"))
}

/// The busybox fixture bundle (`rootfs/`, `config.json`, `rootfs.tar`), built once and cached
/// in `<workspace>/target/codex-tests/busybox-bundle` under a file lock; rebuilt when the
/// script is newer than the cache. Always built with the script's own minimal config (not
/// `$CODEX_OCI spec`), so every test starts from the same spec. Treat it as read-only.
pub fn fixture_dir() -> &'static Path {
    static FIXTURE: OnceLock<PathBuf> = OnceLock::new();
    FIXTURE.get_or_init(build_fixture)
}

fn build_fixture() -> PathBuf {
    let base = workspace_dir().join("target/codex-tests");
    fs::create_dir_all(&base).expect("create target/codex-tests");
    let lock = File::create(base.join("fixture.lock")).expect("create fixture lock");
    // SAFETY: flock on an fd we own; released when `lock` is closed.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock fixture lock");
    let out = base.join("busybox-bundle");
    let stamp = base.join("busybox-bundle.stamp");
    let script = workspace_dir().join("rootfs-fixtures/make-busybox-bundle.sh");
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (mtime(&stamp), mtime(&script)) {
        (Some(s), Some(sc)) => {
            s >= sc && out.join("config.json").exists() && out.join("rootfs/bin/busybox").exists()
        }
        _ => false,
    };
    if !fresh {
        let st = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .env_remove("CODEX_OCI")
            .stdout(Stdio::null())
            .status()
            .expect("run make-busybox-bundle.sh");
        assert!(st.success(), "make-busybox-bundle.sh failed: {st}");
        fs::write(&stamp, b"ok\n").expect("write fixture stamp");
    }
    drop(lock);
    out
}

/// The result of one command.
#[derive(Debug)]
pub struct Out {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    pub fn ok(&self) -> bool {
        self.status.success()
    }
    fn describe(&self) -> String {
        format!(
            "`{}` -> {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline, self.status, self.stdout, self.stderr
        )
    }
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.ok(), "command failed: {}", self.describe());
        self
    }
    #[track_caller]
    pub fn assert_fails(&self) -> &Self {
        assert!(
            !self.ok() && self.code().is_some(),
            "command should have failed with an exit code: {}",
            self.describe()
        );
        self
    }
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "unexpected exit code: {}",
            self.describe()
        );
        self
    }
    /// Asserts stderr mentions `needle` (case-insensitive).
    #[track_caller]
    pub fn assert_stderr_mentions(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "stderr should mention {needle:?}: {}",
            self.describe()
        );
        self
    }
    /// stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.describe()))
    }
    /// stdout, trimmed, as lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().map(str::trim_end).collect()
    }
}

fn cmdline(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Waits for `child` up to `timeout`; `None` if it is still running.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("wait for child: {e}"),
        }
    }
}

/// Runs `cmd` with stdin from /dev/null and stdout/stderr into the given files (files, not
/// pipes: a container created by the command inherits them and may outlive the command).
/// Returns an error string instead of panicking (for Drop paths).
pub fn try_run_to(
    cmd: &mut Command,
    out_path: &Path,
    err_path: &Path,
    timeout: Duration,
) -> Result<Out, String> {
    let line = cmdline(cmd);
    let out = File::create(out_path).map_err(|e| format!("{}: {e}", out_path.display()))?;
    let err = File::create(err_path).map_err(|e| format!("{}: {e}", err_path.display()))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    let mut child = cmd.spawn().map_err(|e| format!("spawn `{line}`: {e}"))?;
    let status = match wait_child(&mut child, timeout) {
        Some(st) => st,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "`{line}` did not finish within {timeout:?}\nstdout: {}\nstderr: {}",
                read_lossy(out_path),
                read_lossy(err_path)
            ));
        }
    };
    Ok(Out {
        cmdline: line,
        status,
        stdout: read_lossy(out_path),
        stderr: read_lossy(err_path),
    })
}

/// Reads a file as (lossy) UTF-8; empty if it does not exist.
pub fn read_lossy(p: &Path) -> String {
    let mut v = Vec::new();
    if let Ok(mut f) = File::open(p) {
        let _ = f.read_to_end(&mut v);
    }
    String::from_utf8_lossy(&v).into_owned()
}

/// Polls `f` every 10 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True while `pid` exists and is not a zombie.
pub fn pid_alive(pid: i64) -> bool {
    if pid <= 0 {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            // state is the field after the parenthesised comm
            let state = s
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next());
            !matches!(state, Some(Some('Z')) | Some(Some('X')))
        }
        Err(_) => false,
    }
}

/// The value of `Field:` in a /proc/PID/status text.
pub fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// Capability names in kernel order (CAP_CHOWN = 0 ...).
pub const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The bit mask of a set of capability names.
pub fn cap_mask(names: &[&str]) -> u64 {
    names.iter().fold(0, |m, n| {
        let i = CAPS
            .iter()
            .position(|c| c == n)
            .unwrap_or_else(|| panic!("unknown capability {n}"));
        m | (1u64 << i)
    })
}

/// Parses a hex capability mask from /proc/PID/status.
pub fn parse_mask(hex: &str) -> u64 {
    u64::from_str_radix(hex.trim(), 16).unwrap_or_else(|e| panic!("bad mask {hex:?}: {e}"))
}

/// One line of /proc/PID/mountinfo.
#[derive(Debug, Clone)]
pub struct MountInfo {
    pub mount_point: String,
    pub root: String,
    pub major_minor: String,
    /// per-mount options (ro, nosuid, nodev, noexec, relatime...)
    pub opts: Vec<String>,
    pub fstype: String,
    pub source: String,
    /// per-superblock options (size=..., mode=...)
    pub super_opts: Vec<String>,
}

impl MountInfo {
    pub fn has_opt(&self, o: &str) -> bool {
        self.opts.iter().any(|x| x == o)
    }
    pub fn has_super_opt(&self, o: &str) -> bool {
        self.super_opts.iter().any(|x| x == o)
    }
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let g: Vec<&str> = post.split(' ').collect();
            if f.len() < 6 || g.len() < 3 {
                return None;
            }
            Some(MountInfo {
                major_minor: f[2].to_string(),
                root: unescape_mountinfo(f[3]),
                mount_point: unescape_mountinfo(f[4]),
                opts: f[5].split(',').map(String::from).collect(),
                fstype: g[0].to_string(),
                source: unescape_mountinfo(g[1]),
                super_opts: g[2].split(',').map(String::from).collect(),
            })
        })
        .collect()
}

/// The topmost (last) mount at `mount_point` in a mountinfo text.
pub fn mount_at(text: &str, mount_point: &str) -> Option<MountInfo> {
    parse_mountinfo(text)
        .into_iter()
        .rev()
        .find(|m| m.mount_point == mount_point)
}

/// Unmounts (lazily) everything mounted at or below `dir` in this mount namespace.
pub fn unmount_under(dir: &Path) {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let d = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = parse_mountinfo(&text)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p == &d || p.starts_with(&format!("{d}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        if let Ok(c) = std::ffi::CString::new(p) {
            // SAFETY: plain syscall on a NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Runs a host shell snippet (`sh -c`), capturing its output; panics on timeout.
#[track_caller]
pub fn host_sh(script: &str) -> Out {
    let dir = std::env::temp_dir();
    let n = next();
    let pid = std::process::id();
    let o = dir.join(format!(".codex-test-{pid}-{n}.out"));
    let e = dir.join(format!(".codex-test-{pid}-{n}.err"));
    let r = try_run_to(
        Command::new("sh").arg("-c").arg(script),
        &o,
        &e,
        CMD_TIMEOUT,
    );
    let _ = fs::remove_file(&o);
    let _ = fs::remove_file(&e);
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// Is `tool` on $PATH?
pub fn have_tool(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            fs::metadata(d.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// `codex-oci --root ROOT ...` for one test.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub bin: PathBuf,
    pub root: PathBuf,
    scratch: PathBuf,
}

impl Runtime {
    /// A `Command` for `BIN --root ROOT args...`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root).args(args);
        c
    }

    fn scratch_pair(&self, tag: &str) -> (PathBuf, PathBuf) {
        let n = next();
        (
            self.scratch.join(format!("{n}-{tag}.out")),
            self.scratch.join(format!("{n}-{tag}.err")),
        )
    }

    /// Runs `BIN --root ROOT args...` to completion; panics if it hangs.
    #[track_caller]
    pub fn run(&self, args: &[&str]) -> Out {
        let (o, e) = self.scratch_pair(args.first().copied().unwrap_or("cmd"));
        try_run_to(&mut self.command(args), &o, &e, CMD_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs a prepared command (e.g. with extra env) to completion.
    #[track_caller]
    pub fn run_cmd(&self, mut cmd: Command) -> Out {
        let (o, e) = self.scratch_pair("cmd");
        try_run_to(&mut cmd, &o, &e, CMD_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `state ID` parsed, or the failed command.
    pub fn state(&self, id: &str) -> Result<Value, Out> {
        let o = self.run(&["state", id]);
        if o.ok() {
            Ok(o.json())
        } else {
            Err(o)
        }
    }

    /// `state ID` that must succeed.
    #[track_caller]
    pub fn state_ok(&self, id: &str) -> Value {
        match self.state(id) {
            Ok(v) => v,
            Err(o) => panic!("state {id} failed: {}", o.describe()),
        }
    }

    /// The status string of `state ID` (None if state fails).
    pub fn status(&self, id: &str) -> Option<String> {
        self.state(id)
            .ok()
            .and_then(|v| v["status"].as_str().map(String::from))
    }

    /// Polls `state ID` until its status is `want`.
    #[track_caller]
    pub fn wait_status(&self, id: &str, want: &str) {
        let mut last = None;
        let ok = wait_until(WAIT, || {
            last = self.status(id);
            last.as_deref() == Some(want)
        });
        assert!(ok, "container {id} never reached {want:?} (last: {last:?})");
    }

    /// The init pid from `state ID`.
    #[track_caller]
    pub fn pid(&self, id: &str) -> i64 {
        let s = self.state_ok(id);
        s["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("state has no pid: {s}"))
    }

    /// Does the state root hold anything (at any depth up to 4) whose name contains `id`?
    /// (Layout-agnostic: runc uses `ROOT/ID/`, another runtime may nest it.)
    pub fn root_has_entry(&self, id: &str) -> bool {
        fn walk(d: &Path, id: &str, depth: u32) -> bool {
            let Ok(rd) = fs::read_dir(d) else {
                return false;
            };
            for e in rd.filter_map(|e| e.ok()) {
                if e.file_name().to_string_lossy().contains(id) {
                    return true;
                }
                if depth > 0
                    && e.file_type().is_ok_and(|t| t.is_dir())
                    && walk(&e.path(), id, depth - 1)
                {
                    return true;
                }
            }
            false
        }
        !id.is_empty() && walk(&self.root, id, 4)
    }

    /// Names in the state root.
    pub fn root_entries(&self) -> Vec<String> {
        fs::read_dir(&self.root)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A `run` of the runtime in the background (foreground `run` command, not detached).
pub struct Background {
    pub child: Child,
    pub out_path: PathBuf,
    pub err_path: PathBuf,
    cmdline: String,
    waited: bool,
}

impl Background {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn stdout(&self) -> String {
        read_lossy(&self.out_path)
    }
    pub fn stderr(&self) -> String {
        read_lossy(&self.err_path)
    }
    /// Polls until stdout contains `needle`.
    #[track_caller]
    pub fn wait_for_stdout(&self, needle: &str) {
        let ok = wait_until(WAIT, || self.stdout().contains(needle));
        assert!(
            ok,
            "`{}` never printed {needle:?}\nstdout: {}\nstderr: {}",
            self.cmdline,
            self.stdout(),
            self.stderr()
        );
    }
    /// Waits for the runtime process to exit.
    #[track_caller]
    pub fn wait(&mut self, timeout: Duration) -> Out {
        let st = wait_child(&mut self.child, timeout);
        self.waited = true;
        match st {
            Some(status) => Out {
                cmdline: self.cmdline.clone(),
                status,
                stdout: self.stdout(),
                stderr: self.stderr(),
            },
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "`{}` did not exit within {timeout:?}\nstdout: {}\nstderr: {}",
                    self.cmdline,
                    self.stdout(),
                    self.stderr()
                );
            }
        }
    }
    /// Sends a signal to the runtime process itself.
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill runtime process");
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if !self.waited {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
    }
}

/// A bundle directory (`rootfs/` copied from the fixture, `config.json` edited in memory and
/// written by [`Bundle::save`], which every run helper calls).
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl Bundle {
    pub fn rootfs(&self) -> PathBuf {
        let p = self.config["root"]["path"].as_str().unwrap_or("rootfs");
        if p.starts_with('/') {
            PathBuf::from(p)
        } else {
            self.dir.join(p)
        }
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    /// Writes config.json.
    pub fn save(&self) {
        fs::write(
            self.config_path(),
            serde_json::to_vec_pretty(&self.config).expect("serialise config"),
        )
        .expect("write config.json");
    }
    fn obj(&mut self, pointer: &str) -> &mut serde_json::Map<String, Value> {
        let mut cur = &mut self.config;
        for part in pointer.split('/').filter(|p| !p.is_empty()) {
            if !cur.is_object() {
                *cur = json!({});
            }
            cur = cur
                .as_object_mut()
                .expect("object")
                .entry(part.to_string())
                .or_insert_with(|| json!({}));
        }
        if !cur.is_object() {
            *cur = json!({});
        }
        cur.as_object_mut().expect("object")
    }
    /// Sets `/a/b/key` (slash-separated, objects created as needed) to `v`.
    pub fn set(&mut self, pointer: &str, v: Value) -> &mut Self {
        let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
        self.obj(parent).insert(key.to_string(), v);
        self
    }
    /// Removes `/a/b/key` if present.
    pub fn remove(&mut self, pointer: &str) -> &mut Self {
        let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
        if let Some(o) = self
            .config
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
        {
            o.remove(key);
        }
        self
    }
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.set("/process/args", json!(args))
    }
    /// `process.args = ["sh", "-c", script]`.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }
    pub fn env(&mut self, env: &[&str]) -> &mut Self {
        self.set("/process/env", json!(env))
    }
    pub fn add_env(&mut self, kv: &str) -> &mut Self {
        let p = self.obj("/process");
        let e = p.entry("env").or_insert_with(|| json!([]));
        e.as_array_mut().expect("env array").push(json!(kv));
        self
    }
    pub fn cwd(&mut self, cwd: &str) -> &mut Self {
        self.set("/process/cwd", json!(cwd))
    }
    pub fn user(&mut self, uid: u32, gid: u32) -> &mut Self {
        self.set("/process/user/uid", json!(uid))
            .set("/process/user/gid", json!(gid))
    }
    pub fn additional_gids(&mut self, gids: &[u32]) -> &mut Self {
        self.set("/process/user/additionalGids", json!(gids))
    }
    pub fn umask(&mut self, umask: u32) -> &mut Self {
        self.set("/process/user/umask", json!(umask))
    }
    pub fn terminal(&mut self, on: bool) -> &mut Self {
        self.set("/process/terminal", json!(on))
    }
    /// Replaces rlimits: `(type, soft, hard)`.
    pub fn rlimits(&mut self, limits: &[(&str, u64, u64)]) -> &mut Self {
        let v: Vec<Value> = limits
            .iter()
            .map(|(t, s, h)| json!({"type": t, "soft": s, "hard": h}))
            .collect();
        self.set("/process/rlimits", Value::Array(v))
    }
    /// Sets one capability set (`bounding`, `effective`, `permitted`, `inheritable`, `ambient`).
    pub fn caps(&mut self, set: &str, caps: &[&str]) -> &mut Self {
        self.set(&format!("/process/capabilities/{set}"), json!(caps))
    }
    pub fn no_new_privileges(&mut self, on: bool) -> &mut Self {
        self.set("/process/noNewPrivileges", json!(on))
    }
    pub fn hostname(&mut self, h: &str) -> &mut Self {
        self.set("/hostname", json!(h))
    }
    pub fn domainname(&mut self, d: &str) -> &mut Self {
        self.set("/domainname", json!(d))
    }
    pub fn readonly_root(&mut self, ro: bool) -> &mut Self {
        self.set("/root/readonly", json!(ro))
    }
    pub fn annotation(&mut self, k: &str, v: &str) -> &mut Self {
        self.obj("/annotations").insert(k.to_string(), json!(v));
        self
    }
    /// Appends a mount.
    pub fn add_mount(
        &mut self,
        dest: &str,
        typ: &str,
        source: &str,
        options: &[&str],
    ) -> &mut Self {
        self.push_mount(
            json!({"destination": dest, "type": typ, "source": source, "options": options}),
        )
    }
    /// Appends a bind mount (`type: bind`, `bind` first in options).
    pub fn add_bind(&mut self, source: &Path, dest: &str, options: &[&str]) -> &mut Self {
        let mut o = vec!["bind"];
        o.extend_from_slice(options);
        self.add_mount(dest, "bind", &source.to_string_lossy(), &o)
    }
    pub fn push_mount(&mut self, m: Value) -> &mut Self {
        let arr = self
            .config
            .as_object_mut()
            .expect("config object")
            .entry("mounts")
            .or_insert_with(|| json!([]));
        arr.as_array_mut().expect("mounts array").push(m);
        self
    }
    /// Removes every mount whose destination is `dest`.
    pub fn remove_mount(&mut self, dest: &str) -> &mut Self {
        if let Some(a) = self.config["mounts"].as_array_mut() {
            a.retain(|m| m["destination"] != dest);
        }
        self
    }
    fn ns_array(&mut self) -> &mut Vec<Value> {
        self.obj("/linux")
            .entry("namespaces")
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .expect("namespaces array")
    }
    /// Replaces the namespace list with these types (no paths).
    pub fn namespaces(&mut self, types: &[&str]) -> &mut Self {
        let v = types.iter().map(|t| json!({"type": t})).collect();
        *self.ns_array() = v;
        self
    }
    pub fn remove_namespace(&mut self, typ: &str) -> &mut Self {
        self.ns_array().retain(|n| n["type"] != typ);
        self
    }
    /// Adds (or replaces) a namespace entry, optionally joining `path`.
    pub fn namespace(&mut self, typ: &str, path: Option<&Path>) -> &mut Self {
        self.remove_namespace(typ);
        let mut n = json!({"type": typ});
        if let Some(p) = path {
            n["path"] = json!(p.to_string_lossy());
        }
        self.ns_array().push(n);
        self
    }
    pub fn has_namespace(&self, typ: &str) -> bool {
        self.config["linux"]["namespaces"]
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n["type"] == typ))
    }
    /// A user namespace mapping container 0.. onto host `host..host+size`.
    pub fn user_namespace(&mut self, host: u32, size: u32) -> &mut Self {
        self.namespace("user", None);
        let m = json!([{"containerID": 0, "hostID": host, "size": size}]);
        self.set("/linux/uidMappings", m.clone())
            .set("/linux/gidMappings", m)
    }
    /// Appends a hook: `kind` is prestart, createRuntime, createContainer, startContainer,
    /// poststart or poststop.
    pub fn add_hook(
        &mut self,
        kind: &str,
        path: &str,
        args: &[&str],
        env: &[&str],
        timeout: Option<u32>,
    ) -> &mut Self {
        let mut h = json!({"path": path, "args": args});
        if !env.is_empty() {
            h["env"] = json!(env);
        }
        if let Some(t) = timeout {
            h["timeout"] = json!(t);
        }
        self.obj("/hooks")
            .entry(kind.to_string())
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .expect("hooks array")
            .push(h);
        self
    }
    pub fn sysctl(&mut self, k: &str, v: &str) -> &mut Self {
        self.obj("/linux/sysctl").insert(k.to_string(), json!(v));
        self
    }
    pub fn oom_score_adj(&mut self, v: i32) -> &mut Self {
        self.set("/process/oomScoreAdj", json!(v))
    }
    pub fn masked_paths(&mut self, p: &[&str]) -> &mut Self {
        self.set("/linux/maskedPaths", json!(p))
    }
    pub fn readonly_paths(&mut self, p: &[&str]) -> &mut Self {
        self.set("/linux/readonlyPaths", json!(p))
    }
    /// Appends a `linux.devices` entry.
    pub fn add_device(
        &mut self,
        path: &str,
        typ: &str,
        major: i64,
        minor: i64,
        mode: u32,
    ) -> &mut Self {
        let d = json!({"path": path, "type": typ, "major": major, "minor": minor, "fileMode": mode, "uid": 0, "gid": 0});
        self.obj("/linux")
            .entry("devices")
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .expect("devices array")
            .push(d);
        self
    }
    pub fn cgroups_path(&mut self, p: &str) -> &mut Self {
        self.set("/linux/cgroupsPath", json!(p))
    }
}

/// One test's world: temp dir, state root, bundles, ids, cleanups.
pub struct TestCtx {
    pub name: String,
    dir: Option<tempfile::TempDir>,
    pub rt: Runtime,
    ids: RefCell<Vec<String>>,
    cleanups: RefCell<Vec<Box<dyn FnOnce()>>>,
    bundles: Cell<usize>,
}

impl TestCtx {
    /// A fresh context; `name` shows up in ids and temp dir names.
    pub fn new(name: &str) -> TestCtx {
        let bin = runtime_binary();
        let _ = fixture_dir();
        let dir = tempfile::Builder::new()
            .prefix(&format!("codex-test-{}-", sanitize(name)))
            .tempdir()
            .expect("create test temp dir");
        // Containers with a user namespace run as unprivileged host uids: let them traverse.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
        let root = dir.path().join("state");
        let scratch = dir.path().join("scratch");
        fs::create_dir(&scratch).expect("mkdir scratch");
        TestCtx {
            name: name.to_string(),
            rt: Runtime { bin, root, scratch },
            dir: Some(dir),
            ids: RefCell::new(Vec::new()),
            cleanups: RefCell::new(Vec::new()),
            bundles: Cell::new(0),
        }
    }

    /// Same as [`TestCtx::new`] but running another runtime binary (e.g. a copy).
    pub fn with_binary(name: &str, bin: &Path) -> TestCtx {
        let mut c = TestCtx::new(name);
        c.rt.bin = bin.to_path_buf();
        c
    }

    /// The test's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("temp dir").path()
    }

    /// A path inside the test's temp dir.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir().join(rel)
    }

    /// A fresh directory inside the temp dir (mode 0755).
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(&p).expect("mkdir");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    /// A unique container id `t-<pid>-<counter>-<name>`, deleted (--force) on drop.
    pub fn id(&self, name: &str) -> String {
        let id = format!("t-{}-{}-{}", std::process::id(), next(), sanitize(name));
        self.ids.borrow_mut().push(id.clone());
        id
    }

    /// Registers an id that was not made by [`TestCtx::id`] for `delete --force` on drop.
    pub fn track_id(&self, id: &str) {
        self.ids.borrow_mut().push(id.to_string());
    }

    /// Runs `f` when the context is dropped (before the temp dir is removed), in reverse order.
    pub fn on_cleanup(&self, f: impl FnOnce() + 'static) {
        self.cleanups.borrow_mut().push(Box::new(f));
    }

    /// A new bundle: its own copy of the fixture rootfs and the fixture's config.json.
    pub fn bundle(&self) -> Bundle {
        let n = self.bundles.get();
        self.bundles.set(n + 1);
        let dir = self.mkdir(&format!("bundle{n}"));
        let st = Command::new("cp")
            .arg("-a")
            .arg(fixture_dir().join("rootfs"))
            .arg(dir.join("rootfs"))
            .status()
            .expect("cp rootfs");
        assert!(st.success(), "copy fixture rootfs");
        let config: Value = serde_json::from_slice(
            &fs::read(fixture_dir().join("config.json")).expect("read fixture config"),
        )
        .expect("fixture config is JSON");
        Bundle { dir, config }
    }

    /// A new bundle whose `root.path` is the shared fixture rootfs (absolute, read-only).
    /// Only for configs that do not create anything in the rootfs.
    pub fn bundle_shared_rootfs(&self) -> Bundle {
        let n = self.bundles.get();
        self.bundles.set(n + 1);
        let dir = self.mkdir(&format!("bundle{n}"));
        let config: Value = serde_json::from_slice(
            &fs::read(fixture_dir().join("config.json")).expect("read fixture config"),
        )
        .expect("fixture config is JSON");
        let mut b = Bundle { dir, config };
        b.set(
            "/root/path",
            json!(fixture_dir().join("rootfs").to_string_lossy()),
        );
        b.readonly_root(true);
        b
    }

    fn container_io(&self, id: &str) -> (PathBuf, PathBuf) {
        // ids may be invalid on purpose ("../x", "a/b", ""): encode them into a file name
        let key: String = id
            .bytes()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'+') {
                    (c as char).to_string()
                } else {
                    format!("%{c:02X}")
                }
            })
            .collect();
        (
            self.rt.scratch.join(format!("io-{key}.stdout")),
            self.rt.scratch.join(format!("io-{key}.stderr")),
        )
    }

    /// Foreground `run --bundle B [extra] ID`: returns when the container has exited.
    #[track_caller]
    pub fn run(&self, b: &Bundle, id: &str, extra: &[&str]) -> Out {
        b.save();
        let mut args = vec!["run", "--bundle"];
        let d = b.dir.to_string_lossy().into_owned();
        args.push(&d);
        args.extend_from_slice(extra);
        args.push(id);
        let (o, e) = self.container_io(id);
        try_run_to(&mut self.rt.command(&args), &o, &e, CMD_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `script` with `sh -c` in a container made from `b` and returns the output; the
    /// run must succeed.
    #[track_caller]
    pub fn run_sh(&self, b: &mut Bundle, script: &str) -> Out {
        b.sh(script);
        let id = self.id("sh");
        let o = self.run(b, &id, &[]);
        o.assert_ok();
        o
    }

    /// Foreground `run` in the background (the runtime keeps running while the test acts).
    pub fn spawn_run(&self, b: &Bundle, id: &str, extra: &[&str]) -> Background {
        b.save();
        let d = b.dir.to_string_lossy().into_owned();
        let mut args = vec!["run", "--bundle", d.as_str()];
        args.extend_from_slice(extra);
        args.push(id);
        let (o, e) = self.container_io(id);
        let mut cmd = self.rt.command(&args);
        let line = cmdline(&cmd);
        cmd.stdin(Stdio::null())
            .stdout(File::create(&o).expect("stdout file"))
            .stderr(File::create(&e).expect("stderr file"));
        let child = cmd.spawn().expect("spawn runtime");
        Background {
            child,
            out_path: o,
            err_path: e,
            cmdline: line,
            waited: false,
        }
    }

    /// `create --bundle B [extra] ID`; the container's stdout/stderr go to files readable
    /// with [`TestCtx::stdout_of`].
    #[track_caller]
    pub fn create(&self, b: &Bundle, id: &str, extra: &[&str]) -> Out {
        b.save();
        let d = b.dir.to_string_lossy().into_owned();
        let mut args = vec!["create", "--bundle", d.as_str()];
        args.extend_from_slice(extra);
        args.push(id);
        let (o, e) = self.container_io(id);
        try_run_to(&mut self.rt.command(&args), &o, &e, CMD_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Everything written so far to the stdout file of container `id` (create/run).
    pub fn stdout_of(&self, id: &str) -> String {
        read_lossy(&self.container_io(id).0)
    }

    /// Polls until container `id`'s stdout contains `needle`.
    #[track_caller]
    pub fn wait_for_stdout(&self, id: &str, needle: &str) -> String {
        let mut last = String::new();
        let ok = wait_until(WAIT, || {
            last = self.stdout_of(id);
            last.contains(needle)
        });
        assert!(
            ok,
            "container {id} never printed {needle:?}; stdout so far: {last:?}; stderr: {:?}",
            read_lossy(&self.container_io(id).1)
        );
        last
    }

    /// `create` then `start`, both must succeed; the container is running afterwards.
    #[track_caller]
    pub fn create_and_start(&self, b: &Bundle, id: &str) {
        self.create(b, id, &[]).assert_ok();
        self.rt.run(&["start", id]).assert_ok();
    }

    /// `exec` with arguments, to completion.
    #[track_caller]
    pub fn exec(&self, id: &str, opts: &[&str], argv: &[&str]) -> Out {
        let mut args = vec!["exec"];
        args.extend_from_slice(opts);
        args.push(id);
        args.extend_from_slice(argv);
        self.rt.run(&args)
    }

    /// A new persistent network namespace bound on a file in the temp dir (via
    /// `unshare --net=FILE`), unmounted on cleanup.
    #[track_caller]
    pub fn new_netns(&self) -> PathBuf {
        let p = self.path(&format!("netns{}", next()));
        File::create(&p).expect("create netns file");
        host_sh(&format!("unshare --net={} true", p.display())).assert_ok();
        let q = p.clone();
        self.on_cleanup(move || {
            if let Ok(c) = std::ffi::CString::new(q.to_string_lossy().into_owned()) {
                // SAFETY: plain syscall on a NUL-terminated path.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        });
        p
    }
}

impl Drop for TestCtx {
    fn drop(&mut self) {
        let ids: Vec<String> = self.ids.borrow_mut().drain(..).rev().collect();
        for id in ids {
            let (o, e) = self.rt.scratch_pair("cleanup");
            let _ = try_run_to(
                &mut self.rt.command(&["delete", "--force", &id]),
                &o,
                &e,
                Duration::from_secs(30),
            );
        }
        let cleanups: Vec<_> = self.cleanups.borrow_mut().drain(..).rev().collect();
        for f in cleanups {
            f();
        }
        if let Some(d) = self.dir.take() {
            unmount_under(d.path());
            if std::env::var_os("CODEX_TESTS_KEEP").is_some() {
                eprintln!("CODEX_TESTS_KEEP: leaving {}", d.keep().display());
            }
        }
    }
}

fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    if s.is_empty() {
        "x".into()
    } else {
        s
    }
}

/// Copies the runtime under test to `dir/name` (mode 0755) and returns the copy's path.
pub fn copy_runtime_to(dir: &Path, name: &str) -> PathBuf {
    let dst = dir.join(name);
    fs::copy(runtime_binary(), &dst).expect("copy runtime binary");
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).expect("chmod runtime copy");
    dst
}

/// Prints a loud skip line (never skip silently).
pub fn skip(why: &str) {
    eprintln!("SKIP: {why}");
}

/// Directories under the cgroup hierarchies (v1 controllers and the v2/unified tree) whose
/// name contains `needle` (searched a few levels deep): leftovers of a container.
pub fn cgroup_dirs_containing(needle: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, needle: &str, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd.filter_map(|e| e.ok()) {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let p = e.path();
            if e.file_name().to_string_lossy().contains(needle) {
                out.push(p.clone());
            }
            if depth > 0 {
                walk(&p, needle, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    if !needle.is_empty() {
        walk(Path::new("/sys/fs/cgroup"), needle, 5, &mut out);
    }
    out
}

/// The cgroup path of `pid` for a v1 controller (e.g. "pids") or "" for the v2 line.
pub fn cgroup_of(pid: i64, controller: &str) -> Option<String> {
    let t = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    parse_cgroup_line(&t, controller)
}

/// Finds the path for `controller` in a /proc/PID/cgroup text ("" = the v2 `0::` line).
pub fn parse_cgroup_line(text: &str, controller: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let (_, ctrls, path) = (it.next()?, it.next()?, it.next()?);
        let hit = if controller.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == controller)
        };
        hit.then(|| path.to_string())
    })
}
