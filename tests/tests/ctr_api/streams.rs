//! Streams and other clients: OOM, terminals and stdin, docker-py, Compose.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use codex_tests::ctr::Ctr;
use codex_tests::*;

use super::harness::*;

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
