//! `codex-ctr`, flag by flag: the commands and flags `tests/ctr.rs` does not reach, each
//! checked on real containers from outside (exit codes, stdout/stderr, `inspect`, the
//! engine root) and, where the flag is about the container, from inside it.
//!
//! Covered here: `start -a`; `logs --tail/--since/--stdout/--stderr/-t/-f` and log
//! rotation (`--log-max-size`, `--log-max-files`); named and anonymous volumes and the
//! `volume` commands; `stats` (CPU %, memory limit, the streaming table); the block-I/O
//! rate flags; the create flags (`--entrypoint`, `--hostname`, `-u`, `--pids-limit`,
//! `--open-files`, `--cpus`, `--label`, `--stop-signal`, `--stop-timeout`,
//! `--env-file`, `--tmpfs`, `--rootfs`); `ps` filters and formats and the `list`
//! alias; id prefixes and ambiguous references; `restart`, `kill -s`, `wait` on several
//! containers, `export` to stdout, `prune`, `exec -u`, `image import` of a directory,
//! the global `--root`; and the shape of errors.

use codex_tests::ctr::Ctr;
use codex_tests::*;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

/// The full id of a container.
fn id_of(c: &Ctr, name: &str) -> String {
    c.inspect(name)["id"].as_str().expect("an id").to_string()
}

/// Waits until `logs NAME` (both streams) contains `needle`.
#[track_caller]
fn wait_for_log(c: &Ctr, name: &str, needle: &str) {
    let ok = wait_until(WAIT, || {
        let o = c.run(&["logs", name]);
        o.stdout.contains(needle) || o.stderr.contains(needle)
    });
    assert!(
        ok,
        "{name} never logged {needle:?}: {:?}",
        c.run(&["logs", name])
    );
}

/// `codex-ctr ...` running in the background with its stdout collected by a thread; the
/// child is killed (by its PID, through `Child::kill`) when this drops.
struct Streaming {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Streaming {
    fn spawn(mut cmd: Command) -> Streaming {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn codex-ctr");
        let mut pipe = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
        });
        Streaming {
            child,
            out,
            reader: Some(reader),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    #[track_caller]
    fn wait_for(&self, what: &str, f: impl Fn(&str) -> bool) {
        assert!(
            wait_until(WAIT, || f(&self.text())),
            "never saw {what}; output so far: {:?}",
            self.text()
        );
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits for the child to exit (and its output to be read) up to `timeout`.
    fn finish(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let st = wait_child(&mut self.child, timeout)?;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        Some(st)
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// Parses the engine's RFC 3339 UTC times (`2026-11-23T04:15:34.890555561Z`).
fn parse_utc(s: &str) -> SystemTime {
    let bad = format!("not an RFC 3339 UTC time: {s:?}");
    let body = s.strip_suffix('Z').expect(&bad);
    let (date, time) = body.split_once('T').expect(&bad);
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    assert!(d.len() == 3 && t.len() == 3, "not an RFC 3339 time: {s:?}");
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m, day) = (if d[1] <= 2 { d[0] - 1 } else { d[0] }, d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    let nanos: u32 = format!("{frac:0<9}")[..9].parse().unwrap();
    SystemTime::UNIX_EPOCH + Duration::new(secs as u64, nanos)
}

/// A block device on this host: its /dev path and major:minor (a disk before a loop,
/// ram or zram device).
fn block_device() -> Option<(PathBuf, u64, u64)> {
    let mut found: Vec<(PathBuf, u64, u64)> = std::fs::read_dir("/sys/block")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let p = Path::new("/dev").join(e.file_name());
            let m = std::fs::metadata(&p).ok()?;
            m.file_type().is_block_device().then(|| {
                let (maj, min) = (libc::major(m.rdev()), libc::minor(m.rdev()));
                (p, maj as u64, min as u64)
            })
        })
        .collect();
    let virt = |p: &Path| {
        let n = p.file_name().unwrap().to_string_lossy().into_owned();
        ["loop", "ram", "zram", "nbd"]
            .iter()
            .any(|pre| n.starts_with(pre))
    };
    found.sort_by_key(|(p, _, _)| (virt(p), p.clone()));
    found.into_iter().next()
}

const COUNT_TO_200: &str = "i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done";

// ---------------------------------------------------------------------------------
// start -a
// ---------------------------------------------------------------------------------

#[test]
fn start_attach_streams_only_the_new_runs_output_and_exits_with_its_code() {
    let c = Ctr::new();
    // Each run counts itself in a volume: its output and exit code differ per run.
    let script = "n=$(cat /v/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /v/n; \
                  echo run$n; echo err$n >&2; exit $((n+10))";
    c.run(&[
        "create",
        "--name",
        "att",
        "-v",
        "attvol:/v",
        "busybox",
        "sh",
        "-c",
        script,
    ])
    .assert_ok();
    let first = c.run(&["start", "-a", "att"]);
    first.assert_code(11);
    assert_eq!(first.stdout, "run1\n", "{first:?}");
    assert!(first.stderr.contains("err1"), "{first:?}");
    assert_eq!(c.inspect("att")["status"], "exited");
    // An exited container is started again; only this run's lines are streamed.
    let second = c.run(&["start", "-a", "att"]);
    second.assert_code(12);
    assert_eq!(second.stdout, "run2\n", "{second:?}");
    assert!(
        second.stderr.contains("err2") && !second.stderr.contains("err1"),
        "{second:?}"
    );
    assert_eq!(c.inspect("att")["exit_code"], 12);
    // The log keeps both runs.
    assert_eq!(c.run(&["logs", "--stdout", "att"]).stdout, "run1\nrun2\n");
    let two = c.run(&["start", "-a", "att", "att"]);
    two.assert_fails().assert_stderr_mentions("exactly one");
}

// ---------------------------------------------------------------------------------
// logs
// ---------------------------------------------------------------------------------

#[test]
fn logs_stdout_stderr_tail_and_timestamps_select_and_prefix_lines() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "--name",
        "talk",
        "busybox",
        "sh",
        "-c",
        "echo out1; echo err1 >&2; echo out2; echo err2 >&2; echo out3",
    ])
    .assert_ok();
    let out = c.run(&["logs", "--stdout", "talk"]);
    out.assert_ok();
    assert_eq!(out.stdout, "out1\nout2\nout3\n", "{out:?}");
    assert_eq!(out.stderr, "", "{out:?}");
    let err = c.run(&["logs", "--stderr", "talk"]);
    err.assert_ok();
    assert_eq!(err.stdout, "", "{err:?}");
    assert_eq!(err.stderr, "err1\nerr2\n", "{err:?}");
    let both = c.run(&["logs", "--stdout", "--stderr", "talk"]);
    assert_eq!(both.stdout, "out1\nout2\nout3\n");
    assert_eq!(both.stderr, "err1\nerr2\n");
    // The stream filter applies before the tail.
    let tail = c.run(&["logs", "--stdout", "--tail", "2", "talk"]);
    assert_eq!(tail.stdout, "out2\nout3\n", "{tail:?}");
    // Both streams: 3 lines in all, the newest of each stream (the order between the
    // two pipes is whatever the supervisor read first).
    let tail_all = c.run(&["logs", "--tail", "3", "talk"]);
    tail_all.assert_ok();
    let (o, e) = (
        tail_all.lines(),
        tail_all.stderr.lines().collect::<Vec<_>>(),
    );
    assert_eq!(o.len() + e.len(), 3, "{tail_all:?}");
    assert!(["out1", "out2", "out3"].ends_with(&o), "{tail_all:?}");
    assert!(["err1", "err2"].ends_with(&e), "{tail_all:?}");
    let none = c.run(&["logs", "--tail", "0", "talk"]);
    none.assert_ok();
    assert_eq!((none.stdout.as_str(), none.stderr.as_str()), ("", ""));
    // -t: every line is "<RFC 3339 time> <text>", within the container's run.
    let v = c.inspect("talk");
    let started = parse_utc(v["started_at"].as_str().unwrap());
    let finished = parse_utc(v["finished_at"].as_str().unwrap());
    let ts = c.run(&["logs", "-t", "--stdout", "talk"]);
    ts.assert_ok();
    let lines = ts.lines();
    assert_eq!(lines.len(), 3, "{ts:?}");
    let mut last = SystemTime::UNIX_EPOCH;
    for (l, want) in lines.iter().zip(["out1", "out2", "out3"]) {
        let (time, text) = l.split_once(' ').expect("a timestamp then the line");
        assert_eq!(text, want, "{ts:?}");
        let t = parse_utc(time);
        assert!(t >= last, "timestamps go backwards: {ts:?}");
        last = t;
        // The log's clock and the record's may be read a moment apart.
        let slack = Duration::from_secs(1);
        assert!(
            t + slack >= started && t <= finished + slack,
            "{time} is outside the run ({v})"
        );
    }
}

