//! `codex-ctr serve`: the Docker Engine API, driven by the real clients — the docker CLI
//! and docker-py — with `DOCKER_HOST=unix://<the test's socket>`. Each test has its own
//! engine root and network namespace (the fixture's), and its own server in that
//! namespace, stopped (by its pid) when the test ends.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use codex_tests::ctr::Ctr;
use codex_tests::*;

/// The docker client and docker-py, or a visible skip.
fn clients(python: bool) -> bool {
    if !have_tool("docker") {
        skip("the docker CLI is not installed (make deps: Debian's docker.io, client only)");
        return false;
    }
    if python {
        let o = host_sh("python3 -c 'import docker'");
        if !o.ok() {
            skip("docker-py is not installed (make deps: apt-get install -y python3-docker)");
            return false;
        }
    }
    true
}

/// A `codex-ctr serve` on a socket in the fixture's temp dir, in its namespace.
struct Server {
    child: Child,
    sock: PathBuf,
    config: PathBuf,
}

impl Server {
    fn start(c: &Ctr, extra: &[&str]) -> Server {
        let dir = c
            .root
            .parent()
            .expect("the root has a parent")
            .to_path_buf();
        let sock = dir.join("api.sock");
        let config = dir.join("docker-config");
        std::fs::create_dir_all(&config).expect("docker config dir");
        let s = sock.to_string_lossy().to_string();
        let mut args = vec!["serve", "--socket", &s];
        args.extend_from_slice(extra);
        let mut cmd = c.cmd(&args);
        own_group(&mut cmd);
        let child = cmd.spawn().expect("spawn codex-ctr serve");
        let server = Server {
            child,
            sock,
            config,
        };
        assert!(
            wait_until(Duration::from_secs(10), || UnixStream::connect(
                &server.sock
            )
            .is_ok()),
            "the server never listened on {}",
            server.sock.display()
        );
        server
    }

    fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// `docker args...` against this server, with a config dir of its own.
    #[track_caller]
    fn docker(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", &self.config)
            .args(args);
        let mut o = run_command(&mut cmd);
        o.cmdline = format!("docker {}", args.join(" "));
        o
    }

    /// One raw HTTP/1.0 request on the socket: the status line and the whole answer.
    fn raw(&self, method: &str, path: &str) -> (String, String) {
        let mut s = UnixStream::connect(&self.sock).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        write!(s, "{method} {path} HTTP/1.0\r\nHost: docker\r\n\r\n").expect("send");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let status = out.lines().next().unwrap_or_default().to_string();
        (status, out)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return; // already ended and reaped: its pid is no longer ours to signal
        }
        // SAFETY: kill(2) of the process group our unreaped child leads.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGTERM) };
        if wait_child(&mut self.child, Duration::from_secs(10)).is_none() {
            kill_group(&mut self.child);
        }
    }
}

fn stdout_of(o: &Out) -> String {
    o.assert_ok();
    o.stdout.trim().to_string()
}

