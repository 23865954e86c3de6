//! The kubelet's path to the runtime: containerd's CRI plugin with a runtime handler
//! `codex` (runc shim, `BinaryName` = the runtime under test behind a logging wrapper),
//! driven over the CRI v1 gRPC API by a small client (`cri/client.rs`) exactly as a
//! kubelet drives it: pod sandbox with a CNI address, containers, exec, CRI logs, stats,
//! exit codes, an OOM kill and teardown. No cluster, nothing pulled: the sandbox and
//! workload images are the busybox fixture imported into containerd's `k8s.io` namespace.
//! The daemon runs in a network namespace the test made (`cri/daemon.rs`).

mod cri {
    pub mod client;
    pub mod daemon;
}

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use codex_tests::*;
use cri::client::{ok, Cri};
use cri::daemon::{image_archive, CriContainerd, CNI_BIN};
use k8s_cri::v1 as api;

const HANDLER: &str = "codex";

/// The runtime under test behind a wrapper that appends each call's arguments to a log:
/// the proof that containerd ran it through the handler and not its default runc.
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

/// Everything the test needs on the host; missing → a visible skip (a failure in CI).
fn ready(what: &str) -> bool {
    for tool in [
        "containerd",
        "ctr",
        "containerd-shim-runc-v2",
        "nsenter",
        "unshare",
    ] {
        if !have_tool(tool) {
            skip(&format!(
                "{what}: {tool} is not installed (apt-get install -y containerd util-linux)"
            ));
            return false;
        }
    }
    for plugin in ["bridge", "host-local", "loopback"] {
        if !Path::new(CNI_BIN).join(plugin).exists() {
            skip(&format!(
                "{what}: CNI plugin {CNI_BIN}/{plugin} is missing \
                 (apt-get install -y containernetworking-plugins)"
            ));
            return false;
        }
    }
    true
}

/// A daemon with both images imported into `k8s.io` and a connected client.
struct Setup {
    cd: CriContainerd,
    cri: Cri,
    image: String,
    calls: PathBuf,
}

fn setup(ctx: &TestCtx) -> Setup {
    let tag = format!("{}-{}", std::process::id(), ctx.id("img"));
    let pause = format!("localhost/codex-pause:{tag}");
    let image = format!("localhost/codex-busybox:{tag}");
    // The sandbox image's entrypoint only has to outlive the pod; StopPodSandbox SIGKILLs it.
    let archive = image_archive(ctx, &[&pause, &image], &["sleep", "2147483647"]);
    let (bin, calls) = logged_runtime(ctx);
    let cd = CriContainerd::start(ctx, &bin, &pause);
    run_timeout(
        &mut cd.ctr(&["images", "import", archive.to_str().unwrap()]),
        Duration::from_secs(120),
    )
    .assert_ok();
    let cri = Cri::connect(&cd.sock).unwrap_or_else(|e| panic!("{e}"));
    // containerd boots without a CRI plugin whose config it refuses: say why
    if let Err(e) = cri.rs("Version", |mut c| async move {
        c.version(api::VersionRequest::default()).await
    }) {
        panic!("the CRI does not answer ({e:?}):\n{}", read_lossy(&cd.log));
    }
    // the CRI's image cache follows containerd's image store by events: wait for both
    for name in [&pause, &image] {
        let status = || {
            let n = name.to_string();
            cri.is("ImageStatus", |mut c| async move {
                c.image_status(api::ImageStatusRequest {
                    image: Some(api::ImageSpec {
                        image: n,
                        ..Default::default()
                    }),
                    verbose: false,
                })
                .await
            })
        };
        let seen = wait_until(Duration::from_secs(30), || {
            status().is_ok_and(|r| r.image.is_some())
        });
        assert!(
            seen,
            "the CRI never saw the imported image {name}: {:?}\n{}",
            status(),
            read_lossy(&cd.log)
        );
    }
    Setup {
        cd,
        cri,
        image,
        calls,
    }
}

fn sandbox_config(cd: &CriContainerd, name: &str) -> api::PodSandboxConfig {
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}-{}", std::process::id()),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: cd.pod_logs.to_string_lossy().into_owned(),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: cd.cgroup_parent.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(
    image: &str,
    name: &str,
    script: &str,
    linux: Option<api::LinuxContainerConfig>,
) -> api::ContainerConfig {
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(api::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), script.into()],
        envs: vec![api::KeyValue {
            key: "GREETING".into(),
            value: "hello-env".into(),
        }],
        log_path: format!("{name}.log"),
        linux,
        ..Default::default()
    }
}