#[test]
fn logs_since_takes_a_time_a_duration_or_unix_seconds() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "--name",
        "slow",
        "busybox",
        "sh",
        "-c",
        "echo old; sleep 3; echo new",
    ])
    .assert_ok();
    let ts = c.run(&["logs", "-t", "slow"]);
    let stamps: Vec<&str> = ts
        .lines()
        .iter()
        .map(|l| l.split_once(' ').unwrap().0)
        .collect();
    assert_eq!(stamps.len(), 2, "{ts:?}");
    let (t_old, t_new) = (parse_utc(stamps[0]), parse_utc(stamps[1]));
    assert!(t_new.duration_since(t_old).unwrap() >= Duration::from_secs(2));

    // RFC 3339: the exact time of "new" includes it and leaves "old" out.
    let rfc = c.run(&["logs", "--since", stamps[1], "slow"]);
    rfc.assert_ok();
    assert_eq!(rfc.stdout, "new\n", "{rfc:?}");
    // Unix seconds: the second "new" was written in (at least 2 s after "old").
    let secs = t_new
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let unix = c.run(&["logs", "--since", &secs, "slow"]);
    unix.assert_ok();
    assert_eq!(unix.stdout, "new\n", "{unix:?}");
    let epoch = c.run(&["logs", "--since", "0", "slow"]);
    assert_eq!(epoch.stdout, "old\nnew\n", "{epoch:?}");
    // A duration before now: reaching 1.5 s further back than "new" (but not to "old").
    let ago = SystemTime::now().duration_since(t_new).unwrap() + Duration::from_millis(1500);
    let dur = format!("{}ms", ago.as_millis());
    let rel = c.run(&["logs", "--since", &dur, "slow"]);
    rel.assert_ok();
    assert_eq!(rel.stdout, "new\n", "--since {dur}: {rel:?}");
    let hour = c.run(&["logs", "--since", "1h", "slow"]);
    assert_eq!(hour.stdout, "old\nnew\n", "{hour:?}");
    // A time after everything: nothing.
    let future = c.run(&["logs", "--since", "2999-01-01T00:00:00Z", "slow"]);
    future.assert_ok();
    assert_eq!(future.stdout, "", "{future:?}");
}

#[test]
fn logs_since_with_a_bad_value_names_since_and_fails() {
    let c = Ctr::new();
    c.run(&["run", "--name", "quiet", "busybox", "echo", "hi"])
        .assert_ok();
    for bad in ["yesterday", "10 parsecs", "2026-13-45T99:00:00Z"] {
        let o = c.run(&["logs", "--since", bad, "quiet"]);
        o.assert_fails().assert_stderr_mentions("since");
        assert!(o.stderr.starts_with("codex-ctr: "), "{o:?}");
        assert_eq!(o.stdout, "", "{o:?}");
    }
}

#[test]
fn logs_follow_with_tail_prints_the_last_lines_then_new_ones_until_the_container_ends() {
    let c = Ctr::new();
    let trig = tempfile::tempdir().unwrap();
    let bind = format!("{}:/trig", trig.path().display());
    c.run(&[
        "run",
        "-d",
        "--name",
        "follow",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        "echo a; echo b; echo c; while [ ! -e /trig/go ]; do sleep 0.05; done; echo d; echo e",
    ])
    .assert_ok();
    wait_for_log(&c, "follow", "c");
    let mut f = Streaming::spawn(c.cmd(&["logs", "-f", "--tail", "1", "follow"]));
    f.wait_for("the tail line", |t| t == "c\n");
    // The container still waits for the trigger: `logs -f` must still be following.
    assert!(f.running(), "logs -f ended while the container runs");
    assert_eq!(c.inspect("follow")["status"], "running");
    std::fs::write(trig.path().join("go"), "").unwrap();
    let st = f
        .finish(WAIT)
        .expect("logs -f did not end with the container");
    assert!(st.success(), "{st}");
    assert_eq!(f.text(), "c\nd\ne\n");
    assert_eq!(c.inspect("follow")["status"], "exited");
}

#[test]
fn log_rotation_keeps_max_files_of_max_size_and_logs_returns_the_newest_lines_in_order() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--name",
        "rot",
        "--log-max-size",
        "4k",
        "--log-max-files",
        "2",
        "busybox",
        "sh",
        "-c",
        COUNT_TO_200,
    ])
    .assert_ok();
    c.run(&["wait", "rot"]).assert_ok();
    let dir = c.root.join("containers").join(id_of(&c, "rot"));
    let live = dir.join("container.log");
    let rotated = dir.join("container.log.1");
    assert!(rotated.exists(), "no rotated log in {}", dir.display());
    assert!(
        !dir.join("container.log.2").exists(),
        "--log-max-files 2 keeps the live file and one rotated file"
    );
    for f in [&live, &rotated] {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= 4096, "{} is {len} bytes", f.display());
    }
    let logs = c.run(&["logs", "rot"]);
    logs.assert_ok();
    let lines = logs.lines();
    assert!(
        !lines.is_empty() && lines.len() < 200,
        "older lines must be gone: {} lines",
        lines.len()
    );
    // A contiguous run of the newest lines, in order, ending with the last one.
    let first: usize = lines[0].strip_prefix("line-").unwrap().parse().unwrap();
    let want: Vec<String> = (first..200).map(|i| format!("line-{i}")).collect();
    assert_eq!(lines, want);
    let tail = c.run(&["logs", "--tail", "3", "rot"]);
    assert_eq!(tail.stdout, "line-197\nline-198\nline-199\n");
    // Following an exited container prints the same and ends.
    let f = c.run(&["logs", "-f", "rot"]);
    f.assert_ok();
    assert_eq!(f.stdout, logs.stdout);
}

#[test]
fn attached_run_streams_every_line_even_when_the_log_rotates() {
    // 200 lines of ~75 bytes fit in 5 files of 4k: `logs` has all of them, and so
    // must the attached run's own output.
    let c = Ctr::new();
    let o = c.run(&[
        "run",
        "--name",
        "rotrun",
        "--log-max-size",
        "4k",
        "--log-max-files",
        "5",
        "busybox",
        "sh",
        "-c",
        COUNT_TO_200,
    ]);
    o.assert_ok();
    let logs = c.run(&["logs", "rotrun"]);
    assert_eq!(logs.lines().len(), 200, "{logs:?}");
    assert_eq!(
        o.lines().len(),
        200,
        "attached run printed {} of 200 lines",
        o.lines().len()
    );
    assert_eq!(o.stdout, logs.stdout);
}

