//! What metadata instructions do to an image config (the `config` object of an OCI image
//! config, with Docker's extra keys `Healthcheck` and `Shell`), for `build` and for
//! `commit --change`.

use serde_json::{json, Map, Value};

use super::instr::{Health, Instruction};
use crate::error::{Error, Result};

/// Docker's default SHELL.
pub fn default_shell() -> Vec<String> {
    vec!["/bin/sh".to_string(), "-c".to_string()]
}

/// The build's SHELL as the config records it (Docker keeps it in `Shell`).
pub fn shell_of(config: &Value) -> Vec<String> {
    strings(config.get("Shell")).unwrap_or_else(default_shell)
}

/// The config's `Env` as (key, value) pairs, in order.
pub fn env_of(config: &Value) -> Vec<(String, String)> {
    strings(config.get("Env"))
        .unwrap_or_default()
        .into_iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (e, String::new()),
        })
        .collect()
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    let a = v?.as_array()?;
    Some(
        a.iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
    )
}

fn set_entry(m: &mut Map<String, Value>, key: &str, k: &str, v: Value) {
    let e = m.entry(key.to_string()).or_insert_with(|| json!({}));
    if !e.is_object() {
        *e = json!({});
    }
    if let Value::Object(o) = e {
        o.insert(k.to_string(), v);
    }
}

/// Applies a metadata instruction to `config` (the image config's `config` object).
/// `workdir` is the directory relative WORKDIRs start from. Instructions that change
/// files, and FROM/ARG, are not metadata: an error.
pub fn apply(config: &mut Value, instr: &Instruction) -> Result<()> {
    let shell = shell_of(config);
    if !config.is_object() {
        *config = json!({});
    }
    let Value::Object(m) = config else {
        return Err(Error::invalid("config", "not a JSON object"));
    };
    match instr {
        Instruction::Cmd(c) => {
            m.insert("Cmd".into(), json!(c.argv(&shell)));
        }
        Instruction::Entrypoint(c) => {
            m.insert("Entrypoint".into(), json!(c.argv(&shell)));
            // Docker: a new ENTRYPOINT drops the CMD inherited with the base image.
            m.remove("Cmd");
        }
        Instruction::Shell(s) => {
            m.insert("Shell".into(), json!(s));
        }
        Instruction::Env(pairs) => {
            let mut env = strings(m.get("Env")).unwrap_or_default();
            for (k, v) in pairs {
                let entry = format!("{k}={v}");
                match env
                    .iter_mut()
                    .find(|e| e.split_once('=').map_or(e.as_str(), |(a, _)| a) == k)
                {
                    Some(e) => *e = entry,
                    None => env.push(entry),
                }
            }
            m.insert("Env".into(), json!(env));
        }
        Instruction::Label(pairs) => {
            for (k, v) in pairs {
                set_entry(m, "Labels", k, json!(v));
            }
        }
        Instruction::Expose(ports) => {
            for p in ports {
                set_entry(m, "ExposedPorts", p, json!({}));
            }
        }
        Instruction::Volume(paths) => {
            for p in paths {
                set_entry(m, "Volumes", p, json!({}));
            }
        }
        Instruction::Workdir(w) => {
            let base = m
                .get("WorkingDir")
                .and_then(Value::as_str)
                .unwrap_or("/")
                .to_string();
            m.insert("WorkingDir".into(), json!(join_workdir(&base, w)));
        }
        Instruction::User(u) => {
            m.insert("User".into(), json!(u));
        }
        Instruction::StopSignal(s) => {
            m.insert("StopSignal".into(), json!(s));
        }
        Instruction::Healthcheck(h) => {
            m.insert("Healthcheck".into(), health_json(h));
        }
        Instruction::Maintainer(_) => {}
        other => {
            return Err(Error::invalid(
                "change",
                format!("{other:?} changes files or stages, not the config"),
            ))
        }
    }
    Ok(())
}

/// The PATH a build gives an image whose config has none (BuildKit's and buildah's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What every build step does to its image's config: a PATH when it has none (so RUN
/// and the image's users find programs, as with Docker and podman), then `instr`.
pub fn apply_step(config: &mut Value, instr: Option<&Instruction>) -> Result<()> {
    if !env_of(config).iter().any(|(k, _)| k == "PATH") {
        apply(
            config,
            &Instruction::Env(vec![("PATH".into(), DEFAULT_PATH.into())]),
        )?;
    }
    match instr {
        Some(i) => apply(config, i),
        None => Ok(()),
    }
}

