//! The soak: `SOAK_MINUTES` (default 60) of churn through the real `codex-ctr` — several
//! workers each create, start, exec into, stop and remove a batch of containers with
//! memory and pids limits, so that up to `SOAK_CONTAINERS` (default 200) exist at once —
//! then nothing may be left: no cgroup named for a container, no mount under the root,
//! no namespace mount, no process, no file under the root but the expected layout; and a
//! long-lived container's supervisor must hold as many fds at the end as at the start.
//!
//! Not part of `make test`: `make soak` runs it (`cargo test -p codex-tests --test
//! ctr_soak -- --ignored --nocapture`). `SOAK_WORKERS` (default 4) sets the parallelism.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use codex_tests::ctr::Ctr;
use codex_tests::*;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Operations done and errors seen, by kind.
#[derive(Default)]
struct Tally {
    ops: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    examples: Vec<String>,
    ids: BTreeSet<String>,
}

/// An error's kind: the command and its message with ids and numbers blanked out.
fn kind(cmd: &str, stderr: &str) -> String {
    let first = stderr.lines().next().unwrap_or("(no message)");
    let mut out = String::new();
    let mut run = String::new();
    for ch in first.chars().chain(std::iter::once(' ')) {
        if ch.is_ascii_hexdigit() {
            run.push(ch);
            continue;
        }
        if !run.is_empty() {
            let all_digits = run.chars().all(|c| c.is_ascii_digit());
            out.push_str(if run.len() >= 12 {
                "<id>"
            } else if all_digits {
                "N"
            } else {
                &run
            });
            run.clear();
        }
        out.push(ch);
    }
    format!("{cmd}: {}", out.trim_end())
}

/// 64-hex substrings of `s` (container ids).
fn ids_in(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let j = (i..b.len())
            .find(|&k| !b[k].is_ascii_hexdigit())
            .unwrap_or(b.len());
        if j - i == 64 {
            out.push(&s[i..j]);
        }
        i = j + 1;
    }
    out
}

struct Soak {
    c: Ctr,
    tally: Mutex<Tally>,
    live: AtomicUsize,
    peak: AtomicUsize,
    stop: AtomicBool,
}

impl Soak {
    /// Runs one command (60 s at most); counts it, and its failure by kind.
    fn op(&self, what: &str, args: &[&str]) -> Option<String> {
        let mut cmd = self.c.cmd(args);
        cmd.stdin(std::process::Stdio::null());
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn codex-ctr");
        let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let read = |mut r: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = r.read_to_string(&mut s);
                s
            })
        };
        let (out, err) = (read(Box::new(out)), read(Box::new(err)));
        let status = wait_child(&mut child, Duration::from_secs(60));
        let mut t = self.tally.lock().unwrap();
        *t.ops.entry(what.to_string()).or_default() += 1;
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            *t.errors.entry(format!("{what}: hung > 60 s")).or_default() += 1;
            return None;
        };
        let (out, err) = (
            out.join().unwrap_or_default(),
            err.join().unwrap_or_default(),
        );
        if status.success() {
            return Some(out);
        }
        let k = kind(what, &err);
        if t.examples.len() < 20 {
            t.examples
                .push(format!("codex-ctr {}: {}", args.join(" "), err.trim()));
        }
        *t.errors.entry(k).or_default() += 1;
        None
    }

    /// One worker: batches of `batch` containers through create, start, exec, stop, rm.
    fn worker(&self, w: usize, batch: usize, deadline: Instant) {
        let script = "trap 'exit 0' TERM; sleep 1000 & wait";
        let mut cycle = 0;
        while Instant::now() < deadline && !self.stop.load(Ordering::Relaxed) {
            let names: Vec<String> = (0..batch).map(|i| format!("w{w}-{cycle}-{i}")).collect();
            let mut made = Vec::new();
            for n in &names {
                let args = ["create", "--name", n, "-m", "32m", "--pids-limit", "32"];
                let args = [&args[..], &["busybox", "sh", "-c", script]].concat();
                if let Some(id) = self.op("create", &args) {
                    self.tally.lock().unwrap().ids.insert(id.trim().to_string());
                    made.push(n.clone());
                    let live = self.live.fetch_add(1, Ordering::Relaxed) + 1;
                    self.peak.fetch_max(live, Ordering::Relaxed);
                }
            }
            for n in &made {
                self.op("start", &["start", n]);
            }
            for n in &made {
                if let Some(out) = self.op("exec", &["exec", n, "echo", "ok"]) {
                    if out != "ok\n" {
                        let mut t = self.tally.lock().unwrap();
                        *t.errors
                            .entry(format!("exec: printed {out:?}"))
                            .or_default() += 1;
                    }
                }
            }
            for n in &made {
                self.op("stop", &["stop", "--time", "2", n]);
            }
            for n in &made {
                if self.op("rm", &["rm", n]).is_none() {
                    self.op("rm -f (after a failed rm)", &["rm", "-f", n]);
                }
                self.live.fetch_sub(1, Ordering::Relaxed);
            }
            cycle += 1;
        }
    }
}

