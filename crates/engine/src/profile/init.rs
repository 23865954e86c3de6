//! `--init`: a small init as the container's PID 1, in front of the command. A
//! program that never expected to be PID 1 (a shell, most servers) gets no default
//! signal handling there (the kernel drops SIGTERM to PID 1 without a handler), so
//! `stop` waits out its timeout and kills; and nothing reaps the orphans it leaves.
//!
//! The init is a static binary of the host bound read-only at `/dev/init` (the
//! container's own /dev tmpfs: nothing is written to its filesystem): Debian's
//! `tini-static`, the init Docker ships as `docker-init`, or the one
//! `$CODEX_CTR_INIT` names. It must be static: an image may have no C library, or
//! another one.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::config::{ContainerConfig, Isolation};
use crate::error::{Error, Result};

/// Where the init is in the container.
pub const INIT_PATH: &str = "/dev/init";

/// Names `--init` picks the host's init by.
pub const INIT_ENV: &str = "CODEX_CTR_INIT";

const CANDIDATES: &[&str] = &[
    "/usr/bin/tini-static",
    "/usr/libexec/docker/docker-init",
    "/usr/bin/docker-init",
];

/// The host's init binary.
pub fn find_init() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(INIT_ENV) {
        let p = PathBuf::from(p);
        return if p.is_absolute() && p.is_file() {
            Ok(p)
        } else {
            Err(Error::invalid(
                "init",
                format!(
                    "${INIT_ENV}={} is not an absolute path to a file",
                    p.display()
                ),
            ))
        };
    }
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::invalid(
                "init",
                format!(
                    "--init needs a static init on the host: apt-get install tini (for {}), or set ${INIT_ENV}",
                    CANDIDATES[0]
                ),
            )
        })
}

pub(super) fn apply(config: &ContainerConfig, spec: &mut Value) -> Result<()> {
    if config.isolation == Isolation::Minimal {
        return Err(Error::invalid(
            "init",
            "minimal isolation shares the host's PID namespace: there is no PID 1 to be",
        ));
    }
    let init = find_init()?;
    let mount = json!({"destination": INIT_PATH, "type": "bind", "source": init,
                       "options": ["bind", "ro", "nosuid", "nodev"]});
    match spec["mounts"].as_array_mut() {
        Some(m) => m.push(mount),
        None => spec["mounts"] = json!([mount]),
    }
    let mut args = vec![Value::from(INIT_PATH), Value::from("--")];
    args.extend(
        spec["process"]["args"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    spec["process"]["args"] = Value::Array(args);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_goes_in_front_of_the_command_from_a_read_only_bind() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("init");
        std::fs::write(&fake, b"").unwrap();
        // The variable is this process's: tests in this module set it alike.
        std::env::set_var(INIT_ENV, &fake);
        let cfg = ContainerConfig {
            rootfs: Some("/srv/rootfs".into()),
            command: vec!["sh".into(), "-c".into(), "true".into()],
            init: true,
            ..Default::default()
        };
        let s = super::super::spec_value(
            &cfg,
            "0123456789abcdef",
            std::path::Path::new("/srv/rootfs"),
            &[],
            None,
            &|n| Ok(format!("/vol/{n}").into()),
        )
        .unwrap();
        assert_eq!(
            s["process"]["args"],
            json!([INIT_PATH, "--", "sh", "-c", "true"])
        );
        let m = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == INIT_PATH)
            .unwrap();
        assert_eq!(m["source"], fake.to_string_lossy().as_ref());
        assert!(m["options"].as_array().unwrap().contains(&json!("ro")));
        std::env::set_var(INIT_ENV, "relative/init");
        assert!(find_init().unwrap_err().to_string().contains(INIT_ENV));
        std::env::remove_var(INIT_ENV);
    }
}
