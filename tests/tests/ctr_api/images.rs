//! Images, volumes, networks and `docker pull` through the API.

use std::process::Child;
use std::time::Duration;

use codex_tests::ctr::Ctr;
use codex_tests::*;

use super::harness::*;

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

    // docker build (the classic builder's /build: BuildKit needs its own daemon side):
    // the context sent as a tar, the image tagged and run.
    let ctx_dir = c.root.parent().unwrap().join("buildctx");
    std::fs::create_dir_all(&ctx_dir).unwrap();
    std::fs::write(
        ctx_dir.join("Dockerfile"),
        "FROM busybox\nCOPY note.txt /note.txt\nRUN echo built-$(cat /note.txt) > /made\nCMD [\"cat\", \"/made\"]\n",
    )
    .unwrap();
    std::fs::write(ctx_dir.join("note.txt"), "ok").unwrap();
    let mut cmd = std::process::Command::new("docker");
    cmd.env("DOCKER_HOST", s.host())
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-t", "apibuilt:1", &ctx_dir.to_string_lossy()]);
    let o = run_command(&mut cmd);
    o.assert_ok();
    assert!(o.stdout.contains("Successfully built"), "{o:?}");
    assert_eq!(
        stdout_of(&s.docker(&["run", "--rm", "--network", "none", "apibuilt:1"])),
        "built-ok"
    );
    // A failing step is the build's error, with the step's own output.
    std::fs::write(
        ctx_dir.join("Dockerfile"),
        "FROM busybox\nRUN echo broken-step; exit 3\n",
    )
    .unwrap();
    let mut cmd = std::process::Command::new("docker");
    cmd.env("DOCKER_HOST", s.host())
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-t", "apibroken:1", &ctx_dir.to_string_lossy()]);
    let o = run_command(&mut cmd);
    assert!(!o.ok(), "{o:?}");
    assert!(
        format!("{}{}", o.stdout, o.stderr).contains("broken-step"),
        "{o:?}"
    );
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
