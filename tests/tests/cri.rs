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
    pub mod pod;
}

use std::time::Duration;

use codex_tests::*;
use cri::client::ok;
use cri::pod::*;
use k8s_cri::v1 as api;

#[test]
fn cri_runs_a_pod_through_the_runtime_handler() {
    if !ready("cri_runs_a_pod_through_the_runtime_handler") {
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
    run_command(&mut s.cd.in_netns(&["ip", "link", "show", &s.cd.bridge])).assert_ok();
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
            capabilities: Some(api::Capability {
                drop_capabilities: vec!["ALL".into()],
                ..Default::default()
            }),
            seccomp: Some(api::SecurityProfile {
                profile_type: api::security_profile::ProfileType::RuntimeDefault as i32,
                localhost_ref: String::new(),
            }),
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

    // ExecSync: output, exit code, and the container's settings as its processes see them:
    // the user, the read-only root, no capabilities left to gain, the RuntimeDefault
    // seccomp filter and the pod's address
    let r = s.exec_sync(
        &main,
        &[
            "sh",
            "-c",
            "echo exec-out; id -u; touch /x 2>/dev/null || echo ro; \
             grep -E '^(CapBnd|Seccomp):' /proc/self/status | tr -d ' \\t'; \
             ip -o -4 addr show eth0; exit 3",
        ],
    );
    let out = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.exit_code, 3, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.get(..5),
        Some(
            &[
                "exec-out",
                "1000",
                "ro",
                "CapBnd:0000000000000000",
                "Seccomp:2"
            ][..]
        ),
        "{out}"
    );
    assert!(out.contains(&format!("inet {ip}/")), "{out}");

    // the limit reached the container's cgroup under the pod's cgroup parent
    assert_eq!(
        memory_limit_of(&format!("{}/{main}", s.cd.cgroup_parent)).as_deref(),
        Some(limit.to_string().as_str()),
        "memory limit of {main}"
    );
    // the pod's sandbox (pause) container has its cgroup under the same parent
    let pause_cg = cgroup_dir_in(
        &cgroup_mounts(),
        if cgroup_v2_only() { "" } else { "memory" },
        &format!("{}/{pod}", s.cd.cgroup_parent),
    );
    assert!(
        pause_cg.as_ref().is_some_and(|d| d.is_dir()),
        "no sandbox cgroup {pause_cg:?}"
    );
    // positive control for the check after teardown: the walk finds them now
    assert!(pause_cg.is_some_and(|d| s.cd.cgroups_below_parent().contains(&d)));

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
    // the runtime's delete removed the sandbox's and the containers' cgroups (seen above)
    let cgroups = s.cd.cgroups_below_parent();
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");

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
fn cri_reports_an_oom_kill_through_the_runtime_handler() {
    if !ready("cri_reports_an_oom_kill_through_the_runtime_handler") {
        return;
    }
    let ctx = TestCtx::new("cri-oom");
    // this daemon's handler also asks for `create --no-pivot` (runc's option for roots
    // pivot_root cannot leave, e.g. a ramdisk)
    let s = setup_with(&ctx, "  NoPivotRoot = true");
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
    assert!(
        calls
            .lines()
            .any(|l| l.contains(" create ") && l.contains(" --no-pivot ")),
        "{calls}"
    );
    let errors = s.cd.runtime_error_lines();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn cri_pod_containers_share_localhost_and_take_updates() {
    if !ready("cri_pod_containers_share_localhost_and_take_updates") {
        return;
    }
    let ctx = TestCtx::new("cri-pod2");
    let s = setup(&ctx);
    s.teardown_on_cleanup(&ctx);
    let (pod, pod_config) = s.run_pod("codex-pod2");
    let limits = |bytes: i64| api::LinuxContainerConfig {
        resources: Some(api::LinuxContainerResources {
            memory_limit_in_bytes: bytes,
            ..Default::default()
        }),
        security_context: None,
    };
    // one container serves on the pod's localhost, the other reaches it there
    let server = s.create_start(
        &pod,
        &pod_config,
        container_config(
            &s.image,
            "server",
            "echo served-by-server > /tmp/index.html; exec httpd -f -p 127.0.0.1:8080 -h /tmp",
            Some(limits(64 << 20)),
        ),
    );
    let ticker = s.create_start(
        &pod,
        &pod_config,
        container_config(
            &s.image,
            "ticker",
            "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.2; done",
            None,
        ),
    );
    let mut got = String::new();
    let reached = wait_until(Duration::from_secs(20), || {
        let r = s.exec_sync(
            &ticker,
            &["wget", "-q", "-O", "-", "http://127.0.0.1:8080/index.html"],
        );
        got = format!("{} {:?}", r.exit_code, String::from_utf8_lossy(&r.stdout));
        r.exit_code == 0 && r.stdout == b"served-by-server\n"
    });
    assert!(
        reached,
        "the pod's second container never reached the first on localhost: {got}"
    );

    // UpdateContainerResources: the new limit lands in the running container's cgroup
    let cgroup = format!("{}/{server}", s.cd.cgroup_parent);
    assert_eq!(memory_limit_of(&cgroup), Some((64i64 << 20).to_string()));
    let (id, linux) = (server.clone(), limits(128 << 20).resources);
    ok(
        "UpdateContainerResources",
        s.cri.rs("UpdateContainerResources", |mut c| async move {
            c.update_container_resources(api::UpdateContainerResourcesRequest {
                container_id: id,
                linux,
                ..Default::default()
            })
            .await
        }),
    );
    assert_eq!(memory_limit_of(&cgroup), Some((128i64 << 20).to_string()));

    // Exec and Attach are answered with a URL of the CRI's stream server (the kubelet
    // proxies the stream; the test does not drive it)
    let id = server.clone();
    let exec = ok(
        "Exec",
        s.cri.rs("Exec", |mut c| async move {
            c.exec(api::ExecRequest {
                container_id: id,
                cmd: vec!["true".into()],
                stdout: true,
                ..Default::default()
            })
            .await
        }),
    );
    assert!(exec.url.starts_with("http://127.0.0.1:"), "{exec:?}");
    let id = server.clone();
    let attach = ok(
        "Attach",
        s.cri.rs("Attach", |mut c| async move {
            c.attach(api::AttachRequest {
                container_id: id,
                stdout: true,
                ..Default::default()
            })
            .await
        }),
    );
    assert!(attach.url.starts_with("http://127.0.0.1:"), "{attach:?}");

    // log rotation as the kubelet does it: rename, ReopenContainerLog, new lines in a new file
    let log = s.cd.pod_logs.join("ticker.log");
    assert!(
        wait_until(Duration::from_secs(20), || !cri_log_lines(&log).is_empty()),
        "{}",
        read_lossy(&log)
    );
    std::fs::rename(&log, log.with_extension("log.1")).unwrap();
    let id = ticker.clone();
    ok(
        "ReopenContainerLog",
        s.cri.rs("ReopenContainerLog", |mut c| async move {
            c.reopen_container_log(api::ReopenContainerLogRequest { container_id: id })
                .await
        }),
    );
    assert!(
        wait_until(Duration::from_secs(20), || cri_log_lines(&log).iter().any(
            |(stream, text)| stream == "stdout" && text.starts_with("tick ")
        )),
        "no new lines after ReopenContainerLog: {}",
        read_lossy(&log)
    );

    // PodSandboxStats: the pod's own numbers and its containers'
    let p = pod.clone();
    let stats = ok(
        "PodSandboxStats",
        s.cri.rs("PodSandboxStats", |mut c| async move {
            c.pod_sandbox_stats(api::PodSandboxStatsRequest { pod_sandbox_id: p })
                .await
        }),
    )
    .stats
    .expect("PodSandboxStats without stats");
    let linux = stats.linux.expect("PodSandboxStats without linux stats");
    let pod_mem = linux
        .memory
        .and_then(|m| m.working_set_bytes)
        .map_or(0, |v| v.value);
    assert!(pod_mem > 0, "pod memory: {linux:?}");
    assert_eq!(linux.containers.len(), 2, "{:?}", linux.containers);

    for c in [&server, &ticker] {
        s.remove_container(c);
    }
    s.remove_pod(&pod);
    let calls = read_lossy(&s.calls);
    assert!(
        calls
            .lines()
            .any(|l| l.split_whitespace().any(|w| w == "update")),
        "{calls}"
    );
    let errors = s.cd.runtime_error_lines();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}