#[test]
fn docker_cli_runs_containers_through_the_api() {
    if !clients(false) {
        return;
    }
    let c = Ctr::new();
    let s = Server::start(&c, &[]);
    let v = stdout_of(&s.docker(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Client.APIVersion}}",
    ]));
    assert_eq!(
        v, "1.47 1.47",
        "the CLI negotiates down to the server's version"
    );
    let info = stdout_of(&s.docker(&["info", "--format", "{{.Images}} {{.OSType}}"]));
    assert_eq!(info, "1 linux");

    // Attached, removed at the end: the output, the exit code, nothing left.
    let o = s.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert_eq!(stdout_of(&o), "out");
    assert!(o.stderr.contains("err"), "stderr: {}", o.stderr);
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let since = (now() - 1).to_string();
    let ev = format!("ev-{}", std::process::id());
    s.docker(&[
        "run", "--rm", "--name", &ev, "busybox", "sh", "-c", "exit 7",
    ])
    .assert_code(7);
    assert_eq!(
        stdout_of(&s.docker(&["ps", "-aq"])),
        "",
        "--rm left a container"
    );
    // Its life as events, in Docker's shape: actions, the exit code, the image, the name.
    // Whole seconds: the next one covers every event so far (the CLI waits for it).
    let until = (now() + 1).to_string();
    let events = stdout_of(&s.docker(&[
        "events", "--since", &since, "--until", &until, "--filter", &format!("container={ev}"),
        "--format", "{{.Action}} {{.Actor.Attributes.exitCode}} {{.Actor.Attributes.image}} {{.Actor.Attributes.name}}",
    ]));
    let lines: Vec<String> = events
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        [
            format!("create <no value> busybox:latest {ev}"),
            format!("start <no value> busybox:latest {ev}"),
            format!("die 7 busybox:latest {ev}"),
            format!("destroy <no value> busybox:latest {ev}"),
        ],
        "{events}"
    );

    // A command that cannot start: Docker's exit codes (127 not found, 126 not
    // executable), and --rm still leaves nothing.
    s.docker(&["run", "--rm", "--network", "none", "busybox", "/no/such"])
        .assert_code(127);
    s.docker(&["run", "--rm", "--network", "none", "busybox", "/etc/passwd"])
        .assert_code(126);
    assert!(
        wait_until(Duration::from_secs(10), || s
            .docker(&["ps", "-aq"])
            .stdout
            .trim()
            .is_empty()),
        "a failed --rm run left a container"
    );

    // Security fields reach the engine: a read-only root and no capabilities, each
    // against the same command without it (the positive control).
    let touch = [
        "busybox",
        "sh",
        "-c",
        "touch /probe && grep CapEff /proc/self/status",
    ];
    let run = |extra: &[&str]| {
        let mut a = vec!["run", "--rm", "--network", "none"];
        a.extend_from_slice(extra);
        a.extend_from_slice(&touch);
        s.docker(&a)
    };
    let free = run(&[]);
    assert!(
        stdout_of(&free).contains("CapEff:\t00000000a80425fb"),
        "{}",
        free.stdout
    );
    run(&["--read-only"]).assert_fails();
    let nocaps = run(&["--cap-drop", "ALL"]);
    assert!(
        stdout_of(&nocaps).contains("CapEff:\t0000000000000000"),
        "{}",
        nocaps.stdout
    );

    // Detached, on the default bridge: ps, logs, inspect, exec, the CLI sees it too.
    let name = format!("api-{}", std::process::id());
    let id = stdout_of(&s.docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "suite=api",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 3' TERM; echo ready; while :; do sleep 1 & wait; done",
    ]));
    assert_eq!(id.len(), 64, "{id}");
    let ps = stdout_of(&s.docker(&[
        "ps",
        "--filter",
        "label=suite=api",
        "--format",
        "{{.Names}} {{.State}}",
    ]));
    assert_eq!(ps, format!("{name} running"));
    assert!(wait_until(Duration::from_secs(10), || s
        .docker(&["logs", &name])
        .stdout
        == "ready\n"));
    let st = stdout_of(&s.docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.Running}}",
        &name,
    ]));
    assert_eq!(st, "running true");
    let ip = stdout_of(&s.docker(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.bridge.IPAddress}}",
        &name,
    ]));
    assert!(
        ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "no bridge address: {ip:?}"
    );
    let e = s.docker(&["exec", &name, "sh", "-c", "echo in-exec; exit 5"]);
    e.assert_code(5);
    assert_eq!(e.stdout, "in-exec\n");
    // docker cp both ways (the archive endpoints), and a missing path is a 404.
    let dir = c.root.parent().unwrap().to_path_buf();
    std::fs::write(dir.join("in.txt"), "copied-in\n").unwrap();
    s.docker(&[
        "cp",
        &dir.join("in.txt").to_string_lossy(),
        &format!("{name}:/tmp/"),
    ])
    .assert_ok();
    assert_eq!(
        stdout_of(&s.docker(&["exec", &name, "cat", "/tmp/in.txt"])),
        "copied-in"
    );
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    s.docker(&["cp", &format!("{name}:/etc/passwd"), &out.to_string_lossy()])
        .assert_ok();
    assert!(std::fs::read_to_string(out.join("passwd"))
        .unwrap()
        .starts_with("root:"));
    let o = s.docker(&["cp", &format!("{name}:/no/such"), &out.to_string_lossy()]);
    o.assert_fails();
    assert!(o.stderr.contains("Could not find"), "{}", o.stderr);

    // exec -i: the client's stdin reaches the process; top lists its processes.
    let o = host_sh(&format!(
        "echo piped-in | DOCKER_HOST={} DOCKER_CONFIG={} docker exec -i {name} sh -c 'cat; echo done'",
        s.host(),
        s.config.display()
    ));
    assert_eq!(stdout_of(&o), "piped-in\ndone");
    let top = stdout_of(&s.docker(&["top", &name]));
    assert!(
        top.starts_with("UID") && top.contains("sh -c trap"),
        "{top}"
    );

    // update: new limits for the running container, in its inspect; what the engine
    // cannot change is refused by name.
    s.docker(&[
        "update",
        "--memory",
        "128m",
        "--memory-swap",
        "-1",
        "--cpus",
        "1.5",
        &name,
    ])
    .assert_ok();
    let lim = stdout_of(&s.docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}",
        &name,
    ]));
    assert_eq!(lim, "134217728 1500000000");
    let o = s.docker(&["update", "--restart", "always", &name]);
    o.assert_fails();
    assert!(o.stderr.contains("RestartPolicy"), "{}", o.stderr);

    // export: the container's filesystem as a tar.
    let o = host_sh(&format!(
        "DOCKER_HOST={} DOCKER_CONFIG={} docker export {name} | tar t",
        s.host(),
        s.config.display()
    ));
    assert!(stdout_of(&o).lines().any(|l| l == "bin/sh"), "{}", o.stdout);

    let ours = c.run(&["ps", "--format", "json"]);
    ours.assert_ok();
    assert!(
        ours.stdout.contains(&id),
        "codex-ctr ps does not list the API's container: {}",
        ours.stdout
    );

    // stop: its TERM trap exits 3; wait and inspect report it; rm.
    s.docker(&["stop", "-t", "5", &name]).assert_ok();
    assert_eq!(stdout_of(&s.docker(&["wait", &name])), "3");
    let st = stdout_of(&s.docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        &name,
    ]));
    assert_eq!(st, "exited 3");
    s.docker(&["rm", "-f", &name]).assert_ok();
    let gone = s.docker(&["inspect", &name]);
    gone.assert_fails();
    assert!(gone.stderr.contains("No such"), "{}", gone.stderr);

    // A running container cannot be removed without -f (409), and can with it.
    let id2 = stdout_of(&s.docker(&["run", "-d", "--network", "none", "busybox", "sleep", "300"]));
    let o = s.docker(&["rm", &id2]);
    o.assert_fails();
    assert!(o.stderr.contains("running"), "{}", o.stderr);
    s.docker(&["rm", "-f", &id2]).assert_ok();
}

