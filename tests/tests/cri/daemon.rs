//! A containerd private to one test with its CRI plugin on: its own root, state, socket
//! and runc root in the test's temp dir, a runtime handler `codex` whose runc shim runs the
//! runtime under test, CNI from Debian's containernetworking-plugins, and the whole daemon
//! (so its shims and CNI plugins too) inside a network namespace the test made: the bridge,
//! veths and addresses CNI creates never touch the host's network. Everything it leaves
//! (shims, container processes, cgroups, CNI records) is removed on the test's cleanup.
// Shared by cri.rs and cri_bench.rs, each of which uses a part.
#![allow(dead_code)]

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use codex_tests::netns::TestNetns;
use codex_tests::*;

/// Where Debian's containernetworking-plugins installs bridge, host-local and loopback.
pub const CNI_BIN: &str = "/usr/lib/cni";

pub struct CriContainerd {
    pub sock: PathBuf,
    pub log: PathBuf,
    /// Where the CRI writes container logs (the pod's log_directory).
    pub pod_logs: PathBuf,
    /// The cgroup parent of the pod (cgroupfs driver), unique to the test.
    pub cgroup_parent: String,
    /// The CNI network's subnet prefix ("10.x.y."), so a test can check the pod's IP.
    pub subnet_prefix: String,
    pub bridge: String,
    /// The holder of the daemon's network namespace.
    netns_pid: u32,
}

/// The runtime's options for one handler, as docs/kubernetes.md shows them.
pub fn handler_toml(name: &str, binary: &str, runc_root: &Path) -> String {
    format!(
        "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.{name}]\n\
         \x20 runtime_type = \"io.containerd.runc.v2\"\n\
         [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.{name}.options]\n\
         \x20 BinaryName = \"{binary}\"\n\
         \x20 Root = \"{}\"\n\
         \x20 SystemdCgroup = false\n",
        runc_root.display()
    )
}

