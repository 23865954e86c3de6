//! Root filesystem, mounts, masked and read-only paths, devices — checked in
//! `/proc/self/mountinfo` and by using them from inside the container.

use codex_tests::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;

fn mountinfo(ctx: &TestCtx, b: &mut Bundle) -> String {
    ctx.run_sh(b, "cat /proc/self/mountinfo").stdout
}

#[track_caller]
fn mount(mi: &str, at: &str) -> MountInfo {
    mount_at(mi, at).unwrap_or_else(|| panic!("no mount at {at} in:\n{mi}"))
}

#[test]
fn readonly_root_cannot_be_written() {
    let ctx = TestCtx::new("ro-root");
    let mut b = ctx.bundle();
    b.readonly_root(true);
    let o = ctx.run_sh(
        &mut b,
        "if touch /codex-written 2>/dev/null; then echo wrote; else echo refused; fi; cat /proc/self/mountinfo",
    );
    assert_eq!(o.lines()[0], "refused", "{o:?}");
    assert!(mount(&o.stdout, "/").has_opt("ro"), "{o:?}");
    assert!(!b.rootfs().join("codex-written").exists());
}

#[test]
fn writable_root_is_the_bundles_rootfs() {
    let ctx = TestCtx::new("rw-root");
    let mut b = ctx.bundle();
    b.readonly_root(false);
    let o = ctx.run_sh(&mut b, "echo from-container > /codex-written && echo wrote");
    assert_eq!(o.stdout.trim(), "wrote");
    assert_eq!(
        fs::read_to_string(b.rootfs().join("codex-written")).unwrap(),
        "from-container\n"
    );
}

#[test]
fn root_path_may_be_absolute() {
    let ctx = TestCtx::new("abs-root");
    let mut b = ctx.bundle_shared_rootfs();
    let o = ctx.run_sh(&mut b, "head -1 /etc/passwd; ls /");
    assert_eq!(o.lines()[0], "root:x:0:0:root:/root:/bin/sh");
    assert!(o.lines().contains(&"bin"), "{o:?}");
}

/// A file that exists on the host only, at an absolute path the container could name
/// (inside the test's temp dir, next to the bundle); the host sees it.
fn host_only_marker(ctx: &TestCtx) -> String {
    let m = ctx.path("host-only-marker");
    std::fs::write(&m, "host").unwrap();
    let p = m.to_string_lossy().into_owned();
    let control = host_sh(&format!("[ -e {p} ] && echo host-visible || echo isolated"));
    assert_eq!(
        control.stdout.trim(),
        "host-visible",
        "control: {control:?}"
    );
    p
}

/// Prints the rootfs marker, whether the same test sees an in-rootfs path (control), and
/// whether the host-only file is visible.
fn visibility_probe(host_marker: &str) -> String {
    format!(
        "cat /etc/codex-marker; echo; [ -e /etc/codex-marker ] && echo rootfs-visible; \
         [ -e {host_marker} ] && echo host-visible || echo isolated"
    )
}

#[test]
fn container_sees_its_rootfs_not_the_hosts() {
    let ctx = TestCtx::new("pivot");
    let host = host_only_marker(&ctx);
    let mut b = ctx.bundle();
    std::fs::write(b.rootfs().join("etc/codex-marker"), "in-rootfs").unwrap();
    let o = ctx.run_sh(&mut b, &visibility_probe(&host));
    assert_eq!(
        o.lines(),
        ["in-rootfs", "rootfs-visible", "isolated"],
        "{o:?}"
    );
}

#[test]
fn no_pivot_still_confines_the_container_to_its_rootfs() {
    let ctx = TestCtx::new("no-pivot");
    let host = host_only_marker(&ctx);
    let mut b = ctx.bundle();
    std::fs::write(b.rootfs().join("etc/codex-marker"), "in-rootfs").unwrap();
    b.sh(&visibility_probe(&host));
    let id = ctx.id("nopivot");
    let o = ctx.run(&b, &id, &["--no-pivot"]);
    o.assert_ok();
    assert_eq!(
        o.lines(),
        ["in-rootfs", "rootfs-visible", "isolated"],
        "{o:?}"
    );
}

