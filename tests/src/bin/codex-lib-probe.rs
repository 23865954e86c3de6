//! Drives codex-runtime as an embedding program would, from a single-threaded process,
//! for the tests of what the library refuses (tests/hardening.rs).
//!
//! `codex-lib-probe [--protect] [--thread] ROOT create BUNDLE ID` or
//! `... ROOT exec ID ARG...`, or `... ROOT run-held BUNDLE ID` (create, then start and
//! delete the container the create returned, with no new read of its state, as the
//! engine's supervisor does), or `... ROOT run BUNDLE ID` (a foreground run; `ok` only
//! when the container exited 0): prints `ok` or `error: MESSAGE`, exits 0 or 1.

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let take = |args: &mut Vec<String>, flag: &str| {
        let had = args.first().is_some_and(|a| a == flag);
        if had {
            args.remove(0);
        }
        had
    };
    let protect = take(&mut args, "--protect");
    let thread = take(&mut args, "--thread");
    if protect {
        if let Err(e) = codex_runtime::selfclone::ensure_protected_self() {
            println!("error: {e}");
            std::process::exit(1);
        }
    }
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let extra = thread.then(|| {
        std::thread::spawn(move || {
            let _ = rx.recv();
        })
    });
    let result = run(&args);
    drop(tx);
    if let Some(t) = extra {
        let _ = t.join();
    }
    match result {
        Ok(()) => println!("ok"),
        Err(e) => {
            println!("error: {e}");
            std::process::exit(1);
        }
    }
}

fn run(args: &[String]) -> Result<(), codex_runtime::Error> {
    let usage =
        || codex_runtime::Error::Other("usage: ROOT create BUNDLE ID | ROOT exec ID ARG...".into());
    let (root, rest) = args.split_first().ok_or_else(usage)?;
    let rt = codex_runtime::Runtime::new(root);
    match rest {
        [op, bundle, id] if op == "create" => {
            let opts = codex_runtime::CreateOptions {
                bundle: bundle.into(),
                ..Default::default()
            };
            rt.create(id, &opts).map(|_| ())
        }
        [op, bundle, id] if op == "run-held" => {
            let opts = codex_runtime::CreateOptions {
                bundle: bundle.into(),
                ..Default::default()
            };
            let c = rt.create(id, &opts)?;
            rt.start_created(&c)?;
            // The init is this process's child: reaped here, then deleted.
            let mut status = 0;
            // SAFETY: waits for our own child; `status` is a valid out-pointer.
            if unsafe { libc::waitpid(c.state.pid, &mut status, 0) } != c.state.pid {
                return Err(codex_runtime::Error::Other("waitpid failed".into()));
            }
            rt.delete_loaded(c, false)
        }
        [op, bundle, id] if op == "run" => {
            let opts = codex_runtime::CreateOptions {
                bundle: bundle.into(),
                ..Default::default()
            };
            match rt.run(id, &opts)? {
                0 => Ok(()),
                code => Err(codex_runtime::Error::Other(format!("exited {code}"))),
            }
        }
        [op, id, argv @ ..] if op == "exec" && !argv.is_empty() => {
            let process = serde_json::from_value(serde_json::json!({
                "args": argv, "cwd": "/", "user": {"uid": 0, "gid": 0}
            }))
            .map_err(|e| codex_runtime::Error::Other(e.to_string()))?;
            let opts = codex_runtime::ExecOptions {
                process,
                detach: false,
                pid_file: None,
                console_socket: None,
                preserve_fds: 0,
                no_stdin: true,
                ..Default::default()
            };
            rt.exec(id, &opts).map(|_| ())
        }
        _ => Err(usage()),
    }
}