impl CriContainerd {
    /// Starts containerd with the handler `codex` running `runtime` (a path), `sandbox_image`
    /// as the pause image; waits until its socket answers.
    /// `codex_options`: more lines for the `codex` handler's options (e.g. `NoPivotRoot`).
    pub fn start(
        ctx: &TestCtx,
        runtime: &str,
        sandbox_image: &str,
        codex_options: &str,
    ) -> CriContainerd {
        let uniq = format!("{}-{}", std::process::id(), next_n());
        let dir = ctx.mkdir("cri");
        let sock = dir.join("c.sock");
        let cni_conf = ctx.mkdir("cri/cni");
        let pod_logs = ctx.mkdir("cri/pod-logs");
        // private netns: the names only have to be unique among this test's own, but a
        // distinct bridge and subnet per run keep leftovers (if any) from colliding.
        let n = std::process::id() as usize + next_n();
        let bridge = format!("cxcri{}", n % 100_000);
        let subnet_prefix = format!("10.{}.{}.", 100 + n % 100, (n / 100) % 250);
        let network = format!("codex-cri-{uniq}");
        fs::write(
            cni_conf.join("10-codex.conflist"),
            format!(
                r#"{{"cniVersion": "1.0.0", "name": "{network}", "plugins": [
  {{"type": "bridge", "bridge": "{bridge}", "isGateway": true, "ipMasq": false,
    "ipam": {{"type": "host-local", "dataDir": "{ipam}",
              "ranges": [[{{"subnet": "{subnet_prefix}0/24"}}]],
              "routes": [{{"dst": "0.0.0.0/0"}}]}}}}]}}
"#,
                ipam = ctx.mkdir("cri/cni-ipam").display()
            ),
        )
        .unwrap();
        let cgroup_parent = format!("/codex-cri-{uniq}");
        let config = dir.join("config.toml");
        fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
                 [grpc]\n  address = \"{s}\"\n[ttrpc]\n  address = \"{s}.ttrpc\"\n\
                 [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n\
                 [plugins.\"io.containerd.grpc.v1.cri\"]\n\
                 \x20 sandbox_image = \"{sandbox_image}\"\n\
                 \x20 restrict_oom_score_adj = true\n\
                 \x20 netns_mounts_under_state_dir = true\n\
                 \x20 disable_apparmor = true\n\
                 \x20 stream_server_address = \"127.0.0.1\"\n\
                 \x20 stream_server_port = \"0\"\n\
                 [plugins.\"io.containerd.grpc.v1.cri\".cni]\n\
                 \x20 bin_dir = \"{CNI_BIN}\"\n\
                 \x20 conf_dir = \"{c}\"\n\
                 \x20 max_conf_num = 1\n\
                 [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n\
                 \x20 default_runtime_name = \"runc\"\n\
                 \x20 snapshotter = \"overlayfs\"\n{h}",
                d = dir.display(),
                s = sock.display(),
                c = cni_conf.display(),
                // the node's default stays runc: the tests' pods pick `codex`, the
                // benchmark's both
                h = handler_toml("codex", runtime, &dir.join("runc-root"))
                    + codex_options
                    + "\n"
                    + &handler_toml("runc", &runc_path(), &dir.join("runc-root-default")),
            ),
        )
        .unwrap();

        // Cleanups run in reverse: the daemon first, then its shims and containers, then
        // the namespace, the cgroups and the CNI cache entries.
        let network_c = network.clone();
        ctx.on_cleanup(move || remove_cni_cache(&network_c));
        let parent_c = cgroup_parent.clone();
        ctx.on_cleanup(move || remove_cgroups(&parent_c));
        let netns = TestNetns::new();
        let netns_pid = netns.pid();
        let mut cmd = netns.cmd(&["containerd", "--config", config.to_str().unwrap()]);
        ctx.on_cleanup(move || drop(netns));
        let sock_c = sock.clone();
        let parent_c = cgroup_parent.clone();
        ctx.on_cleanup(move || {
            kill_shims_of(&sock_c);
            kill_cgroup_processes(&parent_c);
        });
        let log = dir.join("containerd.log");
        let logf = fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("start containerd");
        let pid = child.id();
        let child = RefCell::new(child);
        ctx.on_cleanup(move || {
            let mut c = child.borrow_mut();
            // SAFETY: signalling our own child by its pid (nsenter exec'd containerd).
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            if wait_child(&mut c, Duration::from_secs(20)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        });
        let d = CriContainerd {
            sock,
            log,
            pod_logs,
            cgroup_parent,
            subnet_prefix,
            bridge,
            netns_pid,
        };
        let up = wait_until(Duration::from_secs(60), || {
            d.sock.exists() && run_timeout(&mut d.ctr(&["version"]), Duration::from_secs(10)).ok()
        });
        assert!(up, "containerd did not come up:\n{}", read_lossy(&d.log));
        d
    }

    /// `ctr` on this daemon in the CRI's namespace.
    pub fn ctr(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.sock)
            .args(["--namespace", "k8s.io"])
            .args(args);
        c
    }

    /// Cgroups left below the pod's cgroup parent, in any hierarchy (the runtime's
    /// `delete` removes each container's).
    pub fn cgroups_below_parent(&self) -> Vec<PathBuf> {
        let roots: Vec<PathBuf> = cgroup_mounts()
            .iter()
            .map(|m| {
                m.mount_point
                    .join(self.cgroup_parent.trim_start_matches('/'))
            })
            .collect();
        cgroup_tree(&self.cgroup_parent)
            .into_iter()
            .filter(|d| !roots.contains(d))
            .collect()
    }

    /// `argv` in the daemon's network namespace.
    pub fn in_netns(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/proc/{}/ns/net", self.netns_pid))
            .arg("--")
            .args(argv);
        c
    }

    /// The daemon's log lines that report a failed runtime call: errors naming runc (the
    /// shim's type) and any line quoting the shim's "<binary> did not terminate
    /// successfully" (its cleanup's are only warnings, e.g. "failed to remove runc
    /// container"). One shape is left out: a status with no output at all from the
    /// runtime. The shim's cleanup (its `delete` command) reports "exit status 255: "
    /// with empty output for calls that exited 0 (seen with runc as the binary too, and
    /// with a wrapper that logged the runtime's status 0): its reaper's status, not the
    /// runtime's. A runtime's own failure says why (its log.json is in the output).
    pub fn runtime_error_lines(&self) -> Vec<String> {
        read_lossy(&self.log)
            .lines()
            .filter(|l| {
                (l.contains("level=error") && l.contains("runc"))
                    || (l.contains("did not terminate successfully")
                        && !l.contains("exit status 255: \\\""))
            })
            .map(str::to_string)
            .collect()
    }
}

