//! `codex-ctr build`: a Dockerfile per feature, built from the busybox fixture image and
//! run back; the cache counted in executed steps; a failing RUN; context escapes.

use std::path::{Path, PathBuf};

use codex_tests::ctr::Ctr;
use codex_tests::*;

/// A build context in the fixture's temp dir, with `files` (path, content).
fn context(c: &Ctr, name: &str, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = c.root.with_file_name(format!("ctx-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    for (p, text) in files {
        let f = dir.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    }
    dir
}

fn build(c: &Ctr, dir: &Path, extra: &[&str]) -> Out {
    let d = dir.to_string_lossy().to_string();
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    args.push(&d);
    c.run(&args)
}

fn run(c: &Ctr, args: &[&str]) -> String {
    let mut a = vec!["run", "--rm", "--network", "none"];
    a.extend_from_slice(args);
    let o = c.run(&a);
    o.assert_ok();
    o.stdout
}

fn count(o: &Out, needle: &str) -> usize {
    o.stdout.matches(needle).count()
}

/// RUN writes files with the build's ENV/ARG; WORKDIR, USER, ENTRYPOINT, CMD, EXPOSE,
/// LABEL end up in the image and `run` sees them.
#[test]
fn run_env_arg_and_config_instructions() {
    let c = Ctr::new();
    let df = r#"# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE}
ARG WHO=world
ARG UNUSED_DEFAULT=x
ENV DIR=/srv/app \
    MODE="a b"
WORKDIR $DIR
RUN echo "hello $WHO in $(pwd) mode=$MODE" > greeting \
 && mkdir -p /data && chown 65534:65534 /data
# a comment between instructions
LABEL org.test.who=${WHO:-nobody} org.test.alt=${NOPE:+set}
EXPOSE 8080/tcp
USER nobody
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat greeting; id -u; pwd; echo WHO=${WHO:-unset}"]
"#;
    let dir = context(&c, "basic", df, &[]);
    let o = build(
        &c,
        &dir,
        &[
            "-t",
            "basic:1",
            "-t",
            "basic:alias",
            "--build-arg",
            "WHO=tester",
        ],
    );
    o.assert_ok();
    assert!(
        o.stdout.contains("Step 1/11 : FROM ${BASE}"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("Successfully tagged basic:alias"),
        "{}",
        o.stdout
    );
    let seen = run(&c, &["basic:1"]);
    // ARGs are not in the image's env (only RUN saw WHO).
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        [
            "hello tester in /srv/app mode=a b",
            "65534",
            "/srv/app",
            "WHO=unset"
        ],
        "{seen}"
    );
    let v = c.run(&["image", "inspect", "basic:alias"]).json();
    let text = v.to_string();
    assert!(text.contains("\"org.test.who\":\"tester\""), "{text}");
    assert!(text.contains("\"org.test.alt\":\"\""), "{text}");
    assert!(text.contains("8080/tcp"), "{text}");
    assert_eq!(run(&c, &["basic:1", "stat -c %u /data"]).trim(), "65534");
}

/// COPY with --chown (a name from the image's passwd, and numbers) and --chmod, a
/// directory's content, a wildcard, a relative destination under WORKDIR.
#[test]
fn copy_chown_chmod_wildcards_and_workdir() {
    let c = Ctr::new();
    let df = "FROM busybox\nWORKDIR /app\nCOPY --chown=nobody conf/ ./conf/\nCOPY --chown=7:8 --chmod=750 bin.sh /usr/local/bin/tool\nCOPY *.txt notes/\nCOPY conf/a.ini single.ini\n";
    let dir = context(
        &c,
        "copy",
        df,
        &[
            ("conf/a.ini", "a=1\n"),
            ("conf/sub/b.ini", "b=2\n"),
            ("bin.sh", "#!/bin/sh\necho tool\n"),
            ("one.txt", "1"),
            ("two.txt", "2"),
        ],
    );
    build(&c, &dir, &["-t", "copy:1"]).assert_ok();
    let seen = run(
        &c,
        &[
            "copy:1",
            "sh",
            "-c",
            "stat -c '%n %u:%g %a' conf conf/a.ini conf/sub/b.ini /usr/local/bin/tool; \
             ls notes; cat single.ini; tool",
        ],
    );
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        [
            "conf 65534:65534 755",
            "conf/a.ini 65534:65534 644",
            "conf/sub/b.ini 65534:65534 644",
            "/usr/local/bin/tool 7:8 750",
            "one.txt",
            "two.txt",
            "a=1",
            "tool",
        ],
        "{seen}"
    );
}

