//! `codex-ctr build` against `podman build` (buildah inside) of the same context from the
//! same busybox rootfs: the resulting images have the same files (content, type, mode,
//! owner; merged over all layers, whiteouts and opaque directories applied) and the same
//! run config. podman runs with storage of its own (vfs: nothing mounted), runc as its
//! runtime (crun refuses this hybrid-cgroup host) and rlimits this host allows.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use codex_tests::ctr::Ctr;
use codex_tests::*;

/// The Dockerfile both build; BASE is the busybox fixture imported into each.
const DOCKERFILE: &str = r#"FROM BASE
ARG VERSION=1.0
ENV APP=/srv/app VERSION=$VERSION
RUN mkdir -p /srv/app /opt/d && echo old > /opt/d/old && echo gone > /opt/gone
WORKDIR $APP
COPY --chown=65534:65534 conf/ ./conf/
COPY --chmod=755 tool.sh /usr/local/bin/tool
COPY notes.txt data.bin ./
RUN echo "built $VERSION" > out && rm /etc/group /opt/gone \
 && rm -rf /opt/d && mkdir /opt/d && echo new > /opt/d/new \
 && ln -s /srv/app/out /srv/app/link && chmod 4755 /usr/local/bin/tool
USER 65534
EXPOSE 8080 53/udp
LABEL org.test.version=$VERSION
STOPSIGNAL SIGINT
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat out"]
"#;

/// What buildah leaves in a RUN layer that is its own doing, not the Dockerfile's: the
/// mount point of the hostname file it binds and its `/run` (documented in
/// docs/build.md).
const BUILDAH_ONLY: &[&str] = &["etc/hostname", "run"];

/// podman with storage in a private dir; everything it made goes with the dir.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn command(&self, args: &[&str]) -> Command {
        // podman refuses a runroot longer than 50 characters: the dir is short.
        let d = self.dir.path();
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(d.join("r"))
            .arg("--runroot")
            .arg(d.join("rr"))
            .arg("--tmpdir")
            .arg(d.join("t"))
            .arg("--storage-driver")
            .arg("vfs")
            .arg("--events-backend")
            .arg("file")
            .arg("--cgroup-manager")
            .arg("cgroupfs")
            .arg("--runtime")
            .arg("runc")
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Out {
        let o = run_timeout(&mut self.command(args), Duration::from_secs(240));
        assert!(o.ok(), "podman {args:?}: {o:?}");
        o
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let mut c = self.command(&["rm", "--all", "--force"]);
        let _ = try_run_to(
            &mut c,
            &self.dir.path().join("o"),
            &self.dir.path().join("e"),
            Duration::from_secs(60),
        );
        unmount_under(self.dir.path());
    }
}

fn tree(archive: &Path) -> serde_json::Value {
    let py = workspace_dir().join("tests/tests/ctr_build/tree.py");
    let o = run_command(Command::new("python3").arg(py).arg(archive));
    assert!(o.ok(), "{o:?}");
    serde_json::from_str(&o.stdout).expect("tree.py prints JSON")
}

fn write_context(dir: &Path, base: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("conf/sub")).unwrap();
    std::fs::write(dir.join("conf/a.ini"), "a=1\n").unwrap();
    std::fs::write(dir.join("conf/sub/b.ini"), "b=2\n").unwrap();
    std::fs::write(dir.join("tool.sh"), "#!/bin/sh\necho tool\n").unwrap();
    std::fs::write(dir.join("notes.txt"), "notes\n").unwrap();
    std::fs::write(dir.join("data.bin"), [0u8, 1, 2, 255]).unwrap();
    let f = dir.join(format!("Dockerfile.{}", base.replace(['/', ':'], "_")));
    std::fs::write(&f, DOCKERFILE.replace("BASE", base)).unwrap();
    f
}

#[test]
fn same_files_modes_and_config_as_podman_build() {
    for t in ["podman", "runc", "python3"] {
        if !have_tool(t) {
            skip(&format!(
                "{t} is not installed (apt-get install -y podman runc python3)"
            ));
            return;
        }
    }
    let c = Ctr::new();
    let pm = Podman {
        dir: tempfile::Builder::new()
            .prefix("pm")
            .tempdir_in("/tmp")
            .expect("podman dir"),
    };
    let ctx = c.root.with_file_name("podman-ctx");
    let ours = write_context(&ctx, "busybox");
    let theirs = write_context(&ctx, "localhost/codex-build-base:latest");
    let rootfs = fixture_dir().join("rootfs.tar");
    pm.run(&[
        "import",
        &rootfs.to_string_lossy(),
        "localhost/codex-build-base:latest",
    ]);
    let ctx_s = ctx.to_string_lossy().to_string();
    pm.run(&[
        "build",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        "-f",
        &theirs.to_string_lossy(),
        "-t",
        "localhost/cmp:1",
        &ctx_s,
    ]);
    let pm_tar = pm.dir.path().join("pm.tar");
    pm.run(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        &pm_tar.to_string_lossy(),
        "localhost/cmp:1",
    ]);
    c.run(&[
        "build",
        "-f",
        &ours.to_string_lossy(),
        "-t",
        "cmp:1",
        &ctx_s,
    ])
    .assert_ok();
    let cx_tar = c.root.with_file_name("cx.tar");
    c.run(&["image", "save", "-o", &cx_tar.to_string_lossy(), "cmp:1"])
        .assert_ok();

    let mut a = tree(&pm_tar);
    let b = tree(&cx_tar);
    for k in BUILDAH_ONLY {
        a["files"].as_object_mut().unwrap().remove(*k);
    }
    a["config"]["Labels"]
        .as_object_mut()
        .unwrap()
        .remove("io.buildah.version");
    // Control: the trees hold what the Dockerfile did (so equal is not "both empty").
    let files = b["files"].as_object().unwrap();
    assert!(files.contains_key("opt/d/new") && !files.contains_key("opt/d/old"));
    assert!(!files.contains_key("etc/group") && files.contains_key("etc/passwd"));
    assert_eq!(files["usr/local/bin/tool"][1], "0o4755");
    assert_eq!(b["config"]["User"], "65534");
    let fa = a["files"].as_object().unwrap();
    let mut diffs = Vec::new();
    for k in fa.keys().chain(files.keys()) {
        if fa.get(k) != files.get(k) && !diffs.iter().any(|(d, _, _)| d == k) {
            diffs.push((k.clone(), fa.get(k).cloned(), files.get(k).cloned()));
        }
    }
    assert!(
        diffs.is_empty(),
        "files differ (path, podman, codex): {diffs:#?}"
    );
    assert_eq!(a["config"], b["config"], "configs differ");
}