impl Setup {
    fn run_pod(&self, name: &str) -> (String, api::PodSandboxConfig) {
        let config = sandbox_config(&self.cd, name);
        let c = config.clone();
        let r = ok(
            "RunPodSandbox",
            self.cri.rs("RunPodSandbox", |mut cl| async move {
                cl.run_pod_sandbox(api::RunPodSandboxRequest {
                    config: Some(c),
                    runtime_handler: HANDLER.into(),
                })
                .await
            }),
        );
        (r.pod_sandbox_id, config)
    }

    fn create_start(
        &self,
        pod: &str,
        pod_config: &api::PodSandboxConfig,
        config: api::ContainerConfig,
    ) -> String {
        let (p, pc) = (pod.to_string(), pod_config.clone());
        let id = ok(
            "CreateContainer",
            self.cri.rs("CreateContainer", |mut c| async move {
                c.create_container(api::CreateContainerRequest {
                    pod_sandbox_id: p,
                    config: Some(config),
                    sandbox_config: Some(pc),
                })
                .await
            }),
        )
        .container_id;
        let i = id.clone();
        ok(
            "StartContainer",
            self.cri.rs("StartContainer", |mut c| async move {
                c.start_container(api::StartContainerRequest { container_id: i })
                    .await
            }),
        );
        id
    }

    fn status(&self, id: &str) -> api::ContainerStatus {
        let i = id.to_string();
        ok(
            "ContainerStatus",
            self.cri.rs("ContainerStatus", |mut c| async move {
                c.container_status(api::ContainerStatusRequest {
                    container_id: i,
                    verbose: false,
                })
                .await
            }),
        )
        .status
        .expect("ContainerStatus without a status")
    }

    /// Waits until the container has exited; returns its status.
    fn wait_exited(&self, id: &str) -> api::ContainerStatus {
        let exited = wait_until(Duration::from_secs(60), || {
            self.status(id).state == api::ContainerState::ContainerExited as i32
        });
        let st = self.status(id);
        assert!(exited, "container {id} never exited: {st:?}");
        st
    }

    fn exec_sync(&self, id: &str, cmd: &[&str]) -> api::ExecSyncResponse {
        let (i, cmd) = (id.to_string(), cmd.iter().map(|s| s.to_string()).collect());
        ok(
            "ExecSync",
            self.cri.rs("ExecSync", |mut c| async move {
                c.exec_sync(api::ExecSyncRequest {
                    container_id: i,
                    cmd,
                    timeout: 60,
                })
                .await
            }),
        )
    }

    fn remove_container(&self, id: &str) {
        let i = id.to_string();
        ok(
            "StopContainer",
            self.cri.rs("StopContainer", |mut c| async move {
                c.stop_container(api::StopContainerRequest {
                    container_id: i,
                    timeout: 2,
                })
                .await
            }),
        );
        let i = id.to_string();
        ok(
            "RemoveContainer",
            self.cri.rs("RemoveContainer", |mut c| async move {
                c.remove_container(api::RemoveContainerRequest { container_id: i })
                    .await
            }),
        );
    }

    fn remove_pod(&self, pod: &str) {
        let p = pod.to_string();
        ok(
            "StopPodSandbox",
            self.cri.rs("StopPodSandbox", |mut c| async move {
                c.stop_pod_sandbox(api::StopPodSandboxRequest { pod_sandbox_id: p })
                    .await
            }),
        );
        let p = pod.to_string();
        ok(
            "RemovePodSandbox",
            self.cri.rs("RemovePodSandbox", |mut c| async move {
                c.remove_pod_sandbox(api::RemovePodSandboxRequest { pod_sandbox_id: p })
                    .await
            }),
        );
    }