/// Multi-stage: `COPY --from` a named stage; only the final stage's layers are in the
/// image; `--target` stops at a stage.
#[test]
fn multi_stage_from_and_target() {
    let c = Ctr::new();
    let df = "FROM busybox AS builder\nRUN mkdir /out && echo built > /out/artifact && echo junk > /junk\n\
              FROM busybox AS final\nCOPY --from=builder /out/artifact /artifact\nCMD [\"cat\", \"/artifact\"]\n";
    let dir = context(&c, "multi", df, &[]);
    build(&c, &dir, &["-t", "multi:1"]).assert_ok();
    assert_eq!(run(&c, &["multi:1"]).trim(), "built");
    assert_eq!(
        run(
            &c,
            &[
                "multi:1",
                "sh",
                "-c",
                "[ -e /junk ] && echo junk || echo clean"
            ]
        )
        .trim(),
        "clean"
    );
    let layers = |r: &str| {
        c.run(&["image", "inspect", r]).json()[0]["layers"]
            .as_array()
            .unwrap()
            .len()
    };
    let base = layers("busybox");
    assert_eq!(layers("multi:1"), base + 1, "busybox's layers and the COPY");
    // The history names each step; the COPY is the one with a layer, CMD has none.
    let h = c.run(&["image", "history", "--format", "json", "multi:1"]);
    h.assert_ok();
    let steps = h.json();
    let steps = steps.as_array().unwrap();
    let by = |s: &serde_json::Value| s["created_by"].as_str().unwrap_or("").to_string();
    let copy = steps
        .iter()
        .find(|s| by(s).starts_with("COPY --from=builder"))
        .unwrap();
    assert!(copy["layer"].is_string(), "{copy}");
    let cmd = steps.iter().find(|s| by(s).starts_with("CMD")).unwrap();
    assert!(cmd["layer"].is_null(), "{cmd}");
    build(&c, &dir, &["--target", "builder", "-t", "multi:builder"]).assert_ok();
    assert_eq!(run(&c, &["multi:builder", "cat", "/junk"]).trim(), "junk");
    build(&c, &dir, &["--target", "nope"]).assert_refused_naming("nope");
}

/// A second build of an unchanged context runs no step; changing one copied file runs
/// that step and the ones after it, not those before; --no-cache runs all.
#[test]
fn cache_hits_and_misses_by_executed_steps() {
    let c = Ctr::new();
    let df = "FROM busybox\nRUN echo one > /one\nCOPY app.txt /app.txt\nRUN cat /app.txt > /copy\nCMD [\"cat\", \"/copy\"]\n";
    let dir = context(&c, "cache", df, &[("app.txt", "v1\n")]);
    let first = build(&c, &dir, &["-t", "cache:1"]);
    first.assert_ok();
    assert_eq!(count(&first, "Using cache"), 0, "{}", first.stdout);
    assert_eq!(count(&first, "Running in"), 2, "{}", first.stdout);
    let second = build(&c, &dir, &["-t", "cache:1"]);
    second.assert_ok();
    assert_eq!(count(&second, "Using cache"), 4, "{}", second.stdout);
    assert_eq!(count(&second, "Running in"), 0, "{}", second.stdout);
    // Touched, not changed: still cached.
    std::fs::write(dir.join("app.txt"), "v1\n").unwrap();
    let touched = build(&c, &dir, &["-t", "cache:1"]);
    assert_eq!(count(&touched, "Using cache"), 4, "{}", touched.stdout);
    std::fs::write(dir.join("app.txt"), "v2\n").unwrap();
    let third = build(&c, &dir, &["-t", "cache:1"]);
    third.assert_ok();
    assert_eq!(
        count(&third, "Using cache"),
        1,
        "only RUN one: {}",
        third.stdout
    );
    assert_eq!(count(&third, "Running in"), 1, "{}", third.stdout);
    assert_eq!(run(&c, &["cache:1"]).trim(), "v2");
    let all = build(&c, &dir, &["--no-cache", "-t", "cache:1"]);
    assert_eq!(count(&all, "Using cache"), 0, "{}", all.stdout);
    assert_eq!(count(&all, "Running in"), 2, "{}", all.stdout);
}

