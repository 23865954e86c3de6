//! `/_ping`, `/version`, `/info`: what clients ask first (API version negotiation).

use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::StatusCode;
use serde_json::json;

use crate::body::{self, Resp};
use crate::error::ApiResult;
use crate::server::Ctx;

pub fn ping(head: bool) -> Resp {
    let mut r = if head {
        body::empty(StatusCode::OK)
    } else {
        body::bytes(StatusCode::OK, "text/plain; charset=utf-8", "OK")
    };
    let h = r.headers_mut();
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    r
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn version(_ctx: &Ctx) -> ApiResult<Resp> {
    let v = env!("CARGO_PKG_VERSION");
    body::ok_json(&json!({
        "Platform": {"Name": "codex-ctr"},
        "Components": [{
            "Name": "Engine",
            "Version": v,
            "Details": {
                "ApiVersion": crate::API_VERSION,
                "MinAPIVersion": crate::MIN_API_VERSION,
                "Os": "linux",
                "Arch": arch(),
                "KernelVersion": kernel(),
            }
        }],
        "Version": v,
        "ApiVersion": crate::API_VERSION,
        "MinAPIVersion": crate::MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": arch(),
        "KernelVersion": kernel(),
        "BuildTime": "",
    }))
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

pub async fn info(ctx: &Ctx) -> ApiResult<Resp> {
    let eng = ctx.eng.clone();
    let i = tokio::task::spawn_blocking(move || eng.engine().info())
        .await
        .map_err(|e| crate::error::ApiError::internal(e.to_string()))??;
    let n = |k: &str| i[k].as_u64().unwrap_or(0);
    let cgroup_version = if i["cgroup_version"].as_str() == Some("unified") {
        "2"
    } else {
        "1"
    };
    let mem = codex_engine::usage::host_memory();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    body::ok_json(&json!({
        "ID": "",
        "Containers": n("containers"),
        "ContainersRunning": n("running"),
        "ContainersPaused": n("paused"),
        "ContainersStopped": n("stopped"),
        "Images": n("images"),
        "Driver": "overlay",
        "DriverStatus": [],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Log": ["json-file"]},
        "MemoryLimit": true,
        "SwapLimit": false,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": false,
        "PidsLimit": true,
        "IPv4Forwarding": true,
        "Debug": false,
        "NFd": 0,
        "NGoroutines": 0,
        "SystemTime": humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        "LoggingDriver": "json-file",
        "CgroupDriver": i["cgroup_driver"].as_str().unwrap_or("cgroupfs"),
        "CgroupVersion": cgroup_version,
        "NEventsListener": 0,
        "KernelVersion": i["kernel"],
        "OperatingSystem": "codex-ctr",
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": [], "Mirrors": []},
        "NCPU": cpus,
        "MemTotal": mem,
        "DockerRootDir": i["root"],
        "Name": hostname(),
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": {"codex": {"path": "codex-runtime"}},
        "DefaultRuntime": "codex",
        "Swarm": {"LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "",
                  "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Warnings": [],
    }))
}