    /// Registers a cleanup that stops and removes every pod the daemon still has (the
    /// kubelet's teardown), so a failing test leaves no sandbox behind.
    fn teardown_on_cleanup(&self, ctx: &TestCtx) {
        let sock = self.cd.sock.clone();
        ctx.on_cleanup(move || {
            let Ok(cri) = Cri::connect(&sock) else { return };
            let pods = cri
                .rs("ListPodSandbox", |mut c| async move {
                    c.list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
                        .await
                })
                .map(|r| r.items)
                .unwrap_or_default();
            for p in pods {
                let id = p.id.clone();
                let _ = cri.rs("StopPodSandbox", |mut c| async move {
                    c.stop_pod_sandbox(api::StopPodSandboxRequest { pod_sandbox_id: id })
                        .await
                });
                let id = p.id.clone();
                let _ = cri.rs("RemovePodSandbox", |mut c| async move {
                    c.remove_pod_sandbox(api::RemovePodSandboxRequest { pod_sandbox_id: id })
                        .await
                });
            }
        });
    }
}

/// The CRI log file's lines as (stream, text) for full lines: the format is
/// `<RFC3339Nano time> <stdout|stderr> <F|P> <text>`.
fn cri_log_lines(path: &Path) -> Vec<(String, String)> {
    read_lossy(path)
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(4, ' ');
            let (ts, stream, tag, text) = (f.next()?, f.next()?, f.next()?, f.next()?);
            (ts.contains('T') && tag == "F").then(|| (stream.to_string(), text.to_string()))
        })
        .collect()
}

/// The container's memory limit as its cgroup says (v1 memory controller or v2 tree).
fn memory_limit_of(cgroup_path: &str) -> Option<String> {
    let mounts = cgroup_mounts();
    if cgroup_v2_only() {
        let d = cgroup_dir_in(&mounts, "", cgroup_path)?;
        fs::read_to_string(d.join("memory.max")).ok()
    } else {
        let d = cgroup_dir_in(&mounts, "memory", cgroup_path)?;
        fs::read_to_string(d.join("memory.limit_in_bytes")).ok()
    }
    .map(|s| s.trim().to_string())
}

