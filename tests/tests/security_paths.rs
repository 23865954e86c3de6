//! Path attacks set up by the rootfs or the config: mount destinations that are symlinks out
//! of the rootfs, a /dev/null or /dev/console that is not what it claims, a file mounted
//! over a sysctl's path (the runc CVE classes 2024-21626's siblings, 2025-31133, 2025-52565,
//! 2025-52881). Each test first runs the same config without the hostile element and shows
//! the path is taken (the mount lands, the mask masks, the console is the PTY, the sysctl is
//! written), then runs the attack and asserts the specific safe outcome. Tests named
//! `codex_*` fail with runc 1.1.5, which is vulnerable to (or refuses) that case.

use codex_tests::console::ConsoleSocket;
use codex_tests::*;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

/// Host dirs, each holding only `host-marker`.
fn host_dirs(ctx: &TestCtx, names: &[&str]) -> Vec<PathBuf> {
    names
        .iter()
        .map(|n| {
            let d = ctx.mkdir(n);
            fs::write(d.join("host-marker"), "host").unwrap();
            d
        })
        .collect()
}

#[track_caller]
fn assert_host_untouched(dirs: &[PathBuf]) {
    let host_mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    for d in dirs {
        let names: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["host-marker"],
            "the runtime wrote into host dir {}",
            d.display()
        );
        assert!(
            mount_at(&host_mi, &d.to_string_lossy()).is_none(),
            "host dir {} got a mount",
            d.display()
        );
    }
}

#[test]
fn mount_destination_symlinks_are_followed_inside_the_rootfs() {
    // /mnt/escape-abs -> HOST_ABS and /mnt/escape-rel -> ../../../..HOST_REL exist both on
    // the host and (as empty dirs) inside the rootfs: the mounts must land inside the rootfs.
    let ctx = TestCtx::new("symlink-dest");
    let src = ctx.mkdir("src");
    fs::write(src.join("payload"), "bind-payload").unwrap();
    let hosts = host_dirs(&ctx, &["host-abs", "host-rel"]);
    let (host_abs, host_rel) = (&hosts[0], &hosts[1]);
    let mut b = ctx.bundle();
    let rootfs = b.rootfs();
    for h in [host_abs, host_rel] {
        fs::create_dir_all(rootfs.join(h.strip_prefix("/").unwrap())).unwrap();
    }
    let mnt = rootfs.join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    symlink(host_abs, mnt.join("escape-abs")).unwrap();
    symlink(
        format!("../../../../../../../../../..{}", host_rel.display()),
        mnt.join("escape-rel"),
    )
    .unwrap();
    b.add_bind(&src, "/mnt/escape-abs", &["ro"]);
    b.add_mount("/mnt/escape-rel", "tmpfs", "tmpfs", &[]);
    let o = ctx.run_sh(
        &mut b,
        "cat /mnt/escape-abs/payload; echo; touch /mnt/escape-rel/written && echo wrote; cat /proc/self/mountinfo",
    );
    assert_eq!(
        o.lines()[0],
        "bind-payload",
        "the bind did not land at the symlink's in-rootfs target: {o:?}"
    );
    assert_eq!(o.lines()[1], "wrote", "{o:?}");
    for h in [host_abs, host_rel] {
        assert!(
            mount_at(&o.stdout, &h.to_string_lossy()).is_some(),
            "no mount at the in-rootfs target {}: {o:?}",
            h.display()
        );
    }
    assert_host_untouched(&hosts);
}

/// The two tmpfs mounts of the dangling-symlink test, a write into each, and the mount table.
fn dangling_bundle(ctx: &TestCtx) -> Bundle {
    let mut b = ctx.bundle();
    fs::create_dir_all(b.rootfs().join("mnt")).unwrap();
    b.add_mount("/mnt/escape-mk/sub/dir", "tmpfs", "tmpfs", &[]);
    b.add_mount("/mnt/escape-dangling", "tmpfs", "tmpfs", &[]);
    b.sh(
        "touch /mnt/escape-mk/sub/dir/w && touch /mnt/escape-dangling/w && echo wrote; \
         cat /proc/self/mountinfo",
    );
    b
}

