//! The adaptive bot executor (examples/bot-executor), driven from outside as a user
//! runs it: three bots from the busybox image, each broken in its own way, and each
//! healed as its entry in the bots file says. The executor runs in the fixture's own
//! network namespace (as every `codex-ctr` command of the `Ctr` harness does), the bots
//! with `--network none`. What is checked is what the engine recorded (records and
//! events, read with `codex-ctr`), not only what the executor printed. No timings: every
//! wait is a generous bound on an outcome.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use codex_tests::ctr::{ctr_binary, Ctr};
use codex_tests::*;
use serde_json::Value;

/// How long the bots have to show that they were healed (a loaded 2-core machine).
const HEAL_BOUND: Duration = Duration::from_secs(180);
/// How long the executor has to stop and remove everything after SIGTERM.
const STOP_BOUND: Duration = Duration::from_secs(90);

/// `target/debug/codex-bot-executor`, built from this tree's sources.
fn executor_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CODEX_BOT_EXECUTOR").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let bin = workspace_dir().join("target/debug/codex-bot-executor");
    // The sources of the engine it links (not the CLI's: an edit there does not relink
    // it) and the example's own.
    assert_fresh_from(&bin, ENGINE_CRATES);
    let bin_time = std::fs::metadata(&bin).and_then(|m| m.modified()).unwrap();
    let src = workspace_dir().join("examples/bot-executor/src");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        let t = e.metadata().and_then(|m| m.modified()).unwrap();
        assert!(
            t <= bin_time,
            "{} is older than {}: build it (cargo build -p codex-bot-executor)",
            bin.display(),
            e.path().display()
        );
    }
    bin
}

const BOTS: &str = r#"{"bots": [
  {"name": "crasher", "image": "busybox", "network": "none", "stop_timeout": "1s",
   "command": ["sh", "-c", "echo up; sleep 1; echo crashing >&2; exit 1"],
   "restart": "on-failure:3",
   "limits": {"memory": "64m", "cpus": "0.5", "pids": 32}},
  {"name": "hanger", "image": "busybox", "network": "none", "stop_timeout": "1s",
   "command": ["sleep", "100000"],
   "restart": "always", "restart_on_unhealthy": true,
   "health": {"cmd": "sleep 1000", "interval": "500ms", "timeout": "500ms", "retries": 2}},
  {"name": "leaker", "image": "busybox", "network": "none", "stop_timeout": "1s",
   "command": ["sh", "-c",
     "i=0; while :; do dd if=/dev/zero of=/dev/shm/leak-$i bs=1M count=2 2>/dev/null; i=$((i+1)); sleep 0.3; done"],
   "restart": "always", "limits": {"memory": "128m", "pids": 32}, "memory_ceiling": "24m"}
]}"#;

/// The executor, running in the fixture's netns, in its own process group (killed with
/// it if the test fails before its SIGTERM).
struct Executor {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
}

impl Executor {
    fn start(c: &Ctr, dir: &Path) -> Executor {
        Executor::start_with(c, dir, BOTS)
    }

    fn start_with(c: &Ctr, dir: &Path, bots_json: &str) -> Executor {
        let bots = dir.join("bots.json");
        std::fs::write(&bots, bots_json).unwrap();
        let (out, err) = (dir.join("executor.out"), dir.join("executor.err"));
        let exe = executor_binary();
        let sup = ctr_binary();
        let mut cmd = c.netns().cmd(&[
            &exe.to_string_lossy(),
            "--root",
            &c.root.to_string_lossy(),
            "--supervisor",
            &sup.to_string_lossy(),
            &bots.to_string_lossy(),
        ]);
        own_group(&mut cmd)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        let child = cmd.spawn().expect("spawn the executor");
        Executor {
            child: Some(child),
            out,
            err,
        }
    }

    fn output(&self) -> String {
        format!(
            "--- executor stdout:\n{}\n--- executor stderr:\n{}",
            read_lossy(&self.out),
            read_lossy(&self.err)
        )
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|ch| ch.try_wait().ok().flatten())
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        if let Some(mut ch) = self.child.take() {
            kill_group(&mut ch);
        }
    }
}

fn events(c: &Ctr, name: &str) -> Vec<Value> {
    let filter = format!("container={name}");
    let o = c.run(&[
        "events", "--until", "0s", "--format", "json", "--filter", &filter,
    ]);
    o.assert_ok();
    o.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event is one JSON line"))
        .collect()
}

/// The actions of `evs`, each with the attribute `key` when it has it (`die:1`).
fn actions(evs: &[Value], key: &str) -> Vec<String> {
    evs.iter()
        .map(|e| {
            let a = e["action"].as_str().unwrap().to_string();
            match e["attributes"][key].as_str() {
                Some(v) => format!("{a}:{v}"),
                None => a,
            }
        })
        .collect()
}

