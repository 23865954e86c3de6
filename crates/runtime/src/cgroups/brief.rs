//! A brief usage sample: only the counters `codex-ctr stats` shows (CPU time, memory in
//! use and its limit, pids, block I/O bytes), in the shape of the full snapshot's
//! (`stats::Cgroups::stats`) so one parser reads both. Five cgroup files per sample on v1
//! and on v2, where the full snapshot reads about forty (and lists each directory for
//! hugetlb): `stats` samples every running container twice, so with 1000 containers
//! this is what its time is made of.

use serde_json::{json, Value};

use super::stats::{keyed, num, read};
use super::Cgroups;

impl Cgroups {
    /// The brief sample (see the module's doc); a counter that cannot be read is 0.
    pub fn brief_stats(&self) -> Value {
        json!({
            "cpu": {"usage": {"total": self.cpu_total_ns()}},
            "memory": {"usage": self.memory_usage()},
            "pids": {"current": self.with("pids").map(|d| num(&d.path, "pids.current")).unwrap_or(0)},
            "blkio": {"ioServiceBytesRecursive": self.io_bytes()},
        })
    }

    fn cpu_total_ns(&self) -> u64 {
        if let Some(d) = self.dirs.iter().find(|d| d.has("cpuacct")) {
            return num(&d.path, "cpuacct.usage");
        }
        self.dirs
            .iter()
            .find(|d| d.is_v2())
            .and_then(|d| keyed(&d.path, "cpu.stat").get("usage_usec").copied())
            .unwrap_or(0)
            * 1000
    }

    fn memory_usage(&self) -> Value {
        match self.with("memory") {
            Some(d) if d.is_v2() => json!({
                "usage": num(&d.path, "memory.current"),
                "limit": num(&d.path, "memory.max"),
            }),
            Some(d) => json!({
                "usage": num(&d.path, "memory.usage_in_bytes"),
                "limit": num(&d.path, "memory.limit_in_bytes"),
            }),
            None => json!({}),
        }
    }

    /// Read and write bytes per device, as `{"major", "minor", "op", "value"}` entries.
    fn io_bytes(&self) -> Vec<Value> {
        let entry = |dev: &str, op: &str, value: u64| {
            let (major, minor) = dev.split_once(':').unwrap_or(("0", "0"));
            json!({"major": major.parse::<u64>().unwrap_or(0), "minor": minor.parse::<u64>().unwrap_or(0), "op": op, "value": value})
        };
        if let Some(d) = self.dirs.iter().find(|d| d.has("blkio")) {
            return read(&d.path, "blkio.throttle.io_service_bytes_recursive")
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() == 3 && matches!(f[1], "Read" | "Write"))
                        .then(|| entry(f[0], f[1], f[2].parse().unwrap_or(0)))
                })
                .collect();
        }
        let Some(d) = self.dirs.iter().find(|d| d.is_v2()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for l in read(&d.path, "io.stat").unwrap_or_default().lines() {
            let mut it = l.split_whitespace();
            let Some(dev) = it.next() else { continue };
            for (k, v) in it.filter_map(|kv| kv.split_once('=')) {
                let v: u64 = v.parse().unwrap_or(0);
                match k {
                    "rbytes" => out.push(entry(dev, "Read", v)),
                    "wbytes" => out.push(entry(dev, "Write", v)),
                    _ => {}
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::CgroupDir;
    use super::*;

    fn fake(dirs: &[(&str, &[(&str, &str)])]) -> (tempfile::TempDir, Cgroups) {
        let tmp = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        for (i, (controllers, files)) in dirs.iter().enumerate() {
            let path = tmp.path().join(i.to_string());
            std::fs::create_dir(&path).unwrap();
            for (f, v) in *files {
                std::fs::write(path.join(f), v).unwrap();
            }
            out.push(CgroupDir {
                controllers: controllers.to_string(),
                path,
                mount_dir: String::new(),
                created_above: None,
            });
        }
        (tmp, Cgroups { dirs: out })
    }

    /// The counters the brief sample gives equal the full snapshot's, on v1 and on v2.
    #[test]
    fn the_brief_sample_agrees_with_the_full_snapshot() {
        let v1 = fake(&[
            (
                "cpuacct",
                &[
                    ("cpuacct.usage", "123456789\n"),
                    ("cpuacct.stat", "user 1\nsystem 2\n"),
                ],
            ),
            (
                "memory",
                &[
                    ("memory.usage_in_bytes", "4096\n"),
                    ("memory.limit_in_bytes", "1048576\n"),
                    ("memory.stat", "cache 0\n"),
                ],
            ),
            ("pids", &[("pids.current", "3\n"), ("pids.max", "max\n")]),
            (
                "blkio",
                &[(
                    "blkio.throttle.io_service_bytes_recursive",
                    "8:0 Read 512\n8:0 Write 1024\n8:0 Sync 9\nTotal 1536\n",
                )],
            ),
        ]);
        let v2 = fake(&[(
            "",
            &[
                (
                    "cpu.stat",
                    "usage_usec 777\nuser_usec 700\nsystem_usec 77\n",
                ),
                ("memory.current", "8192\n"),
                ("memory.max", "max\n"),
                ("memory.stat", "anon 0\n"),
                ("pids.current", "5\n"),
                ("io.stat", "8:0 rbytes=10 wbytes=20 rios=1 wios=2\n"),
            ],
        )]);
        for (_dir, cg) in [v1, v2] {
            let (brief, full) = (cg.brief_stats(), cg.stats());
            for ptr in [
                "/cpu/usage/total",
                "/memory/usage/usage",
                "/memory/usage/limit",
                "/pids/current",
            ] {
                assert_eq!(
                    brief.pointer(ptr),
                    full.pointer(ptr),
                    "{ptr}: {brief} vs {full}"
                );
                assert!(
                    brief
                        .pointer(ptr)
                        .and_then(Value::as_u64)
                        .is_some_and(|v| v > 0),
                    "{ptr}"
                );
            }
            let bytes = |v: &Value| -> Vec<Value> {
                v["blkio"]["ioServiceBytesRecursive"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| e["op"] == "Read" || e["op"] == "Write")
                    .cloned()
                    .collect()
            };
            assert_eq!(bytes(&brief), bytes(&full));
            assert_eq!(bytes(&brief).len(), 2);
        }
    }
}
