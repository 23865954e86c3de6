//! Fault injection against the real `codex-ctr` binary: the engine root on a tiny
//! filesystem that fills up (`disk`), a CLI limited to 32 file descriptors and a
//! supervisor stopped with SIGSTOP (`stall`), `kill -9` at every step of `image import`
//! and `volume rm` (`killed`). Each test first shows the fault is real (a positive
//! control), then that the engine reports it clearly, leaves every record whole, and
//! works again once the fault is gone.

mod ctr_faults {
    pub mod disk;
    pub mod killed;
    pub mod stall;
}

use std::path::{Path, PathBuf};
use std::time::Duration;

use codex_tests::ctr::Ctr;
use codex_tests::*;
use serde_json::Value;

/// Every file under `root` that the engine writes as JSON, outside container root
/// filesystems, layers and volume data (whose files belong to containers and images).
pub fn engine_json_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                // A removed container's files (`.removing-ID`) may be being deleted by the
                // supervisor of an attached `run --rm` that has just returned: not state.
                if !["rootfs", "upper", "work", "_data", "blobs"].contains(&name.as_str())
                    && !name.starts_with(".removing-")
                {
                    stack.push(e.path());
                }
            } else if ft.is_file() && (name.ends_with(".json") || name.contains(".tmp-")) {
                out.push(e.path());
            }
        }
    }
    out
}

/// Nothing half-written: every engine JSON file parses and no atomic-write temp file
/// is left behind.
#[track_caller]
pub fn assert_records_whole(root: &Path) {
    for f in engine_json_files(root) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp-"), "temp file left: {}", f.display());
        let data = match std::fs::read(&f) {
            Ok(d) => d,
            // Deleted since it was listed: nothing half-written is left of it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("reading {}: {e}", f.display()),
        };
        if let Err(e) = serde_json::from_slice::<Value>(&data) {
            panic!("{} does not parse ({e}): {:?}", f.display(), read_lossy(&f));
        }
    }
}

/// `ps -a --format json` succeeds and every record's status is one of the words the
/// engine uses, with a pid exactly when it claims to run.
#[track_caller]
pub fn assert_ps_truthful(c: &Ctr) -> Vec<Value> {
    let o = c.run(&["ps", "-a", "--format", "json"]);
    o.assert_ok();
    let listed = o.json().as_array().expect("ps prints an array").clone();
    for r in &listed {
        let status = r["status"].as_str().unwrap_or_default();
        match status {
            "running" | "paused" => {
                let pid = r["pid"].as_i64().unwrap_or(0);
                assert!(pid > 0 && pid_alive(pid), "{r}");
            }
            "created" | "exited" | "stopped" | "removing" => {
                assert!(r["pid"].is_null(), "{r}")
            }
            "failed" => assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()), "{r}"),
            other => panic!("unexpected status {other}: {r}"),
        }
    }
    listed
}

/// Runs `args` and kills it if it has not finished within `limit`: a hang is a failure
/// that names the command, never a stuck test. A panic message is a failure too.
#[track_caller]
pub fn run_within(c: &Ctr, args: &[&str], limit: Duration) -> Out {
    let o = run_bounded(c.cmd(args), limit);
    let o =
        o.unwrap_or_else(|| panic!("codex-ctr {} hung for more than {limit:?}", args.join(" ")));
    assert!(!o.stderr.contains("panicked"), "{o:?}");
    o
}

/// Runs `cmd` with a deadline (the harness's `Ctr::run` has none): `None` if it was
/// still running then (it is killed). Output goes to files, not pipes, so a process the
/// command leaves behind cannot hold the test up.
pub fn run_bounded(mut cmd: std::process::Command, limit: Duration) -> Option<Out> {
    use std::io::{Read, Seek};
    let cmdline = format!("{cmd:?}");
    let (mut out, mut err) = (tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap());
    cmd.stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap());
    let mut child = cmd.spawn().expect("spawn codex-ctr");
    let Some(status) = wait_child(&mut child, limit) else {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    };
    let text = |f: &mut std::fs::File| {
        let mut s = String::new();
        f.rewind().unwrap();
        let _ = f.read_to_string(&mut s);
        s
    };
    Some(Out {
        cmdline,
        status,
        stdout: text(&mut out),
        stderr: text(&mut err),
    })
}

/// The fixture's image tar.
pub fn tar() -> String {
    fixture_dir()
        .join("rootfs.tar")
        .to_string_lossy()
        .into_owned()
}

/// The fixture's tar plus 1 MiB of random bytes: a layer the store does not have yet.
pub fn other_tar(dir: &Path) -> String {
    let extra = dir.join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    let mut bytes = vec![0u8; 1 << 20];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .unwrap();
    std::fs::write(extra.join("noise"), bytes).unwrap();
    let out = dir.join("other.tar");
    std::fs::copy(tar(), &out).unwrap();
    let st = std::process::Command::new("tar")
        .arg("-rf")
        .arg(&out)
        .arg("-C")
        .arg(&extra)
        .arg("noise")
        .status()
        .unwrap();
    assert!(st.success(), "tar -rf");
    out.to_string_lossy().into_owned()
}

/// A `run` starts its supervisor ahead of the create, and that supervisor forks, enters
/// its mount namespace and opens the root before the id comes: a create that fails
/// (the name is taken) leaves no supervisor behind, detached or attached.
#[test]
fn a_run_whose_create_fails_leaves_no_supervisor_waiting() {
    let c = Ctr::new();
    c.run(&[
        "create",
        "--name",
        "taken",
        "--network",
        "none",
        "busybox",
        "true",
    ])
    .assert_ok();
    for detach in [false, true] {
        let mut args = vec!["run", "--name", "taken", "--network", "none"];
        if detach {
            args.push("-d");
        }
        args.extend(["busybox", "true"]);
        let o = c.run(&args);
        assert!(!o.ok(), "a taken name was accepted: {o:?}");
        assert!(o.stderr.contains("taken"), "{o:?}");
    }
    // Positive control: a running container's supervisor is seen (a `run`'s is forked
    // from the command, with the command's line and environment, until the shim).
    c.run(&[
        "run",
        "-d",
        "--name",
        "live",
        "--network",
        "none",
        "busybox",
        "sleep",
        "60",
    ])
    .assert_ok();
    let sup = c.inspect("live")["supervisor_pid"].as_i64().unwrap() as i32;
    assert!(
        c.processes(&[]).iter().any(|(p, _)| *p == sup),
        "the scan does not see the supervisor {sup}"
    );
    c.run(&["rm", "-f", "live"]).assert_ok();
    assert!(
        wait_until(Duration::from_secs(5), || c.processes(&[]).is_empty()),
        "supervisors left: {:?}",
        c.processes(&[])
    );
    c.run(&["rm", "taken"]).assert_ok();
}
