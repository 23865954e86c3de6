//! Docker's create body -> the engine's config, without root.

use super::*;
use crate::query::parse_json;
use codex_engine::network::ports::Proto;

fn cfg(body: &str) -> ApiResult<ContainerConfig> {
    let b: CreateBody = parse_json(body.as_bytes())?;
    config_from(&b, Some("/web"))
}

#[test]
fn a_docker_cli_run_body_maps_field_by_field() {
    let c = cfg(r#"{
        "Image": "busybox", "Cmd": ["sh", "-c", "echo hi"], "Entrypoint": null,
        "Env": ["A=1"], "WorkingDir": "/tmp", "User": "1000:1000", "Hostname": "h1",
        "Labels": {"tier": "db"}, "Tty": false, "OpenStdin": false, "AttachStdout": true,
        "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGINT", "StopTimeout": 3,
        "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 2000000000, "Retries": 5},
        "HostConfig": {
            "Binds": ["/srv:/data:ro", "vol1:/v"], "NetworkMode": "none",
            "PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}], "53/udp": [{"HostPort": ""}]},
            "PublishAllPorts": true, "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2},
            "AutoRemove": true, "Memory": 67108864, "NanoCpus": 500000000, "PidsLimit": 64,
            "Mounts": [{"Type": "tmpfs", "Target": "/scratch"}, {"Type": "volume", "Source": "", "Target": "/anon"}],
            "Dns": ["1.1.1.1"], "ExtraHosts": ["db:10.0.0.5"], "CpuShares": 0, "SomethingNew": 1
        },
        "NetworkingConfig": {"EndpointsConfig": {"n1": {"Aliases": ["cache"]}}}
    }"#)
    .unwrap();
    assert_eq!(c.name.as_deref(), Some("web"));
    assert_eq!(c.image.as_deref(), Some("busybox"));
    assert_eq!(c.command, ["sh", "-c", "echo hi"]);
    assert!(c.entrypoint.is_empty());
    assert_eq!(c.env, ["A=1"]);
    assert_eq!(c.working_dir.as_deref(), Some("/tmp"));
    assert_eq!(c.user.as_deref(), Some("1000:1000"));
    assert_eq!(c.hostname.as_deref(), Some("h1"));
    assert_eq!(c.labels["tier"], "db");
    assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
    assert_eq!(c.stop_timeout, Some(3));
    let h = c.health.unwrap();
    assert_eq!(
        h.probe,
        HealthProbe::Cmd {
            command: "true".into()
        }
    );
    assert_eq!((h.interval_ms, h.retries), (2000, 5));
    assert_eq!(c.volumes.len(), 4);
    assert!(c.volumes[0].readonly);
    assert!(matches!(&c.volumes[1].source, VolumeSource::Named { name } if name == "vol1"));
    assert_eq!(c.volumes[2].source, VolumeSource::Tmpfs);
    assert!(c.volumes[3].anonymous);
    assert_eq!(c.network, Some(NetworkMode::None));
    assert_eq!(c.aliases, ["cache"]);
    assert_eq!(c.dns.len(), 1);
    assert_eq!(c.add_hosts[0].host, "db");
    assert!(c.publish.all);
    assert_eq!(c.publish.expose[0].port, 80);
    let p80 = c
        .publish
        .ports
        .iter()
        .find(|p| p.container_port == 80)
        .unwrap();
    assert_eq!(
        (p80.host_port, p80.host_ip.map(|i| i.to_string())),
        (Some(8080), Some("127.0.0.1".into()))
    );
    let p53 = c
        .publish
        .ports
        .iter()
        .find(|p| p.container_port == 53)
        .unwrap();
    assert_eq!((p53.host_port, p53.proto), (None, Proto::Udp));
    assert_eq!(c.restart, RestartPolicy::OnFailure { max: Some(2) });
    assert!(c.auto_remove);
    assert_eq!(c.limits.memory, Some(64 << 20));
    assert_eq!(c.limits.cpus, Some(0.5));
    assert_eq!(c.limits.pids, Some(64));
}