#[test]
fn dangling_mount_destination_symlinks_never_reach_the_host() {
    // The symlinks point at host dirs that do not exist inside the rootfs: the runtime
    // creates the missing path inside the rootfs (as runc does) and mounts there.
    let ctx = TestCtx::new("symlink-dangling");
    let hosts = host_dirs(&ctx, &["host-mk", "host-dangling"]);

    // Control, without the symlinks: the runtime makes the missing destinations itself and
    // the container writes into both mounts (so the attack's path, "create the destination,
    // then mount", is the one this config takes).
    let c = ctx.run(&dangling_bundle(&ctx), &ctx.id("control"), &[]);
    c.assert_ok();
    assert_eq!(c.lines().first(), Some(&"wrote"), "{c:?}");
    for p in ["/mnt/escape-mk/sub/dir", "/mnt/escape-dangling"] {
        assert!(mount_at(&c.stdout, p).is_some_and(|m| m.fstype == "tmpfs"));
    }

    // Attack: the same config with /mnt/escape-* symlinked to the host dirs.
    let b = dangling_bundle(&ctx);
    let mnt = b.rootfs().join("mnt");
    symlink(&hosts[0], mnt.join("escape-mk")).unwrap();
    symlink(&hosts[1], mnt.join("escape-dangling")).unwrap();
    let o = ctx.run(&b, &ctx.id("dangling"), &[]);
    o.assert_ok();
    assert_eq!(o.lines().first(), Some(&"wrote"), "{o:?}");
    for p in [hosts[0].join("sub/dir"), hosts[1].clone()] {
        assert!(
            mount_at(&o.stdout, &p.to_string_lossy()).is_some_and(|m| m.fstype == "tmpfs"),
            "no tmpfs at the in-rootfs target {}: {o:?}",
            p.display()
        );
        assert!(
            b.rootfs().join(p.strip_prefix("/").unwrap()).is_dir(),
            "the destination was not made inside the rootfs: {}",
            p.display()
        );
    }
    assert_host_untouched(&hosts);
}

/// A bundle whose /dev comes from the rootfs (no /dev tmpfs in the config).
fn bundle_with_rootfs_dev(ctx: &TestCtx) -> Bundle {
    let mut b = ctx.bundle();
    b.remove_mount("/dev");
    b.readonly_root(false);
    b
}

/// What /proc/timer_list is in the container: its type and device, and how many bytes a
/// bounded read gets (bounded: with a vulnerable runtime the "null" mask is a regular file),
/// then the secret file as the container sees it.
const MASK_PROBE: &str = "stat -c '%F %t:%T' /proc/timer_list; \
     head -c 64 /proc/timer_list | wc -c; cat /etc/codex-secret 2>&1; echo";

/// Runs [`MASK_PROBE`] in `b` and returns its first three lines (type, bytes read, secret).
#[track_caller]
fn mask_probe(ctx: &TestCtx, b: &mut Bundle, tag: &str) -> Vec<String> {
    b.sh(MASK_PROBE);
    let o = ctx.run(b, &ctx.id(tag), &[]);
    o.assert_ok();
    let l: Vec<String> = o.lines().iter().map(|l| l.trim().to_string()).collect();
    assert!(l.len() >= 3, "the container's output went missing: {o:?}");
    l
}

/// The controls of both masking tests, on bundles made by `make` (the test's config minus the
/// hostile element): unmasked, /proc/timer_list has content; masked, it is the null device.
#[track_caller]
fn masking_controls(ctx: &TestCtx, make: impl Fn() -> Bundle) {
    let mut b = make();
    b.masked_paths(&[]);
    let l = mask_probe(ctx, &mut b, "unmasked");
    assert_eq!(l[0], "regular empty file 0:0", "{l:?}");
    assert_eq!(
        l[1], "64",
        "/proc/timer_list must have content unmasked: {l:?}"
    );
    let mut b = make();
    b.masked_paths(&["/proc/timer_list"]);
    let l = mask_probe(ctx, &mut b, "masked");
    assert_eq!(l[0], "character special file 1:3", "{l:?}");
    assert_eq!(l[1], "0", "{l:?}");
}

