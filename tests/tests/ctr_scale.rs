//! Many containers in one root: commands touch only what they name (no full reconcile on
//! open), and a supervisor killed among a thousand containers is still noticed by the
//! next command that touches its container. Timing belongs to `make bench-scale`; this
//! only checks behaviour.

use codex_tests::ctr::Ctr;
use codex_tests::*;
use std::time::Duration;

/// How many created-not-started containers fill the root (CODEX_SCALE_N overrides; 300
/// keep the test near half a minute on this loaded 2-core machine, where 500 took 57 s:
/// 1000 running ones are `make bench-scale`).
fn fill_count() -> usize {
    std::env::var("CODEX_SCALE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// Whether the fill is of running containers (`CODEX_SCALE_RUNNING=1`, what `make
/// test-scale` sets with 1000 of them) rather than created ones.
fn fill_running() -> bool {
    std::env::var("CODEX_SCALE_RUNNING").is_ok_and(|v| v == "1")
}

/// Runs `codex-ctr args` with `CODEX_TRACE=1`; its stderr's trace lines.
fn traced(c: &Ctr, args: &[&str]) -> (Out, Vec<String>) {
    let mut cmd = c.cmd(args);
    cmd.env("CODEX_TRACE", "1");
    let o = run_command(&mut cmd);
    let lines = o
        .stderr
        .lines()
        .filter(|l| l.starts_with("trace "))
        .map(str::to_string)
        .collect();
    (o, lines)
}

fn reconciled(trace: &[String]) -> bool {
    trace.iter().any(|l| l.ends_with("open: reconcile due"))
}

#[test]
fn a_killed_supervisor_among_many_containers_is_noticed_by_the_next_command_touching_it() {
    let c = Ctr::new();
    let n = fill_count();
    // Positive control: a root with no record of a full reconcile on this boot gets one
    // on open, and the trace says so.
    std::fs::remove_file(c.root.join("reconciled")).expect("the import's open recorded it");
    let (o, trace) = traced(&c, &["ps", "-a"]);
    o.assert_ok();
    assert!(reconciled(&trace), "no reconcile on a new boot: {trace:?}");

    // Two running containers, then the fill (4 CLIs at once), then one more running.
    let run = |name: &str| {
        let args = ["run", "-d", "--network", "none", "--name", name, "busybox"];
        let o = c.run(&[&args[..], &["sleep", "1000"]].concat());
        o.assert_ok();
    };
    run("early");
    run("victim");
    std::thread::scope(|s| {
        for w in 0..4 {
            let c = &c;
            s.spawn(move || {
                for i in (w..n).step_by(4) {
                    let name = format!("fill-{i}");
                    let o = if fill_running() {
                        let args = ["run", "-d", "--network", "none", "--name", &name];
                        c.run(&[&args[..], &["busybox", "sleep", "1000"]].concat())
                    } else {
                        let args = ["create", "--network", "none", "--name", &name];
                        c.run(&[&args[..], &["busybox", "true"]].concat())
                    };
                    o.assert_ok();
                }
            });
        }
    });
    run("late");
    let listed = c.run(&["ps", "-a", "-q"]);
    listed.assert_ok();
    assert_eq!(listed.stdout.lines().count(), n + 3);

    let v = c.inspect("victim");
    let (sup, init) = (
        v["supervisor_pid"].as_i64().unwrap(),
        v["pid"].as_i64().unwrap(),
    );
    assert!(pid_alive(sup) && pid_alive(init), "{v}");
    // SAFETY: kill(2) with integers; `sup` is this test's supervisor.
    unsafe { libc::kill(sup as i32, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(10), || !pid_alive(sup)));

    // What an interrupted create leaves (a directory without a record), planted without
    // the intent a real one would have left: only a full reconcile removes it.
    let planted = c.root.join("containers").join("ab".repeat(32));
    std::fs::create_dir(&planted).unwrap();

    // The next command touching it notices, without a full reconcile (nothing says a
    // crash of a registry change happened: only this container's record is read).
    let (o, trace) = traced(&c, &["inspect", "victim"]);
    o.assert_ok();
    assert!(!reconciled(&trace), "inspect reconciled: {trace:?}");
    assert!(planted.is_dir(), "inspect looked beyond its container");
    let r = o.json();
    assert_eq!(r["status"], "running", "{r}");
    let error = r["error"].as_str().unwrap_or_default();
    assert!(error.contains("supervisor died"), "{r}");
    // Its neighbours are untouched and still supervised.
    for name in ["early", "late"] {
        let v = c.inspect(name);
        assert_eq!(v["status"], "running", "{v}");
        assert!(v["error"].is_null(), "{v}");
        assert!(pid_alive(v["supervisor_pid"].as_i64().unwrap()), "{v}");
    }
    // Now the init dies too: a stop of the unsupervised container ends it and says so.
    c.run(&["stop", "-t", "0", "victim"]).assert_ok();
    assert!(wait_until(Duration::from_secs(10), || !pid_alive(init)));
    let r = c.inspect("victim");
    assert!(
        matches!(r["status"].as_str(), Some("exited" | "stopped")),
        "{r}"
    );
    c.run(&["rm", "-f", "victim"]).assert_ok();

    // The full check finds the planted leftover and nothing else among the rest.
    let o = c.run(&["system", "check"]);
    o.assert_ok();
    let out = o.stdout.trim();
    assert!(
        out.starts_with("repaired: ") && out.lines().count() == 1,
        "{o:?}"
    );
    assert!(
        out.contains("incomplete create") && !planted.exists(),
        "{o:?}"
    );
    let o = c.run(&["system", "check"]);
    assert_eq!(o.stdout.trim(), "clean", "{o:?}");
    // A few commands remove the fill (the fixture's drop would rm them one by one).
    c.run(&["rm", "-f", "early", "late"]).assert_ok();
    if fill_running() {
        let names: Vec<String> = (0..n).map(|i| format!("fill-{i}")).collect();
        for chunk in names.chunks(100) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            c.run(&[&["rm", "-f"][..], &refs].concat()).assert_ok();
        }
    }
    c.run(&["prune"]).assert_ok();
    assert_eq!(c.run(&["ps", "-a", "-q"]).stdout.trim(), "");
}

/// Overlay mount points under `root` in process `pid`'s mount namespace.
fn overlays_under(pid: &str, root: &std::path::Path) -> Vec<String> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    parse_mountinfo(&info)
        .into_iter()
        .filter(|m| m.fstype == "overlay" && m.mount_point.starts_with(&*root.to_string_lossy()))
        .map(|m| m.mount_point)
        .collect()
}