#[test]
fn cpu_quota_and_period_become_cpus() {
    let c = cfg(r#"{"Image":"b","HostConfig":{"CpuQuota":150000,"CpuPeriod":100000}}"#).unwrap();
    assert_eq!(c.limits.cpus, Some(1.5));
    let e = cfg(r#"{"Image":"b","HostConfig":{"CpuQuota":1000,"NanoCpus":1}}"#).unwrap_err();
    assert!(e.message.contains("CpuQuota"), "{}", e.message);
}

#[test]
fn unsupported_values_are_refused_by_name_not_dropped() {
    for (body, field) in [
        (
            r#"{"Image":"b","HostConfig":{"CapAdd":["NOPE"]}}"#,
            "CapAdd",
        ),
        (r#"{"Image":"b","HostConfig":{"Memory":-1}}"#, "Memory"),
        (
            r#"{"Image":"b","HostConfig":{"RestartPolicy":{"Name":"sometimes"}}}"#,
            "RestartPolicy",
        ),
        (
            r#"{"Image":"b","HostConfig":{"Mounts":[{"Type":"npipe","Target":"/x"}]}}"#,
            "Mounts[0]",
        ),
        (
            r#"{"Image":"b","HostConfig":{"Binds":["./rel:/x"]}}"#,
            "Binds[0]",
        ),
        (
            r#"{"Image":"b","HostConfig":{"PortBindings":{"http":[{}]}}}"#,
            "PortBindings",
        ),
        (
            r#"{"Image":"b","Healthcheck":{"Test":["WHAT"]}}"#,
            "Healthcheck.Test",
        ),
        (r#"{"Cmd":["x"]}"#, "Image"),
    ] {
        let e = cfg(body).unwrap_err();
        assert_eq!(e.status, hyper::StatusCode::BAD_REQUEST, "{body}");
        assert!(e.message.contains(field), "{body}: {}", e.message);
    }
}

#[test]
fn wrong_types_are_a_400_naming_the_field() {
    let e = cfg(r#"{"Image":"b","HostConfig":{"Memory":"64m"}}"#).unwrap_err();
    assert_eq!(e.status, hyper::StatusCode::BAD_REQUEST);
    assert!(e.message.contains("HostConfig.Memory"), "{}", e.message);
}

#[test]
fn cmd_forms_and_health_variants() {
    let c = cfg(r#"{"Image":"b","Cmd":"echo","Entrypoint":["/init"],"Healthcheck":{"Test":["CMD","curl","-f","http://x/a b"]}}"#).unwrap();
    assert_eq!(c.command, ["echo"]);
    assert_eq!(c.entrypoint, ["/init"]);
    assert_eq!(
        c.health.unwrap().probe,
        HealthProbe::Cmd {
            command: "curl -f 'http://x/a b'".into()
        }
    );
    let c = cfg(r#"{"Image":"b","Healthcheck":{"Test":["NONE"]}}"#).unwrap();
    assert_eq!(c.health.unwrap().probe, HealthProbe::None);
    let c = cfg(r#"{"Image":"b","Healthcheck":{"Test":[]}}"#).unwrap();
    assert!(c.health.is_none(), "an empty test inherits the image's");
    let c = cfg(r#"{"Image":"b","HostConfig":{"NetworkMode":"default","PidsLimit":-1}}"#).unwrap();
    assert_eq!(c.network, Some(NetworkMode::Bridge));
    assert_eq!(c.limits.pids, None);
}

#[test]
fn terminals_and_stdin_map_to_the_engines() {
    let c = cfg(r#"{"Image":"b","Tty":true,"OpenStdin":true,"StdinOnce":true}"#).unwrap();
    assert!(c.tty && c.interactive);
    let c = cfg(r#"{"Image":"b"}"#).unwrap();
    assert!(!c.tty && !c.interactive);
}

#[test]
fn security_and_init_reach_the_engine() {
    let c =
        cfg(r#"{"Image":"b","HostConfig":{"Privileged":true,"Init":true,"CapDrop":["NET_RAW"]}}"#)
            .unwrap();
    assert!(c.security.privileged && c.init);
    assert_eq!(c.security.cap_drop, ["CAP_NET_RAW"]);
}
