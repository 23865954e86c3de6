//! Real clients driving the runtime as they drive runc: podman (through conmon) and
//! containerd (through its runc shim, `ctr run --runc-binary`). Each test uses private
//! storage (podman --root/--runroot/--tmpdir, its own containerd with root/state/socket in
//! the temp dir) and skips loudly when the tool is not installed.

use codex_tests::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs any host command with the harness's timeout, output captured to files.
fn run_host(ctx: &TestCtx, cmd: &mut Command, timeout: Duration) -> Out {
    let n = ctx.path(&format!("host-{}", std::process::id()));
    let o = n.with_extension(format!("{}.out", fastid()));
    let e = o.with_extension("err");
    try_run_to(cmd, &o, &e, timeout).unwrap_or_else(|e| panic!("{e}"))
}

/// The runtime under test behind a wrapper that appends each call's arguments to a log, so
/// a test can show the client really ran it (and not its default runtime). Returns the
/// wrapper's path and the log's.
fn logged_runtime(ctx: &TestCtx) -> (String, PathBuf) {
    let log = ctx.path("runtime-calls.log");
    let wrapper = ctx.path("runtime-wrapper");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            ctx.rt.bin.display()
        ),
    )
    .unwrap();
    fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    (wrapper.to_string_lossy().into_owned(), log)
}

/// Asserts the client called the runtime with each of `commands` (as a whole word).
#[track_caller]
fn assert_runtime_called(log: &Path, commands: &[&str]) {
    let calls = read_lossy(log);
    for c in commands {
        assert!(
            calls.lines().any(|l| l.split_whitespace().any(|w| w == *c)),
            "the client never called the runtime under test with `{c}`; its calls:\n{calls}"
        );
    }
}

fn fastid() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// podman with storage private to one test.
struct Podman {
    root: PathBuf,
    runroot: PathBuf,
    tmpdir: PathBuf,
}

impl Podman {
    fn new(ctx: &TestCtx) -> Podman {
        // podman refuses a runroot longer than 50 characters: keep these short
        Podman {
            root: ctx.mkdir("pm/root"),
            runroot: ctx.mkdir("pm/rr"),
            tmpdir: ctx.mkdir("pm/tmp"),
        }
    }
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            .arg("--tmpdir")
            .arg(&self.tmpdir)
            .arg("--events-backend")
            .arg("file")
            .arg("--cgroup-manager")
            .arg("cgroupfs")
            .args(args);
        c
    }
    fn run(&self, ctx: &TestCtx, args: &[&str]) -> Out {
        run_host(ctx, &mut self.command(args), Duration::from_secs(120))
    }
    /// Imports the fixture rootfs as a uniquely named image; returns its name.
    fn import_fixture(&self, ctx: &TestCtx) -> String {
        let image = format!(
            "localhost/codex-test-{}-{}:latest",
            std::process::id(),
            fastid()
        );
        self.run(
            ctx,
            &[
                "import",
                fixture_dir().join("rootfs.tar").to_str().unwrap(),
                &image,
            ],
        )
        .assert_ok();
        image
    }
    /// Removes everything this podman made (its mounts go with the temp dir).
    fn reset_on_cleanup(self, ctx: &TestCtx) -> Podman {
        let cmd = {
            let mut c = self.command(&["rm", "--all", "--force", "--time", "0"]);
            c.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            c
        };
        let cmd = std::cell::RefCell::new(cmd);
        ctx.on_cleanup(move || {
            if let Ok(mut child) = cmd.borrow_mut().spawn() {
                if wait_child(&mut child, Duration::from_secs(60)).is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        });
        self
    }
}