/// runc by its full path when installed (the shim resolves a bare name on its own PATH).
fn runc_path() -> String {
    let o = host_sh("command -v runc");
    let p = o.stdout.trim();
    if o.ok() && !p.is_empty() {
        p.to_string()
    } else {
        "runc".into()
    }
}

fn next_n() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A docker-archive holding one image made of the busybox fixture's rootfs, tagged with
/// every name in `tags`, whose entrypoint is `entrypoint`: containerd imports it as any
/// image (nothing is pulled).
pub fn image_archive(ctx: &TestCtx, tags: &[&str], entrypoint: &[&str]) -> PathBuf {
    let dir = ctx.mkdir("image");
    let layer = dir.join("layer.tar");
    fs::copy(fixture_dir().join("rootfs.tar"), &layer).unwrap();
    let sum = run_command(Command::new("sha256sum").arg(&layer));
    sum.assert_ok();
    let diff_id = sum.stdout.split_whitespace().next().unwrap().to_string();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": ["PATH=/bin:/sbin:/usr/bin:/usr/sbin"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
    });
    fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let manifest = serde_json::json!([{
        "Config": "config.json", "RepoTags": tags, "Layers": ["layer.tar"],
    }]);
    fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    let archive = ctx.path("image.tar");
    run_command(
        Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .arg("-cf")
            .arg(&archive)
            .args(["manifest.json", "config.json", "layer.tar"]),
    )
    .assert_ok();
    archive
}

/// Kills (SIGKILL) the runc shims this daemon started: those whose command line names its
/// socket, which lives in the test's temp dir (no other process can name it).
fn kill_shims_of(sock: &Path) {
    let sock = sock.to_string_lossy().into_owned();
    let Ok(rd) = fs::read_dir("/proc") else {
        return;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_shim = argv
            .first()
            .is_some_and(|a| a.ends_with("containerd-shim-runc-v2"));
        if is_shim && argv.windows(2).any(|w| w[0] == "-address" && w[1] == sock) {
            // SAFETY: plain syscall; the pid was identified just above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// The directories of `parent` (and below) in every mounted hierarchy, deepest first.
fn cgroup_tree(parent: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = fs::read_dir(d) {
            for e in rd.filter_map(|e| e.ok()) {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
                }
            }
        }
        out.push(d.to_path_buf());
    }
    let mut out = Vec::new();
    for m in cgroup_mounts() {
        let d = m.mount_point.join(parent.trim_start_matches('/'));
        if d.is_dir() {
            walk(&d, &mut out);
        }
    }
    out
}

/// SIGKILLs every process left in the pod's cgroups (after a failed test).
fn kill_cgroup_processes(parent: &str) {
    for _ in 0..50 {
        let mut any = false;
        for d in cgroup_tree(parent) {
            for pid in read_lossy(&d.join("cgroup.procs"))
                .lines()
                .filter_map(|l| l.trim().parse::<i32>().ok())
            {
                any = true;
                // SAFETY: plain syscall on a pid in the test's own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if !any {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Removes the pod's cgroups in every hierarchy (deepest first).
fn remove_cgroups(parent: &str) {
    for d in cgroup_tree(parent) {
        // a cgroup whose last process just died may be busy for a moment
        let _ = wait_until(Duration::from_secs(5), || {
            fs::remove_dir(&d).is_ok() || !d.exists()
        });
    }
}

/// libcni caches each attachment's result under /var/lib/cni/results as
/// `<network>-<container>-<ifname>`; the network's name is unique to the test.
fn remove_cni_cache(network: &str) {
    let dir = Path::new("/var/lib/cni/results");
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.filter_map(|e| e.ok()) {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{network}-"))
            {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}
