//! The inspect and list shapes, from a record made here (no root, no engine).

use super::*;
use codex_engine::health::{HealthState, HealthStatus};
use codex_engine::network::ports::{PortSpec, Proto};

fn record(status: ContainerStatus, cfg: &ContainerConfig) -> ContainerRecord {
    let mut rec: ContainerRecord = serde_json::from_value(json!({
        "version": 1,
        "id": "0123456789ab".repeat(5) + "cdef",
        "name": "web",
        "created": "2026-01-01T00:00:00Z",
        "status": "created",
        "labels": {"tier": "db"},
        "config": serde_json::to_value(cfg).unwrap(),
    }))
    .unwrap();
    rec.status = status;
    rec
}

fn around() -> Around {
    let mut a = Around {
        env: vec!["PATH=/bin".into(), "A=1".into()],
        image_ref: "busybox:latest".into(),
        root: "/var/lib/codex-ctr".into(),
        ..Default::default()
    };
    a.networks.insert(
        "bridge".into(),
        Attachment {
            network: "bridge".into(),
            ip: "10.88.0.2".parse().unwrap(),
            prefix_len: 16,
            gateway: "10.88.0.1".parse().unwrap(),
            mac: "02:42:0a:58:00:02".into(),
            aliases: vec![],
            ports: vec![],
        },
    );
    a.ports.push(Binding {
        host_ip: None,
        host_port: 8080,
        container_port: 80,
        proto: Proto::Tcp,
    });
    a
}

fn config() -> ContainerConfig {
    ContainerConfig {
        image: Some("f".repeat(64)),
        command: vec!["sh".into(), "-c".into(), "x".into()],
        publish: Publish {
            ports: vec![PortSpec {
                host_ip: None,
                host_port: Some(8080),
                container_port: 80,
                proto: Proto::Tcp,
            }],
            expose: vec![Exposed {
                port: 53,
                proto: Proto::Udp,
            }],
            all: false,
        },
        limits: codex_engine::config::Limits {
            memory: Some(1 << 26),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn inspect_has_dockers_state_config_and_network_fields() {
    let mut rec = record(ContainerStatus::Exited, &config());
    rec.exit_code = Some(137);
    rec.oom_killed = true;
    rec.health = Some(HealthState {
        status: HealthStatus::Unhealthy,
        failing_streak: 3,
        log: vec![],
    });
    let v = inspect(&rec, &around());
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["Running"], false);
    assert_eq!(v["State"]["ExitCode"], 137);
    assert_eq!(v["State"]["OOMKilled"], true);
    assert_eq!(v["State"]["Health"]["Status"], "unhealthy");
    assert_eq!(v["State"]["StartedAt"], "0001-01-01T00:00:00Z");
    assert_eq!(v["Name"], "/web");
    assert_eq!(v["Path"], "sh");
    assert_eq!(v["Args"], json!(["-c", "x"]));
    assert_eq!(v["Config"]["Image"], "busybox:latest");
    assert_eq!(v["Config"]["Env"], json!(["PATH=/bin", "A=1"]));
    assert_eq!(v["Config"]["Labels"]["tier"], "db");
    assert_eq!(
        v["Config"]["ExposedPorts"],
        json!({"80/tcp": {}, "53/udp": {}})
    );
    assert_eq!(v["HostConfig"]["Memory"], 1 << 26);
    assert_eq!(v["HostConfig"]["LogConfig"]["Type"], "json-file");
    assert_eq!(
        v["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
        "8080"
    );
    assert_eq!(
        v["NetworkSettings"]["Networks"]["bridge"]["IPAddress"],
        "10.88.0.2"
    );
    assert_eq!(v["NetworkSettings"]["IPAddress"], "10.88.0.2");
    assert_eq!(
        v["NetworkSettings"]["Ports"],
        json!({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "53/udp": null})
    );
    assert_eq!(v["Image"], format!("sha256:{}", "f".repeat(64)));
}

#[test]
fn engine_states_become_dockers_words() {
    assert_eq!(status_word(ContainerStatus::Stopped), "exited");
    assert_eq!(status_word(ContainerStatus::Failed), "exited");
    assert_eq!(status_word(ContainerStatus::Paused), "paused");
    let rec = record(ContainerStatus::Paused, &config());
    let v = inspect(&rec, &around());
    assert_eq!(
        (v["State"]["Running"].clone(), v["State"]["Paused"].clone()),
        (json!(true), json!(true))
    );
}

#[test]
fn list_entries_have_names_ports_and_status_text() {
    let mut rec = record(ContainerStatus::Running, &config());
    rec.started_at = Some(humantime::format_rfc3339(std::time::SystemTime::now()).to_string());
    let v = summary(&rec, &around());
    assert_eq!(v["Names"], json!(["/web"]));
    assert_eq!(v["Image"], "busybox:latest");
    assert_eq!(v["Command"], "sh -c x");
    assert_eq!(v["State"], "running");
    assert!(
        v["Status"].as_str().unwrap().starts_with("Up "),
        "{}",
        v["Status"]
    );
    assert_eq!(v["Ports"][0]["PublicPort"], 8080);
    assert_eq!(v["Created"], 1_767_225_600i64);
    let mut rec = record(ContainerStatus::Exited, &config());
    rec.exit_code = Some(2);
    rec.finished_at = Some("2020-01-01T00:00:00Z".into());
    let s = summary(&rec, &around())["Status"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(s.starts_with("Exited (2) ") && s.ends_with(" ago"), "{s}");
}

#[test]
fn a_run_that_could_not_start_reports_dockers_exit_codes() {
    let mut rec = record(ContainerStatus::Failed, &config());
    rec.error = Some("exec: \"/x\": No such file or directory (os error 2)".into());
    assert_eq!(exit_code(&rec), 127);
    rec.error = Some("exec: \"/etc/passwd\": permission denied".into());
    assert_eq!(exit_code(&rec), 126);
    rec.error = Some("cgroup trouble".into());
    assert_eq!(exit_code(&rec), 125);
    rec.exit_code = Some(3);
    assert_eq!(exit_code(&rec), 3);
    assert_eq!(exit_code(&record(ContainerStatus::Created, &config())), 0);
}