#[test]
fn cri_runs_a_pod_through_the_codex_handler() {
    if !ready("cri_runs_a_pod_through_the_codex_handler") {
        return;
    }
    let ctx = TestCtx::new("cri-pod");
    let s = setup(&ctx);
    s.teardown_on_cleanup(&ctx);

    let v = ok(
        "Version",
        s.cri.rs("Version", |mut c| async move {
            c.version(api::VersionRequest {
                version: "v1".into(),
            })
            .await
        }),
    );
    assert_eq!(v.runtime_api_version, "v1", "{v:?}");
    assert_eq!(v.runtime_name, "containerd", "{v:?}");

    let (pod, pod_config) = s.run_pod("codex-pod");
    let p = pod.clone();
    let st = ok(
        "PodSandboxStatus",
        s.cri.rs("PodSandboxStatus", |mut c| async move {
            c.pod_sandbox_status(api::PodSandboxStatusRequest {
                pod_sandbox_id: p,
                verbose: false,
            })
            .await
        }),
    )
    .status
    .expect("PodSandboxStatus without a status");
    assert_eq!(
        st.state,
        api::PodSandboxState::SandboxReady as i32,
        "{st:?}"
    );
    assert_eq!(st.runtime_handler, HANDLER, "{st:?}");
    let ip = st.network.map(|n| n.ip).unwrap_or_default();
    assert!(
        ip.starts_with(&s.cd.subnet_prefix),
        "the pod's IP {ip:?} is not from the CNI range {}0/24",
        s.cd.subnet_prefix
    );
    // CNI made its bridge in the daemon's namespace, not on the host
    assert!(
        !host_sh(&format!("ip link show {}", s.cd.bridge)).ok(),
        "bridge {} appeared in the host's network namespace",
        s.cd.bridge
    );

    let limit: i64 = 64 << 20;
    let linux = api::LinuxContainerConfig {
        resources: Some(api::LinuxContainerResources {
            memory_limit_in_bytes: limit,
            ..Default::default()
        }),
        security_context: Some(api::LinuxContainerSecurityContext {
            run_as_user: Some(api::Int64Value { value: 1000 }),
            readonly_rootfs: true,
            ..Default::default()
        }),
    };
    let main = s.create_start(
        &pod,
        &pod_config,
        container_config(
            &s.image,
            "main",
            "echo \"out $GREETING\"; echo err-line >&2; exec sleep 100000",
            Some(linux),
        ),
    );
    let st = s.status(&main);
    assert_eq!(
        st.state,
        api::ContainerState::ContainerRunning as i32,
        "{st:?}"
    );

    // ExecSync: output, exit code, the CRI's user and read-only root, and the pod's address
    let r = s.exec_sync(
        &main,
        &[
            "sh",
            "-c",
            "echo exec-out; id -u; touch /x 2>/dev/null || echo ro; ip -o -4 addr show eth0; exit 3",
        ],
    );
    let out = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.exit_code, 3, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.get(..3),
        Some(&["exec-out", "1000", "ro"][..]),
        "{out}"
    );
    assert!(out.contains(&format!("inet {ip}/")), "{out}");

    // the limit reached the container's cgroup under the pod's cgroup parent
    assert_eq!(
        memory_limit_of(&format!("{}/{main}", s.cd.cgroup_parent)).as_deref(),
        Some(limit.to_string().as_str()),
        "memory limit of {main}"
    );

    // the CRI log file, in CRI format, with both streams
    let log = s.cd.pod_logs.join("main.log");
    let both = wait_until(Duration::from_secs(20), || cri_log_lines(&log).len() >= 2);
    let lines = cri_log_lines(&log);
    assert!(both, "log {}: {}", log.display(), read_lossy(&log));
    assert!(
        lines.contains(&("stdout".into(), "out hello-env".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("stderr".into(), "err-line".into())),
        "{lines:?}"
    );

    // stats from the container's cgroup
    let m = main.clone();
    let stats = ok(
        "ContainerStats",
        s.cri.rs("ContainerStats", |mut c| async move {
            c.container_stats(api::ContainerStatsRequest { container_id: m })
                .await
        }),
    )
    .stats
    .expect("ContainerStats without stats");
    let mem = stats
        .memory
        .as_ref()
        .and_then(|m| m.working_set_bytes.as_ref())
        .map_or(0, |v| v.value);
    let cpu = stats
        .cpu
        .as_ref()
        .and_then(|c| c.usage_core_nano_seconds.as_ref())
        .map_or(0, |v| v.value);
    assert!(mem > 0 || cpu > 0, "empty stats: {stats:?}");

    // a container that exits non-zero reports its code
    let failing = s.create_start(
        &pod,
        &pod_config,
        container_config(&s.image, "fails", "exit 7", None),
    );
    let st = s.wait_exited(&failing);
    assert_eq!(st.exit_code, 7, "{st:?}");
    s.remove_container(&failing);

    s.remove_container(&main);
    s.remove_pod(&pod);
    let left = ok(
        "ListPodSandbox",
        s.cri.rs("ListPodSandbox", |mut c| async move {
            c.list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
                .await
        }),
    );
    assert!(left.items.is_empty(), "{left:?}");

    // positive control: the handler ran the runtime under test for every step
    let calls = read_lossy(&s.calls);
    for verb in ["create", "start", "exec", "kill", "delete"] {
        assert!(
            calls
                .lines()
                .any(|l| l.split_whitespace().any(|w| w == verb)),
            "containerd never called the runtime under test with `{verb}`; its calls:\n{calls}"
        );
    }
    let errors = s.cd.runtime_error_lines();
    assert!(
        errors.is_empty(),
        "containerd logged runtime errors:\n{}",
        errors.join("\n")
    );
}

#[test]
fn cri_reports_an_oom_kill_under_the_codex_handler() {
    if !ready("cri_reports_an_oom_kill_under_the_codex_handler") {
        return;
    }
    let ctx = TestCtx::new("cri-oom");
    let s = setup(&ctx);
    s.teardown_on_cleanup(&ctx);
    let (pod, pod_config) = s.run_pod("codex-oom");
    let linux = api::LinuxContainerConfig {
        resources: Some(api::LinuxContainerResources {
            memory_limit_in_bytes: 16 << 20,
            ..Default::default()
        }),
        security_context: None,
    };
    // tail buffers a line that never ends: its memory grows until the limit kills it
    let hog = s.create_start(
        &pod,
        &pod_config,
        container_config(&s.image, "hog", "tail /dev/zero", Some(linux)),
    );
    let st = s.wait_exited(&hog);
    assert_eq!(st.exit_code, 137, "{st:?}");
    assert_eq!(st.reason, "OOMKilled", "{st:?}");
    s.remove_container(&hog);
    s.remove_pod(&pod);
    let calls = read_lossy(&s.calls);
    assert!(calls.lines().any(|l| l.contains("create")), "{calls}");
}
