//! Docker's resource fields -> the engine's limits, without root.

use super::*;
use crate::query::parse_json;

fn body(json: &str) -> ApiResult<ResourcesBody> {
    parse_json(json.as_bytes())
}

#[test]
fn shares_cpusets_swap_and_throttles_map_to_limits() {
    let l = body(
        r#"{"Memory":67108864,"MemorySwap":134217728,"CpuShares":512,"CpusetCpus":"0","CpusetMems":"0",
            "BlkioDeviceReadBps":[{"Path":"/dev/vda","Rate":1048576}],"BlkioDeviceWriteBps":[]}"#,
    )
    .unwrap()
    .limits("HostConfig.")
    .unwrap();
    assert_eq!(l.memory, Some(64 << 20));
    assert_eq!(l.memory_swap, Some(128 << 20));
    assert_eq!(l.cpu_shares, Some(512));
    assert_eq!(l.cpuset_cpus.as_deref(), Some("0"));
    assert_eq!(l.cpuset_mems.as_deref(), Some("0"));
    assert_eq!(l.io_read_bps["/dev/vda"], 1 << 20);
    assert!(l.io_write_bps.is_empty());
    let l = body(r#"{"Memory":67108864,"MemorySwap":-1}"#)
        .unwrap()
        .limits("HostConfig.")
        .unwrap();
    assert_eq!(l.memory_swap, Some(-1));
}