#[test]
fn logs_follow_sees_every_line_across_rotations() {
    let c = Ctr::new();
    let trig = tempfile::tempdir().unwrap();
    let bind = format!("{}:/trig", trig.path().display());
    let script =
        format!("echo ready; while [ ! -e /trig/go ]; do sleep 0.05; done; {COUNT_TO_200}");
    c.run(&[
        "run",
        "-d",
        "--name",
        "rotf",
        "--log-max-size",
        "4k",
        "--log-max-files",
        "5",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        &script,
    ])
    .assert_ok();
    let mut f = Streaming::spawn(c.cmd(&["logs", "-f", "rotf"]));
    f.wait_for("ready", |t| t == "ready\n");
    std::fs::write(trig.path().join("go"), "").unwrap();
    let st = f
        .finish(WAIT)
        .expect("logs -f did not end with the container");
    assert!(st.success(), "{st}");
    // All 201 lines (~15k) fit in 5 files of 4k: `logs` has them, so must `logs -f`.
    let logs = c.run(&["logs", "rotf"]);
    assert_eq!(logs.lines().len(), 201, "{logs:?}");
    let text = f.text();
    assert_eq!(
        text.lines().count(),
        201,
        "logs -f printed {} of 201 lines",
        text.lines().count()
    );
    assert_eq!(text, logs.stdout);
}

// ---------------------------------------------------------------------------------
// Volumes
// ---------------------------------------------------------------------------------

#[test]
fn a_named_volume_persists_across_containers_and_ro_is_enforced_inside() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "--rm",
        "-v",
        "keep:/data",
        "busybox",
        "sh",
        "-c",
        "echo persisted > /data/f",
    ])
    .assert_ok();
    assert_eq!(c.containers(), 0);
    // A second container sees the data; read-only it cannot write.
    let o = c.run(&[
        "run",
        "--rm",
        "-v",
        "keep:/data:ro",
        "busybox",
        "sh",
        "-c",
        "cat /data/f; if touch /data/x 2>/dev/null; then echo WROTE; else echo refused; fi; \
         grep ' /data ' /proc/mounts",
    ]);
    o.assert_ok();
    let mut lines = o.stdout.lines();
    assert_eq!(lines.next(), Some("persisted"), "{o:?}");
    assert_eq!(lines.next(), Some("refused"), "{o:?}");
    let mount = lines.next().unwrap_or_default();
    assert!(
        mount.split(' ').nth(3).unwrap_or("").starts_with("ro"),
        "/data is not mounted ro: {o:?}"
    );
    // The data lives at the volume's mountpoint on the host.
    let v = c.run(&["volume", "inspect", "keep"]).json();
    let mp = PathBuf::from(v["mountpoint"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(mp.join("f")).unwrap(),
        "persisted\n"
    );
    assert!(!mp.join("x").exists());
}

#[test]
fn rm_v_removes_an_anonymous_volume_but_keeps_a_named_one() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "--name",
        "anon",
        "-v",
        "/scratch",
        "-v",
        "named:/named",
        "busybox",
        "sh",
        "-c",
        "echo a > /scratch/f; echo n > /named/f",
    ])
    .assert_ok();
    let vols = c.run(&["volume", "ls", "--format", "json"]).json();
    let vols = vols.as_array().unwrap();
    assert_eq!(vols.len(), 2, "{vols:?}");
    let anon = vols
        .iter()
        .find(|v| v["anonymous"] == true)
        .expect("an anonymous volume");
    let anon_name = anon["name"].as_str().unwrap().to_string();
    let anon_dir = PathBuf::from(anon["mountpoint"].as_str().unwrap());
    assert_eq!(anon["used_by"], serde_json::json!(["anon"]));
    assert_eq!(std::fs::read_to_string(anon_dir.join("f")).unwrap(), "a\n");
    let named = vols.iter().find(|v| v["name"] == "named").unwrap();
    assert_eq!(named["anonymous"], false);
    c.run(&["rm", "-v", "anon"]).assert_ok();
    let left = c.run(&["volume", "ls", "-q"]);
    assert_eq!(left.stdout, "named\n", "{left:?}");
    assert!(!anon_dir.exists(), "the anonymous volume's data stayed");
    assert_eq!(
        c.run(&["volume", "inspect", "named"]).json()["used_by"],
        serde_json::json!([])
    );
    c.run(&["volume", "inspect", &anon_name])
        .assert_fails()
        .assert_stderr_mentions("not found");
}

#[test]
fn plain_rm_keeps_an_anonymous_volume_and_run_rm_removes_it() {
    let c = Ctr::new();
    c.run(&["run", "--name", "plain", "-v", "/a", "busybox", "true"])
        .assert_ok();
    c.run(&["rm", "plain"]).assert_ok();
    let left = c.run(&["volume", "ls", "--format", "json"]).json();
    assert_eq!(left.as_array().unwrap().len(), 1, "{left}");
    assert_eq!(left[0]["anonymous"], true);
    assert_eq!(left[0]["used_by"], serde_json::json!([]));
    // An attached `run --rm` takes its anonymous volume with it.
    c.run(&["run", "--rm", "-v", "/b", "busybox", "touch", "/b/x"])
        .assert_ok();
    let after = c.run(&["volume", "ls", "-q"]);
    assert_eq!(after.lines(), [left[0]["name"].as_str().unwrap()]);
    // So does a detached one, removed by its supervisor when it exits.
    c.run(&[
        "run", "-d", "--rm", "--name", "gone", "-v", "/c", "busybox", "true",
    ])
    .assert_ok();
    let removed = wait_until(Duration::from_secs(20), || {
        c.run(&["volume", "ls", "-q"]).lines().len() == 1 && !c.run(&["inspect", "gone"]).ok()
    });
    assert!(removed, "{:?}", c.run(&["volume", "ls"]));
}

#[test]
fn volume_create_ls_inspect_rm_and_prune() {
    let c = Ctr::new();
    let made = c.run(&["volume", "create", "vol-a"]);
    made.assert_ok();
    assert_eq!(made.stdout, "vol-a\n");
    // Creating it again keeps it (and its data).
    let mp = PathBuf::from(
        c.run(&["volume", "inspect", "vol-a"]).json()["mountpoint"]
            .as_str()
            .unwrap(),
    );
    assert!(mp.is_dir(), "{}", mp.display());
    std::fs::write(mp.join("kept"), "1").unwrap();
    c.run(&["volume", "create", "vol-a"]).assert_ok();
    assert!(
        mp.join("kept").exists(),
        "create of an existing volume wiped it"
    );
    c.run(&["volume", "create", "vol-b"]).assert_ok();
    let q = c.run(&["volume", "ls", "-q"]);
    assert_eq!(q.lines(), ["vol-a", "vol-b"]);
    let table = c.run(&["volume", "list"]);
    table.assert_ok();
    assert!(
        table.stdout.starts_with("NAME") && table.stdout.contains("vol-b"),
        "{table:?}"
    );
    let inspect = c.run(&["volume", "inspect", "vol-b"]).json();
    assert_eq!(inspect["name"], "vol-b");
    assert_eq!(inspect["anonymous"], false);
    assert!(inspect["created"].is_string(), "{inspect}");

    // In use (by a container that is not even running): refused, naming it.
    c.run(&[
        "create", "--name", "user1", "-v", "vol-a:/a", "busybox", "true",
    ])
    .assert_ok();
    let ls = c.run(&["volume", "ls", "--format", "json"]).json();
    let a = ls.as_array().unwrap().iter().find(|v| v["name"] == "vol-a");
    assert_eq!(a.unwrap()["used_by"], serde_json::json!(["user1"]));
    let busy = c.run(&["volume", "rm", "vol-a"]);
    busy.assert_fails().assert_stderr_mentions("user1");
    busy.assert_stderr_mentions("in use");
    assert!(mp.join("kept").exists());
    // prune takes only what no container mounts.
    let pruned = c.run(&["volume", "prune"]);
    pruned.assert_ok();
    assert_eq!(pruned.stdout, "vol-b\n");
    assert_eq!(c.run(&["volume", "ls", "-q"]).stdout, "vol-a\n");
    c.run(&["rm", "user1"]).assert_ok();
    let rm = c.run(&["volume", "rm", "vol-a"]);
    rm.assert_ok();
    assert_eq!(rm.stdout, "vol-a\n");
    assert!(!mp.exists(), "volume rm left its data");
    assert_eq!(c.run(&["volume", "ls", "-q"]).stdout, "");
    c.run(&["volume", "rm", "vol-a"])
        .assert_fails()
        .assert_stderr_mentions("not found");
    c.run(&["volume", "create", "bad/name"])
        .assert_fails()
        .assert_stderr_mentions("volume");
}