#[track_caller]
fn assert_masked_by_null(l: &[String], secret: &str) {
    assert_eq!(
        l[0], "character special file 1:3",
        "masked with something else than /dev/null: {l:?}"
    );
    assert_eq!(l[1], "0", "/proc/timer_list must read empty: {l:?}");
    assert_eq!(
        l[2], secret,
        "the secret changed inside the container: {l:?}"
    );
}

/// A rootfs-/dev bundle with /etc/codex-secret in its rootfs.
fn bundle_with_secret(ctx: &TestCtx) -> Bundle {
    let b = bundle_with_rootfs_dev(ctx);
    fs::write(b.rootfs().join("etc/codex-secret"), "SECRET").unwrap();
    b
}

#[test]
fn codex_masking_binds_a_real_null_device_even_if_dev_null_is_a_symlink() {
    // CVE-2025-31133: the container's /dev/null replaced by a symlink to a sensitive file.
    let ctx = TestCtx::new("mask-null-symlink");
    masking_controls(&ctx, || bundle_with_secret(&ctx));
    let mut b = bundle_with_secret(&ctx);
    let rootfs = b.rootfs();
    symlink("/etc/codex-secret", rootfs.join("dev/null")).unwrap();
    b.masked_paths(&["/proc/timer_list"]);
    let l = mask_probe(&ctx, &mut b, "attack");
    assert_masked_by_null(&l, "SECRET");
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/codex-secret")).unwrap(),
        "SECRET"
    );
}

#[test]
fn codex_masking_binds_a_real_null_device_even_if_dev_null_is_a_bind_of_a_file() {
    // The same attack through the config: /dev/null is a bind mount of a regular file.
    let ctx = TestCtx::new("mask-null-bind");
    masking_controls(&ctx, || bundle_with_secret(&ctx));
    let f = ctx.path("fake-null");
    fs::write(&f, "NOT-NULL").unwrap();
    let mut b = bundle_with_secret(&ctx);
    b.add_bind(&f, "/dev/null", &["rw"]);
    b.masked_paths(&["/proc/timer_list"]);
    b.sh(&format!("{MASK_PROBE}; cat /dev/null"));
    let o = ctx.run(&b, &ctx.id("attack"), &[]);
    o.assert_ok();
    let l: Vec<String> = o.lines().iter().map(|l| l.trim().to_string()).collect();
    assert!(l.len() >= 4, "the container's output went missing: {o:?}");
    // the hostile element is in place: the container's /dev/null is the file
    assert_eq!(
        l[3], "NOT-NULL",
        "the bind over /dev/null did not land: {o:?}"
    );
    assert_masked_by_null(&l, "SECRET");
    assert_eq!(fs::read_to_string(&f).unwrap(), "NOT-NULL");
}

/// Runs `b` with a terminal (console socket) and returns what the console printed.
#[track_caller]
fn console_text(ctx: &TestCtx, b: &Bundle, tag: &str) -> String {
    let sock = ConsoleSocket::bind(&ctx.path(&format!("{tag}.sock")), Vec::new(), WAIT);
    let id = ctx.id(tag);
    ctx.create(b, &id, &["--console-socket", &sock.arg()])
        .assert_ok();
    ctx.rt.run(&["start", &id]).assert_ok();
    let text = sock.finish().expect("console output").text();
    assert!(text.contains("done"), "{text:?}");
    text
}

#[test]
fn codex_console_is_not_bound_through_a_dev_console_symlink() {
    // CVE-2025-52565: /dev/console replaced by a symlink; the PTY bind must not follow it.
    let ctx = TestCtx::new("console-symlink");
    // never read the target in the container: if it became the PTY, the read would block
    let probe = "stat -c '%F' /etc/codex-secret; stat -c '%F %t' /dev/console; \
                 readlink /dev/console; echo done";
    // Control: without the symlink, /dev/console is the PTY (major 136 = 0x88).
    let mut b = bundle_with_secret(&ctx);
    b.terminal(true).sh(probe);
    let text = console_text(&ctx, &b, "control");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(
        lines[..2],
        ["regular file", "character special file 88"],
        "{text:?}"
    );

    let mut b = bundle_with_secret(&ctx);
    let rootfs = b.rootfs();
    symlink("/etc/codex-secret", rootfs.join("dev/console")).unwrap();
    b.terminal(true).sh(probe);
    let text = console_text(&ctx, &b, "attack");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(
        lines[0], "regular file",
        "the console was bound over the symlink target: {text:?}"
    );
    assert_eq!(
        lines[1], "character special file 88",
        "/dev/console is not the PTY: {text:?}"
    );
    assert_eq!(
        lines[2], "done",
        "/dev/console is still a symlink: {text:?}"
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/codex-secret")).unwrap(),
        "SECRET"
    );
}

