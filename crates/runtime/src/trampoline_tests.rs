//! The trampoline's decisions, its image, and the program itself, run as an ordinary
//! process (no root, no container: its contract is only argv, envp and one fd).
//!
//! A `#[cfg(test)]` module (included with `#[path]`): its `unwrap`s are assertions, a
//! panic is the test failing, never a user's crash.

use super::*;
use crate::process::sync::{Channel, Msg};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;

fn spec(json: serde_json::Value) -> Spec {
    let mut base = crate::features::default_spec();
    if let (Some(b), Some(extra)) = (base.as_object_mut(), json.as_object()) {
        for (k, v) in extra {
            b.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(base).unwrap()
}

fn linux_with(field: &str, value: serde_json::Value) -> Spec {
    let mut linux = crate::features::default_spec()["linux"].clone();
    linux[field] = value;
    spec(serde_json::json!({ "linux": linux }))
}

fn profile(default: &str, rules: serde_json::Value) -> Spec {
    linux_with(
        "seccomp",
        serde_json::json!({"defaultAction": default, "syscalls": rules}),
    )
}

#[test]
fn the_default_config_and_the_default_profile_can_use_the_trampoline() {
    assert_eq!(unsupported(&spec(serde_json::json!({})), 0), None);
    for caps in [&[][..], &["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"][..]] {
        assert!(allows_trampoline(&crate::seccomp_default::default_profile(
            caps
        )));
    }
}

#[test]
fn an_init_other_processes_could_see_takes_the_general_defence() {
    let mut linux = crate::features::default_spec()["linux"].clone();
    let without_pid: Vec<serde_json::Value> = linux["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] != "pid")
        .cloned()
        .collect();
    linux["namespaces"] = without_pid.clone().into();
    let s = spec(serde_json::json!({ "linux": linux.clone() }));
    assert!(unsupported(&s, 0).unwrap().contains("no pid namespace"));

    let mut joined = without_pid;
    joined.push(serde_json::json!({"type": "pid", "path": "/proc/1/ns/pid"}));
    linux["namespaces"] = joined.into();
    let s = spec(serde_json::json!({ "linux": linux }));
    assert!(unsupported(&s, 0).unwrap().contains("joined pid namespace"));
}

#[test]
fn hooks_that_exec_from_the_init_take_the_general_defence() {
    for kind in ["createContainer", "startContainer"] {
        let s = spec(serde_json::json!({"hooks": {kind: [{"path": "/bin/true"}]}}));
        assert!(unsupported(&s, 0).unwrap().contains("hooks"), "{kind}");
    }
    // Hooks that run in the runtime's namespaces are no concern of the init's.
    let s = spec(
        serde_json::json!({"hooks": {"prestart": [{"path": "/bin/true"}],
        "createRuntime": [{"path": "/bin/true"}], "poststart": [{"path": "/bin/true"}],
        "poststop": [{"path": "/bin/true"}]}}),
    );
    assert_eq!(unsupported(&s, 0), None);
}

#[test]
fn too_many_preserved_fds_take_the_general_defence() {
    let s = spec(serde_json::json!({}));
    assert_eq!(unsupported(&s, 200), None);
    assert!(unsupported(&s, 201).is_some());
}

#[test]
fn a_profile_must_allow_the_trampolines_syscalls_without_conditions() {
    let all = serde_json::json!([{"names": SYSCALLS, "action": "SCMP_ACT_ALLOW"}]);
    assert_eq!(unsupported(&profile("SCMP_ACT_ERRNO", all), 0), None);
    // The default allows; nothing names them.
    assert_eq!(
        unsupported(&profile("SCMP_ACT_ALLOW", serde_json::json!([])), 0),
        None
    );
    assert_eq!(
        unsupported(&profile("SCMP_ACT_LOG", serde_json::json!([])), 0),
        None
    );
    // One of them missing under a refusing default.
    let no_fcntl = serde_json::json!([{"names": ["execveat", "execve", "write", "exit_group"],
        "action": "SCMP_ACT_ALLOW"}]);
    assert!(unsupported(&profile("SCMP_ACT_ERRNO", no_fcntl), 0).is_some());
    // Refused by a rule under an allowing default.
    let refused = serde_json::json!([{"names": ["fcntl"], "action": "SCMP_ACT_ERRNO"}]);
    assert!(unsupported(&profile("SCMP_ACT_ALLOW", refused), 0).is_some());
    // Allowed only for some arguments.
    let conditional = serde_json::json!([
        {"names": ["execveat", "execve", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["fcntl"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]}]);
    assert!(unsupported(&profile("SCMP_ACT_ERRNO", conditional), 0).is_some());
    // execve alone is not enough: the init execs the trampoline with execveat.
    let no_execveat = serde_json::json!([{"names": ["fcntl", "execve", "write", "exit_group"],
        "action": "SCMP_ACT_ALLOW"}]);
    assert!(unsupported(&profile("SCMP_ACT_ERRNO", no_execveat), 0).is_some());
    // Notified: the agent would see the trampoline.
    let notified = serde_json::json!([{"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]);
    assert!(unsupported(&profile("SCMP_ACT_ALLOW", notified), 0).is_some());
}

#[test]
fn only_the_trampolines_packet_decodes_as_a_failure() {
    let mut p = FAILURE_MAGIC.to_vec();
    p.extend_from_slice(&2i32.to_le_bytes());
    assert_eq!(failure_errno(&p), Some(2));
    assert_eq!(failure_errno(&p[..7]), None);
    assert_eq!(failure_errno(b"{\"Error\":\"x\"}"), None);
    assert_eq!(failure_errno(b"\0CXU\x02\0\0\0"), None);
}

#[test]
fn the_image_is_a_static_executable_whose_entry_is_its_code() {
    let img = image();
    assert_eq!(&img[..4], b"\x7fELF");
    assert_eq!(img.len(), CODE_OFFSET + CODE.len());
    let entry = u64::from_le_bytes(img[24..32].try_into().unwrap());
    assert_eq!(entry, LOAD_ADDR + CODE_OFFSET as u64);
    assert_eq!(&img[CODE_OFFSET..], &CODE);
    // The loadable segment covers the file; the stack segment is not executable.
    let load_size = u64::from_le_bytes(img[EHDR_SIZE + 32..EHDR_SIZE + 40].try_into().unwrap());
    assert_eq!(load_size, img.len() as u64);
    let stack = EHDR_SIZE + PHDR_SIZE;
    assert_eq!(
        u32::from_le_bytes(img[stack..stack + 4].try_into().unwrap()),
        0x6474_e551
    );
    assert_eq!(img[stack + 4] & 1, 0);
}

/// The handed-over fd has no close-on-exec: a trampoline run by another test at the
/// same time would inherit it (and hold the channel open). One at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Ran {
    out: String,
    code: i32,
    msg: Option<Msg>,
    status_fd: i32,
}

/// Runs the trampoline (from its memfd, as the init does) with `path` and `argv`,
/// and returns its output, its exit code and what came on the status channel.
fn run_trampoline(path: &str, argv: &[&str]) -> Ran {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let t = Trampoline::new().expect("the trampoline's memfd");
    let (ours, theirs) = Channel::pair().unwrap();
    // Inherited by the child without close-on-exec, as the init hands it over.
    let handed = handover_fd(theirs.as_fd()).unwrap();
    drop(theirs);
    let status = [u8::try_from(handed.as_raw_fd()).unwrap()];
    let out = std::process::Command::new(format!("/proc/self/fd/{}", t.fd().as_raw_fd()))
        .arg0(path)
        .arg(OsStr::from_bytes(&status))
        .args(argv)
        .env_clear()
        .env("TRAMPOLINE_TEST", "kept")
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    let status_fd = handed.as_raw_fd();
    drop(handed);
    Ran {
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        code: out.status.code().unwrap_or(-1),
        msg: ours.recv().unwrap(),
        status_fd,
    }
}

#[test]
fn the_trampoline_execs_the_program_with_its_argv_and_env_and_closes_the_status_fd() {
    let script =
        "head -c 5 /proc/$$/cmdline; echo \"|$0|$1|$TRAMPOLINE_TEST\"; ls /proc/self/fd; exit 3";
    let ran = run_trampoline("/bin/sh", &["name0", "-c", script, "zero", "one"]);
    assert_eq!(ran.code, 3, "{}", ran.out);
    let mut lines = ran.out.lines();
    assert_eq!(lines.next(), Some("name0|zero|one|kept"));
    // The status fd did not follow the program (the trampoline made it close-on-exec).
    let fds: Vec<&str> = lines.collect();
    assert!(fds.contains(&"0"), "{fds:?}");
    assert!(
        !fds.contains(&ran.status_fd.to_string().as_str()),
        "{fds:?}"
    );
    // EOF: the program ran (nothing else holds the other end).
    assert_eq!(ran.msg, None);
}

#[test]
fn a_failed_exec_comes_back_as_its_errno_on_the_status_channel() {
    let ran = run_trampoline("/nonexistent/program", &["x"]);
    assert_eq!(ran.code, 127);
    assert_eq!(ran.msg, Some(Msg::ProgramExecFailed(libc::ENOENT)));

    let dir = std::env::temp_dir().join(format!("trampoline-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage");
    std::fs::write(&garbage, b"\x01\x02 not a program").unwrap();
    std::fs::set_permissions(
        &garbage,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let ran = run_trampoline(garbage.to_str().unwrap(), &["x"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(ran.code, 127);
    assert_eq!(ran.msg, Some(Msg::ProgramExecFailed(libc::ENOEXEC)));
}

#[test]
fn the_program_execing_proc_self_exe_reaches_the_sealed_trampoline_not_this_binary() {
    // The attack's route: the program is /proc/self/exe. Under the trampoline that
    // names the trampoline's own sealed memfd, run again with the program's argv: its
    // "status fd" is the first byte of "-c" (45, not open), so it exits 127 having run
    // nothing. The first exec succeeded, so the channel sees only EOF.
    let ran = run_trampoline("/proc/self/exe", &["/bin/sh", "-c", "echo ran"]);
    assert_eq!(ran.out, "");
    assert_eq!(ran.code, 127);
    assert_eq!(ran.msg, None);
}