#[test]
fn standard_filesystems_are_mounted() {
    let ctx = TestCtx::new("std-mounts");
    let mut b = ctx.bundle();
    let mi = mountinfo(&ctx, &mut b);
    for (at, fstype) in [
        ("/proc", "proc"),
        ("/sys", "sysfs"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
    ] {
        assert_eq!(mount(&mi, at).fstype, fstype, "{at}");
    }
    let sys = mount(&mi, "/sys");
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(sys.has_opt(o), "/sys lacks {o}: {sys:?}");
    }
    let shm = mount(&mi, "/dev/shm");
    assert!(shm.has_super_opt("size=65536k"), "{shm:?}");
}

#[test]
fn tmpfs_mount_honours_flags_and_data_options() {
    let ctx = TestCtx::new("tmpfs");
    let mut b = ctx.bundle();
    b.add_mount(
        "/data",
        "tmpfs",
        "tmpfs",
        &["nosuid", "nodev", "noexec", "size=1m", "mode=1770"],
    );
    let o = ctx.run_sh(
        &mut b,
        "stat -c %a /data; touch /data/x && echo writable; cat /proc/self/mountinfo",
    );
    assert_eq!(o.lines()[0], "1770");
    assert_eq!(o.lines()[1], "writable");
    let m = mount(&o.stdout, "/data");
    assert_eq!(m.fstype, "tmpfs");
    for f in ["nosuid", "nodev", "noexec", "rw"] {
        assert!(m.has_opt(f), "/data lacks {f}: {m:?}");
    }
    assert!(m.has_super_opt("size=1024k"), "{m:?}");
    assert!(m.has_super_opt("mode=1770"), "{m:?}");
}

#[test]
fn read_only_tmpfs_mount_cannot_be_written() {
    let ctx = TestCtx::new("tmpfs-ro");
    let mut b = ctx.bundle();
    b.add_mount("/data", "tmpfs", "tmpfs", &["ro"]);
    let o = ctx.run_sh(
        &mut b,
        "touch /data/x 2>/dev/null && echo wrote || echo refused; cat /proc/self/mountinfo",
    );
    assert_eq!(o.lines()[0], "refused");
    assert!(mount(&o.stdout, "/data").has_opt("ro"));
}

/// A host directory with a file `hello` containing `host-data`.
fn host_dir(ctx: &TestCtx, name: &str) -> std::path::PathBuf {
    let d = ctx.mkdir(name);
    fs::write(d.join("hello"), "host-data").unwrap();
    d
}

#[test]
fn read_only_bind_mount_is_readable_but_not_writable() {
    let ctx = TestCtx::new("bind-ro");
    let src = host_dir(&ctx, "src");
    let mut b = ctx.bundle();
    b.add_bind(&src, "/mnt/ro", &["ro"]);
    let o = ctx.run_sh(
        &mut b,
        "cat /mnt/ro/hello; echo; touch /mnt/ro/new 2>/dev/null && echo wrote || echo refused; cat /proc/self/mountinfo",
    );
    assert_eq!(o.lines()[0], "host-data");
    assert_eq!(o.lines()[1], "refused");
    assert!(mount(&o.stdout, "/mnt/ro").has_opt("ro"), "{o:?}");
    assert!(!src.join("new").exists());
}

#[test]
fn read_write_bind_mount_writes_reach_the_host() {
    let ctx = TestCtx::new("bind-rw");
    let src = host_dir(&ctx, "src");
    let mut b = ctx.bundle();
    b.add_bind(&src, "/mnt/rw", &["rw"]);
    ctx.run_sh(&mut b, "echo from-container > /mnt/rw/out");
    assert_eq!(
        fs::read_to_string(src.join("out")).unwrap(),
        "from-container\n"
    );
}