/// Open fds and resident KiB of `pid`.
fn fds_and_rss(pid: i64) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let status = read_lossy(Path::new(&format!("/proc/{pid}/status")));
    let rss = status_field(&status, "VmRSS")
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (fds, rss)
}

#[test]
#[ignore = "the soak runs for SOAK_MINUTES (default 60): make soak"]
fn soak_churn_leaves_nothing_behind() {
    let minutes = env_or("SOAK_MINUTES", 60);
    let workers = env_or("SOAK_WORKERS", 4).max(1) as usize;
    let total = env_or("SOAK_CONTAINERS", 200).max(workers as u64) as usize;
    let batch = total / workers;
    let soak = Soak {
        c: Ctr::new(),
        tally: Mutex::new(Tally::default()),
        live: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    };
    let c = &soak.c;
    eprintln!(
        "soak: {minutes} min, {workers} workers x {batch} containers, root {}",
        c.root.display()
    );
    // The canary: one container for the whole soak, exec'd into all along; its
    // supervisor's fds and memory must not grow.
    let canary = [
        "run", "-d", "--name", "canary", "-m", "32m", "busybox", "sleep", "100000",
    ];
    c.run(&canary).assert_ok();
    let v = c.inspect("canary");
    let canary_id = v["id"].as_str().unwrap().to_string();
    let sup = v["supervisor_pid"].as_i64().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let (fds0, rss0) = fds_and_rss(sup);
    // The control: with the canary alive, the leak finder sees it everywhere it looks.
    let seen = leaks(c, &BTreeSet::from([canary_id.clone()]));
    let kinds: Vec<&str> = seen.keys().copied().collect();
    assert_eq!(
        kinds,
        ["cgroups", "containers", "files", "mounts", "processes"],
        "{seen:?}"
    );
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(minutes * 60);
    std::thread::scope(|s| {
        for w in 0..workers {
            let soak = &soak;
            s.spawn(move || soak.worker(w, batch, deadline));
        }
        let mut next = t0;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1));
            if Instant::now() < next {
                continue;
            }
            next += Duration::from_secs(30);
            soak.op("exec (canary)", &["exec", "canary", "true"]);
            let (fds, rss) = fds_and_rss(sup);
            let t = soak.tally.lock().unwrap();
            let ops: u64 = t.ops.values().sum();
            let errs: u64 = t.errors.values().sum();
            eprintln!(
                "[soak {:>4}s] ops {ops} errors {errs} live {} (peak {}) canary supervisor: {fds} fds, {rss} KiB",
                t0.elapsed().as_secs(),
                soak.live.load(Ordering::Relaxed),
                soak.peak.load(Ordering::Relaxed),
            );
        }
        soak.stop.store(true, Ordering::Relaxed);
    });
    let churn = t0.elapsed();
    let (fds1, rss1) = fds_and_rss(sup);
    c.run(&["rm", "-f", "canary"]).assert_ok();
    let mut t = soak.tally.into_inner().unwrap();
    t.ids.insert(canary_id);
    let ops: u64 = t.ops.values().sum();
    eprintln!(
        "soak summary: {ops} operations in {:.1} min ({:.1}/s), peak {} containers at once",
        churn.as_secs_f64() / 60.0,
        ops as f64 / churn.as_secs_f64(),
        soak.peak.load(Ordering::Relaxed)
    );
    eprintln!("  operations: {:?}", t.ops);
    eprintln!("  errors by kind: {:?}", t.errors);
    for e in &t.examples {
        eprintln!("  e.g. {e}");
    }
    eprintln!("  canary supervisor: {fds0} -> {fds1} fds, {rss0} -> {rss1} KiB resident");
    let leaks = leaks(c, &t.ids);
    eprintln!("  leaks: {leaks:?}");
    assert!(leaks.is_empty(), "leaked: {leaks:?}");
    assert_eq!(fds0, fds1, "the canary's supervisor leaked fds");
    assert!(t.errors.is_empty(), "errors: {:?}", t.errors);
}