/// `.dockerignore` leaves files out of COPY (and names them when copied by name).
#[test]
fn dockerignore_is_honoured() {
    let c = Ctr::new();
    let df = "FROM busybox\nCOPY . /ctx/\n";
    let dir = context(
        &c,
        "ignore",
        df,
        &[
            (".dockerignore", "*.log\nsecret/\n!secret/public\n"),
            ("keep.txt", "k"),
            ("debug.log", "l"),
            ("secret/key", "s"),
            ("secret/public", "p"),
        ],
    );
    build(&c, &dir, &["-t", "ign:1"]).assert_ok();
    let seen = run(
        &c,
        &["ign:1", "sh", "-c", "cd /ctx && find . -type f | sort"],
    );
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        [
            "./.dockerignore",
            "./Dockerfile",
            "./keep.txt",
            "./secret/public"
        ],
        "{seen}"
    );
    std::fs::write(dir.join("Dockerfile"), "FROM busybox\nCOPY debug.log /x\n").unwrap();
    build(&c, &dir, &[]).assert_refused_naming("excluded by .dockerignore");
}

/// A failing RUN prints its output and exit code, fails the build, and leaves no
/// container, mount, tag or work dir.
#[test]
fn failing_run_leaves_nothing_behind() {
    let c = Ctr::new();
    let df =
        "FROM busybox\nRUN echo first-ok > /ok\nRUN echo to-stdout; echo to-stderr >&2; exit 7\n";
    let dir = context(&c, "fail", df, &[]);
    let o = build(&c, &dir, &["-t", "failed:1"]);
    o.assert_refused_naming("non-zero code: 7");
    assert!(
        o.stdout.contains("to-stdout") && o.stdout.contains("to-stderr"),
        "{o:?}"
    );
    // Control: the step before ran (its container existed and was committed).
    assert_eq!(count(&o, "Running in"), 2, "{}", o.stdout);
    assert_eq!(c.containers(), 0, "no step container left");
    for short in o
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix(" ---> Running in "))
    {
        let left = cgroup_dirs_containing(short.trim());
        assert!(left.is_empty(), "cgroups left: {left:?}");
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root = c.root.to_string_lossy().to_string();
    assert!(!mounts.contains(&root), "a mount under the root is left");
    c.run(&["image", "inspect", "failed:1"]).assert_fails();
    let tmp = std::fs::read_dir(c.root.join("images/tmp"))
        .unwrap()
        .count();
    assert_eq!(tmp, 0, "work dirs left");
}

/// Nothing outside the context is copied: `../x`, and symlinks in the context that lead
/// out (absolute or relative) are refused, while a symlink inside works, and a symlink
/// inside a copied directory stays a symlink.
#[test]
fn context_escapes_are_refused() {
    let c = Ctr::new();
    let outside = c.root.with_file_name("outside-secret");
    std::fs::write(&outside, "HOST-SECRET").unwrap();
    let dir = context(
        &c,
        "esc",
        "FROM busybox\n",
        &[("in.txt", "inside"), ("d/f", "f")],
    );
    std::os::unix::fs::symlink("in.txt", dir.join("ok-link")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("../outside-secret", dir.join("rel-link")).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("d/inner-link")).unwrap();
    let df = |line: &str| {
        std::fs::write(dir.join("Dockerfile"), format!("FROM busybox\n{line}\n")).unwrap()
    };
    // Controls: the outside file is reachable from the context's parent, and a symlink
    // inside the context is followed.
    assert!(dir.join("../outside-secret").exists());
    df("COPY ok-link /x");
    build(&c, &dir, &["-t", "esc:ok"]).assert_ok();
    assert_eq!(run(&c, &["esc:ok", "cat", "/x"]).trim(), "inside");
    for (line, needle) in [
        ("COPY ../outside-secret /x", "outside the build context"),
        ("COPY abs-link /x", "leads outside"),
        ("COPY rel-link /x", "leads outside"),
    ] {
        df(line);
        build(&c, &dir, &[]).assert_refused_naming(needle);
    }
    df("COPY d /d");
    build(&c, &dir, &["-t", "esc:dir"]).assert_ok();
    let seen = run(
        &c,
        &[
            "esc:dir",
            "sh",
            "-c",
            "readlink /d/inner-link; cat /d/inner-link 2>&1 || true",
        ],
    );
    assert!(
        seen.starts_with(&outside.to_string_lossy().to_string()),
        "{seen}"
    );
    assert!(
        !seen.contains("HOST-SECRET"),
        "the host file was copied: {seen}"
    );
}