#[test]
fn bind_mount_flags_nosuid_nodev_noexec_show_in_mountinfo() {
    let ctx = TestCtx::new("bind-flags");
    let src = host_dir(&ctx, "src");
    fs::write(src.join("prog"), "#!/bin/sh\necho ran\n").unwrap();
    fs::set_permissions(src.join("prog"), fs::Permissions::from_mode(0o755)).unwrap();
    let mut b = ctx.bundle();
    b.add_bind(&src, "/mnt/flags", &["nosuid", "nodev", "noexec"]);
    let o = ctx.run_sh(
        &mut b,
        "/mnt/flags/prog 2>/dev/null || echo exec-refused; cat /proc/self/mountinfo",
    );
    assert_eq!(o.lines()[0], "exec-refused", "{o:?}");
    let m = mount(&o.stdout, "/mnt/flags");
    for f in ["nosuid", "nodev", "noexec"] {
        assert!(m.has_opt(f), "/mnt/flags lacks {f}: {m:?}");
    }
}

#[test]
fn bind_mount_of_a_single_file_creates_the_destination_file() {
    let ctx = TestCtx::new("bind-file");
    let src = host_dir(&ctx, "src");
    let mut b = ctx.bundle();
    b.add_bind(&src.join("hello"), "/etc/codex/hello.conf", &["ro"]);
    let o = ctx.run_sh(
        &mut b,
        "cat /etc/codex/hello.conf; echo; [ -f /etc/codex/hello.conf ] && echo file",
    );
    assert_eq!(o.lines(), vec!["host-data", "file"]);
}

#[test]
fn bind_does_not_take_submounts_but_rbind_does() {
    let ctx = TestCtx::new("rbind");
    let src = host_dir(&ctx, "src");
    let sub = src.join("sub");
    fs::create_dir(&sub).unwrap();
    host_sh(&format!("mount -t tmpfs codex-sub {}", sub.display())).assert_ok();
    // unmount_under() in the context's Drop takes it down again
    fs::write(sub.join("in-submount"), "yes").unwrap();
    let mut b = ctx.bundle();
    b.add_bind(&src, "/mnt/bind", &[]);
    b.add_mount("/mnt/rbind", "bind", &src.to_string_lossy(), &["rbind"]);
    let o = ctx.run_sh(
        &mut b,
        "ls /mnt/bind/sub | wc -l; cat /mnt/rbind/sub/in-submount",
    );
    assert_eq!(o.lines(), vec!["0", "yes"], "{o:?}");
}

#[test]
fn mounts_are_applied_in_order() {
    let ctx = TestCtx::new("mount-order");
    let src = host_dir(&ctx, "src");
    let mut b = ctx.bundle();
    b.add_mount("/mnt/a", "tmpfs", "tmpfs", &[]);
    b.add_bind(&src, "/mnt/a/b", &["ro"]);
    let o = ctx.run_sh(&mut b, "cat /mnt/a/b/hello");
    assert_eq!(o.stdout, "host-data");
}

#[test]
fn mount_destination_is_created_with_parents() {
    let ctx = TestCtx::new("mkdir-dest");
    let mut b = ctx.bundle();
    b.add_mount("/srv/deep/er/dir", "tmpfs", "tmpfs", &[]);
    let o = ctx.run_sh(&mut b, "cat /proc/self/mountinfo");
    assert_eq!(mount(&o.stdout, "/srv/deep/er/dir").fstype, "tmpfs");
}

#[test]
fn masked_paths_hide_files_and_directories() {
    let ctx = TestCtx::new("masked");
    assert!(
        std::path::Path::new("/proc/timer_list").exists(),
        "this test needs a kernel with /proc/timer_list"
    );
    let mut b = ctx.bundle();
    b.masked_paths(&[
        "/proc/timer_list",
        "/sys/firmware",
        "/proc/codex-does-not-exist",
    ]);
    let o = ctx.run_sh(
        &mut b,
        "wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l; stat -c '%t:%T' /proc/timer_list; cat /proc/self/mountinfo",
    );
    let l = o.lines();
    assert_eq!(l[0].trim(), "0", "/proc/timer_list must read empty: {o:?}");
    assert_eq!(l[1].trim(), "0", "/sys/firmware must look empty: {o:?}");
    assert_eq!(
        l[2], "1:3",
        "/proc/timer_list must be the null device: {o:?}"
    );
    assert!(mount_at(&o.stdout, "/proc/timer_list").is_some(), "{o:?}");
    let fw = mount(&o.stdout, "/sys/firmware");
    assert!(fw.has_opt("ro"), "masked dir must be read-only: {fw:?}");
}