/// Whether `seq` occurs in `all` in this order (other actions may come between).
fn in_order(all: &[String], seq: &[&str]) -> bool {
    let mut it = all.iter();
    seq.iter().all(|s| it.any(|a| a == s))
}

fn record(c: &Ctr, name: &str) -> Option<Value> {
    let o = c.run(&["inspect", name]);
    o.ok().then(|| o.json())
}

#[test]
fn the_executor_heals_a_crash_a_hang_and_a_leak_and_leaves_nothing_on_sigterm() {
    let c = Ctr::new();
    let dir = tempfile::Builder::new()
        .prefix("codex-executor-")
        .tempdir()
        .unwrap();
    let mut ex = Executor::start(&c, dir.path());

    // Healed as configured, each by what its entry asks for:
    // - crasher (on-failure:3): exits 1, is restarted by its policy exactly 3 times,
    //   then stays exited with exit code 1;
    // - hanger (restart_on_unhealthy, always): its check hangs, is killed at its
    //   timeout, the container turns unhealthy, is SIGKILLed (137) and run again;
    // - leaker (always; a memory ceiling, which is the engine's --stop-on-memory):
    //   crosses 24 MiB, its supervisor writes a `threshold` event and kills it (137),
    //   and its policy runs it again.
    let deadline = Instant::now() + HEAL_BOUND;
    let (healed, state) = loop {
        if let Some(st) = ex.exited() {
            panic!("the executor exited early ({st}):\n{}", ex.output());
        }
        let crasher = record(&c, "bot-crasher");
        let crasher_done = crasher.as_ref().is_some_and(|r| {
            r["status"] == "exited" && r["restart_count"] == 3 && r["exit_code"] == 1
        });
        let hanger = actions(&events(&c, "bot-hanger"), "health_status");
        let hanger_done = in_order(
            &hanger,
            &[
                "start",
                "health_status:unhealthy",
                "die",
                "restart",
                "start",
            ],
        );
        let leaker = actions(&events(&c, "bot-leaker"), "action");
        let leaker_done = in_order(
            &leaker,
            &["start", "threshold:stop", "die", "restart", "start"],
        );
        let state = format!(
            "crasher: {}\nhanger: {hanger:?}\nleaker: {leaker:?}",
            crasher.map_or("gone".into(), |r| format!(
                "{} restarts={} exit={}",
                r["status"], r["restart_count"], r["exit_code"]
            ))
        );
        if crasher_done && hanger_done && leaker_done {
            break (true, state);
        }
        if Instant::now() >= deadline {
            break (false, state);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        healed,
        "not healed within {HEAL_BOUND:?}:\n{state}\n{}",
        ex.output()
    );

    // The details behind each: the crasher's runs all ended with 1 and its policy
    // stopped after 3 restarts (4 runs).
    let crasher = events(&c, "bot-crasher");
    let dies = actions(&crasher, "exit_code");
    assert_eq!(
        dies.iter()
            .filter(|a| a.starts_with("die"))
            .collect::<Vec<_>>(),
        ["die:1"; 4],
        "{dies:?}"
    );
    assert_eq!(dies.iter().filter(|a| *a == "restart").count(), 3);
    // The hanger was killed (137), not stopped by a user, and its policy ran it again.
    let hanger = events(&c, "bot-hanger");
    let die = hanger
        .iter()
        .find(|e| e["action"] == "die")
        .expect("a die of the hanger");
    assert_eq!(die["attributes"]["exit_code"], "137", "{die}");
    let rec = record(&c, "bot-hanger").expect("the hanger's record");
    assert!(rec["restart_count"].as_u64().unwrap() >= 1, "{rec}");
    assert_eq!(rec["manually_stopped"], Value::Null, "{rec}");
    // The leaker: its supervisor's threshold event names the memory it saw above the
    // 24 MiB ceiling, the run ended with 137 for it, and the engine counted the
    // restart.
    let leaker = events(&c, "bot-leaker");
    let t = leaker
        .iter()
        .find(|e| e["action"] == "threshold")
        .expect("a threshold event");
    assert_eq!(t["attributes"]["threshold"], "stop-on-memory", "{t}");
    let used: u64 = t["attributes"]["value"].as_str().unwrap().parse().unwrap();
    assert!(used > 24 << 20, "{t}");
    assert_eq!(t["attributes"]["limit"], (24u64 << 20).to_string());
    let die = leaker
        .iter()
        .find(|e| e["action"] == "die")
        .expect("a die of the leaker");
    assert_eq!(die["attributes"]["exit_code"], "137", "{die}");
    assert_eq!(die["attributes"]["stopped_by"], "stop-on-memory", "{die}");
    let rec = record(&c, "bot-leaker").expect("the leaker's record");
    assert!(rec["restart_count"].as_u64().unwrap() >= 1, "{rec}");
    // The live status: a line per bot; the crasher's shows it exited (the executor
    // prints every second, so its next block shows what the record says now).
    let shown = |out: &str| {
        let has = |bot: &str, word: &str| {
            out.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.first() == Some(&"status") && f.get(2) == Some(&bot) && f.get(3) == Some(&word)
            })
        };
        // The engine's events, as the executor's subscription delivered them.
        let event = |bot: &str, action: &str| {
            out.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.first() == Some(&"event") && f.get(2) == Some(&bot) && f.get(3) == Some(&action)
            })
        };
        event("bot-crasher", "restart")
            && event("bot-hanger", "health_status")
            && event("bot-leaker", "threshold")
            && has("crasher", "exited")
            && has("hanger", "running")
            && has("leaker", "running")
    };
    assert!(
        wait_until(Duration::from_secs(30), || shown(&read_lossy(&ex.out))),
        "{}",
        ex.output()
    );

    // SIGTERM: every bot stopped and removed, the executor exits 0.
    assert_eq!(c.run(&["ps", "-a", "-q"]).lines().len(), 3);
    let pid = ex.child.as_ref().unwrap().id() as i32;
    // SAFETY: kill(2) of our own unreaped child (nsenter execs the executor: same pid).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let st = wait_child(ex.child.as_mut().unwrap(), STOP_BOUND)
        .unwrap_or_else(|| panic!("no exit within {STOP_BOUND:?} of SIGTERM:\n{}", ex.output()));
    ex.child = None;
    assert!(st.success(), "exit {st}:\n{}", ex.output());
    let o = c.run(&["ps", "-a", "-q"]);
    o.assert_ok();
    assert!(o.stdout.trim().is_empty(), "left behind: {}", o.stdout);
    assert_eq!(c.containers(), 0, "container directories left behind");
    for bot in ["bot-crasher", "bot-hanger", "bot-leaker"] {
        let evs = events(&c, bot);
        assert_eq!(
            evs.last().map(|e| e["action"].clone()),
            Some(Value::from("destroy")),
            "{bot}: {:?}",
            actions(&evs, "")
        );
    }
    let out = read_lossy(&ex.out);
    assert!(
        out.contains("SIGTERM: stopping and removing the bots"),
        "{out}"
    );
}

