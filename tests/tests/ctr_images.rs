//! Images from real tools: OCI layouts made by umoci (from the busybox fixture), converted
//! by skopeo to OCI archives, zstd layers and docker archives, loaded by `codex-ctr image
//! load`, run, saved and read back by skopeo and podman; and hostile layouts refused.

use std::path::{Path, PathBuf};

use codex_tests::ctr::Ctr;
use codex_tests::*;

/// Every tool these tests drive; a missing one is a visible skip.
fn tools() -> bool {
    for t in ["umoci", "skopeo", "python3", "gzip"] {
        if !have_tool(t) {
            skip(&format!(
                "{t} is not installed (apt-get install -y {t}; make deps)"
            ));
            return false;
        }
    }
    true
}

fn work(c: &Ctr) -> PathBuf {
    let d = c.root.parent().expect("root has a parent").join("work");
    std::fs::create_dir_all(&d).expect("mkdir work");
    d
}

fn oci_py() -> PathBuf {
    workspace_dir().join("tests/tests/ctr_images/oci.py")
}

fn sh(script: &str) {
    let o = host_sh(&format!("set -e\n{script}"));
    assert!(o.ok(), "{}\n{}\n{}", script, o.stdout, o.stderr);
}

/// A three-layer OCI layout `DIR/oci:multi` made by umoci from the busybox rootfs:
/// layer 1 the rootfs plus test files; layer 2 deletes a file (whiteout), replaces a
/// directory's content and hard-links a layer-1 file; layer 3 (added raw) makes a
/// directory opaque. Its config sets every default a container takes from an image.
fn build_multi(dir: &Path) -> PathBuf {
    let rootfs = fixture_dir().join("rootfs");
    let opq = dir.join("opq-layer");
    sh(&format!(
        r#"cd {d}
umoci init --layout oci
umoci new --image oci:multi
umoci unpack --image oci:multi b >/dev/null
cp -a {rootfs}/. b/rootfs/
mkdir -p b/rootfs/data b/rootfs/hl b/rootfs/opq/sub b/rootfs/srv
echo keep > b/rootfs/data/keep; echo gone > b/rootfs/data/gone
echo a > b/rootfs/hl/a; echo old > b/rootfs/opq/old; echo x > b/rootfs/opq/sub/x
echo 'app:x:1234:2345:app:/srv:/bin/sh' >> b/rootfs/etc/passwd
umoci repack --image oci:multi b
rm -rf b; umoci unpack --image oci:multi b >/dev/null
rm b/rootfs/data/gone; ln b/rootfs/hl/a b/rootfs/hl/b; echo new > b/rootfs/opq/new
umoci repack --image oci:multi b
mkdir -p {opq}/opq; touch {opq}/opq/.wh..wh..opq; echo fresh > {opq}/opq/fresh
tar -C {opq} -cf opq.tar opq
umoci raw add-layer --image oci:multi opq.tar
umoci config --image oci:multi --config.env A=1 --config.env PATH=/bin:/usr/bin \
  --config.entrypoint /bin/sh --config.entrypoint -c \
  --config.cmd 'echo cmd; id -u; id -g; pwd; echo A=$A' \
  --config.workingdir /srv --config.user app --config.stopsignal SIGUSR1 \
  --config.exposedports 8080/tcp --config.label org.test=yes
python3 {py} healthcheck oci
"#,
        d = dir.display(),
        rootfs = rootfs.display(),
        opq = opq.display(),
        py = oci_py().display(),
    ));
    dir.join("oci")
}