#[test]
fn readonly_paths_cannot_be_written() {
    let ctx = TestCtx::new("readonly-paths");
    let mut b = ctx.bundle();
    b.readonly_paths(&["/proc/sys", "/proc/bus", "/proc/codex-does-not-exist"]);
    let o = ctx.run_sh(
        &mut b,
        "echo other > /proc/sys/kernel/hostname 2>/dev/null && echo wrote || echo refused; hostname; cat /proc/self/mountinfo",
    );
    assert_eq!(o.lines()[0], "refused", "{o:?}");
    assert_eq!(o.lines()[1], "codex");
    assert!(mount(&o.stdout, "/proc/sys").has_opt("ro"));
    assert!(mount(&o.stdout, "/proc/bus").has_opt("ro"));
}

#[test]
fn default_devices_exist_with_the_right_numbers() {
    let ctx = TestCtx::new("devices");
    let mut b = ctx.bundle();
    let o = ctx.run_sh(
        &mut b,
        "for d in null zero full random urandom tty; do echo $d $(stat -c '%F %t:%T %a' /dev/$d); done; \
         for l in ptmx fd stdin stdout stderr; do echo $l $(readlink /dev/$l); done; \
         [ -d /dev/shm ] && echo shm-dir; [ -d /dev/pts ] && echo pts-dir; \
         head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok",
    );
    let want = [
        "null character special file 1:3 666",
        "zero character special file 1:5 666",
        "full character special file 1:7 666",
        "random character special file 1:8 666",
        "urandom character special file 1:9 666",
        "tty character special file 5:0 666",
        "ptmx pts/ptmx",
        "fd /proc/self/fd",
        "stdin /proc/self/fd/0",
        "stdout /proc/self/fd/1",
        "stderr /proc/self/fd/2",
        "shm-dir",
        "pts-dir",
        "4",
        "null-ok",
    ];
    assert_eq!(o.lines(), want, "{o:?}");
}

#[test]
fn linux_devices_are_created_with_type_numbers_and_mode() {
    let ctx = TestCtx::new("linux-devices");
    let mut b = ctx.bundle();
    b.add_device("/dev/codex-null", "c", 1, 3, 0o620);
    let o = ctx.run_sh(
        &mut b,
        "stat -c '%F %t:%T %a %u:%g' /dev/codex-null; echo x > /dev/codex-null && echo wrote",
    );
    assert_eq!(
        o.lines(),
        vec!["character special file 1:3 620 0:0", "wrote"],
        "{o:?}"
    );
}

#[test]
fn cgroup_mount_shows_the_containers_own_cgroup() {
    let ctx = TestCtx::new("cgroup-mount");
    let mut b = ctx.bundle();
    b.add_mount(
        "/sys/fs/cgroup",
        "cgroup",
        "cgroup",
        &["nosuid", "noexec", "nodev", "relatime", "ro"],
    );
    // v1: a directory per controller; v2: one tree whose cgroup.controllers names them
    let o = ctx.run_sh(
        &mut b,
        "ls /sys/fs/cgroup; cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null; echo ---; \
         cat /sys/fs/cgroup/pids/cgroup.procs 2>/dev/null || cat /sys/fs/cgroup/cgroup.procs",
    );
    let (ls, procs) = o.stdout.split_once("---\n").unwrap();
    if cgroup_v2_only() {
        assert!(ls.contains("cgroup.controllers"), "not a v2 tree: {o:?}");
    }
    for c in ["pids", "memory"] {
        assert!(
            ls.split_whitespace().any(|x| x == c),
            "no {c} in /sys/fs/cgroup: {o:?}"
        );
    }
    assert!(
        procs.split_whitespace().any(|p| p == "1"),
        "the container's pids cgroup must hold its init: {o:?}"
    );
}

/// A host dir that is its own shared mount point (so propagation can be observed), with the
/// mount taken down by the context's cleanup.
fn shared_host_dir(ctx: &TestCtx, name: &str) -> std::path::PathBuf {
    let d = host_dir(ctx, name);
    host_sh(&format!(
        "mount --bind {0} {0} && mount --make-shared {0}",
        d.display()
    ))
    .assert_ok();
    d
}

