//! Images, volumes, networks and `docker pull` through the API.

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

#[test]
fn docker_pull_fetches_from_a_local_registry() {
    if !clients(false) {
        return;
    }
    let c = Ctr::new();
    let s = Server::start(&c, &[]);
    let port = 5000 + (std::process::id() % 1000) as u16;
    let Some(reg) = codex_tests::nsregistry::NsRegistry::start(&c, port) else {
        return;
    };
    // The image goes into the registry with skopeo, from a docker archive codex-ctr made.
    let r = reg.push_busybox(&c, "pulled/bb:v1");
    let r = r.trim_end_matches(":v1").to_string();
    let o = s.docker(&["pull", &format!("{r}:v1")]);
    assert!(stdout_of(&o).contains("Downloaded"), "{}", o.stdout);
    // The engine's per-blob progress reaches the client as Docker's progress lines.
    assert!(stdout_of(&o).contains("Download complete"), "{}", o.stdout);
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