// ---------------------------------------------------------------------------------
// stats
// ---------------------------------------------------------------------------------

#[test]
fn stats_json_shows_a_busy_loops_cpu_and_the_memory_limit_or_the_hosts_memory() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--name",
        "spin",
        "--memory",
        "48m",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "while :; do :; done",
    ])
    .assert_ok();
    // (no network: the cgroup v2 VM tier runs this, and it has no bridge)
    let idle = "run -d --name idle --network none busybox sleep 100";
    c.run(&idle.split(' ').collect::<Vec<_>>()).assert_ok();
    let gone = "run --name gone --network none busybox true";
    c.run(&gone.split(' ').collect::<Vec<_>>()).assert_ok();
    // No names: every running container, and only those.
    let all = c.run(&["stats", "--no-stream", "--format", "json"]);
    all.assert_ok();
    let all = all.json();
    let mut names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["idle", "spin"], "{all}");
    let spin = all.as_array().unwrap().iter().find(|u| u["name"] == "spin");
    let spin = spin.unwrap();
    // any share above nothing: how much the loop gets beside parallel tests is the
    // machine's business (the quota test in resources.rs checks the kernel's counters)
    let cpu = spin["cpu_percent"].as_f64().unwrap();
    assert!(cpu > 0.0, "a busy loop used {cpu}% CPU: {spin}");
    assert_eq!(spin["memory_limit"], 48u64 << 20);
    assert!(spin["memory_usage"].as_u64().unwrap() > 0, "{spin}");
    assert_eq!(spin["id"], id_of(&c, "spin"));
    // Without --memory the limit shown is the host's memory.
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    let idle = c.run(&["stats", "--no-stream", "--format", "json", "idle"]);
    let idle = &idle.json()[0];
    assert_eq!(idle["memory_limit"], kb * 1024, "{idle}");
    assert!(idle["cpu_percent"].as_f64().unwrap() < 20.0, "{idle}");
    // The table form.
    let table = c.run(&["stats", "--no-stream", "spin"]);
    table.assert_ok();
    let mut rows = table.stdout.lines();
    assert!(rows.next().unwrap().starts_with("ID"), "{table:?}");
    let row = rows.next().unwrap();
    assert!(row.contains("spin") && row.contains("48.0MiB"), "{table:?}");
    // A container that is not running cannot be measured.
    c.run(&["stats", "--no-stream", "gone"])
        .assert_fails()
        .assert_stderr_mentions("running");
}

#[test]
fn stats_without_no_stream_keeps_refreshing_until_killed() {
    let c = Ctr::new();
    c.run(&["run", "-d", "--name", "watched", "busybox", "sleep", "100"])
        .assert_ok();
    let mut s = Streaming::spawn(c.cmd(&["stats", "watched"]));
    s.wait_for("a first table", |t| {
        t.contains("NAME") && t.lines().any(|l| l.contains("watched"))
    });
    // It prints a new table for each refresh (into a pipe: no screen clearing, see
    // ctr_cli.rs) and does not return.
    s.wait_for("a second refresh", |t| t.matches("NAME").count() >= 2);
    assert!(s.running(), "stats without --no-stream returned");
    drop(s);
    // JSON streams one array per line.
    let mut j = Streaming::spawn(c.cmd(&["stats", "--format", "json", "watched"]));
    j.wait_for("two JSON lines", |t| t.lines().count() >= 2);
    assert!(j.running());
    let text = j.text();
    for l in text.lines().take(2) {
        let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
        assert_eq!(v[0]["name"], "watched", "{l}");
    }
}

// ---------------------------------------------------------------------------------
// Block I/O rates
// ---------------------------------------------------------------------------------

#[test]
fn device_read_and_write_bps_reach_the_spec_and_the_containers_cgroup() {
    let Some((dev, maj, min)) = block_device() else {
        skip("no block device on this host");
        return;
    };
    let c = Ctr::new();
    let read = format!("{}:1mb", dev.display());
    let write = format!("{}:2m", dev.display());
    // Inside: v1 blkio.throttle.*_bps_device ("MAJ:MIN RATE") or v2 io.max.
    c.run(&[
        "create",
        "--name",
        "io",
        "--device-read-bps",
        &read,
        "--device-write-bps",
        &write,
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/io.max 2>/dev/null || \
         cat /sys/fs/cgroup/blkio/blkio.throttle.read_bps_device \
             /sys/fs/cgroup/blkio/blkio.throttle.write_bps_device",
    ])
    .assert_ok();
    let spec = c.run(&["inspect", "--spec", "io"]);
    spec.assert_ok();
    let blk = &spec.json()["linux"]["resources"]["blockIO"];
    assert_eq!(
        blk["throttleReadBpsDevice"],
        serde_json::json!([{"major": maj, "minor": min, "rate": 1u64 << 20}]),
        "{blk}"
    );
    assert_eq!(
        blk["throttleWriteBpsDevice"],
        serde_json::json!([{"major": maj, "minor": min, "rate": 2u64 << 20}]),
        "{blk}"
    );
    let limits = &c.inspect("io")["limits"];
    assert!(limits.to_string().contains("1048576"), "{limits}");
    let o = c.run(&["start", "-a", "io"]);
    o.assert_ok();
    let devno = format!("{maj}:{min}");
    let lines: Vec<&str> = o
        .lines()
        .into_iter()
        .filter(|l| l.starts_with(&devno))
        .collect();
    assert!(!lines.is_empty(), "no throttle for {devno} inside: {o:?}");
    let all = lines.join("\n");
    assert!(
        all.contains("1048576") && all.contains("2097152"),
        "{devno} rates inside: {o:?}"
    );
}

#[test]
fn device_bps_with_a_bad_device_or_rate_fails_naming_the_flag() {
    let c = Ctr::new();
    let cases: &[(&str, &str, &str)] = &[
        ("--device-read-bps", "vda:1mb", "device-read-bps"),
        ("--device-read-bps", "/dev/vda:fast", "device-read-bps"),
        ("--device-write-bps", "/dev/vda", "device-write-bps"),
        ("--device-write-bps", "/dev/vda:-3", "device-write-bps"),
    ];
    for (flag, value, needle) in cases {
        let o = c.run(&["create", flag, value, "busybox", "true"]);
        o.assert_code(125).assert_stderr_mentions(needle);
        assert!(o.stderr.starts_with("codex-ctr: "), "{o:?}");
    }
    // A path that is not a block device is refused too (it has no major:minor).
    for (flag, value, needle) in [
        ("--device-read-bps", "/dev/null:1mb", "/dev/null"),
        (
            "--device-write-bps",
            "/dev/no-such-disk:1mb",
            "/dev/no-such-disk",
        ),
    ] {
        let o = c.run(&["create", flag, value, "busybox", "true"]);
        o.assert_code(125).assert_stderr_mentions(needle);
    }
    assert_eq!(c.containers(), 0, "a refused create left a container");
}

#[test]
fn device_bps_with_a_device_that_is_not_a_block_device_names_the_flag() {
    let c = Ctr::new();
    for (flag, value) in [
        ("--device-read-bps", "/dev/no-such-disk:1mb"),
        ("--device-read-bps", "/dev/null:1mb"),
        ("--device-write-bps", "/dev/null:1mb"),
    ] {
        let o = c.run(&["create", flag, value, "busybox", "true"]);
        o.assert_fails()
            .assert_stderr_mentions(flag.trim_start_matches('-'));
    }
}

// ---------------------------------------------------------------------------------
// Create flags
// ---------------------------------------------------------------------------------

