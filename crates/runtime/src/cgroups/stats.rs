//! Reading a container's usage back from its cgroups, in the shape `runc events
//! --stats` prints (so tools that parse runc's output can parse ours), on v1 and v2.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value};

use super::{CgroupDir, Cgroups};

pub(super) fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

pub(super) fn num(dir: &Path, file: &str) -> u64 {
    read(dir, file)
        .and_then(|s| parse_limit(s.trim()))
        .unwrap_or(0)
}

/// "max" (v2's "no limit") reads as u64::MAX, like runc.
fn parse_limit(s: &str) -> Option<u64> {
    if s == "max" {
        Some(u64::MAX)
    } else {
        s.parse().ok()
    }
}

/// `key value` lines (memory.stat, cpu.stat, memory.events) as a map.
pub(super) fn keyed(dir: &Path, file: &str) -> BTreeMap<String, u64> {
    read(dir, file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

fn list(dir: &Path, file: &str) -> Vec<u64> {
    read(dir, file)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect()
}

impl Cgroups {
    pub(super) fn with(&self, controller: &str) -> Option<&CgroupDir> {
        self.dirs
            .iter()
            .find(|d| d.has(controller))
            .or_else(|| {
                self.dirs
                    .iter()
                    .find(|d| d.is_v2() && d.path.join(format!("{controller}.stat")).exists())
            })
            .or_else(|| {
                self.dirs.iter().find(|d| {
                    d.is_v2()
                        && (d.path.join(format!("{controller}.current")).exists()
                            || d.path.join(format!("{controller}.max")).exists())
                })
            })
    }

    /// How many times the OOM killer killed a process of the container.
    pub fn oom_kills(&self) -> u64 {
        match self.with("memory") {
            Some(d) if d.is_v2() => keyed(&d.path, "memory.events")
                .get("oom_kill")
                .copied()
                .unwrap_or(0),
            Some(d) => keyed(&d.path, "memory.oom_control")
                .get("oom_kill")
                .copied()
                .unwrap_or(0),
            None => 0,
        }
    }

    /// One stats snapshot (runc's `data` object of a `stats` event).
    pub fn stats(&self) -> Value {
        json!({
            "cpu": self.cpu_stats(),
            "memory": self.memory_stats(),
            "pids": self.pids_stats(),
            "blkio": self.blkio_stats(),
            "hugetlb": self.hugetlb_stats(),
        })
    }

    fn cpu_stats(&self) -> Value {
        // v1 splits usage (cpuacct) and throttling (cpu); v2 has both in cpu.stat.
        if let Some(d) = self.dirs.iter().find(|d| d.has("cpuacct")) {
            let ticks = keyed(&d.path, "cpuacct.stat");
            let hz = 1_000_000_000 / 100; // USER_HZ ticks to ns
            let thr = self
                .dirs
                .iter()
                .find(|d| d.has("cpu"))
                .map(|c| keyed(&c.path, "cpu.stat"))
                .unwrap_or_default();
            return json!({
                "usage": {
                    "total": num(&d.path, "cpuacct.usage"),
                    "percpu": list(&d.path, "cpuacct.usage_percpu"),
                    "percpu_kernel": list(&d.path, "cpuacct.usage_percpu_sys"),
                    "percpu_user": list(&d.path, "cpuacct.usage_percpu_user"),
                    "kernel": ticks.get("system").copied().unwrap_or(0) * hz,
                    "user": ticks.get("user").copied().unwrap_or(0) * hz,
                },
                "throttling": {
                    "periods": thr.get("nr_periods").copied().unwrap_or(0),
                    "throttled_periods": thr.get("nr_throttled").copied().unwrap_or(0),
                    "throttled_time": thr.get("throttled_time").copied().unwrap_or(0),
                }
            });
        }
        let Some(d) = self.dirs.iter().find(|d| d.is_v2()) else {
            return json!({});
        };
        let s = keyed(&d.path, "cpu.stat");
        let us = |k: &str| s.get(k).copied().unwrap_or(0) * 1000;
        json!({
            "usage": {"total": us("usage_usec"), "kernel": us("system_usec"), "user": us("user_usec")},
            "throttling": {
                "periods": s.get("nr_periods").copied().unwrap_or(0),
                "throttled_periods": s.get("nr_throttled").copied().unwrap_or(0),
                "throttled_time": us("throttled_usec"),
            }
        })
    }

    fn memory_stats(&self) -> Value {
        let Some(d) = self.with("memory") else {
            return json!({});
        };
        let p = &d.path;
        let raw: Map<String, Value> = keyed(p, "memory.stat")
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect();
        if d.is_v2() {
            let events = keyed(p, "memory.events");
            return json!({
                "usage": {
                    "usage": num(p, "memory.current"),
                    "limit": num(p, "memory.max"),
                    "max": num(p, "memory.peak"),
                    "failcnt": events.get("max").copied().unwrap_or(0),
                },
                "swap": {"usage": num(p, "memory.swap.current"), "limit": num(p, "memory.swap.max")},
                "oom_kill": events.get("oom_kill").copied().unwrap_or(0),
                "raw": raw,
            });
        }
        let entry = |prefix: &str| {
            json!({
                "usage": num(p, &format!("{prefix}.usage_in_bytes")),
                "limit": num(p, &format!("{prefix}.limit_in_bytes")),
                "max": num(p, &format!("{prefix}.max_usage_in_bytes")),
                "failcnt": num(p, &format!("{prefix}.failcnt")),
            })
        };
        json!({
            "usage": entry("memory"),
            "swap": entry("memory.memsw"),
            "kernel": entry("memory.kmem"),
            "kernelTCP": entry("memory.kmem.tcp"),
            "oom_kill": keyed(p, "memory.oom_control").get("oom_kill").copied().unwrap_or(0),
            "raw": raw,
        })
    }

    fn pids_stats(&self) -> Value {
        let Some(d) = self.with("pids") else {
            return json!({});
        };
        let limit = read(&d.path, "pids.max")
            .and_then(|s| parse_limit(s.trim()))
            .filter(|l| *l != u64::MAX)
            .unwrap_or(0);
        json!({"current": num(&d.path, "pids.current"), "limit": limit})
    }

    fn blkio_stats(&self) -> Value {
        let entry = |dev: &str, op: &str, value: u64| {
            let (major, minor) = dev.split_once(':').unwrap_or(("0", "0"));
            json!({"major": major.parse::<u64>().unwrap_or(0), "minor": minor.parse::<u64>().unwrap_or(0), "op": op, "value": value})
        };
        if let Some(d) = self.dirs.iter().find(|d| d.has("blkio")) {
            let parse = |file: &str| -> Vec<Value> {
                read(&d.path, file)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        (f.len() == 3).then(|| entry(f[0], f[1], f[2].parse().unwrap_or(0)))
                    })
                    .collect()
            };
            return json!({
                "ioServiceBytesRecursive": parse("blkio.throttle.io_service_bytes_recursive"),
                "ioServicedRecursive": parse("blkio.throttle.io_serviced_recursive"),
            });
        }
        let Some(d) = self
            .dirs
            .iter()
            .find(|d| d.is_v2() && d.path.join("io.stat").exists())
        else {
            return json!({});
        };
        let (mut bytes, mut ios) = (Vec::new(), Vec::new());
        for l in read(&d.path, "io.stat").unwrap_or_default().lines() {
            let mut it = l.split_whitespace();
            let Some(dev) = it.next() else { continue };
            for kv in it {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let v: u64 = v.parse().unwrap_or(0);
                match k {
                    "rbytes" => bytes.push(entry(dev, "Read", v)),
                    "wbytes" => bytes.push(entry(dev, "Write", v)),
                    "rios" => ios.push(entry(dev, "Read", v)),
                    "wios" => ios.push(entry(dev, "Write", v)),
                    _ => {}
                }
            }
        }
        json!({"ioServiceBytesRecursive": bytes, "ioServicedRecursive": ios})
    }

    fn hugetlb_stats(&self) -> Value {
        let mut out = Map::new();
        for d in self.dirs.iter().filter(|d| d.has("hugetlb") || d.is_v2()) {
            let Ok(entries) = std::fs::read_dir(&d.path) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let Some(size) = name.strip_prefix("hugetlb.").and_then(|r| {
                    r.strip_suffix(if d.is_v2() {
                        ".current"
                    } else {
                        ".usage_in_bytes"
                    })
                }) else {
                    continue;
                };
                let v = if d.is_v2() {
                    json!({"usage": num(&d.path, &name), "max": num(&d.path, &format!("hugetlb.{size}.max")),
                           "failcnt": keyed(&d.path, &format!("hugetlb.{size}.events")).get("max").copied().unwrap_or(0)})
                } else {
                    json!({"usage": num(&d.path, &name), "max": num(&d.path, &format!("hugetlb.{size}.max_usage_in_bytes")),
                           "failcnt": num(&d.path, &format!("hugetlb.{size}.failcnt"))})
                };
                out.insert(size.to_string(), v);
            }
            if !out.is_empty() {
                break;
            }
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake v2 cgroup directory (this is a unit test of the parsers, not the kernel).
    fn fake_v2(files: &[(&str, &str)]) -> (tempfile::TempDir, Cgroups) {
        let dir = tempfile::tempdir().unwrap();
        for (f, v) in files {
            std::fs::write(dir.path().join(f), v).unwrap();
        }
        let cg = Cgroups {
            dirs: vec![CgroupDir {
                controllers: String::new(),
                path: dir.path().to_path_buf(),
                mount_dir: String::new(),
                created_above: None,
            }],
        };
        (dir, cg)
    }

    #[test]
    fn v2_files_read_back_in_runcs_shape() {
        let (_d, cg) = fake_v2(&[
            ("cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\nnr_throttled 2\nthrottled_usec 30\n"),
            ("memory.current", "4096\n"),
            ("memory.max", "max\n"),
            ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            ("memory.stat", "anon 100\nfile 200\n"),
            ("pids.current", "3\n"),
            ("pids.max", "20\n"),
            ("io.stat", "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n"),
        ]);
        let s = cg.stats();
        assert_eq!(s["cpu"]["usage"]["total"], 1_500_000);
        assert_eq!(s["cpu"]["throttling"]["throttled_periods"], 2);
        assert_eq!(s["memory"]["usage"]["usage"], 4096);
        assert_eq!(s["memory"]["usage"]["limit"], u64::MAX);
        assert_eq!(s["memory"]["usage"]["failcnt"], 3);
        assert_eq!(s["memory"]["raw"]["file"], 200);
        assert_eq!(s["pids"]["current"], 3);
        assert_eq!(s["pids"]["limit"], 20);
        assert_eq!(s["blkio"]["ioServiceBytesRecursive"][1]["op"], "Write");
        assert_eq!(s["blkio"]["ioServiceBytesRecursive"][1]["value"], 20);
        assert_eq!(cg.oom_kills(), 1);
    }
}