/// A bundle asking for `kernel.shmmax` (if `sysctl`) and/or binding `file` over
/// /proc/sys/kernel/shmmax; it prints what that path reads, then the real value through a
/// second procfs mounted outside /proc (the bind covers only the first), after running
/// `extra`.
fn sysctl_bundle(
    ctx: &TestCtx,
    sysctl: bool,
    file: Option<&std::path::Path>,
    extra: &str,
) -> Bundle {
    let mut b = ctx.bundle();
    // /proc/sys is not read-only here, so a write through the path would land
    b.readonly_paths(&[]);
    b.add_mount("/mnt/realproc", "proc", "proc", &[]);
    if let Some(f) = file {
        b.add_bind(f, "/proc/sys/kernel/shmmax", &["rw"]);
    }
    if sysctl {
        b.sysctl("kernel.shmmax", "123456789");
    }
    b.sh(&format!(
        "{extra} echo $(cat /proc/sys/kernel/shmmax); echo $(cat /mnt/realproc/sys/kernel/shmmax)"
    ));
    b
}

#[test]
fn sysctl_is_written_to_procfs_not_to_a_file_mounted_over_its_path() {
    // CVE-2025-52881 class: a mount at /proc/sys/... must not redirect the runtime's sysctl
    // write. runc writes sysctls through the container's /proc after the config's mounts
    // (so it refuses mounts inside /proc); codex writes them before pivot_root through the
    // host's procfs, which no config mount covers. Either way the write reaches procfs.
    let ctx = TestCtx::new("sysctl-redirect");
    // Control: the sysctl alone is written (both views show it).
    let c = ctx.run(&sysctl_bundle(&ctx, true, None, ""), &ctx.id("sysctl"), &[]);
    c.assert_ok();
    assert_eq!(c.lines(), ["123456789", "123456789"], "{c:?}");
    // Control: the bind alone lands, and a write through the path the naive runtime would
    // use ends up in the host file: the attack path is open.
    let probe = ctx.path("probe-shmmax");
    fs::write(&probe, "ORIGINAL").unwrap();
    let extra = "echo via-path > /proc/sys/kernel/shmmax;";
    let bound = ctx.run(
        &sysctl_bundle(&ctx, false, Some(&probe), extra),
        &ctx.id("bind"),
        &[],
    );
    let f = ctx.path("fake-shmmax");
    fs::write(&f, "ORIGINAL").unwrap();
    let attack = sysctl_bundle(&ctx, true, Some(&f), "");
    let id = ctx.id("attack");
    if bound.ok() {
        let l = bound.lines();
        assert_eq!(l[0], "via-path", "{bound:?}");
        assert_ne!(l[1], "123456789", "{bound:?}");
        assert_eq!(fs::read_to_string(&probe).unwrap(), "via-path\n");
        // Attack: the sysctl and the bind together.
        let o = ctx.run(&attack, &id, &[]);
        o.assert_ok();
        assert_eq!(
            o.lines(),
            ["ORIGINAL", "123456789"],
            "the sysctl must reach procfs and the file stay as it was: {o:?}"
        );
    } else {
        // A runtime that refuses mounts inside /proc must refuse the attack the same way.
        bound.assert_refused_naming("/proc/sys/kernel/shmmax");
        ctx.run(&attack, &id, &[])
            .assert_refused_naming("/proc/sys/kernel/shmmax");
        assert!(!ctx.rt.root_has_entry(&id));
    }
    assert_eq!(
        fs::read_to_string(&f).unwrap(),
        "ORIGINAL",
        "the sysctl write went to the bind-mounted host file"
    );
}
