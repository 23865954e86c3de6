//! A foreground `run` from a writable runtime binary: its init execs the program through
//! the exec trampoline instead of the runtime re-executing itself from a read-only view
//! (codex_runtime::trampoline). What the container can reach, what fails and how, and
//! when the runtime still takes the general defence.

use codex_tests::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// `#!/proc/self/exe`: the kernel runs whatever the exec's caller runs from, here with
/// the script as its argument (the CVE-2019-5736 route in). Run by the runtime's init
/// directly, that would be the runtime binary (which would fail with its usage).
const SELF_EXE_SCRIPT: &str = "#!/proc/self/exe\necho reached-the-caller\n";

fn add_self_exe_script(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("selfexe");
    fs::write(&p, SELF_EXE_SCRIPT).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn codex_a_foreground_runs_program_that_execs_proc_self_exe_reaches_the_trampoline_not_the_runtime()
{
    let base = TestCtx::new("trampoline-selfexe-bin");
    let bin = copy_runtime_to(&base.mkdir("bin"), "runtime-copy");
    let before = fs::read(&bin).unwrap();
    let ctx = TestCtx::with_binary("trampoline-selfexe", &bin);
    let mut b = ctx.bundle();
    let script = add_self_exe_script(&b.rootfs());
    b.args(&["/selfexe"]);
    let id = ctx.id("run");
    let o = ctx.run(&b, &id, &[]);
    // The sealed trampoline ran again (with an argv that is not its contract) and
    // exited 127, silent: neither the runtime's usage nor the script's line.
    o.assert_code(127);
    assert!(!o.stderr.contains("Usage"), "{o:?}");
    assert!(!o.stdout.contains("reached-the-caller"), "{o:?}");
    assert!(!ctx.rt.root_has_entry(&id));
    assert_eq!(
        fs::read(&bin).unwrap(),
        before,
        "the runtime binary changed"
    );

    // Control: the route reaches the caller's binary. Exec'd by a shell, the script
    // runs that shell, which reads it and prints its line.
    let control = run_command(
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec {}", script.display())),
    );
    control.assert_ok();
    assert_eq!(control.stdout.trim(), "reached-the-caller", "{control:?}");
}

#[test]
fn codex_a_program_the_trampoline_cannot_exec_fails_the_run_naming_it_and_leaves_nothing() {
    let ctx = TestCtx::new("trampoline-fails");
    for (name, content, says) in [
        (
            "garbage",
            &b"\x01\x02 not a program"[..],
            "Exec format error",
        ),
        (
            "nointerp",
            &b"#!/no/such/interpreter\n"[..],
            "No such file or directory",
        ),
    ] {
        let mut b = ctx.bundle();
        let p = b.rootfs().join(name);
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        let program = format!("/{name}");
        b.args(&[&program]);
        let id = ctx.id(name);
        let o = ctx.run(&b, &id, &[]);
        o.assert_fails();
        assert!(
            o.stderr
                .contains(&format!("exec \\\"{program}\\\": {says}")),
            "{o:?}"
        );
        assert!(!ctx.rt.root_has_entry(&id), "{id} was left");
    }
}

/// The debug line the runtime writes when it takes the general defence for a run.
const FALLBACK: &str = "no exec trampoline";

#[test]
fn codex_a_run_the_trampoline_cannot_serve_re_executes_from_the_read_only_view_first() {
    let ctx = TestCtx::new("trampoline-fallback");
    let mut plain = ctx.bundle();
    plain.sh("echo plain");
    let id = ctx.id("plain");
    ctx.run(&plain, &id, &[]).assert_ok();

    let mut hooked = ctx.bundle();
    hooked.sh("echo hooked");
    hooked.set(
        "/hooks",
        serde_json::json!({"startContainer": [{"path": "/bin/true"}]}),
    );
    let mut no_pid_ns = ctx.bundle();
    no_pid_ns.sh("echo host-pid");
    no_pid_ns.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("the fixture's config lists namespaces")
        .retain(|n| n["type"] != "pid");
    // A profile under which the trampoline could not hand the channel over.
    let mut no_fcntl = ctx.bundle();
    no_fcntl.args(&["/bin/echo", "no-fcntl"]);
    no_fcntl.set(
        "/linux/seccomp",
        serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["fcntl"], "action": "SCMP_ACT_ERRNO"}]}),
    );
    for (b, printed, why) in [
        (&hooked, "hooked", "hooks exec from the init"),
        (&no_pid_ns, "host-pid", "no pid namespace"),
        (&no_fcntl, "no-fcntl", "seccomp profile"),
    ] {
        b.save();
        let id = ctx.id(printed);
        let d = b.dir.to_string_lossy().into_owned();
        let log = ctx.path(&format!("{printed}.log"));
        let log_arg = log.to_string_lossy().into_owned();
        let o = ctx.rt.run(&[
            "--debug",
            "--log",
            log_arg.as_str(),
            "run",
            "--bundle",
            d.as_str(),
            id.as_str(),
        ]);
        o.assert_ok();
        assert_eq!(o.stdout.trim(), printed, "{o:?}");
        let logged = fs::read_to_string(&log).unwrap_or_default();
        assert!(
            logged.contains(FALLBACK) && logged.contains(why),
            "{logged}"
        );
        assert!(!ctx.rt.root_has_entry(&id));
    }
    // And the plain run wrote no such line.
    let log = ctx.path("plain.log");
    let log_arg = log.to_string_lossy().into_owned();
    plain.save();
    let d = plain.dir.to_string_lossy().into_owned();
    let id = ctx.id("plain-logged");
    ctx.rt
        .run(&["--debug", "--log", &log_arg, "run", "--bundle", &d, &id])
        .assert_ok();
    let logged = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("invoked as"),
        "no debug log at all: {logged}"
    );
    assert!(!logged.contains(FALLBACK), "{logged}");
}

/// Until its exec, the init of such a run is the writable runtime binary: a process
/// joined to the container then could open it through /proc/1/exe (with
/// CAP_SYS_PTRACE). `exec` refuses to join it in that window (a test point holds the
/// init there), and joins once the program runs.
#[test]
fn paused_init_codex_refuses_an_exec_into_a_run_until_its_init_has_execd_its_program() {
    let ctx = TestCtx::new("trampoline-window");
    let mut b = ctx.bundle();
    b.sh("echo started; exec sleep 1000");
    let id = ctx.id("held");
    let mut run =
        ctx.spawn_run_with_env(&b, &id, &[], &[("CODEX_TEST_PAUSE", "init-started:5000")]);
    ctx.rt.wait_status(&id, "running");
    let refused = ctx.exec(&id, &[], &["true"]);
    refused.assert_fails();
    refused.assert_stderr_mentions("still starting");
    assert!(
        !run.stdout().contains("started"),
        "the init was not held: the refusal was not made in the window"
    );
    run.wait_for_stdout("started");
    ctx.exec(&id, &[], &["true"]).assert_ok();
    ctx.rt.run(&["kill", &id, "KILL"]).assert_ok();
    let o = run.wait(Duration::from_secs(30));
    assert_eq!(o.code(), Some(137), "{o:?}");
    assert!(!ctx.rt.root_has_entry(&id));
}
