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

/// `GET /system/df`: images (with how many containers use each), containers (the size
/// of their writable layer: the overlay's upper dir), volumes (their data's size and
/// users), as apparent sizes (file lengths, as the engine's `system df` counts them).
pub async fn df(ctx: &Ctx) -> ApiResult<Resp> {
    let v = crate::containers::blocking(ctx, |e| {
        let recs = e.list()?;
        let refs = crate::containers::image_refs(e);
        let image_of: Vec<String> = recs
            .iter()
            .map(|r| crate::inspect::config_of(r).image.unwrap_or_default())
            .collect();
        let store = e.images()?;
        let all_refs = store.references()?;
        let mut seen = std::collections::BTreeSet::new();
        let mut images = Vec::new();
        let mut layers = 0u64;
        for img in store.list()? {
            if !seen.insert(img.id.clone()) {
                continue;
            }
            layers += img.size;
            let tags: Vec<String> = all_refs
                .iter()
                .filter(|(_, i)| **i == img.id)
                .map(|(r, _)| r.clone())
                .collect();
            let mut s = crate::images::summary(&img, tags);
            s["Containers"] = json!(image_of.iter().filter(|i| **i == img.id).count());
            s["SharedSize"] = json!(0);
            images.push(s);
        }
        let mut containers = Vec::new();
        for r in &recs {
            let a = crate::containers::around(e, r, &refs);
            let mut s = crate::inspect::summary(r, &a);
            let upper = e.container_dir(&r.id)?.join("upper");
            s["SizeRw"] = json!(codex_engine::df::apparent_size(&upper));
            containers.push(s);
        }
        let volumes: Vec<serde_json::Value> = e
            .volumes()?
            .iter()
            .map(|v| {
                let mut j = crate::volumes::volume_json(v);
                j["UsageData"] = json!({
                    "Size": codex_engine::df::apparent_size(&v.mountpoint),
                    "RefCount": v.used_by.len(),
                });
                j
            })
            .collect();
        Ok(json!({
            "LayersSize": layers,
            "Images": images,
            "Containers": containers,
            "Volumes": volumes,
            "BuildCache": [],
        }))
    })
    .await?;
    body::ok_json(&v)
}