const ULIMITS: &[&str] = &[
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

fn podman_ready(what: &str) -> bool {
    if !have_tool("podman") {
        skip(&format!(
            "{what}: podman is not installed (apt-get install -y podman)"
        ));
        return false;
    }
    true
}

#[test]
fn podman_runs_a_container_with_the_runtime() {
    if !podman_ready("podman_runs_a_container_with_the_runtime") {
        return;
    }
    let ctx = TestCtx::new("podman");
    let pm = Podman::new(&ctx).reset_on_cleanup(&ctx);
    let image = pm.import_fixture(&ctx);
    let (bin, calls) = logged_runtime(&ctx);
    let mut args = vec![
        "--runtime",
        bin.as_str(),
        "run",
        "--rm",
        "--network",
        "none",
    ];
    args.extend_from_slice(ULIMITS);
    args.extend_from_slice(&[image.as_str(), "echo", "hi"]);
    let o = pm.run(&ctx, &args);
    o.assert_ok();
    assert_eq!(o.stdout.trim(), "hi", "{o:?}");

    // the exit status comes back through conmon
    let mut args = vec![
        "--runtime",
        bin.as_str(),
        "run",
        "--rm",
        "--network",
        "none",
    ];
    args.extend_from_slice(ULIMITS);
    args.extend_from_slice(&[image.as_str(), "sh", "-c", "exit 3"]);
    pm.run(&ctx, &args).assert_code(3);
    // positive control: the client ran the runtime under test, not its default
    assert_runtime_called(&calls, &["create", "start"]);
}

#[test]
fn podman_exec_and_stop_work_with_the_runtime() {
    if !podman_ready("podman_exec_and_stop_work_with_the_runtime") {
        return;
    }
    let ctx = TestCtx::new("podman-exec");
    let pm = Podman::new(&ctx).reset_on_cleanup(&ctx);
    let image = pm.import_fixture(&ctx);
    let (bin, calls) = logged_runtime(&ctx);
    let name = format!("codex-test-{}-{}", std::process::id(), fastid());
    let mut args = vec![
        "--runtime",
        bin.as_str(),
        "run",
        "-d",
        "--name",
        name.as_str(),
        "--network",
        "none",
    ];
    args.extend_from_slice(ULIMITS);
    args.extend_from_slice(&[image.as_str(), "sleep", "1000"]);
    pm.run(&ctx, &args).assert_ok();
    let o = pm.run(
        &ctx,
        &[
            "--runtime",
            &bin,
            "exec",
            &name,
            "sh",
            "-c",
            "echo hi-from-exec; exit 4",
        ],
    );
    o.assert_code(4);
    assert_eq!(o.stdout.trim(), "hi-from-exec", "{o:?}");
    pm.run(
        &ctx,
        &["--runtime", &bin, "rm", "--force", "--time", "0", &name],
    )
    .assert_ok();
    // positive control: the client ran the runtime under test, not its default
    assert_runtime_called(&calls, &["create", "start", "exec"]);
}

#[test]
fn podman_runs_the_runtime_with_its_default_bridge_network() {
    if !podman_ready("podman_runs_the_runtime_with_its_default_bridge_network") {
        return;
    }
    if !have_tool("unshare") {
        skip("podman bridge test: unshare(1) missing");
        return;
    }
    // The bridge, veths and firewall rules podman creates live in a network namespace made
    // for this test (`unshare --net`), never on the host.
    let ctx = TestCtx::new("podman-bridge");
    let pm = Podman::new(&ctx).reset_on_cleanup(&ctx);
    let image = pm.import_fixture(&ctx);
    let (bin, calls) = logged_runtime(&ctx);
    let mut inner = pm.command(&["--runtime", &bin, "run", "--rm"]);
    inner
        .args(ULIMITS)
        .args([image.as_str(), "sh", "-c", "ip -o -4 addr show eth0"]);
    let podman_line: Vec<String> = std::iter::once(inner.get_program())
        .chain(inner.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect();
    let script = format!("ip link set lo up && exec {}", podman_line.join(" "));
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "sh", "-c", &script]);
    let o = run_host(&ctx, &mut cmd, Duration::from_secs(120));
    o.assert_ok();
    assert!(
        o.stdout.contains("eth0") && o.stdout.contains("inet "),
        "{o:?}"
    );
    // positive control: the client ran the runtime under test, not its default
    assert_runtime_called(&calls, &["create", "start"]);
}

/// A containerd daemon private to one test, stopped by its PID on cleanup.
struct Containerd {
    sock: PathBuf,
    namespace: String,
    log: PathBuf,
}

impl Containerd {
    fn start(ctx: &TestCtx) -> Containerd {
        let dir = ctx.mkdir("containerd");
        let sock = dir.join("c.sock");
        let config = dir.join("config.toml");
        fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{1}\"\n[ttrpc]\n  address = \"{1}.ttrpc\"\n\
                 [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
                dir.display(),
                sock.display()
            ),
        )
        .unwrap();
        let log = fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let child = std::cell::RefCell::new(child);
        let pid = child.borrow().id();
        ctx.on_cleanup(move || {
            let mut c = child.borrow_mut();
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            if wait_child(&mut c, Duration::from_secs(20)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        });
        let namespace = format!("codex-test-{}-{}", std::process::id(), fastid());
        let ns = namespace.clone();
        ctx.on_cleanup(move || {
            // the shim keeps runc state under /run/containerd/runc/<namespace>
            let _ = fs::remove_dir(Path::new("/run/containerd/runc").join(&ns));
            // and the namespace's parent cgroup (empty once its containers are gone) in
            // every hierarchy: v1 controllers, the hybrid unified one, or a pure v2 root
            let root = Path::new("/sys/fs/cgroup");
            let _ = fs::remove_dir(root.join(&ns));
            for h in fs::read_dir(root).into_iter().flatten().flatten() {
                let _ = fs::remove_dir(h.path().join(&ns));
            }
        });
        let c = Containerd {
            sock,
            namespace,
            log: dir.join("containerd.log"),
        };
        let ready = wait_until(Duration::from_secs(30), || {
            c.sock.exists() && run_host(ctx, &mut c.ctr(&["version"]), Duration::from_secs(10)).ok()
        });
        assert!(
            ready,
            "containerd did not come up: {}",
            read_lossy(&dir.join("containerd.log"))
        );
        c
    }
    fn ctr(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.sock)
            .arg("--namespace")
            .arg(&self.namespace)
            .args(args);
        c
    }
}

