//! What a container leaves under the engine root is out of reach of the host's other
//! users: a set-id binary planted in a volume or in the container's layer cannot be run
//! by them, the root cannot be listed, records cannot be read. Each attack is first shown
//! to work where nothing protects it (a set-id copy in a plain host dir the same user
//! runs), so a failure below means the defence held, not that the attack was broken.
//! A minimal container, which runs on the host's own root, leaves the host's /dev alone.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use codex_tests::ctr::Ctr;
use codex_tests::*;

/// The unprivileged host user of the attacks.
const NOBODY: &str = "65534";

/// A static program that prints its effective uid (busybox `sh` drops set-id privileges
/// and so cannot show them).
fn euid_program(dir: &Path) -> PathBuf {
    let src = dir.join("euid.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\n#include <unistd.h>\nint main(void){printf(\"euid=%d\\n\",(int)geteuid());return 0;}\n",
    )
    .unwrap();
    let bin = dir.join("euid");
    let o = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("run cc (gcc is needed to build the set-id probe)");
    assert!(o.status.success(), "cc failed: {o:?}");
    bin
}

/// Runs `argv` as the unprivileged host user, no supplementary groups. Through a shell:
/// setpriv itself still holds root's capabilities when it calls execve, so a path it
/// execs directly is looked up with CAP_DAC_OVERRIDE and proves nothing.
fn as_nobody(argv: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args([
            "--reuid",
            NOBODY,
            "--regid",
            NOBODY,
            "--clear-groups",
            "--",
            "sh",
            "-c",
            "exec \"$@\"",
            "sh",
        ])
        .args(argv)
        .output()
        .expect("run setpriv")
}

/// A world-traversable work dir (the harness's temp dirs are 0700, which would hide the
/// engine root from the attacker for a reason that is not the engine's).
fn open_dir(p: &Path) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn host_users_cannot_run_read_or_list_what_containers_leave_under_the_root() {
    let c = Ctr::new();
    let work = c.root.parent().unwrap().to_path_buf();
    open_dir(&work);
    let src = work.join("src");
    std::fs::create_dir(&src).unwrap();
    open_dir(&src);
    let probe = euid_program(&src);
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();

    // Positive control: a set-id root copy in a host dir the user can reach gives euid 0,
    // and the user can read the work dir that holds the engine root.
    let ctl = work.join("ctl-euid");
    std::fs::copy(&probe, &ctl).unwrap();
    std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let o = as_nobody(&[ctl.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "euid=0",
        "control: a set-id binary must work here for the test to mean anything: {o:?}"
    );
    assert!(as_nobody(&["ls", work.to_str().unwrap()]).status.success());

    let bind = format!("{}:/src:ro", src.display());
    c.run(&[
        "run",
        "-d",
        "--name",
        "planter",
        "-v",
        "plant:/v",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        "cp /src/euid /v/euid && chmod 4755 /v/euid && cp /src/euid /euid && chmod 4755 /euid \
         && mkdir -m 777 /pub && echo secret > /pub/f && chmod 644 /pub/f && touch /ready \
         && exec sleep 1000",
    ])
    .assert_ok();
    assert!(
        wait_until(std::time::Duration::from_secs(20), || c
            .run(&["exec", "planter", "test", "-e", "/ready"])
            .ok()),
        "the container did not plant its files: {:?}",
        c.run(&["logs", "planter"])
    );
    let id = c.inspect("planter")["id"].as_str().unwrap().to_string();
    let cdir = c.root.join("containers").join(&id);
    // The merged rootfs is mounted in the supervisor's mount namespace only; the host
    // reaches it through the supervisor's root.
    let sup = c.inspect("planter")["supervisor_pid"].as_i64().unwrap();
    let live_rootfs = PathBuf::from(format!("/proc/{sup}/root{}/rootfs", cdir.display()));
    let planted = [
        c.root.join("volumes/plant/_data/euid"),
        live_rootfs.join("euid"),
        cdir.join("upper/euid"),
    ];
    // The files are there and set-id root (as root sees them): the attack has a target.
    for p in &planted {
        let md = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(
            (md.mode() & 0o4000, md.uid()),
            (0o4000, 0),
            "{}",
            p.display()
        );
    }

    for p in &planted {
        let o = as_nobody(&[p.to_str().unwrap()]);
        assert!(
            !o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("euid="),
            "a host user ran {}: {o:?}",
            p.display()
        );
    }
    for file in [live_rootfs.join("pub/f"), cdir.join("state.json")] {
        assert!(file.is_file(), "control: root sees {}", file.display());
        let o = as_nobody(&["cat", file.to_str().unwrap()]);
        assert!(
            !o.status.success(),
            "a host user read {}: {o:?}",
            file.display()
        );
    }
    for dir in [
        c.root.clone(),
        c.root.join("containers"),
        c.root.join("volumes"),
    ] {
        let o = as_nobody(&["ls", dir.to_str().unwrap()]);
        assert!(
            !o.status.success(),
            "a host user listed {}: {o:?}",
            dir.display()
        );
    }

    // The host's own mount table does not hold the container's rootfs at all (it would
    // grow with every running container); the supervisor's view of it runs nothing
    // set-id and opens no device.
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        mount_at(&host, cdir.join("rootfs").to_str().unwrap()).is_none(),
        "the rootfs is mounted in the host's namespace"
    );
    let mountinfo = std::fs::read_to_string(format!("/proc/{sup}/mountinfo")).unwrap();
    let m = mount_at(&mountinfo, cdir.join("rootfs").to_str().unwrap())
        .expect("the running container's rootfs is mounted in its supervisor's namespace");
    assert!(
        m.has_opt("nosuid") && m.has_opt("nodev"),
        "host-side rootfs mount options: {:?}",
        m.opts
    );

    // The container's own view still honours set-id programs (as Docker's does).
    let o = c.run(&["exec", "-u", "1000", "planter", "/euid"]);
    o.assert_ok();
    assert_eq!(o.stdout.trim(), "euid=0", "{o:?}");
}