#[test]
fn docker_cli_manages_images_volumes_and_networks() {
    if !clients(false) {
        return;
    }
    let c = Ctr::new();
    let s = Server::start(&c, &[]);
    let images = stdout_of(&s.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    assert_eq!(images, "busybox:latest");

    // save and load: a docker archive through the API (`docker save`), loaded back
    // under a tag the store no longer has.
    s.docker(&["tag", "busybox", "loadme:v1"]).assert_ok();
    let tar = c.root.parent().unwrap().join("loadme.tar");
    s.docker(&["save", "-o", &tar.to_string_lossy(), "loadme:v1"])
        .assert_ok();
    let listing = host_sh(&format!("tar tf {}", tar.display()));
    assert!(
        stdout_of(&listing).contains("manifest.json"),
        "{}",
        listing.stdout
    );
    s.docker(&["save", "-o", "/dev/null", "nosuch:v9"])
        .assert_fails();
    s.docker(&["rmi", "loadme:v1"]).assert_ok();
    assert!(!stdout_of(&s.docker(&["images"])).contains("loadme"));
    let o = s.docker(&["load", "-i", &tar.to_string_lossy()]);
    assert!(
        stdout_of(&o).contains("Loaded image: loadme:v1"),
        "{}",
        o.stdout
    );
    assert!(stdout_of(&s.docker(&["images"])).contains("loadme"));

    let vol = format!("apivol{}", std::process::id());
    s.docker(&["volume", "create", &vol]).assert_ok();
    assert!(stdout_of(&s.docker(&["volume", "ls", "-q"]))
        .lines()
        .any(|l| l == vol));
    s.docker(&["volume", "rm", &vol]).assert_ok();
    assert!(!stdout_of(&s.docker(&["volume", "ls", "-q"])).contains(&vol));

    let net = format!("apinet{}", std::process::id());
    s.docker(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.93.7.0/24",
        &net,
    ])
    .assert_ok();
    let i = stdout_of(&s.docker(&[
        "network",
        "inspect",
        "-f",
        "{{.Internal}} {{range .IPAM.Config}}{{.Subnet}}{{end}}",
        &net,
    ]));
    assert_eq!(i, "true 10.93.7.0/24");
    let o = s.docker(&["network", "create", &net]);
    o.assert_fails();
    s.docker(&["network", "rm", &net]).assert_ok();
    assert!(!stdout_of(&s.docker(&["network", "ls"])).contains(&net));

    // system df: one image (two tags), no containers, counted as Docker's CLI shows.
    let df = stdout_of(&s.docker(&["system", "df", "--format", "{{.Type}}:{{.TotalCount}}"]));
    assert!(
        df.contains("Images:1") && df.contains("Containers:0"),
        "{df}"
    );

    // /build is not here: a clear 501, not a hang.
    let (status, body) = s.raw("POST", "/v1.47/build");
    assert!(status.contains("501"), "{status}");
    assert!(body.contains("build issue"), "{body}");
}