#[test]
fn containerd_runs_a_container_through_the_runc_shim_with_the_runtime() {
    for tool in ["containerd", "ctr", "containerd-shim-runc-v2", "podman"] {
        if !have_tool(tool) {
            skip(&format!(
                "containerd test: {tool} is not installed (apt-get install -y containerd podman)"
            ));
            return;
        }
    }
    let ctx = TestCtx::new("containerd");
    // a docker-archive of the busybox rootfs, made with podman
    let pm = Podman::new(&ctx).reset_on_cleanup(&ctx);
    let image = pm.import_fixture(&ctx);
    let archive = ctx.path("image.tar");
    pm.run(
        &ctx,
        &[
            "save",
            "--format",
            "docker-archive",
            "-o",
            archive.to_str().unwrap(),
            &image,
        ],
    )
    .assert_ok();

    let cd = Containerd::start(&ctx);
    run_host(
        &ctx,
        &mut cd.ctr(&["image", "import", archive.to_str().unwrap()]),
        Duration::from_secs(120),
    )
    .assert_ok();
    let (bin, calls) = logged_runtime(&ctx);
    let id = format!("t-{}-{}-ctr", std::process::id(), fastid());
    let remove_on_cleanup = |ctr_id: &str| {
        let kill = std::cell::RefCell::new(cd.ctr(&["task", "kill", "-s", "KILL", ctr_id]));
        let rm_task = std::cell::RefCell::new(cd.ctr(&["task", "rm", "-f", ctr_id]));
        let rm = std::cell::RefCell::new(cd.ctr(&["container", "rm", ctr_id]));
        ctx.on_cleanup(move || {
            for c in [&kill, &rm_task, &rm] {
                let mut c = c.borrow_mut();
                c.stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                if let Ok(mut ch) = c.spawn() {
                    if wait_child(&mut ch, Duration::from_secs(20)).is_none() {
                        let _ = ch.kill();
                        let _ = ch.wait();
                    }
                }
            }
        });
    };
    // The process also leaves a marker in a bind-mounted host dir, so a run whose stdout
    // comes back empty says whether the process ran (then only the stream was lost) or not.
    let out_dir = ctx.mkdir("ctr-out");
    let bind = format!(
        "type=bind,src={},dst=/out,options=rbind:rw",
        out_dir.display()
    );
    let echo_hi = |ctr_id: &str| {
        remove_on_cleanup(ctr_id);
        let o = run_host(
            &ctx,
            &mut cd.ctr(&[
                "run",
                "--rm",
                "--mount",
                &bind,
                "--runc-binary",
                &bin,
                &image,
                ctr_id,
                "sh",
                "-c",
                "echo hi; echo ran > /out/\"$0\"",
                ctr_id,
            ]),
            Duration::from_secs(120),
        );
        o.assert_ok();
        let ran = out_dir.join(ctr_id).exists();
        (o, ran)
    };
    let (o, ran) = echo_hi(&id);
    assert!(ran, "the container's process never ran: {o:?}");
    if o.stdout.trim().is_empty() {
        // Seen once in CI (1 of ~70 runs here reproduced nothing): exit 0, the marker
        // written, and ctr printed nothing. The process ran under the runtime and the
        // stream was lost between the shim and ctr; one more run must then deliver it,
        // and the diagnostics stay visible on stderr.
        eprintln!(
            "containerd test: ctr returned no output from a process that ran; retrying once.\n\
             containerd log tail:\n{}",
            read_lossy(&cd.log)
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
        let (o, ran) = echo_hi(&format!("{id}r"));
        assert!(ran, "the container's process never ran: {o:?}");
        assert_eq!(o.stdout.trim(), "hi", "{o:?}");
    } else {
        assert_eq!(o.stdout.trim(), "hi", "{o:?}");
    }

    let id2 = format!("{id}2");
    let o = run_host(
        &ctx,
        &mut cd.ctr(&[
            "run",
            "--rm",
            "--runc-binary",
            &bin,
            &image,
            &id2,
            "sh",
            "-c",
            "exit 3",
        ]),
        Duration::from_secs(120),
    );
    o.assert_code(3);
    // positive control: the client ran the runtime under test, not its default
    assert_runtime_called(&calls, &["create", "start"]);
}
