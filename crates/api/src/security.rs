//! `HostConfig`'s security fields as the engine's `Security`: CapAdd/CapDrop,
//! Privileged, ReadonlyRootfs, SecurityOpt, Ulimits, ShmSize, Devices. Errors name the
//! field (`HostConfig.Ulimits[0]`).

use codex_engine::config::security::{
    apply_security_opt, cap_name, parse_device, parse_ulimit, Seccomp, Security,
};
use serde::Deserialize;

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UlimitBody {
    pub name: Option<String>,
    pub soft: Option<i64>,
    pub hard: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeviceBody {
    pub path_on_host: Option<String>,
    pub path_in_container: Option<String>,
    pub cgroup_permissions: Option<String>,
}

/// The fields of `HostConfig` this maps.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct SecurityBody {
    pub privileged: Option<bool>,
    pub readonly_rootfs: Option<bool>,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    pub security_opt: Option<Vec<String>>,
    pub ulimits: Option<Vec<UlimitBody>>,
    pub shm_size: Option<i64>,
    pub devices: Option<Vec<DeviceBody>>,
}

/// One `SecurityOpt`. The docker CLI sends a seccomp profile's content (it reads the
/// file itself); a path would be read on the server's host, so it is refused.
fn security_opt(sec: &mut Security, field: &str, opt: &str) -> ApiResult<()> {
    if let Some(v) = opt
        .strip_prefix("seccomp=")
        .or_else(|| opt.strip_prefix("seccomp:"))
    {
        if v == "unconfined" {
            sec.seccomp = Some(Seccomp::Unconfined);
            return Ok(());
        }
        let profile: serde_json::Value = serde_json::from_str(v).map_err(|_| {
            ApiError::bad_request(format!(
                "{field}: give a seccomp profile's JSON content or unconfined (a path is not read on the server)"
            ))
        })?;
        if !profile["defaultAction"].is_string() {
            return Err(ApiError::bad_request(format!(
                "{field}: the seccomp profile has no defaultAction"
            )));
        }
        sec.seccomp = Some(Seccomp::Profile(profile));
        return Ok(());
    }
    Ok(apply_security_opt(sec, field, opt)?)
}

pub fn security_from(b: &SecurityBody) -> ApiResult<Security> {
    let mut sec = Security {
        privileged: b.privileged.unwrap_or(false),
        read_only: b.readonly_rootfs.unwrap_or(false),
        ..Default::default()
    };
    for (i, c) in b.cap_add.iter().flatten().enumerate() {
        sec.cap_add
            .push(cap_name(&format!("HostConfig.CapAdd[{i}]"), c)?);
    }
    for (i, c) in b.cap_drop.iter().flatten().enumerate() {
        sec.cap_drop
            .push(cap_name(&format!("HostConfig.CapDrop[{i}]"), c)?);
    }
    for (i, o) in b.security_opt.iter().flatten().enumerate() {
        security_opt(&mut sec, &format!("HostConfig.SecurityOpt[{i}]"), o)?;
    }
    for (i, u) in b.ulimits.iter().flatten().enumerate() {
        let field = format!("HostConfig.Ulimits[{i}]");
        let name = u.name.clone().unwrap_or_default();
        let spec = format!("{name}={}:{}", u.soft.unwrap_or(0), u.hard.unwrap_or(0));
        sec.ulimits.push(parse_ulimit(&field, &spec)?);
    }
    sec.shm_size = match b.shm_size {
        None | Some(0) => None,
        Some(n) if n < 0 => {
            return Err(ApiError::bad_request(
                "HostConfig.ShmSize: must not be negative",
            ))
        }
        Some(n) => Some(u64::try_from(n).unwrap_or(0)),
    };
    for (i, d) in b.devices.iter().flatten().enumerate() {
        let field = format!("HostConfig.Devices[{i}]");
        let host = d.path_on_host.clone().unwrap_or_default();
        let inside = d
            .path_in_container
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| host.clone());
        let perms = d
            .cgroup_permissions
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "rwm".into());
        sec.devices
            .push(parse_device(&field, &format!("{host}:{inside}:{perms}"))?);
    }
    Ok(sec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::parse_json;

    #[test]
    fn security_fields_map_to_the_engines() {
        let b: SecurityBody = parse_json(
            br#"{"Privileged":false,"ReadonlyRootfs":true,"CapAdd":["NET_ADMIN"],"CapDrop":["all"],
                 "SecurityOpt":["no-new-privileges:true","seccomp=unconfined"],
                 "Ulimits":[{"Name":"nofile","Soft":1024,"Hard":2048}],"ShmSize":1048576,
                 "Devices":[{"PathOnHost":"/dev/null","PathInContainer":"/dev/n2","CgroupPermissions":"rw"}]}"#,
        )
        .unwrap();
        let s = security_from(&b).unwrap();
        assert!(s.read_only && !s.privileged && s.no_new_privileges);
        assert_eq!(s.cap_add, ["CAP_NET_ADMIN"]);
        assert_eq!(s.cap_drop, ["ALL"]);
        assert_eq!(s.seccomp, Some(Seccomp::Unconfined));
        assert_eq!((s.ulimits[0].soft, s.ulimits[0].hard), (1024, 2048));
        assert_eq!(s.shm_size, Some(1 << 20));
        assert_eq!(s.devices[0].container, "/dev/n2");
        assert_eq!(s.devices[0].access, "rw");
    }

    #[test]
    fn bad_values_and_server_side_paths_are_refused_by_field() {
        for (body, field) in [
            (r#"{"CapAdd":["NOT_A_CAP"]}"#, "CapAdd[0]"),
            (
                r#"{"Ulimits":[{"Name":"bogus","Soft":1,"Hard":1}]}"#,
                "Ulimits[0]",
            ),
            (
                r#"{"SecurityOpt":["seccomp=/etc/profile.json"]}"#,
                "SecurityOpt[0]",
            ),
            (r#"{"SecurityOpt":["apparmor=x"]}"#, "SecurityOpt[0]"),
            (r#"{"Devices":[{"PathOnHost":"dev/null"}]}"#, "Devices[0]"),
        ] {
            let b: SecurityBody = parse_json(body.as_bytes()).unwrap();
            let e = security_from(&b).unwrap_err();
            assert!(e.message.contains(field), "{body}: {}", e.message);
        }
        let b: SecurityBody =
            parse_json(br#"{"SecurityOpt":["seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}"]}"#)
                .unwrap();
        assert!(matches!(
            security_from(&b).unwrap().seccomp,
            Some(Seccomp::Profile(_))
        ));
    }
}