#[test]
fn entrypoint_replaces_the_program_and_takes_the_command_as_arguments() {
    let c = Ctr::new();
    let o = c.run(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/echo",
        "busybox",
        "hello",
        "world",
    ]);
    o.assert_ok();
    assert_eq!(o.stdout, "hello world\n");
    c.run(&[
        "create",
        "--name",
        "ep",
        "--entrypoint",
        "/bin/ls",
        "busybox",
        "/etc",
    ])
    .assert_ok();
    let args = c.run(&["inspect", "--spec", "ep"]).json()["process"]["args"].clone();
    assert_eq!(args, serde_json::json!(["/bin/ls", "/etc"]));
}

#[test]
fn hostname_and_user_are_what_the_container_sees() {
    let c = Ctr::new();
    let o = c.run(&[
        "run",
        "--rm",
        "--hostname",
        "box-7",
        "-u",
        "1234:5678",
        "busybox",
        "sh",
        "-c",
        "hostname; id -u; id -g; cat /proc/sys/kernel/hostname",
    ]);
    o.assert_ok();
    assert_eq!(o.lines(), ["box-7", "1234", "5678", "box-7"], "{o:?}");
    // UID alone: the gid is the uid.
    let o = c.run(&[
        "run",
        "--rm",
        "--user",
        "42",
        "busybox",
        "sh",
        "-c",
        "id -u; id -g",
    ]);
    o.assert_ok();
    assert_eq!(o.lines(), ["42", "42"], "{o:?}");
}

#[test]
fn pids_limit_caps_the_number_of_processes_inside() {
    let c = Ctr::new();
    let o = c.run(&[
        "run",
        "--rm",
        "--pids-limit",
        "12",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        // A child shell forks sleeps until a fork fails (which ends it), counting each.
        "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max; \
         sh -c 'for i in $(seq 30); do sleep 5 & echo $i > /tmp/n; done' 2>/dev/null; \
         echo started=$(cat /tmp/n)",
    ]);
    o.assert_ok();
    let mut lines = o.stdout.lines();
    assert_eq!(lines.next(), Some("12"), "{o:?}");
    let started: usize = lines
        .next()
        .and_then(|l| l.strip_prefix("started="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{o:?}"));
    assert!(started < 12, "{started} sleeps ran under --pids-limit 12");
}

#[test]
fn open_files_sets_the_soft_and_hard_nofile_limit_inside() {
    let c = Ctr::new();
    let o = c.run(&[
        "run",
        "--rm",
        "--open-files",
        "321",
        "busybox",
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn; grep 'Max open files' /proc/self/limits",
    ]);
    o.assert_ok();
    let lines = o.lines();
    assert_eq!(&lines[..2], ["321", "321"], "{o:?}");
    let limits: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(&limits[3..5], ["321", "321"], "{o:?}");
}

#[test]
fn cpus_sets_a_cfs_quota_seen_in_the_spec_and_inside() {
    let c = Ctr::new();
    for amount in ["0.5", "50%"] {
        let name = if amount == "0.5" { "half" } else { "pct" };
        c.run(&[
            "create",
            "--name",
            name,
            "--cpus",
            amount,
            "busybox",
            "sh",
            "-c",
            "cat /sys/fs/cgroup/cpu.max 2>/dev/null || \
             echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)",
        ])
        .assert_ok();
        let spec = c.run(&["inspect", "--spec", name]).json();
        assert_eq!(
            spec["linux"]["resources"]["cpu"],
            serde_json::json!({"quota": 50000, "period": 100000}),
            "--cpus {amount}"
        );
        let o = c.run(&["start", "-a", name]);
        o.assert_ok();
        assert_eq!(o.stdout, "50000 100000\n", "--cpus {amount}: {o:?}");
    }
    let too_many = c.run(&["run", "--rm", "--cpus", "4096", "busybox", "true"]);
    too_many.assert_code(125).assert_stderr_mentions("cpus");
    let zero = c.run(&["run", "--rm", "--cpus", "0", "busybox", "true"]);
    zero.assert_code(125).assert_stderr_mentions("cpus");
}

/// `--cpu-shares`, `--cpuset-cpus/-mems` and `--memory-swap`: in the spec, in the
/// container's own cgroup files (against a container without them), changed at once by
/// `update`, and refused by name out of range.
#[test]
fn cpu_shares_cpusets_and_swap_reach_the_cgroup_and_update_changes_them() {
    let c = Ctr::new();
    let v2 = cgroup_v2_only();
    let read = "cat /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || cat /sys/fs/cgroup/cpu.weight; \
                cat /sys/fs/cgroup/cpuset/cpuset.cpus 2>/dev/null || cat /sys/fs/cgroup/cpuset.cpus; \
                cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.swap.max";
    let shares = |s: u64| {
        if v2 {
            (1 + ((s - 2) * 9999) / 262_142).to_string()
        } else {
            s.to_string()
        }
    };
    let swap = |total: u64| {
        if v2 {
            (total - (64 << 20)).to_string()
        } else {
            total.to_string()
        }
    };
    // Control: the defaults of a container without the flags.
    let o = c.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        read,
    ]);
    o.assert_ok();
    let control: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(control[0], shares(1024), "{o:?}");
    assert_ne!(control[1], "0", "needs a host with 2 CPUs: {o:?}");
    c.run(&[
        "run",
        "-d",
        "--name",
        "s",
        "--network",
        "none",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "--cpuset-mems",
        "0",
        "-m",
        "64m",
        "--memory-swap",
        "128m",
        "busybox",
        "sleep",
        "300",
    ])
    .assert_ok();
    let spec = c.run(&["inspect", "--spec", "s"]).json();
    let r = &spec["linux"]["resources"];
    assert_eq!(
        r["cpu"],
        serde_json::json!({"shares": 512, "cpus": "0", "mems": "0"}),
        "{r}"
    );
    assert_eq!(r["memory"]["swap"], 128 << 20, "{r}");
    let inside = || {
        let o = c.run(&["exec", "s", "sh", "-c", read]);
        o.assert_ok();
        o.stdout.lines().map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(inside(), [shares(512), "0".into(), swap(128 << 20)]);
    c.run(&[
        "update",
        "--cpu-shares",
        "256",
        "--cpuset-cpus",
        "1",
        "--memory-swap",
        "256m",
        "s",
    ])
    .assert_ok();
    assert_eq!(inside(), [shares(256), "1".into(), swap(256 << 20)]);
    assert_eq!(c.inspect("s")["limits"]["cpu_shares"], 256);
    // -1: unlimited swap.
    c.run(&["update", "--memory-swap", "-1", "s"]).assert_ok();
    let unlimited = &inside()[2];
    assert!(
        unlimited == "max" || unlimited.parse::<u64>().is_ok_and(|n| n > 1 << 40),
        "{unlimited}"
    );
    // Out of range, or against the rules: refused by name, nothing made or changed.
    for (args, field) in [
        (vec!["--cpu-shares", "1"], "cpu_shares"),
        (vec!["--cpuset-cpus", "99"], "cpuset_cpus"),
        (vec!["--cpuset-cpus", "1-0"], "cpuset_cpus"),
        (vec!["--memory-swap", "128m"], "memory_swap"),
        (vec!["-m", "64m", "--memory-swap", "32m"], "memory_swap"),
        (vec!["--memory-swap", "lots"], "memory-swap"),
    ] {
        let mut a = vec!["run", "--rm", "--network", "none"];
        a.extend(args.iter().copied());
        a.extend(["busybox", "true"]);
        c.run(&a).assert_code(125).assert_stderr_mentions(field);
    }
    c.run(&["update", "--cpu-shares", "300000", "s"])
        .assert_code(125)
        .assert_stderr_mentions("cpu_shares");
    assert_eq!(inside()[0], shares(256));
    assert_eq!(c.run(&["ps", "-aq"]).stdout.lines().count(), 1);
    c.run(&["rm", "-f", "s"]).assert_ok();
}

#[test]
fn labels_are_recorded_and_filter_ps_by_key_or_key_and_value() {
    let c = Ctr::new();
    c.run(&[
        "create", "--name", "lab1", "--label", "tier=web", "-l", "solo", "busybox", "true",
    ])
    .assert_ok();
    c.run(&[
        "create", "--name", "lab2", "-l", "tier=db", "busybox", "true",
    ])
    .assert_ok();
    let labels = &c.inspect("lab1")["labels"];
    assert_eq!(labels, &serde_json::json!({"tier": "web", "solo": ""}));
    let names = |args: &[&str]| -> Vec<String> {
        let o = c.run(args);
        o.assert_ok();
        let mut n: Vec<String> = o
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    assert_eq!(
        names(&["ps", "--filter", "label=tier", "--format", "json"]),
        ["lab1", "lab2"]
    );
    assert_eq!(
        names(&["ps", "--filter", "label=solo", "--format", "json"]),
        ["lab1"]
    );
    assert_eq!(
        names(&["ps", "--filter", "label=tier=db", "--format", "json"]),
        ["lab2"]
    );
    // Filters combine: all must match.
    assert!(names(&[
        "ps",
        "-f",
        "label=tier=db",
        "-f",
        "label=solo",
        "--format",
        "json"
    ])
    .is_empty());
    c.run(&["create", "-l", "=x", "busybox", "true"])
        .assert_code(125)
        .assert_stderr_mentions("label");
}

#[test]
fn stop_sends_the_stop_signal_which_a_trap_inside_records() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--name",
        "sig",
        "--stop-signal",
        "USR1",
        "-v",
        "sigvol:/m",
        "busybox",
        "sh",
        "-c",
        "trap 'echo usr1 > /m/marker; exit 0' USR1; trap 'echo term > /m/marker; exit 0' TERM; \
         echo ready; while :; do sleep 0.1; done",
    ])
    .assert_ok();
    wait_for_log(&c, "sig", "ready");
    c.run(&["stop", "sig"]).assert_ok();
    let mp = c.run(&["volume", "inspect", "sigvol"]).json()["mountpoint"]
        .as_str()
        .unwrap()
        .to_string();
    let marker = std::fs::read_to_string(Path::new(&mp).join("marker")).unwrap_or_default();
    assert_eq!(marker, "usr1\n", "stop did not send SIGUSR1");
    let v = c.inspect("sig");
    assert_eq!(v["exit_code"], 0, "{v}");
    c.run(&["create", "--stop-signal", "NOPE", "busybox", "true"])
        .assert_code(125)
        .assert_stderr_mentions("NOPE");
    assert_eq!(c.containers(), 1);
}