/// Heredocs and ONBUILD are refused by name; -f names another file; --label.
#[test]
fn refusals_file_flag_and_labels() {
    let c = Ctr::new();
    let dir = context(&c, "misc", "FROM busybox\nONBUILD RUN true\n", &[]);
    build(&c, &dir, &[]).assert_refused_naming("ONBUILD");
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM busybox\nRUN <<EOF\necho\nEOF\n",
    )
    .unwrap();
    build(&c, &dir, &[]).assert_refused_naming("heredoc");
    let other = dir.join("Other.dockerfile");
    std::fs::write(&other, "FROM busybox\nCMD [\"echo\", \"other\"]\n").unwrap();
    let f = other.to_string_lossy().to_string();
    build(&c, &dir, &["-f", &f, "--label", "a=b", "-t", "other:1"]).assert_ok();
    assert_eq!(run(&c, &["other:1"]).trim(), "other");
    let text = c.run(&["image", "inspect", "other:1"]).json().to_string();
    assert!(text.contains("\"a\":\"b\""), "{text}");
}

/// ADD unpacks a local tar (gzip'd too) into a directory and copies other files; a URL
/// is refused by name.
#[test]
fn add_unpacks_local_archives() {
    let c = Ctr::new();
    let df = "FROM busybox\nADD files.tar.gz /opt/\nADD plain.txt /p.txt\n";
    let dir = context(&c, "add", df, &[("plain.txt", "plain"), ("src/a/one", "1")]);
    let o = host_sh(&format!(
        "cd {} && tar -C src -czf files.tar.gz a && rm -r src",
        dir.display()
    ));
    assert!(o.ok(), "{o:?}");
    build(&c, &dir, &["-t", "add:1"]).assert_ok();
    let seen = run(
        &c,
        &[
            "add:1",
            "sh",
            "-c",
            "cat /opt/a/one; echo; cat /p.txt; echo; ls /opt",
        ],
    );
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        ["1", "plain", "a"],
        "{seen}"
    );
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM busybox\nADD http://example.com/x /x\n",
    )
    .unwrap();
    build(&c, &dir, &[]).assert_refused_naming("URLs are not supported");
}

/// `build -`: the context as a tar on stdin (its .dockerignore honoured), nothing left
/// of it afterwards.
#[test]
fn context_from_stdin_tar() {
    let c = Ctr::new();
    let dir = context(
        &c,
        "stdin",
        "FROM busybox\nCOPY . /ctx/\nCMD [\"ls\", \"-A\", \"/ctx\"]\n",
        &[
            ("a.txt", "a"),
            ("skip.log", "l"),
            (".dockerignore", "*.log\n"),
        ],
    );
    let tar = c.root.with_file_name("ctx.tar.gz");
    let o = host_sh(&format!(
        "tar -C {} -czf {} .",
        dir.display(),
        tar.display()
    ));
    assert!(o.ok(), "{o:?}");
    // The harness gives commands an empty stdin: a shell redirects the tar in.
    let inner = c.cmd(&["build", "-t", "stdin:1", "-"]);
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec \"$@\" < {}", tar.display()))
        .arg("sh")
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    run_command(&mut cmd).assert_ok();
    let seen = run(&c, &["stdin:1"]);
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        [".dockerignore", "Dockerfile", "a.txt"],
        "{seen}"
    );
    let left = std::fs::read_dir(c.root.join("build-tmp")).unwrap().count();
    assert_eq!(left, 0, "the unpacked context is removed");
}