#[test]
fn a_bot_that_cannot_be_made_ends_the_launch_and_nothing_is_left() {
    let c = Ctr::new();
    let dir = tempfile::Builder::new()
        .prefix("codex-executor-")
        .tempdir()
        .unwrap();
    // The first bot is made and started (the control: there was something to clean
    // up), the second names an image the root does not have.
    let mut ex = Executor::start_with(
        &c,
        dir.path(),
        r#"{"bots": [
          {"name": "fine", "image": "busybox", "network": "none", "stop_timeout": "1s",
           "command": ["sleep", "100000"]},
          {"name": "broken", "image": "no-such-image", "network": "none",
           "command": ["true"]}
        ]}"#,
    );
    let st = wait_child(ex.child.as_mut().unwrap(), STOP_BOUND)
        .unwrap_or_else(|| panic!("no exit within {STOP_BOUND:?}:\n{}", ex.output()));
    ex.child = None;
    assert_eq!(st.code(), Some(1), "{}", ex.output());
    let (out, err) = (read_lossy(&ex.out), read_lossy(&ex.err));
    assert!(out.contains("started bot-fine"), "{}", ex.output());
    assert!(out.contains("removed bot-fine"), "{}", ex.output());
    assert!(
        err.contains("bot broken: creating bot-broken") && err.contains("no-such-image"),
        "{}",
        ex.output()
    );
    let o = c.run(&["ps", "-a", "-q"]);
    o.assert_ok();
    assert!(o.stdout.trim().is_empty(), "left behind: {}", o.stdout);
    assert_eq!(c.containers(), 0);

    // A bad file: refused before anything is made, naming the bot and the field.
    let mut ex = Executor::start_with(
        &c,
        dir.path(),
        r#"{"bots": [
          {"name": "fine", "image": "busybox", "command": ["true"]},
          {"name": "leaky", "image": "busybox", "command": ["true"],
           "limits": {"memory": "16m"}, "memory_ceiling": "32m"}
        ]}"#,
    );
    let st = wait_child(ex.child.as_mut().unwrap(), STOP_BOUND)
        .unwrap_or_else(|| panic!("no exit within {STOP_BOUND:?}:\n{}", ex.output()));
    ex.child = None;
    assert_eq!(st.code(), Some(1), "{}", ex.output());
    let err = read_lossy(&ex.err);
    assert!(
        err.contains("bots[1] (\"leaky\"): memory_ceiling"),
        "{}",
        ex.output()
    );
    assert!(!read_lossy(&ex.out).contains("started"), "{}", ex.output());
    assert_eq!(c.containers(), 0);
}