/// A WORKDIR relative to the current one; `..` and `.` are resolved as text.
pub fn join_workdir(base: &str, w: &str) -> String {
    let full = if w.starts_with('/') {
        w.to_string()
    } else {
        format!("{}/{w}", base.trim_end_matches('/'))
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in full.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

fn health_json(h: &Health) -> Value {
    let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let mut v = json!({ "Test": h.test });
    let put = |v: &mut Value, k: &str, n: u64| {
        if n != 0 {
            v[k] = json!(n);
        }
    };
    put(&mut v, "Interval", ns(h.interval));
    put(&mut v, "Timeout", ns(h.timeout));
    put(&mut v, "StartPeriod", ns(h.start_period));
    put(&mut v, "StartInterval", ns(h.start_interval));
    put(&mut v, "Retries", u64::from(h.retries));
    v
}

#[cfg(test)]
mod tests {
    use super::super::instr::resolve;
    use super::super::parse::instruction;
    use super::*;

    fn run(config: &mut Value, line: &str) {
        let raw = instruction(1, line).unwrap();
        let i = resolve(&raw, &|_| None, '\\').unwrap();
        apply(config, &i).unwrap();
    }

    #[test]
    fn metadata_instructions_change_the_config_as_docker() {
        let mut c = json!({"Cmd": ["sh"], "Env": ["PATH=/bin", "A=1"]});
        run(&mut c, "ENV A=2 B=\"x y\"");
        assert_eq!(c["Env"], json!(["PATH=/bin", "A=2", "B=x y"]));
        run(&mut c, "ENTRYPOINT [\"/bin/app\"]");
        assert_eq!(c["Entrypoint"], json!(["/bin/app"]));
        assert!(
            c.get("Cmd").is_none(),
            "ENTRYPOINT resets the inherited CMD"
        );
        run(&mut c, "CMD --serve");
        assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "--serve"]));
        run(&mut c, "SHELL [\"/bin/ash\", \"-eo\"]");
        run(&mut c, "CMD x");
        assert_eq!(c["Cmd"], json!(["/bin/ash", "-eo", "x"]));
        run(&mut c, "WORKDIR /app");
        run(&mut c, "WORKDIR sub/../lib");
        assert_eq!(c["WorkingDir"], json!("/app/lib"));
        run(&mut c, "EXPOSE 80 53/udp");
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        run(&mut c, "LABEL a=b \"c d\"=e");
        assert_eq!(c["Labels"], json!({"a": "b", "c d": "e"}));
        run(&mut c, "VOLUME /data /logs");
        assert_eq!(c["Volumes"], json!({"/data": {}, "/logs": {}}));
        run(&mut c, "USER app:staff");
        assert_eq!(c["User"], json!("app:staff"));
        run(&mut c, "STOPSIGNAL SIGINT");
        assert_eq!(c["StopSignal"], json!("SIGINT"));
        run(
            &mut c,
            "HEALTHCHECK --interval=5s --retries=2 CMD wget -q -O- localhost",
        );
        assert_eq!(
            c["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "wget -q -O- localhost"], "Interval": 5_000_000_000u64, "Retries": 2})
        );
        run(&mut c, "HEALTHCHECK NONE");
        assert_eq!(c["Healthcheck"], json!({"Test": ["NONE"]}));
    }

    #[test]
    fn build_steps_add_a_default_path_once() {
        let mut c = json!({});
        apply_step(&mut c, None).unwrap();
        assert_eq!(c["Env"], json!([format!("PATH={DEFAULT_PATH}")]));
        let mut c = json!({"Env": ["PATH=/bin"]});
        apply_step(&mut c, None).unwrap();
        assert_eq!(c["Env"], json!(["PATH=/bin"]));
    }

    #[test]
    fn file_instructions_are_not_metadata() {
        let raw = instruction(1, "RUN true").unwrap();
        let i = resolve(&raw, &|_| None, '\\').unwrap();
        assert!(apply(&mut json!({}), &i).is_err());
    }

    #[test]
    fn workdir_joins() {
        assert_eq!(join_workdir("/", "a"), "/a");
        assert_eq!(join_workdir("/a/b", "../c"), "/a/c");
        assert_eq!(join_workdir("/a", "/x/./y/"), "/x/y");
        assert_eq!(join_workdir("/", "../.."), "/");
    }
}