#[test]
fn the_docker_clis_zero_values_ask_for_nothing() {
    // What `docker run busybox` sends in HostConfig (API 1.47), less the mapped rest.
    let l = body(
        r#"{"CpuShares":0,"Memory":0,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,
            "BlkioWeightDevice":[],"BlkioDeviceReadBps":[],"BlkioDeviceWriteBps":[],
            "BlkioDeviceReadIOps":[],"BlkioDeviceWriteIOps":[],"CpuPeriod":0,"CpuQuota":0,
            "CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"",
            "Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,"MemoryReservation":0,
            "MemorySwap":0,"MemorySwappiness":null,"OomKillDisable":null,"PidsLimit":null,
            "Ulimits":[],"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,"IOMaximumBandwidth":0}"#,
    )
    .unwrap()
    .limits("HostConfig.")
    .unwrap();
    assert_eq!(l, Limits::default());
    let l = body(r#"{"MemorySwappiness":-1,"OomKillDisable":false}"#)
        .unwrap()
        .limits("HostConfig.")
        .unwrap();
    assert_eq!(l, Limits::default());
}

#[test]
fn fields_codex_cannot_honour_are_a_400_naming_them() {
    for (json, field) in [
        (r#"{"BlkioWeight":300}"#, "HostConfig.BlkioWeight"),
        (
            r#"{"BlkioWeightDevice":[{"Path":"/dev/vda","Weight":10}]}"#,
            "HostConfig.BlkioWeightDevice",
        ),
        (
            r#"{"BlkioDeviceReadIOps":[{"Path":"/dev/vda","Rate":10}]}"#,
            "HostConfig.BlkioDeviceReadIOps",
        ),
        (
            r#"{"BlkioDeviceWriteIOps":[{"Path":"/dev/vda","Rate":10}]}"#,
            "HostConfig.BlkioDeviceWriteIOps",
        ),
        (
            r#"{"CpuRealtimeRuntime":950000}"#,
            "HostConfig.CpuRealtimeRuntime",
        ),
        (
            r#"{"CpuRealtimePeriod":1000000}"#,
            "HostConfig.CpuRealtimePeriod",
        ),
        (r#"{"CpuCount":2}"#, "HostConfig.CpuCount"),
        (r#"{"CpuPercent":50}"#, "HostConfig.CpuPercent"),
        (
            r#"{"MemoryReservation":1048576}"#,
            "HostConfig.MemoryReservation",
        ),
        (r#"{"MemorySwappiness":0}"#, "HostConfig.MemorySwappiness"),
        (r#"{"KernelMemory":1048576}"#, "HostConfig.KernelMemory"),
        (
            r#"{"KernelMemoryTCP":1048576}"#,
            "HostConfig.KernelMemoryTCP",
        ),
        (r#"{"OomKillDisable":true}"#, "HostConfig.OomKillDisable"),
        (r#"{"CgroupParent":"/mine"}"#, "HostConfig.CgroupParent"),
        (
            r#"{"DeviceCgroupRules":["c 1:3 rwm"]}"#,
            "HostConfig.DeviceCgroupRules",
        ),
        (
            r#"{"DeviceRequests":[{"Driver":"nvidia"}]}"#,
            "HostConfig.DeviceRequests",
        ),
        (r#"{"IOMaximumIOps":10}"#, "HostConfig.IOMaximumIOps"),
        (
            r#"{"IOMaximumBandwidth":10}"#,
            "HostConfig.IOMaximumBandwidth",
        ),
        // Values out of Docker's (or the kernel's) ranges.
        (r#"{"CpuShares":1}"#, "HostConfig.CpuShares"),
        (r#"{"CpuShares":-5}"#, "HostConfig.CpuShares"),
        (r#"{"CpusetCpus":"0-"}"#, "HostConfig.CpusetCpus"),
        (r#"{"CpusetMems":"x"}"#, "HostConfig.CpusetMems"),
        // Well-formed, but no such CPU or node on any test machine.
        (r#"{"CpusetCpus":"4000"}"#, "HostConfig.CpusetCpus"),
        (r#"{"CpusetMems":"4000"}"#, "HostConfig.CpusetMems"),
        (r#"{"MemorySwap":134217728}"#, "HostConfig.MemorySwap"),
        (
            r#"{"Memory":134217728,"MemorySwap":67108864}"#,
            "HostConfig.MemorySwap",
        ),
        (
            r#"{"Memory":134217728,"MemorySwap":-2}"#,
            "HostConfig.MemorySwap",
        ),
        (
            r#"{"BlkioDeviceReadBps":[{"Path":"vda","Rate":1}]}"#,
            "HostConfig.BlkioDeviceReadBps[0]",
        ),
        (
            r#"{"BlkioDeviceWriteBps":[{"Path":"/dev/vda","Rate":0}]}"#,
            "HostConfig.BlkioDeviceWriteBps[0]",
        ),
    ] {
        let e = body(json).unwrap().limits("HostConfig.").unwrap_err();
        assert_eq!(e.status, hyper::StatusCode::BAD_REQUEST, "{json}");
        assert!(e.message.starts_with(field), "{json}: {}", e.message);
    }
}

#[test]
fn wrong_types_name_the_field_in_create_and_update_bodies() {
    for (json, field) in [
        (
            r#"{"Image":"b","HostConfig":{"CpuShares":"512"}}"#,
            "HostConfig.CpuShares",
        ),
        (
            r#"{"Image":"b","HostConfig":{"CpusetCpus":0}}"#,
            "HostConfig.CpusetCpus",
        ),
        (
            r#"{"Image":"b","HostConfig":{"MemorySwap":"1g"}}"#,
            "HostConfig.MemorySwap",
        ),
        (
            r#"{"Image":"b","HostConfig":{"BlkioWeight":"x"}}"#,
            "HostConfig.BlkioWeight",
        ),
    ] {
        let e = parse_json::<crate::create::CreateBody>(json.as_bytes()).unwrap_err();
        assert_eq!(e.status, hyper::StatusCode::BAD_REQUEST, "{json}");
        assert!(e.message.contains(field), "{json}: {}", e.message);
    }
    for (json, field) in [
        (r#"{"CpuShares":true}"#, "CpuShares"),
        (r#"{"CpusetCpus":[0]}"#, "CpusetCpus"),
        (r#"{"MemorySwap":"x"}"#, "MemorySwap"),
    ] {
        let e = parse_json::<crate::update::UpdateBody>(json.as_bytes()).unwrap_err();
        assert_eq!(e.status, hyper::StatusCode::BAD_REQUEST, "{json}");
        assert!(e.message.contains(field), "{json}: {}", e.message);
    }
}

#[test]
fn updates_map_and_refuse_by_name() {
    let u =
        body(r#"{"CpuShares":256,"CpusetCpus":"0","MemorySwap":-1,"Memory":0,"BlkioWeight":0}"#)
            .unwrap()
            .update()
            .unwrap();
    assert_eq!(u.cpu_shares, Some(256));
    assert_eq!(u.cpuset_cpus.as_deref(), Some("0"));
    assert_eq!(u.memory_swap, Some(-1));
    assert_eq!(u.memory, None);
    for (json, field) in [
        (r#"{"BlkioWeight":500}"#, "BlkioWeight"),
        (r#"{"MemoryReservation":1}"#, "MemoryReservation"),
        (
            r#"{"BlkioDeviceReadBps":[{"Path":"/dev/vda","Rate":1}]}"#,
            "BlkioDeviceReadBps",
        ),
        (r#"{"CpuShares":300000}"#, "CpuShares"),
    ] {
        let e = body(json).unwrap().update().unwrap_err();
        assert!(e.message.starts_with(field), "{json}: {}", e.message);
    }
}

#[test]
fn inspect_shows_the_limits_in_dockers_names() {
    let l = Limits {
        memory: Some(64 << 20),
        memory_swap: Some(-1),
        cpu_shares: Some(512),
        cpuset_cpus: Some("0-1".into()),
        ..Default::default()
    };
    let v = inspect_json(&l);
    assert_eq!(v["Memory"], 64 << 20);
    assert_eq!(v["MemorySwap"], -1);
    assert_eq!(v["CpuShares"], 512);
    assert_eq!(v["CpusetCpus"], "0-1");
    assert_eq!(v["CpusetMems"], "");
}