#[test]
fn unknown_routes_old_versions_and_ping_answer_as_docker_does() {
    let c = Ctr::new();
    let s = Server::start(&c, &[]);
    let (status, all) = s.raw("HEAD", "/_ping");
    assert!(status.contains("200"), "{status}");
    assert!(
        all.to_ascii_lowercase().contains("api-version: 1.47"),
        "{all}"
    );
    let (status, all) = s.raw("GET", "/v1.47/swarm");
    assert!(status.contains("501"), "{status}");
    assert!(
        all.contains(r#""message":"GET /swarm is not implemented by codex-ctr""#),
        "{all}"
    );
    let (status, all) = s.raw("GET", "/v1.12/version");
    assert!(status.contains("400"), "{status}");
    assert!(all.contains("too old"), "{all}");
    let (status, all) = s.raw("GET", "/containers/nosuch/json");
    assert!(status.contains("404"), "{status}");
    assert!(all.contains("No such container: nosuch"), "{all}");
    let (status, _) = s.raw("GET", "/v1.47/version");
    assert!(status.contains("200"), "{status}");
}

#[test]
fn containers_outlive_the_server_and_an_idle_server_ends() {
    if !clients(false) {
        return;
    }
    let c = Ctr::new();
    let mut s = Server::start(&c, &["--timeout", "1s"]);
    let id = stdout_of(&s.docker(&["run", "-d", "--network", "none", "busybox", "sleep", "300"]));
    // Idle for a second (no client connected): it ends by itself, status 0, no socket.
    let status =
        wait_child(&mut s.child, Duration::from_secs(30)).expect("the idle server did not end");
    assert!(status.success(), "{status:?}");
    assert!(!s.sock.exists(), "the socket was left behind");
    let st = c.inspect(&id);
    assert_eq!(
        st["status"], "running",
        "the container did not outlive the server: {st}"
    );
}

#[test]
fn docker_py_drives_the_engine() {
    if !clients(true) {
        return;
    }
    let c = Ctr::new();
    let s = Server::start(&c, &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ctr_api/dockerpy.py");
    let tag = format!("{}", std::process::id());
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg(&tag).env("DOCKER_HOST", s.host());
    let o = run_command(&mut cmd);
    assert!(
        o.ok() && o.stdout.contains("ALL OK"),
        "docker-py flows failed:\n{}\n{}",
        o.stdout,
        o.stderr
    );
}

#[test]
fn oom_kills_show_in_inspect_and_terminals_and_stdin_work() {
    if !clients(false) {
        return;
    }
    if !have_tool("script") {
        skip("script(1) is not installed (apt-get install -y bsdutils)");
        return;
    }
    let c = Ctr::new();
    let s = Server::start(&c, &[]);
    // Positive control first: the same program under a roomy limit is stopped by its
    // own bound, not the OOM killer.
    let ok = s.docker(&[
        "run",
        "--rm",
        "--memory",
        "64m",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "x=a; i=0; while [ $i -lt 10 ]; do x=$x$x; i=$((i+1)); done; echo done",
    ]);
    assert_eq!(stdout_of(&ok), "done");
    let name = format!("oom-{}", std::process::id());
    let o = s.docker(&[
        "run",
        "--name",
        &name,
        "--memory",
        "16m",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "x=a; while true; do x=$x$x; done",
    ]);
    o.assert_code(137);
    let st = stdout_of(&s.docker(&[
        "inspect",
        "-f",
        "{{.State.OOMKilled}} {{.State.ExitCode}}",
        &name,
    ]));
    assert_eq!(st, "true 137");

    let id = stdout_of(&s.docker(&["run", "-d", "--network", "none", "busybox", "sleep", "300"]));
    let script = format!(
        "DOCKER_HOST={} DOCKER_CONFIG={} docker exec -it {id} sh -c 'tty; echo sum=$((40+2))'",
        s.host(),
        s.config.display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &script, "/dev/null"])
        .stdin(std::process::Stdio::null());
    let o = run_command(&mut cmd);
    o.assert_ok();
    assert!(
        o.stdout.contains("/dev/pts/"),
        "no terminal: {:?}",
        o.stdout
    );
    assert!(o.stdout.contains("sum=42"), "{:?}", o.stdout);

    // run -it: an interactive shell in the container's own terminal, typed into through
    // the attach; its exit code is the run's, and --rm leaves nothing.
    let env = format!(
        "DOCKER_HOST={} DOCKER_CONFIG={}",
        s.host(),
        s.config.display()
    );
    let count = || s.docker(&["ps", "-aq"]).stdout.lines().count();
    let before = count();
    let typed = format!(
        "(sleep 1; printf 'echo sum=$((6*7))\\r'; sleep 1; printf 'exit 3\\r'; sleep 3) | \
         script -qec \"{env} docker run -it --rm --network none busybox sh\" /dev/null"
    );
    let o = host_sh(&typed);
    o.assert_code(3);
    assert!(o.stdout.contains("sum=42"), "{:?}", o.stdout);
    // run -i without a terminal: the client's stdin is the container's, to its end.
    let o = host_sh(&format!(
        "echo piped-to-run | {env} docker run -i --rm --network none busybox sh -c 'cat; echo end'"
    ));
    assert_eq!(stdout_of(&o), "piped-to-run\nend");
    assert!(
        wait_until(Duration::from_secs(10), || count() == before),
        "run -it/-i --rm left containers: {}",
        s.docker(&["ps", "-a"]).stdout
    );
    // A terminal's log is one raw stream, a prompt without its newline.
    let t = stdout_of(&s.docker(&[
        "run",
        "-d",
        "-t",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo line; printf 'prompt> '; sleep 300",
    ]));
    assert!(wait_until(Duration::from_secs(10), || s
        .docker(&["logs", &t])
        .stdout
        == "line\r\nprompt> "));
}

/// A docker-registry inside the fixture's network namespace (where the server runs, so
/// its pulls reach it on 127.0.0.1), stopped by its process group when dropped.
struct NsRegistry {
    child: Child,
    port: u16,
}

impl Drop for NsRegistry {
    fn drop(&mut self) {
        kill_group(&mut self.child);
        let _ = wait_child(&mut self.child, Duration::from_secs(10));
    }
}

#[test]
fn docker_pull_fetches_from_a_local_registry() {
    if !clients(false) {
        return;
    }
    for (t, pkg) in [("docker-registry", "docker-registry"), ("skopeo", "skopeo")] {
        if !have_tool(t) {
            skip(&format!(
                "{t} is not installed (apt-get install -y {pkg}; make deps)"
            ));
            return;
        }
    }
    let c = Ctr::new();
    let s = Server::start(&c, &[]);
    let dir = c.root.parent().unwrap().to_path_buf();
    let port = 5000 + (std::process::id() % 1000) as u16;
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("registry-data").display()
        ),
    )
    .unwrap();
    let mut cmd = c
        .netns()
        .cmd(&["docker-registry", "serve", &config.to_string_lossy()]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    own_group(&mut cmd);
    let reg = NsRegistry {
        child: cmd.spawn().expect("start docker-registry"),
        port,
    };
    let up = wait_until(Duration::from_secs(20), || {
        let probe = format!("exec 3<>/dev/tcp/127.0.0.1/{}", reg.port);
        run_command(&mut c.netns().cmd(&["bash", "-c", &probe])).ok()
    });
    assert!(up, "docker-registry did not listen on {}", reg.port);

    // The image goes into the registry with skopeo, from a docker archive codex-ctr made.
    let tar = dir.join("bb.tar");
    c.run(&[
        "image",
        "save",
        "--format",
        "docker-archive",
        "-o",
        &tar.to_string_lossy(),
        "busybox",
    ])
    .assert_ok();
    let r = format!("127.0.0.1:{}/pulled/bb", reg.port);
    let o = run_command(&mut c.netns().cmd(&[
        "skopeo",
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &format!("docker-archive:{}", tar.display()),
        &format!("docker://{r}:v1"),
    ]));
    o.assert_ok();

    let o = s.docker(&["pull", &format!("{r}:v1")]);
    assert!(stdout_of(&o).contains("Downloaded"), "{}", o.stdout);
    let out = stdout_of(&s.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &format!("{r}:v1"),
        "echo",
        "from-registry",
    ]));
    assert_eq!(out, "from-registry");
    // A reference the registry does not have: the CLI reports the engine's error.
    let o = s.docker(&["pull", &format!("{r}:nope")]);
    o.assert_fails();
}