#[test]
fn strict_container_reaches_its_rootfs_and_volumes_through_the_closed_root() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--name",
        "s",
        "--isolation",
        "strict",
        "-v",
        // An existing dir: creating a mount point in a strict rootfs is another matter.
        "svol:/home",
        "busybox",
        "sh",
        "-c",
        "ls /home >/dev/null && id -u && exec sleep 1000",
    ])
    .assert_ok();
    assert!(
        wait_until(std::time::Duration::from_secs(20), || c
            .run(&["logs", "s"])
            .stdout
            .trim()
            == "0"),
        "strict container did not start with its volume: {:?} {:?}",
        c.run(&["logs", "s"]),
        c.inspect("s")
    );
    let id = c.inspect("s")["id"].as_str().unwrap().to_string();
    for d in [
        c.root.clone(),
        c.root.join("containers"),
        c.root.join("containers").join(&id),
        c.root.join("volumes"),
        c.root.join("volumes/svol"),
    ] {
        let md = std::fs::metadata(&d).unwrap();
        assert_eq!(
            (md.mode() & 0o7777, md.uid(), md.gid()),
            (0o710, 0, 100_000),
            "{}",
            d.display()
        );
    }
    c.run(&["rm", "-f", "s"]).assert_ok();
}

#[test]
fn records_bundle_and_logs_are_readable_by_root_alone() {
    let c = Ctr::new();
    c.run(&[
        "run",
        "-d",
        "--name",
        "rec",
        "-e",
        "API_TOKEN=secret-value",
        "busybox",
        "sh",
        "-c",
        "echo secret-output; exec sleep 1000",
    ])
    .assert_ok();
    assert!(wait_until(std::time::Duration::from_secs(20), || c
        .run(&["logs", "rec"])
        .stdout
        .contains("secret-output")));
    let id = c.inspect("rec")["id"].as_str().unwrap().to_string();
    let cdir = c.root.join("containers").join(&id);
    let runtime_state: Vec<PathBuf> = walk(&c.root.join("runtime"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "state.json"))
        .collect();
    assert!(
        !runtime_state.is_empty(),
        "no runtime state.json under {}",
        c.root.join("runtime").display()
    );
    for f in [
        cdir.join("state.json"),
        cdir.join("config.json"),
        cdir.join("container.log"),
    ]
    .into_iter()
    .chain(runtime_state)
    {
        let md = std::fs::symlink_metadata(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(md.mode() & 0o077, 0, "{} is {:o}", f.display(), md.mode());
    }
}

/// A container made by an earlier version keeps its OCI bundle in `bundle/` of its
/// directory (a container made now is its own bundle): it still shows its spec and
/// starts from it.
#[test]
fn a_container_with_the_earlier_bundle_layout_shows_its_spec_and_starts() {
    let c = Ctr::new();
    c.run(&[
        "create",
        "--name",
        "old",
        "--network",
        "none",
        "busybox",
        "echo",
        "from-old",
    ])
    .assert_ok();
    let id = c.inspect("old")["id"].as_str().unwrap().to_string();
    let cdir = c.root.join("containers").join(&id);
    // What an earlier version left.
    std::fs::create_dir(cdir.join("bundle")).unwrap();
    std::fs::rename(cdir.join("config.json"), cdir.join("bundle/config.json")).unwrap();
    let spec = c.run(&["inspect", "--spec", "old"]);
    spec.assert_ok();
    assert_eq!(
        spec.json()["process"]["args"],
        serde_json::json!(["echo", "from-old"])
    );
    c.run(&["start", "old"]).assert_ok();
    let code = c.run(&["wait", "old"]);
    assert_eq!(code.stdout.trim(), "0", "{code:?}");
    assert_eq!(c.run(&["logs", "old"]).stdout, "from-old\n");
    assert!(
        !cdir.join("config.json").exists(),
        "the old bundle was used"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A minimal container runs on the host's own root, so its start must leave the host's
/// /dev alone: no node unlinked and made again (a window in which a host program's
/// `> /dev/null` makes a regular file), no link added. Four start at once, as parallel
/// CLIs do; the old code failed one of them now and then with EEXIST on /dev/null.
#[test]
fn minimal_containers_leave_the_hosts_dev_alone() {
    let c = Ctr::new();
    let nodes = [
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/tty",
    ];
    let identity = || -> Vec<(u64, u64)> {
        nodes
            .iter()
            .map(|p| {
                let md = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{p}: {e}"));
                (md.ino(), md.rdev())
            })
            .collect()
    };
    // What a start would add as links or dirs, present or not on this host.
    let extras = ["fd", "stdin", "stdout", "stderr", "ptmx", "core", "shm"];
    let listing = || -> Vec<bool> {
        extras
            .iter()
            .map(|n| std::fs::symlink_metadata(Path::new("/dev").join(n)).is_ok())
            .collect()
    };
    let (before, names_before) = (identity(), listing());
    let outs: Vec<_> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    c.run(&[
                        "run",
                        "--rm",
                        "--isolation",
                        "minimal",
                        "/bin/sh",
                        "-c",
                        "test -c /dev/null && echo null-ok",
                    ])
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("run thread"))
            .collect()
    });
    for o in &outs {
        o.assert_ok();
        assert_eq!(o.stdout, "null-ok\n", "{o:?}");
    }
    assert_eq!(
        identity(),
        before,
        "the host's device nodes were made again"
    );
    assert_eq!(
        listing(),
        names_before,
        "links or dirs of {extras:?} added to the host's /dev"
    );
}
