//! One test's world ([`TestCtx`]) and its cleanup.

use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cmd::{
    cmd_timeout, cmdline, host_sh, own_group, read_lossy, run_command, try_run_to, wait_until, Out,
};
use crate::{fixture_dir, next, runtime_binary, unmount_under, Background, Bundle, Runtime, WAIT};

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
        run_command(
            Command::new("cp")
                .arg("-a")
                .arg(fixture_dir().join("rootfs"))
                .arg(dir.join("rootfs")),
        )
        .assert_ok();
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
        try_run_to(&mut self.rt.command(&args), &o, &e, cmd_timeout())
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
        self.spawn_run_with_env(b, id, extra, &[])
    }

    /// [`TestCtx::spawn_run`] with extra environment for the runtime (test points).
    pub fn spawn_run_with_env(
        &self,
        b: &Bundle,
        id: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Background {
        b.save();
        let d = b.dir.to_string_lossy().into_owned();
        let mut args = vec!["run", "--bundle", d.as_str()];
        args.extend_from_slice(extra);
        args.push(id);
        let (o, e) = self.container_io(id);
        let mut cmd = self.rt.command(&args);
        cmd.envs(env.iter().copied());
        let line = cmdline(&cmd);
        own_group(&mut cmd)
            .stdin(Stdio::null())
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
        try_run_to(&mut self.rt.command(&args), &o, &e, cmd_timeout())
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
        let mut problems = Vec::new();
        let ids: Vec<String> = self.ids.borrow_mut().drain(..).rev().collect();
        for id in ids {
            let (o, e) = self.rt.scratch_pair("cleanup");
            let del = try_run_to(
                &mut self.rt.command(&["delete", "--force", &id]),
                &o,
                &e,
                cmd_timeout(),
            );
            // `delete --force` of an id that never became a container may fail (codex says
            // "does not exist", runc does not): only a hang, a crash or state left behind is
            // a failed cleanup.
            match del {
                Err(e) => problems.push(e),
                Ok(o) => {
                    if let Some(why) = o.crash() {
                        problems.push(format!("`{}` crashed ({why}): {}", o.cmdline, o.stderr));
                    } else if !o.ok() && plausible_id(&id) && self.rt.root_has_entry(&id) {
                        problems.push(format!(
                            "`{}` failed and left state behind ({:?}): {}",
                            o.cmdline,
                            self.rt.root_entries(),
                            o.stderr.trim()
                        ));
                    }
                }
            }
        }
        let cleanups: Vec<_> = self.cleanups.borrow_mut().drain(..).rev().collect();
        for f in cleanups {
            if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                problems.push(format!(
                    "a registered cleanup panicked: {}",
                    panic_text(&*p)
                ));
            }
        }
        if let Some(d) = self.dir.take() {
            unmount_under(d.path());
            if std::env::var_os("CODEX_TESTS_KEEP").is_some() {
                eprintln!("CODEX_TESTS_KEEP: leaving {}", d.keep().display());
            } else {
                let p = d.path().to_path_buf();
                if let Err(e) = d.close() {
                    // A client's own cleanup (podman's exit command, run by conmon once
                    // the container has gone) may still hold a mount here for a moment.
                    let retried = e.kind() == std::io::ErrorKind::ResourceBusy
                        && (0..20).any(|_| {
                            std::thread::sleep(std::time::Duration::from_millis(100));
                            unmount_under(&p);
                            std::fs::remove_dir_all(&p).is_ok()
                        });
                    if !retried {
                        problems.push(format!("removing {}: {e}", p.display()));
                    }
                }
            }
        }
        report_cleanup(&self.name, &problems);
    }
}

/// Could `id` name a directory in a state root? (Ids such as "" or ".." are invalid on
/// purpose in some tests; searching the root for them would match anything.)
fn plausible_id(id: &str) -> bool {
    id.len() > 2
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'+' | b'.'))
}

/// The message of a caught panic.
pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-string panic)".into())
}

/// Reports what a cleanup could not undo. Printed always; a failure of the test when the test
/// itself passed (a panic in Drop while already panicking would abort and hide the test's own
/// failure, so then it is only printed). `CODEX_CLEANUP_FAILURES=warn` (the mutant check)
/// only prints.
pub(crate) fn report_cleanup(what: &str, problems: &[String]) {
    if problems.is_empty() {
        return;
    }
    let text = problems.join("\n  ");
    eprintln!("CLEANUP FAILED for {what}:\n  {text}");
    let warn_only = std::env::var("CODEX_CLEANUP_FAILURES").is_ok_and(|v| v == "warn");
    if !std::thread::panicking() && !warn_only {
        panic!("cleanup of {what} failed:\n  {text}");
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