/// Whatever the soak left, by kind; empty when nothing.
fn leaks(c: &Ctr, ids: &BTreeSet<String>) -> BTreeMap<&'static str, Vec<String>> {
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let ours = |s: &str| ids_in(s).iter().any(|i| ids.contains(*i));
    let ps = c.run(&["ps", "-a", "-q"]);
    out.entry("containers")
        .or_default()
        .extend(ps.stdout.split_whitespace().map(String::from));
    // cgroups: every directory under /sys/fs/cgroup whose name holds one of the ids.
    let mut stack = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let p = e.path();
                if ours(&e.file_name().to_string_lossy()) {
                    out.entry("cgroups")
                        .or_default()
                        .push(p.display().to_string());
                }
                stack.push(p);
            }
        }
    }
    let root = c.root.to_string_lossy().into_owned();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for m in parse_mountinfo(&mountinfo) {
        if m.mount_point.starts_with(&root) || ours(&m.mount_point) {
            out.entry("mounts").or_default().push(m.mount_point.clone());
        }
        if m.fstype == "nsfs" && (m.mount_point.starts_with(&root) || ours(&m.mount_point)) {
            out.entry("namespace mounts")
                .or_default()
                .push(m.mount_point.clone());
        }
    }
    // Processes: in a container's cgroup, or naming the root (supervisors, CLIs).
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i64>().ok()) else {
            continue;
        };
        let cg = read_lossy(&e.path().join("cgroup"));
        let cmdline = read_lossy(&e.path().join("cmdline")).replace('\0', " ");
        if pid_alive(pid) && (ours(&cg) || cmdline.contains(&root)) {
            out.entry("processes")
                .or_default()
                .push(format!("{pid} {cmdline}"));
        }
    }
    // Files: the layout of a root with one image and nothing else.
    let names = |rel: &str| -> BTreeSet<String> {
        let rd = std::fs::read_dir(c.root.join(rel))
            .into_iter()
            .flatten()
            .flatten();
        rd.map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let expected = [
        "containers",
        "images",
        "registry.json",
        "registry.lock",
        "runtime",
        "volumes",
    ];
    for n in names("") {
        if !expected.contains(&n.as_str()) && !n.starts_with("events") {
            out.entry("files").or_default().push(n);
        }
    }
    for dir in ["containers", "runtime", "volumes", "images/tmp"] {
        // The runtime's seccomp program cache outlives containers by design.
        let mut left = names(dir);
        left.remove(codex_runtime::seccomp_cache::DIR_NAME);
        out.entry("files")
            .or_default()
            .extend(left.into_iter().map(|n| format!("{dir}/{n}")));
    }
    if names("images/layers").len() != 1 {
        out.entry("files")
            .or_default()
            .push(format!("images/layers: {:?}", names("images/layers")));
    }
    out.retain(|_, v| !v.is_empty());
    out
}