#[test]
fn docker_compose_brings_two_services_up_and_down() {
    if !clients(false) {
        return;
    }
    if !have_tool("docker-compose") {
        skip("docker-compose is not installed (make api-clients: Debian's docker-compose)");
        return;
    }
    let c = Ctr::new();
    let s = Server::start(&c, &[]);
    let dir = c.root.parent().unwrap().join("compose");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("docker-compose.yml"),
        "version: \"3\"\nservices:\n  web:\n    image: busybox\n    command: sh -c 'mkdir -p /www && echo hello-web > /www/index.html && exec httpd -f -p 8080 -h /www'\n  client:\n    image: busybox\n    depends_on: [web]\n    command: sh -c 'until wget -q -O - http://web:8080/; do sleep 0.2; done; echo client-done; exec sleep 300'\n",
    )
    .unwrap();
    let project = format!("cx{}", std::process::id());
    // Debian's compose 1.29 needs Debian's docker-py 5 (a pip docker-py 7 shadows it).
    let compose = |args: &str| {
        host_sh(&format!(
            "cd {} && PYTHONPATH=/usr/lib/python3/dist-packages DOCKER_HOST={} DOCKER_CONFIG={} docker-compose -p {project} {args}",
            dir.display(),
            s.host(),
            s.config.display()
        ))
    };
    let up = compose("up -d");
    assert!(up.ok(), "compose up: {}\n{}", up.stdout, up.stderr);
    // The client reached the web service by its name on the project's network.
    assert!(
        wait_until(Duration::from_secs(30), || compose("logs client")
            .stdout
            .contains("client-done")),
        "the client never reached web: {}",
        compose("logs").stdout
    );
    assert!(compose("logs client").stdout.contains("hello-web"));
    let ps = stdout_of(&s.docker(&["ps", "--format", "{{.Names}}"]));
    let mut names: Vec<&str> = ps.lines().collect();
    names.sort();
    assert_eq!(
        names,
        [format!("{project}_client_1"), format!("{project}_web_1")]
    );
    let down = compose("down -t 1");
    assert!(down.ok(), "compose down: {}\n{}", down.stdout, down.stderr);
    assert_eq!(stdout_of(&s.docker(&["ps", "-aq"])), "");
    assert!(!stdout_of(&s.docker(&["network", "ls"])).contains(&project));
}