/// Starts a container with `src` bound at /mnt/p with `opts`, then mounts a tmpfs with a
/// marker under `src` on the host; returns whether the container sees the marker. Controls:
/// the bind itself is in the container (it reads a file of `src`), and the host's mount
/// really happened (the host reads the marker), so "absent" means not propagated.
fn sees_later_host_mount(ctx: &TestCtx, opts: &[&str]) -> bool {
    let src = shared_host_dir(ctx, &format!("src{}", opts.join("-")));
    fs::create_dir(src.join("sub")).unwrap();
    fs::write(src.join("bound"), "bound").unwrap();
    let mut b = ctx.bundle();
    b.add_mount("/mnt/p", "bind", &src.to_string_lossy(), opts);
    b.sh("echo ready; exec sleep 1000");
    let id = ctx.id("prop");
    ctx.create_and_start(&b, &id);
    ctx.wait_for_stdout(&id, "ready");
    host_sh(&format!(
        "mount -t tmpfs codex-late {0}/sub && echo late > {0}/sub/marker",
        src.display()
    ))
    .assert_ok();
    assert_eq!(
        fs::read_to_string(src.join("sub/marker")).unwrap(),
        "late\n",
        "control: the host's mount is there"
    );
    let o = ctx.exec(
        &id,
        &[],
        &[
            "sh",
            "-c",
            "cat /mnt/p/bound; echo; cat /mnt/p/sub/marker 2>/dev/null || echo absent",
        ],
    );
    o.assert_ok();
    ctx.rt.run(&["delete", "--force", &id]).assert_ok();
    assert_eq!(
        o.lines().first(),
        Some(&"bound"),
        "control: the bind is not there: {o:?}"
    );
    match o.lines().get(1).copied() {
        Some("late") => true,
        Some("absent") => false,
        other => panic!("unexpected output {other:?}: {o:?}"),
    }
}

#[test]
fn rslave_bind_receives_mounts_made_later_on_the_host() {
    let ctx = TestCtx::new("prop-rslave");
    assert!(sees_later_host_mount(&ctx, &["rbind", "rslave"]));
}

#[test]
fn rprivate_bind_does_not_receive_mounts_made_later_on_the_host() {
    let ctx = TestCtx::new("prop-rprivate");
    assert!(!sees_later_host_mount(&ctx, &["rbind", "rprivate"]));
}

#[test]
fn rro_makes_submounts_of_an_rbind_read_only_too() {
    let ctx = TestCtx::new("rro");
    let src = host_dir(&ctx, "src");
    let sub = src.join("sub");
    fs::create_dir(&sub).unwrap();
    host_sh(&format!("mount -t tmpfs codex-sub {}", sub.display())).assert_ok();
    let mut b = ctx.bundle();
    b.add_mount("/mnt/r", "bind", &src.to_string_lossy(), &["rbind", "rro"]);
    b.add_mount(
        "/mnt/plain",
        "bind",
        &src.to_string_lossy(),
        &["rbind", "ro"],
    );
    let o = ctx.run_sh(
        &mut b,
        "touch /mnt/r/sub/x 2>/dev/null && echo rro-sub-writable || echo rro-sub-ro; \
         touch /mnt/plain/sub/y 2>/dev/null && echo ro-sub-writable || echo ro-sub-ro",
    );
    // `ro` on an rbind only covers the top mount (as in runc); `rro` covers the submounts
    assert_eq!(o.lines(), vec!["rro-sub-ro", "ro-sub-writable"], "{o:?}");
}

#[test]
fn rootfs_propagation_values_are_accepted() {
    let ctx = TestCtx::new("rootfs-prop");
    let mut b = ctx.bundle();
    for p in ["shared", "slave", "private"] {
        b.set("/linux/rootfsPropagation", serde_json::json!(p));
        let o = ctx.run_sh(&mut b, "echo ran");
        assert_eq!(o.stdout.trim(), "ran", "rootfsPropagation {p}");
    }
}
