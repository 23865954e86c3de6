//! The kubelet's moves, as helpers over the CRI client: a daemon with the images
//! imported, pod and container configs, and each call a test makes, unwrapped with the
//! call's name in the panic.
// Shared by cri.rs and cri_bench.rs, each of which uses a part.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use codex_tests::*;
use k8s_cri::v1 as api;

use super::client::{ok, Cri};
use super::daemon::{image_archive, CriContainerd, CNI_BIN};

pub const HANDLER: &str = "codex";

/// The runtime under test behind a wrapper that appends each call's arguments to a log:
/// the proof that containerd ran it through the handler and not its default runc.
pub fn logged_runtime(ctx: &TestCtx) -> (String, PathBuf) {
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
pub fn ready(what: &str) -> bool {
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
pub struct Setup {
    pub cd: CriContainerd,
    pub cri: Cri,
    pub image: String,
    pub calls: PathBuf,
}

pub fn setup(ctx: &TestCtx) -> Setup {
    setup_with(ctx, "")
}

/// [`setup`] with more options for the `codex` handler (TOML lines).
pub fn setup_with(ctx: &TestCtx, codex_options: &str) -> Setup {
    let tag = format!("{}-{}", std::process::id(), ctx.id("img"));
    let pause = format!("localhost/codex-pause:{tag}");
    let image = format!("localhost/codex-busybox:{tag}");
    // The sandbox image's entrypoint only has to outlive the pod; StopPodSandbox SIGKILLs it.
    let archive = image_archive(ctx, &[&pause, &image], &["sleep", "2147483647"]);
    let (bin, calls) = logged_runtime(ctx);
    let cd = CriContainerd::start(ctx, &bin, &pause, codex_options);
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

pub fn sandbox_config(cd: &CriContainerd, name: &str) -> api::PodSandboxConfig {
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

pub fn container_config(
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
    pub fn run_pod(&self, name: &str) -> (String, api::PodSandboxConfig) {
        self.run_pod_with(name, HANDLER)
    }

    /// A pod whose RuntimeClass names `handler` (`codex`, or the node's `runc`).
    pub fn run_pod_with(&self, name: &str, handler: &str) -> (String, api::PodSandboxConfig) {
        let config = sandbox_config(&self.cd, name);
        let (c, h) = (config.clone(), handler.to_string());
        let r = ok(
            "RunPodSandbox",
            self.cri.rs("RunPodSandbox", |mut cl| async move {
                cl.run_pod_sandbox(api::RunPodSandboxRequest {
                    config: Some(c),
                    runtime_handler: h,
                })
                .await
            }),
        );
        (r.pod_sandbox_id, config)
    }

    pub fn create_start(
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

    pub fn status(&self, id: &str) -> api::ContainerStatus {
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
    pub fn wait_exited(&self, id: &str) -> api::ContainerStatus {
        let exited = wait_until(Duration::from_secs(60), || {
            self.status(id).state == api::ContainerState::ContainerExited as i32
        });
        let st = self.status(id);
        assert!(exited, "container {id} never exited: {st:?}");
        st
    }

    pub fn exec_sync(&self, id: &str, cmd: &[&str]) -> api::ExecSyncResponse {
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

    pub fn remove_container(&self, id: &str) {
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

    pub fn remove_pod(&self, pod: &str) {
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
    pub fn teardown_on_cleanup(&self, ctx: &TestCtx) {
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
pub fn cri_log_lines(path: &Path) -> Vec<(String, String)> {
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
pub fn memory_limit_of(cgroup_path: &str) -> Option<String> {
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