#[test]
fn stop_timeout_is_the_default_wait_before_sigkill() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--name",
        "deaf",
        "--stop-timeout",
        "1",
        "busybox",
        "sh",
        "-c",
        "trap '' TERM; echo ready; while :; do sleep 0.1; done",
    ])
    .assert_ok();
    wait_for_log(&c, "deaf", "ready");
    let t = std::time::Instant::now();
    c.run(&["stop", "deaf"]).assert_ok();
    // Without --stop-timeout, stop would wait the default 10 s before SIGKILL.
    let took = t.elapsed();
    assert!(took < Duration::from_secs(8), "stop took {took:?}");
    let v = c.inspect("deaf");
    assert_eq!(v["exit_code"], 137, "{v}");
}

#[test]
fn env_file_sets_variables_and_env_flags_win() {
    let c = Ctr::new();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("vars.env");
    std::fs::write(
        &f,
        "# a comment\nA=from-file\n\nB=two words\nFROM_HOST\nC=c=d\n",
    )
    .unwrap();
    let mut cmd = c.cmd(&[
        "run",
        "--rm",
        "--env-file",
        f.to_str().unwrap(),
        "-e",
        "A=from-flag",
        "busybox",
        "sh",
        "-c",
        "echo \"$A|$B|$FROM_HOST|$C\"",
    ]);
    cmd.env("FROM_HOST", "host-value");
    let o = run_command(&mut cmd);
    o.assert_ok();
    assert_eq!(o.stdout, "from-flag|two words|host-value|c=d\n");
    let missing = c.run(&[
        "run",
        "--rm",
        "--env-file",
        "/no/such.env",
        "busybox",
        "true",
    ]);
    missing
        .assert_code(125)
        .assert_stderr_mentions("/no/such.env");
    std::fs::write(&f, "1BAD=x\n").unwrap();
    let bad = c.run(&[
        "run",
        "--rm",
        "--env-file",
        f.to_str().unwrap(),
        "busybox",
        "true",
    ]);
    bad.assert_code(125).assert_stderr_mentions("line 1");
    assert_eq!(c.containers(), 0);
}

#[test]
fn tmpfs_is_a_fresh_writable_tmpfs_on_every_start() {
    let c = Ctr::new();
    c.run(&[
        "create",
        "--name",
        "tmp",
        "--tmpfs",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        "grep ' /scratch ' /proc/mounts | cut -d' ' -f3; ls /scratch; echo x > /scratch/f && cat /scratch/f",
    ])
    .assert_ok();
    let first = c.run(&["start", "-a", "tmp"]);
    first.assert_ok();
    assert_eq!(first.stdout, "tmpfs\nx\n", "{first:?}");
    // Started again: the file written last time is gone.
    let second = c.run(&["start", "-a", "tmp"]);
    assert_eq!(second.stdout, "tmpfs\nx\n", "{second:?}");
}

#[test]
fn rootfs_runs_a_host_directory_without_changing_it() {
    let c = Ctr::new();
    let src = tempfile::tempdir().unwrap();
    run_command(
        Command::new("cp")
            .arg("-a")
            .arg(fixture_dir().join("rootfs/."))
            .arg(src.path()),
    )
    .assert_ok();
    std::fs::write(src.path().join("marker"), "from-host-dir\n").unwrap();
    let o = c.run(&[
        "run",
        "--rm",
        "--rootfs",
        src.path().to_str().unwrap(),
        "sh",
        "-c",
        "cat /marker; echo changed > /marker; echo new > /created",
    ]);
    o.assert_ok();
    assert_eq!(o.stdout, "from-host-dir\n", "{o:?}");
    // Writes went to the container's own layer, not the directory.
    assert_eq!(
        std::fs::read_to_string(src.path().join("marker")).unwrap(),
        "from-host-dir\n"
    );
    assert!(!src.path().join("created").exists());
    c.run(&["run", "--rm", "--rootfs", "/no/such/dir", "true"])
        .assert_code(125)
        .assert_stderr_mentions("rootfs");
}

// ---------------------------------------------------------------------------------
// ps and references
// ---------------------------------------------------------------------------------

