//! An OCI bundle under construction: the fixture rootfs and a config.json edited in memory.

use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};

/// A bundle directory (`rootfs/` copied from the fixture, `config.json` edited in memory and
/// written by [`Bundle::save`], which every run helper calls).
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl Bundle {
    pub fn rootfs(&self) -> PathBuf {
        let p = self.config["root"]["path"].as_str().unwrap_or("rootfs");
        if p.starts_with('/') {
            PathBuf::from(p)
        } else {
            self.dir.join(p)
        }
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    /// Writes config.json.
    pub fn save(&self) {
        fs::write(
            self.config_path(),
            serde_json::to_vec_pretty(&self.config).expect("serialise config"),
        )
        .expect("write config.json");
    }
    fn obj(&mut self, pointer: &str) -> &mut serde_json::Map<String, Value> {
        let mut cur = &mut self.config;
        for part in pointer.split('/').filter(|p| !p.is_empty()) {
            if !cur.is_object() {
                *cur = json!({});
            }
            cur = cur
                .as_object_mut()
                .expect("object")
                .entry(part.to_string())
                .or_insert_with(|| json!({}));
        }
        if !cur.is_object() {
            *cur = json!({});
        }
        cur.as_object_mut().expect("object")
    }
    /// Sets `/a/b/key` (slash-separated, objects created as needed) to `v`.
    pub fn set(&mut self, pointer: &str, v: Value) -> &mut Self {
        let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
        self.obj(parent).insert(key.to_string(), v);
        self
    }
    /// Removes `/a/b/key` if present.
    pub fn remove(&mut self, pointer: &str) -> &mut Self {
        let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
        if let Some(o) = self
            .config
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
        {
            o.remove(key);
        }
        self
    }
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.set("/process/args", json!(args))
    }
    /// `process.args = ["sh", "-c", script]`.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }
    pub fn env(&mut self, env: &[&str]) -> &mut Self {
        self.set("/process/env", json!(env))
    }
    pub fn add_env(&mut self, kv: &str) -> &mut Self {
        let p = self.obj("/process");
        let e = p.entry("env").or_insert_with(|| json!([]));
        e.as_array_mut().expect("env array").push(json!(kv));
        self
    }
    pub fn cwd(&mut self, cwd: &str) -> &mut Self {
        self.set("/process/cwd", json!(cwd))
    }
    pub fn user(&mut self, uid: u32, gid: u32) -> &mut Self {
        self.set("/process/user/uid", json!(uid))
            .set("/process/user/gid", json!(gid))
    }
    pub fn additional_gids(&mut self, gids: &[u32]) -> &mut Self {
        self.set("/process/user/additionalGids", json!(gids))
    }
    pub fn umask(&mut self, umask: u32) -> &mut Self {
        self.set("/process/user/umask", json!(umask))
    }
    pub fn terminal(&mut self, on: bool) -> &mut Self {
        self.set("/process/terminal", json!(on))
    }
    /// Replaces rlimits: `(type, soft, hard)`.
    pub fn rlimits(&mut self, limits: &[(&str, u64, u64)]) -> &mut Self {
        let v: Vec<Value> = limits
            .iter()
            .map(|(t, s, h)| json!({"type": t, "soft": s, "hard": h}))
            .collect();
        self.set("/process/rlimits", Value::Array(v))
    }
    /// Sets one capability set (`bounding`, `effective`, `permitted`, `inheritable`, `ambient`).
    pub fn caps(&mut self, set: &str, caps: &[&str]) -> &mut Self {
        self.set(&format!("/process/capabilities/{set}"), json!(caps))
    }
    pub fn no_new_privileges(&mut self, on: bool) -> &mut Self {
        self.set("/process/noNewPrivileges", json!(on))
    }
    pub fn hostname(&mut self, h: &str) -> &mut Self {
        self.set("/hostname", json!(h))
    }
    pub fn domainname(&mut self, d: &str) -> &mut Self {
        self.set("/domainname", json!(d))
    }
    pub fn readonly_root(&mut self, ro: bool) -> &mut Self {
        self.set("/root/readonly", json!(ro))
    }
    pub fn annotation(&mut self, k: &str, v: &str) -> &mut Self {
        self.obj("/annotations").insert(k.to_string(), json!(v));
        self
    }
    /// Appends a mount.
    pub fn add_mount(
        &mut self,
        dest: &str,
        typ: &str,
        source: &str,
        options: &[&str],
    ) -> &mut Self {
        self.push_mount(
            json!({"destination": dest, "type": typ, "source": source, "options": options}),
        )
    }
    /// Appends a bind mount (`type: bind`, `bind` first in options).
    pub fn add_bind(&mut self, source: &Path, dest: &str, options: &[&str]) -> &mut Self {
        let mut o = vec!["bind"];
        o.extend_from_slice(options);
        self.add_mount(dest, "bind", &source.to_string_lossy(), &o)
    }
    pub fn push_mount(&mut self, m: Value) -> &mut Self {
        let arr = self
            .config
            .as_object_mut()
            .expect("config object")
            .entry("mounts")
            .or_insert_with(|| json!([]));
        arr.as_array_mut().expect("mounts array").push(m);
        self
    }
    /// Removes every mount whose destination is `dest`.
    pub fn remove_mount(&mut self, dest: &str) -> &mut Self {
        if let Some(a) = self.config["mounts"].as_array_mut() {
            a.retain(|m| m["destination"] != dest);
        }
        self
    }
    fn ns_array(&mut self) -> &mut Vec<Value> {
        self.obj("/linux")
            .entry("namespaces")
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .expect("namespaces array")
    }
    /// Replaces the namespace list with these types (no paths).
    pub fn namespaces(&mut self, types: &[&str]) -> &mut Self {
        let v = types.iter().map(|t| json!({"type": t})).collect();
        *self.ns_array() = v;
        self
    }
    pub fn remove_namespace(&mut self, typ: &str) -> &mut Self {
        self.ns_array().retain(|n| n["type"] != typ);
        self
    }
    /// Adds (or replaces) a namespace entry, optionally joining `path`.
    pub fn namespace(&mut self, typ: &str, path: Option<&Path>) -> &mut Self {
        self.remove_namespace(typ);
        let mut n = json!({"type": typ});
        if let Some(p) = path {
            n["path"] = json!(p.to_string_lossy());
        }
        self.ns_array().push(n);
        self
    }
    pub fn has_namespace(&self, typ: &str) -> bool {
        self.config["linux"]["namespaces"]
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n["type"] == typ))
    }
    /// A user namespace mapping container 0.. onto host `host..host+size`.
    pub fn user_namespace(&mut self, host: u32, size: u32) -> &mut Self {
        self.namespace("user", None);
        let m = json!([{"containerID": 0, "hostID": host, "size": size}]);
        self.set("/linux/uidMappings", m.clone())
            .set("/linux/gidMappings", m)
    }
    /// Appends a hook: `kind` is prestart, createRuntime, createContainer, startContainer,
    /// poststart or poststop.
    pub fn add_hook(
        &mut self,
        kind: &str,
        path: &str,
        args: &[&str],
        env: &[&str],
        timeout: Option<u32>,
    ) -> &mut Self {
        let mut h = json!({"path": path, "args": args});
        if !env.is_empty() {
            h["env"] = json!(env);
        }
        if let Some(t) = timeout {
            h["timeout"] = json!(t);
        }
        self.obj("/hooks")
            .entry(kind.to_string())
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .expect("hooks array")
            .push(h);
        self
    }
    pub fn sysctl(&mut self, k: &str, v: &str) -> &mut Self {
        self.obj("/linux/sysctl").insert(k.to_string(), json!(v));
        self
    }
    pub fn oom_score_adj(&mut self, v: i32) -> &mut Self {
        self.set("/process/oomScoreAdj", json!(v))
    }
    pub fn masked_paths(&mut self, p: &[&str]) -> &mut Self {
        self.set("/linux/maskedPaths", json!(p))
    }
    pub fn readonly_paths(&mut self, p: &[&str]) -> &mut Self {
        self.set("/linux/readonlyPaths", json!(p))
    }
    /// Appends a `linux.devices` entry.
    pub fn add_device(
        &mut self,
        path: &str,
        typ: &str,
        major: i64,
        minor: i64,
        mode: u32,
    ) -> &mut Self {
        let d = json!({"path": path, "type": typ, "major": major, "minor": minor, "fileMode": mode, "uid": 0, "gid": 0});
        self.obj("/linux")
            .entry("devices")
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .expect("devices array")
            .push(d);
        self
    }
    pub fn cgroups_path(&mut self, p: &str) -> &mut Self {
        self.set("/linux/cgroupsPath", json!(p))
    }
}