fn loaded_id(o: &Out) -> String {
    o.assert_ok();
    let id = o.stdout.trim().trim_start_matches("sha256:").to_string();
    assert_eq!(id.len(), 64, "load -q prints the id: {o:?}");
    id
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn oci_layouts_archives_and_docker_archives_from_real_tools_load_to_one_image() {
    if !tools() {
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    let oci = build_multi(&w);
    let layers = c.root.join("images/layers");
    let before = count(&layers);
    let id = loaded_id(&c.run(&["image", "load", "-q", "-i", &oci.to_string_lossy()]));
    assert_eq!(count(&layers), before + 3, "three new layers");
    let d = w.display();
    sh(&format!(
        "cd {d}
skopeo copy -q oci:oci:multi oci-archive:multi.tar:multi:v1
gzip -k multi.tar
skopeo copy -q --dest-compress-format zstd oci:oci:multi oci:zst:multi
skopeo copy -q oci:oci:multi docker-archive:docker.tar:multi:docker
gzip -c docker.tar > docker.tar.gz"
    ));
    // The zstd copy really is zstd (else this proves nothing about zstd).
    let zst_manifests = host_sh(&format!("grep -l 'tar+zstd' {d}/zst/blobs/sha256/*"));
    assert!(
        zst_manifests.ok(),
        "skopeo wrote no zstd layers: {zst_manifests:?}"
    );
    for input in [
        "multi.tar",
        "multi.tar.gz",
        "zst",
        "docker.tar",
        "docker.tar.gz",
    ] {
        let o = c.run(&["image", "load", "-q", "-i", &format!("{d}/{input}")]);
        assert_eq!(loaded_id(&o), id, "{input} is the same image");
    }
    // From stdin too.
    let o = host_sh(&format!(
        "{} --root {} image load -q < {d}/docker.tar.gz",
        codex_tests::ctr::ctr_binary().display(),
        c.root.display()
    ));
    assert_eq!(loaded_id(&o), id, "stdin");
    assert_eq!(
        count(&layers),
        before + 3,
        "every load shared the three layers"
    );
    let ls = c.run(&["image", "ls"]);
    ls.assert_ok();
    assert!(
        ls.stdout.contains("multi") && ls.stdout.contains("v1"),
        "{ls:?}"
    );
    assert!(
        ls.stdout.contains("docker"),
        "docker-archive's RepoTags: {ls:?}"
    );

    // The union the container sees: whiteout, opaque dir, hard link.
    let o = c.run(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        "-u",
        "0",
        &id,
        "-c",
        "cat /data/keep; ls /data; ls /opq; cat /opq/fresh; \
         [ $(stat -c %i /hl/a) = $(stat -c %i /hl/b) ] && echo linked",
    ]);
    o.assert_ok();
    assert_eq!(o.stdout, "keep\nkeep\nfresh\nfresh\nlinked\n", "{o:?}");
}

#[test]
fn an_images_config_becomes_the_containers_defaults() {
    if !tools() {
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    let oci = build_multi(&w);
    c.run(&["image", "load", "-i", &oci.to_string_lossy()])
        .assert_ok();
    let id = c
        .run(&["image", "ls", "-q"])
        .stdout
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    // Entrypoint + Cmd, Env, WorkingDir, User (a name from the image's /etc/passwd).
    let o = c.run(&["run", "--name", "d", &id]);
    o.assert_ok();
    assert_eq!(o.stdout, "cmd\n1234\n2345\n/srv\nA=1\n", "{o:?}");
    let v = c.inspect("d");
    let cfg = &v["config"];
    assert_eq!(cfg["stop_signal"], "SIGUSR1", "{v}");
    assert_eq!(cfg["labels"]["org.test"], "yes", "{v}");
    assert_eq!(cfg["user"], "1234:2345", "{v}");
    // A command given replaces Cmd and keeps the Entrypoint (`sh -c`).
    let o = c.run(&["run", "--rm", &id, "echo given"]);
    assert_eq!(o.stdout, "given\n", "{o:?}");
    // ExposedPorts and the Healthcheck are kept with the image for -P and the monitors.
    let i = c.run(&["image", "inspect", &id]);
    i.assert_ok();
    let rec = &i.json()[0]["config"];
    assert_eq!(
        rec["exposed_ports"],
        serde_json::json!(["8080/tcp"]),
        "{rec}"
    );
    assert_eq!(
        rec["healthcheck"]["test"],
        serde_json::json!(["CMD-SHELL", "test -e /tmp/ok"])
    );
    assert_eq!(rec["healthcheck"]["interval"], 2_000_000_000u64);
    assert_eq!(rec["healthcheck"]["retries"], 4);
    let h = c.run(&["image", "history", "--format", "json", &id]);
    h.assert_ok();
    let steps = h.json();
    let with_layer = steps
        .as_array()
        .map_or(0, |s| s.iter().filter(|x| x["layer"].is_string()).count());
    assert_eq!(with_layer, 3, "{steps}");
}

#[test]
fn a_multi_platform_index_gives_the_asked_platform() {
    if !tools() {
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    let oci = build_multi(&w);
    let amd = loaded_id(&c.run(&["image", "load", "-q", "-i", &oci.to_string_lossy()]));
    sh(&format!(
        "python3 {} multiarch {}",
        oci_py().display(),
        oci.display()
    ));
    let host = loaded_id(&c.run(&["image", "load", "-q", "-i", &oci.to_string_lossy()]));
    assert_eq!(host, amd, "the host's platform by default");
    let arm = loaded_id(&c.run(&[
        "image",
        "load",
        "-q",
        "--platform",
        "linux/arm64",
        "-i",
        &oci.to_string_lossy(),
    ]));
    assert_ne!(arm, amd);
    let i = c.run(&["image", "inspect", &arm]).json();
    assert_eq!(i[0]["platform"], "linux/arm64/v8", "{i}");
    c.run(&[
        "image",
        "load",
        "--platform",
        "linux/s390x",
        "-i",
        &oci.to_string_lossy(),
    ])
    .assert_refused_naming("platform")
    .assert_stderr_mentions("linux/arm64/v8");
}

#[test]
fn save_round_trips_through_skopeo_and_podman() {
    if !tools() {
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    let oci = build_multi(&w);
    let id = loaded_id(&c.run(&["image", "load", "-q", "-i", &oci.to_string_lossy()]));
    c.run(&["image", "tag", &id, "round/trip:one"]).assert_ok();
    let d = w.display();
    c.run(&[
        "image",
        "save",
        "-o",
        &format!("{d}/out.tar"),
        "round/trip:one",
    ])
    .assert_ok();
    c.run(&[
        "image",
        "save",
        "--format",
        "docker-archive",
        "-o",
        &format!("{d}/out-docker.tar"),
        "round/trip:one",
        &id,
    ])
    .assert_ok();
    // Two names of one image: one manifest.json entry (docker save's shape).
    let m = host_sh(&format!("tar -xOf {d}/out-docker.tar manifest.json"));
    let entries: serde_json::Value = serde_json::from_str(&m.stdout).expect("manifest.json");
    assert_eq!(entries.as_array().map(Vec::len), Some(1), "{entries}");
    assert_eq!(
        entries[0]["RepoTags"],
        serde_json::json!(["round/trip:one"]),
        "{entries}"
    );
    // skopeo reads both and copies them on: the image id (config digest) survives.
    sh(&format!(
        "cd {d}
skopeo copy -q oci-archive:out.tar:round/trip:one oci:back:x
skopeo copy -q docker-archive:out-docker.tar oci:back2:y"
    ));
    let insp = host_sh(&format!("skopeo inspect --config oci-archive:{d}/out.tar"));
    insp.assert_ok();
    assert!(insp.stdout.contains("SIGUSR1"), "{insp:?}");
    let c2 = Ctr::new();
    let o = c2.run(&["image", "load", "-q", "-i", &format!("{d}/back")]);
    assert_eq!(
        loaded_id(&o),
        id,
        "oci-archive -> skopeo -> oci layout keeps the config"
    );
    // skopeo re-writes the config when it converts a docker archive to OCI (a new id);
    // the layers and the defaults are what must survive.
    let back2 = loaded_id(&c2.run(&["image", "load", "-q", "-i", &format!("{d}/back2")]));
    let (a, b) = (
        c.run(&["image", "inspect", &id]).json(),
        c2.run(&["image", "inspect", &back2]).json(),
    );
    assert_eq!(a[0]["layers"], b[0]["layers"], "same diff_ids");
    assert_eq!(a[0]["config"]["env"], b[0]["config"]["env"]);
    assert_eq!(a[0]["config"]["stop_signal"], b[0]["config"]["stop_signal"]);
    // And the archive itself loads into a fresh store under its name.
    let o = c2.run(&["image", "load", "-i", &format!("{d}/out.tar")]);
    o.assert_ok();
    assert!(o.stdout.contains("round/trip:one"), "{o:?}");
    // podman (its own storage in the temp dir, vfs: no mounts to undo) loads both.
    if !have_tool("podman") {
        skip("podman is not installed (apt-get install -y podman)");
        return;
    }
    for (file, _) in [("out.tar", "oci"), ("out-docker.tar", "docker")] {
        let p = format!(
            "podman --root {d}/podman --runroot {d}/podman-run --storage-driver vfs --cgroup-manager cgroupfs"
        );
        let o = host_sh(&format!(
            "{p} load -q -i {d}/{file} && {p} image inspect --format '{{{{.Id}}}}' round/trip:one"
        ));
        assert!(o.ok(), "podman load {file}: {o:?}");
        assert!(
            o.stdout.contains(&id),
            "podman sees the same image id: {o:?}"
        );
    }
}

#[test]
fn rm_and_prune_remove_what_nothing_uses_and_never_a_containers_image() {
    if !tools() {
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    let oci = build_multi(&w);
    let images = c.root.join("images");
    let (layers0, blobs0) = (
        count(&images.join("layers")),
        count(&images.join("blobs/sha256")),
    );
    let id = loaded_id(&c.run(&["image", "load", "-q", "-i", &oci.to_string_lossy()]));
    c.run(&["image", "tag", &id, "keep:a"]).assert_ok();
    c.run(&["image", "tag", &id, "keep:b"]).assert_ok();
    c.run(&["create", "--name", "user", "keep:a"]).assert_ok();
    // ls --filter: by reference glob, label, dangling.
    let ls = |f: &[&str]| {
        let mut args = vec!["image", "ls", "-q"];
        for x in f {
            args.extend(["--filter", x]);
        }
        let o = c.run(&args);
        o.assert_ok();
        o.stdout.lines().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(ls(&["reference=keep:*"]), [id[..12].to_string()]);
    assert_eq!(ls(&["label=org.test=yes"]), [id[..12].to_string()]);
    assert_eq!(ls(&["reference=busybox"]).len(), 1);
    assert!(ls(&["dangling=true"]).is_empty());
    c.run(&["image", "ls", "--filter", "size=1"])
        .assert_refused_naming("filter");
    // Untagging one of two names is allowed; the last name of a used image is not.
    let o = c.run(&["image", "rm", "keep:b"]);
    o.assert_ok();
    assert!(o.stdout.contains("Untagged: keep:b"), "{o:?}");
    c.run(&["image", "rm", "keep:a"])
        .assert_refused()
        .assert_stderr_mentions("in use");
    c.run(&["image", "prune", "-a"]).assert_ok();
    assert!(
        c.run(&["image", "inspect", "keep:a"]).ok(),
        "prune -a kept the used image"
    );
    // It took the busybox import (no container uses it): its one layer went.
    assert!(!c.run(&["image", "inspect", "busybox"]).ok());
    assert_eq!(count(&images.join("layers")), layers0 - 1 + 3);
    c.run(&["rm", "user"]).assert_ok();
    let o = c.run(&["image", "prune", "-a"]);
    o.assert_ok();
    assert!(o.stdout.contains(&id), "{o:?}");
    // The busybox import went too (nothing used it): every layer and blob is gone.
    assert_eq!(count(&images.join("layers")), 0, "layers left");
    assert_eq!(count(&images.join("blobs/sha256")), 0, "blobs left");
    assert!(
        layers0 > 0 && blobs0 > 0,
        "the fixture import had a layer and blobs"
    );
}

#[test]
fn ten_containers_share_the_image_layers_and_not_their_writes() {
    if !tools() {
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    let oci = build_multi(&w);
    let id = loaded_id(&c.run(&["image", "load", "-q", "-i", &oci.to_string_lossy()]));
    let du = |p: &Path| -> u64 {
        let o = host_sh(&format!("du -sk --apparent-size {}", p.display()));
        o.assert_ok();
        o.stdout
            .split_whitespace()
            .next()
            .and_then(|k| k.parse().ok())
            .expect("du")
    };
    let layers = du(&c.root.join("images/layers"));
    assert!(
        layers > 1000,
        "the image's layers hold the busybox rootfs ({layers} KiB)"
    );
    let mut names = Vec::new();
    for i in 0..10 {
        let name = format!("share{i}");
        c.run(&[
            "create",
            "--name",
            &name,
            "--entrypoint",
            "/bin/sh",
            "-u",
            "0",
            &id,
            "-c",
            "sleep 30",
        ])
        .assert_ok();
        names.push(name);
    }
    assert_eq!(
        du(&c.root.join("images/layers")),
        layers,
        "no layer was copied"
    );
    let containers = du(&c.root.join("containers"));
    assert!(
        containers < layers / 4,
        "ten containers take {containers} KiB against {layers} KiB of layers"
    );
    // A write in one is seen neither by another nor by the image.
    for n in &names[..2] {
        c.run(&["start", n]).assert_ok();
    }
    c.run(&[
        "exec",
        &names[0],
        "sh",
        "-c",
        "echo mine > /data/keep; echo new > /made",
    ])
    .assert_ok();
    let o = c.run(&["exec", &names[0], "cat", "/data/keep", "/made"]);
    assert_eq!(o.stdout, "mine\nnew\n", "the writer sees its writes: {o:?}");
    let o = c.run(&[
        "exec",
        &names[1],
        "sh",
        "-c",
        "cat /data/keep; [ -e /made ] || echo absent",
    ]);
    assert_eq!(o.stdout, "keep\nabsent\n", "{o:?}");
    let o = c.run(&["run", "--rm", "--entrypoint", "/bin/cat", &id, "/data/keep"]);
    assert_eq!(o.stdout, "keep\n", "{o:?}");
}

#[test]
fn concurrent_loads_of_images_sharing_layers_both_succeed() {
    if !tools() {
        return;
    }
    let c = Ctr::new();
    let w = work(&c);
    build_multi(&w);
    let d = w.display();
    // The same layers in two images: the second with another config.
    sh(&format!(
        "cd {d}
skopeo copy -q oci:oci:multi docker-archive:a.tar:one:a
umoci config --image oci:multi --config.env B=2 --tag other
skopeo copy -q oci:oci:other docker-archive:b.tar:two:b"
    ));
    let bin = codex_tests::ctr::ctr_binary();
    let both = host_sh(&format!(
        "{b} --root {r} image load -q -i {d}/a.tar > {d}/a.out 2>&1 & \
         {b} --root {r} image load -q -i {d}/b.tar > {d}/b.out 2>&1 & \
         wait %1; s1=$?; wait %2; s2=$?; cat {d}/a.out {d}/b.out; exit $((s1 + s2))",
        b = bin.display(),
        r = c.root.display(),
    ));
    assert!(both.ok(), "{both:?}");
    let ids: Vec<&str> = both.stdout.lines().collect();
    assert_eq!(ids.len(), 2, "{both:?}");
    assert_ne!(ids[0], ids[1]);
    // Three shared layers plus the fixture's one, each once; no work dir left.
    assert_eq!(
        std::fs::read_dir(c.root.join("images/layers"))
            .expect("layers")
            .count(),
        4
    );
    assert_eq!(
        std::fs::read_dir(c.root.join("images/tmp"))
            .expect("tmp")
            .count(),
        0
    );
    for r in ["one:a", "two:b"] {
        let o = c.run(&["run", "--rm", "--entrypoint", "/bin/cat", r, "/opq/fresh"]);
        assert_eq!(o.stdout, "fresh\n", "{r}: {o:?}");
    }
}