#[test]
fn ps_filters_by_status_id_and_name_and_prints_json_quiet_or_a_table() {
    let c = Ctr::new();
    c.run(&["run", "-d", "--name", "alpha", "busybox", "sleep", "100"])
        .assert_ok();
    c.run(&["run", "--name", "beta", "busybox", "sh", "-c", "exit 2"])
        .assert_code(2);
    c.run(&["create", "--name", "gamma", "busybox", "true"])
        .assert_ok();
    let (a, b, g) = (id_of(&c, "alpha"), id_of(&c, "beta"), id_of(&c, "gamma"));

    let running = c.run(&["ps", "-q"]);
    assert_eq!(running.lines(), [&a[..12]], "{running:?}");
    // `list` is `ps`.
    let all = c.run(&["list", "-a", "-q"]);
    let mut want = [&a[..12], &b[..12], &g[..12]];
    want.sort();
    let mut got = all.lines();
    got.sort();
    assert_eq!(got, want, "{all:?}");

    let exited = c.run(&["ps", "--filter", "status=exited", "--format", "json"]);
    let exited = exited.json();
    assert_eq!(exited.as_array().unwrap().len(), 1, "{exited}");
    assert_eq!(exited[0]["name"], "beta");
    assert_eq!(exited[0]["exit_code"], 2);
    assert_eq!(exited[0]["id"], b.as_str());
    let created = c.run(&["ps", "--filter", "status=created", "-q"]);
    assert_eq!(created.lines(), [&g[..12]]);
    let by_id = c.run(&["ps", "--filter", &format!("id={}", &g[..8]), "-q"]);
    assert_eq!(by_id.lines(), [&g[..12]], "{by_id:?}");
    let by_name = c.run(&["ps", "--filter", "name=lph", "-q"]);
    assert_eq!(by_name.lines(), [&a[..12]], "{by_name:?}");

    let table = c.run(&["ps", "-a"]);
    table.assert_ok();
    let mut rows = table.stdout.lines();
    let header: Vec<&str> = rows.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "NAME", "STATUS", "HEALTH", "EXIT", "RESTARTS", "CREATED", "PORTS", "COMMAND"]
    );
    let beta = table.stdout.lines().find(|l| l.contains("beta")).unwrap();
    assert!(
        beta.starts_with(&b[..12]) && beta.contains("exited") && beta.contains("exit 2"),
        "{table:?}"
    );

    for bad in ["nokv", "colour=red", "status=sleepy"] {
        c.run(&["ps", "--filter", bad])
            .assert_fails()
            .assert_stderr_mentions(bad.split('=').next_back().unwrap());
    }
}

#[test]
fn a_unique_id_prefix_names_a_container_and_an_ambiguous_one_is_refused() {
    let c = Ctr::new();
    // 17 ids over 16 hex digits: two share a first digit.
    for i in 0..17 {
        c.run(&["create", "--name", &format!("p{i}"), "busybox", "true"])
            .assert_ok();
    }
    let ids: Vec<String> = (0..17).map(|i| id_of(&c, &format!("p{i}"))).collect();
    let shared = ids
        .iter()
        .map(|id| &id[..1])
        .find(|p| ids.iter().filter(|i| i.starts_with(p)).count() > 1)
        .unwrap()
        .to_string();
    for cmd in ["inspect", "rm", "start"] {
        let o = c.run(&[cmd, &shared]);
        o.assert_fails().assert_stderr_mentions("ambiguous");
        assert!(o.stderr.contains("codex-ctr: "), "{o:?}");
    }
    assert_eq!(c.containers(), 17, "an ambiguous rm removed something");
    // The shortest prefix of p0 that no other id shares.
    let target = &ids[0];
    let prefix = (1..=target.len())
        .map(|n| &target[..n])
        .find(|p| ids.iter().filter(|i| i.starts_with(p)).count() == 1)
        .unwrap();
    assert_eq!(c.inspect(prefix)["name"], "p0");
    let rm = c.run(&["rm", prefix]);
    rm.assert_ok();
    assert_eq!(c.containers(), 16);
    c.run(&["inspect", "p0"])
        .assert_fails()
        .assert_stderr_mentions("not found");
}

// ---------------------------------------------------------------------------------
// Lifecycle commands
// ---------------------------------------------------------------------------------

#[test]
fn restart_runs_an_exited_container_again_and_counts_each_restart() {
    let c = Ctr::new();
    c.run(&["run", "--name", "again", "busybox", "echo", "ran"])
        .assert_ok();
    assert_eq!(c.inspect("again")["restart_count"], 0);
    let r = c.run(&["restart", "again"]);
    r.assert_ok();
    assert_eq!(r.stdout, "again\n");
    c.run(&["wait", "again"]).assert_ok();
    c.run(&["restart", "-t", "1", "again"]).assert_ok();
    c.run(&["wait", "again"]).assert_ok();
    assert_eq!(c.run(&["logs", "again"]).stdout, "ran\nran\nran\n");
    let v = c.inspect("again");
    assert_eq!(v["restart_count"], 2, "{v}");
    assert_eq!(v["status"], "exited");
}

#[test]
fn kill_delivers_the_named_signal_and_defaults_to_sigkill() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--name",
        "trapper",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got-usr1' USR1; echo ready; while :; do sleep 0.1; done",
    ])
    .assert_ok();
    wait_for_log(&c, "trapper", "ready");
    c.run(&["kill", "-s", "USR1", "trapper"]).assert_ok();
    wait_for_log(&c, "trapper", "got-usr1");
    assert_eq!(c.inspect("trapper")["status"], "running");
    c.run(&["kill", "--signal", "SIGUSR1", "trapper"])
        .assert_ok();
    assert!(
        wait_until(WAIT, || c
            .run(&["logs", "trapper"])
            .stdout
            .matches("got-usr1")
            .count()
            == 2),
        "{:?}",
        c.run(&["logs", "trapper"])
    );
    c.run(&["kill", "-s", "NOPE", "trapper"])
        .assert_fails()
        .assert_stderr_mentions("NOPE");
    c.run(&["kill", "trapper"]).assert_ok();
    assert_eq!(c.run(&["wait", "trapper"]).stdout, "137\n");
    // An exited container cannot be signalled.
    c.run(&["kill", "trapper"])
        .assert_fails()
        .assert_stderr_mentions("exited");
}

#[test]
fn wait_prints_each_containers_exit_code_in_order_and_reports_unknown_ones() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--name",
        "w1",
        "busybox",
        "sh",
        "-c",
        "sleep 0.3; exit 5",
    ])
    .assert_ok();
    c.run(&["run", "-d", "--name", "w2", "busybox", "sh", "-c", "exit 3"])
        .assert_ok();
    c.run(&["run", "-d", "--name", "w3", "busybox", "true"])
        .assert_ok();
    let w = c.run(&["wait", "w1", "w2", "w3"]);
    w.assert_ok();
    assert_eq!(w.stdout, "5\n3\n0\n");
    let partial = c.run(&["wait", "w2", "nosuch", "w1"]);
    partial.assert_fails().assert_stderr_mentions("nosuch");
    assert_eq!(partial.stdout, "3\n5\n", "{partial:?}");
}

#[test]
fn rm_of_a_running_container_needs_force() {
    let c = Ctr::new();
    c.run(&["run", "-d", "--name", "busy", "busybox", "sleep", "100"])
        .assert_ok();
    let o = c.run(&["rm", "busy"]);
    o.assert_fails().assert_stderr_mentions("running");
    assert_eq!(c.inspect("busy")["status"], "running");
    c.run(&["rm", "--force", "busy"]).assert_ok();
    assert_eq!(c.containers(), 0);
}

#[test]
fn prune_removes_exited_and_created_containers_and_keeps_running_ones() {
    let c = Ctr::new();
    c.run(&["run", "-d", "--name", "live", "busybox", "sleep", "100"])
        .assert_ok();
    c.run(&["run", "--name", "done", "busybox", "true"])
        .assert_ok();
    c.run(&["create", "--name", "fresh", "busybox", "true"])
        .assert_ok();
    let p = c.run(&["prune"]);
    p.assert_ok();
    let mut pruned = p.lines();
    pruned.sort();
    assert_eq!(pruned, ["done", "fresh"]);
    let left = c.run(&["ps", "-a", "--format", "json"]).json();
    assert_eq!(left.as_array().unwrap().len(), 1, "{left}");
    assert_eq!(left[0]["name"], "live");
    assert_eq!(c.inspect("live")["status"], "running");
    assert_eq!(c.containers(), 1);
    // Nothing left to prune.
    assert_eq!(c.run(&["prune"]).stdout, "");
}