/// A running container's rootfs is mounted in its supervisor's mount namespace only:
/// the host's table holds none of them, and each supervisor's holds its own and no
/// other, so what a new container's namespace copies does not grow with N.
#[test]
fn each_rootfs_is_mounted_only_in_its_own_supervisors_namespace() {
    let c = Ctr::new();
    let names: Vec<String> = (0..4)
        .map(|i| format!("flat-{i}-{}", std::process::id()))
        .collect();
    for name in &names {
        let args = [
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            name,
            "busybox",
            "sleep",
            "1000",
        ];
        c.run(&args).assert_ok();
    }
    assert_eq!(
        overlays_under("self", &c.root),
        Vec::<String>::new(),
        "in the host's table"
    );
    for name in &names {
        let v = c.inspect(name);
        let sup = v["supervisor_pid"]
            .as_i64()
            .expect("supervisor")
            .to_string();
        let own = format!(
            "{}/containers/{}/rootfs",
            c.root.display(),
            v["id"].as_str().unwrap()
        );
        assert_eq!(
            overlays_under(&sup, &c.root),
            vec![own],
            "{name}'s supervisor"
        );
        // What the host reaches through it is the container's live tree.
        c.run(&["exec", name, "sh", "-c", &format!("echo {name} > /mark")])
            .assert_ok();
        let mark = std::fs::read_to_string(c.live_rootfs(name).join("mark")).expect("mark");
        assert_eq!(mark.trim(), name.as_str());
    }
    // Gone with the container: nothing is left mounted anywhere under the root.
    let sup = c.inspect(&names[0])["supervisor_pid"].as_i64().unwrap();
    c.run(&["rm", "-f", &names[0]]).assert_ok();
    assert!(wait_until(Duration::from_secs(10), || !pid_alive(sup)));
    assert_eq!(overlays_under("self", &c.root), Vec::<String>::new());
    c.run(
        &[
            &["rm", "-f"][..],
            &names[1..].iter().map(String::as_str).collect::<Vec<_>>(),
        ]
        .concat(),
    )
    .assert_ok();
}