/// SIGINT to `build` while a RUN runs: the build stops saying so, and the step's
/// container is killed and removed (no container, no mount left).
#[test]
fn interrupted_build_removes_its_step_container() {
    let c = Ctr::new();
    let df = "FROM busybox\nRUN echo started; sleep 600\n";
    let dir = context(&c, "sigint", df, &[]);
    let out = c.root.with_file_name("sigint.out");
    let err = c.root.with_file_name("sigint.err");
    let mut cmd = c.cmd(&["build", "-t", "never:1", &dir.to_string_lossy()]);
    cmd.stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    own_group(&mut cmd);
    let mut child = cmd.spawn().expect("spawn build");
    // Control: the RUN's container exists and its program runs.
    let started = wait_until(std::time::Duration::from_secs(60), || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        // The program's own line, not the step's text (which also says "started").
        text.lines().any(|l| l == "started")
    });
    if !started {
        kill_group(&mut child);
        panic!("the RUN never started: {}", read_lossy(&err));
    }
    assert_eq!(c.containers(), 1, "the step's container exists");
    let text = std::fs::read_to_string(&out).unwrap();
    let short = text
        .lines()
        .find_map(|l| l.strip_prefix(" ---> Running in "))
        .unwrap_or_else(|| {
            kill_group(&mut child);
            panic!("no step container id in {text:?}")
        })
        .trim()
        .to_string();
    // Control: its cgroups exist while it runs, found by the same search as below.
    if cgroup_dirs_containing(&short).is_empty() {
        kill_group(&mut child);
        panic!("no cgroup named after {short}");
    }
    // SAFETY: kill(2) of our own child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = wait_child(&mut child, std::time::Duration::from_secs(60));
    if status.is_none() {
        kill_group(&mut child);
        panic!("build did not stop on SIGINT");
    }
    let status = status.unwrap();
    assert!(!status.success(), "{status:?}");
    assert!(
        read_lossy(&err).contains("interrupted"),
        "{}",
        read_lossy(&err)
    );
    assert_eq!(c.containers(), 0, "the step's container is removed");
    assert_eq!(
        cgroup_dirs_containing(&short),
        Vec::<PathBuf>::new(),
        "cgroups left"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&c.root.to_string_lossy().to_string()));
    c.run(&["image", "inspect", "never:1"]).assert_fails();
}

/// FROM an image the store lacks is pulled, from a registry on the loopback (plain
/// HTTP, as Docker allows there by default); any other registry is refused by name.
#[test]
fn from_pulls_a_missing_image_from_a_loopback_registry() {
    let c = Ctr::new();
    let port = 6000 + (std::process::id() % 1000) as u16;
    let Some(reg) = codex_tests::nsregistry::NsRegistry::start(&c, port) else {
        return;
    };
    let r = reg.push_busybox(&c, "base/bb:v1");
    // Positive control: not in the store before the build.
    assert!(!c.run(&["image", "ls"]).stdout.contains("base/bb"));
    let ctx = context(
        &c,
        "pull",
        &format!("FROM {r}\nRUN echo pulled-base > /from\n"),
        &[],
    );
    let o = build(&c, &ctx, &["-t", "onpulled"]);
    o.assert_ok();
    assert!(o.stdout.contains("pulled"), "{o:?}");
    assert_eq!(run(&c, &["onpulled", "cat", "/from"]), "pulled-base\n");
    assert!(
        c.run(&["image", "ls"]).stdout.contains("base/bb"),
        "the base stays in the store"
    );
    // run --pull: never refuses a missing image; missing (the default) pulls it.
    c.run(&["image", "rm", &r]).assert_ok();
    let o = c.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--pull",
        "never",
        &r,
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(o.stderr.contains("not found"), "{o:?}");
    let o = c.run(&["run", "--rm", "--network", "none", &r, "echo", "ran-pulled"]);
    o.assert_ok();
    assert_eq!(o.stdout, "ran-pulled\n", "{o:?}");
    assert!(o.stderr.contains("pulled"), "{o:?}");
    let o = c.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--pull",
        "sometimes",
        &r,
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125), "{o:?}");
    assert!(o.stderr.contains("pull"), "{o:?}");
    // A registry off the loopback is pulled over verified HTTPS: one that does not
    // resolve (`.invalid` never does) fails naming FROM and the registry.
    let ctx = context(&c, "far", "FROM registry.invalid:5000/x/y:1\n", &[]);
    let o = build(&c, &ctx, &[]);
    o.assert_fails();
    assert!(
        o.stderr.contains("FROM") && o.stderr.contains("registry.invalid:5000"),
        "{o:?}"
    );
    // A short name the store lacks is not sent anywhere: "not in the image store".
    let ctx = context(&c, "short", "FROM nosuchbase-xyz:1\n", &[]);
    let o = build(&c, &ctx, &[]);
    o.assert_fails();
    assert!(
        o.stderr.contains("FROM") && o.stderr.contains("not in the image store"),
        "{o:?}"
    );
}