#[test]
fn export_writes_the_state_or_a_rootfs_tar_to_stdout_and_a_failed_export_leaves_no_file() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "--name",
        "exp",
        "busybox",
        "sh",
        "-c",
        "echo mine > /mine",
    ])
    .assert_ok();
    let state = c.run(&["export", "exp"]);
    state.assert_ok();
    let v = state.json();
    assert_eq!(v["name"], "exp");
    assert_eq!(v["status"], "exited");
    assert_eq!(v["id"], id_of(&c, "exp"));
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("fs.tar");
    let o = c.cmd(&["export", "--rootfs", "exp"]).output().unwrap();
    assert!(o.status.success(), "{o:?}");
    std::fs::write(&tar, &o.stdout).unwrap();
    let list = run_command(Command::new("tar").arg("tf").arg(&tar));
    assert!(list.ok(), "not a tar: {list:?}");
    let names = list.stdout.clone();
    let names: Vec<&str> = names.lines().map(|l| l.trim_start_matches("./")).collect();
    assert!(names.contains(&"bin/busybox"), "{names:?}");
    assert!(names.contains(&"mine"), "{names:?}");
    // -o FILE of a container that does not exist: an error and no file at all.
    let out = dir.path().join("nothing.json");
    c.run(&["export", "-o", out.to_str().unwrap(), "nosuch"])
        .assert_fails()
        .assert_stderr_mentions("not found");
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, [std::ffi::OsString::from("fs.tar")]);
}

#[test]
fn exec_user_runs_the_command_as_that_uid_and_gid() {
    let c = Ctr::new();
    c.run(&["run", "-d", "--name", "host", "busybox", "sleep", "100"])
        .assert_ok();
    let o = c.run(&[
        "exec",
        "-u",
        "1000:2000",
        "host",
        "sh",
        "-c",
        "id -u; id -g",
    ]);
    o.assert_ok();
    assert_eq!(o.lines(), ["1000", "2000"]);
    let o = c.run(&["exec", "--user", "7", "host", "id", "-g"]);
    assert_eq!(o.stdout, "7\n", "{o:?}");
    c.run(&["exec", "-u", "nobody:x", "host", "true"])
        .assert_fails()
        .assert_stderr_mentions("user");
}

/// Runs `codex-ctr args` with `input` on its stdin (a pipe, not a terminal).
fn run_with_stdin(c: &Ctr, args: &[&str], input: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = c
        .cmd(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn exec_connects_stdin_only_with_i() {
    let c = Ctr::new();
    c.run(&["run", "-d", "--name", "in", "busybox", "sleep", "100"])
        .assert_ok();
    // Without -i the command reads /dev/null: cat ends at once with nothing.
    let (code, out) = run_with_stdin(&c, &["exec", "in", "cat"], "typed\n");
    assert_eq!((code, out.as_str()), (0, ""));
    let (code, out) = run_with_stdin(&c, &["exec", "-i", "in", "cat"], "typed\n");
    assert_eq!((code, out.as_str()), (0, "typed\n"));
    let (code, out) = run_with_stdin(
        &c,
        &[
            "exec",
            "--interactive",
            "in",
            "sh",
            "-c",
            "read x; echo got $x; exit 4",
        ],
        "line\n",
    );
    assert_eq!((code, out.as_str()), (4, "got line\n"));
}

#[test]
fn exec_t_gives_the_command_a_terminal_and_its_exit_code_comes_back() {
    let c = Ctr::new();
    c.run(&["run", "-d", "--name", "tty", "busybox", "sleep", "100"])
        .assert_ok();
    // Without -t: no terminal.
    let o = c.run(&["exec", "tty", "sh", "-c", "tty; true"]);
    assert!(o.stdout.contains("not a tty"), "{o:?}");
    // With -t (this test's stdin is no terminal: the output is still proxied).
    let o = c.run(&["exec", "-t", "tty", "sh", "-c", "tty; exit 3"]);
    o.assert_code(3);
    assert!(o.stdout.trim().starts_with("/dev/pts/"), "{o:?}");
    // -it: input reaches the terminal, output comes back through it.
    let (code, out) = run_with_stdin(
        &c,
        &["exec", "-it", "tty", "sh", "-c", "read x; echo got-$x"],
        "abc\n",
    );
    assert_eq!(code, 0, "{out:?}");
    assert!(out.contains("got-abc"), "{out:?}");
}

// ---------------------------------------------------------------------------------
// Images and the engine root
// ---------------------------------------------------------------------------------

#[test]
fn image_import_of_a_directory_with_a_tag_runs_and_is_listed_and_removed_by_tag() {
    let c = Ctr::new();
    let src = fixture_dir().join("rootfs");
    let id = c.run(&["image", "import", src.to_str().unwrap(), "mybox:v2"]);
    id.assert_ok();
    let id = id.stdout.trim().to_string();
    assert_eq!(id.len(), 64, "import prints the image id: {id:?}");
    let ls = c.run(&["image", "list"]);
    let row = ls.stdout.lines().find(|l| l.starts_with("mybox")).unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[..3], ["mybox", "v2", &id[..12]], "{ls:?}");
    let o = c.run(&["run", "--rm", "mybox:v2", "echo", "from-tag"]);
    o.assert_ok();
    assert_eq!(o.stdout, "from-tag\n");
    c.run(&["image", "rm", "mybox:v2"]).assert_ok();
    let names: Vec<String> = c
        .run(&["image", "ls", "--format", "json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names, ["busybox"]);
    c.run(&["run", "--rm", "mybox:v2", "true"])
        .assert_code(125)
        .assert_stderr_mentions("mybox");
}

#[test]
fn the_root_flag_overrides_the_environment() {
    let c = Ctr::new();
    let other = tempfile::tempdir().unwrap();
    let root = other.path().join("root");
    let o = c.run(&[
        "--root",
        root.to_str().unwrap(),
        "image",
        "ls",
        "--format",
        "json",
    ]);
    o.assert_ok();
    assert_eq!(o.json(), serde_json::json!([]), "{o:?}");
    assert!(root.join("registry.json").exists(), "--root was not used");
    let info = c.run(&["info", "--root", root.to_str().unwrap()]).json();
    assert_eq!(info["root"], root.to_string_lossy().as_ref());
    assert_eq!(info["images"], 0);
    // The environment's root still has its image.
    assert_eq!(c.run(&["info"]).json()["images"], 1);
}

// ---------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------

#[test]
fn errors_go_to_stderr_prefixed_with_codex_ctr_and_exit_non_zero() {
    let c = Ctr::new();
    let commands: &[&[&str]] = &[
        &["start", "ghost"],
        &["stop", "ghost"],
        &["kill", "ghost"],
        &["rm", "ghost"],
        &["restart", "ghost"],
        &["pause", "ghost"],
        &["unpause", "ghost"],
        &["wait", "ghost"],
        &["inspect", "ghost"],
        &["logs", "ghost"],
        &["export", "ghost"],
        &["stats", "--no-stream", "ghost"],
        &["exec", "ghost", "true"],
        &["cp", "ghost:/etc/passwd", "/tmp/never-written-by-codex-ctr"],
    ];
    for args in commands {
        let o = c.run(args);
        o.assert_fails().assert_stderr_mentions("not found");
        assert!(o.stderr.starts_with("codex-ctr: "), "{o:?}");
        assert!(o.stderr.contains("ghost"), "{o:?}");
        assert_eq!(o.stdout, "", "{o:?}");
    }
    // A running container: `start` says so; `unpause` says it is not paused.
    c.run(&["run", "-d", "--name", "up", "busybox", "sleep", "100"])
        .assert_ok();
    let s = c.run(&["start", "up"]);
    s.assert_fails().assert_stderr_mentions("running");
    assert!(s.stderr.starts_with("codex-ctr: "), "{s:?}");
    assert_eq!(s.stdout, "");
    c.run(&["unpause", "up"])
        .assert_fails()
        .assert_stderr_mentions("paused");
    // Commands that need a container refuse none.
    c.run(&["stop"])
        .assert_fails()
        .assert_stderr_mentions("at least one");
    // Usage errors (clap) fail too.
    c.run(&["ps", "--no-such-flag"]).assert_fails();
    // A format that is neither table, json nor a template that parses.
    c.run(&["ps", "--format", "{{.Names"])
        .assert_fails()
        .assert_stderr_mentions("format");
}
