//! The compiled-program cache (`<root>/@seccomp-bpf/<key>.bpf`, crates/runtime/src/
//! seccomp_cache.rs): a profile compiled once is loaded from the cache afterwards with the
//! same effect, and an entry that is damaged, forged without the right digest, owned by
//! another user or writable by others is never loaded (the container gets the real
//! filter and the entry is rewritten). All `codex_*`: runc has no such cache.
//!
//! The positive control of the refusals is a forged allow-all entry with a correct header
//! and digest, owned by root and 0600: the runtime loads it (the container's `mkdir`
//! works although the profile denies it), which proves that what a warm run loads comes
//! from the entry and that the forged entries below differ only in what is checked.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use codex_tests::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const ENOSPC: u32 = 28;
/// The probe: `mkdir` is what the profiles deny (ENOSPC: nothing else gives that errno),
/// `touch` what they allow.
const PROBE: &str = "grep -E '^Seccomp:' /proc/self/status; cd /tmp; \
                     mkdir d 2>&1; echo mkdir-rc=$?; touch f && echo touch-ok";

fn architectures() -> Value {
    match std::env::consts::ARCH {
        "x86_64" => json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
        "aarch64" => json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
        _ => json!([]),
    }
}

/// Allows everything but mkdir/mkdirat (ENOSPC), with `flags`.
fn deny_mkdir(flags: &[&str]) -> Value {
    let mut p = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(),
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSPC}],
    });
    if !flags.is_empty() {
        p["flags"] = json!(flags);
    }
    p
}

fn bundle(ctx: &TestCtx, seccomp: Value) -> Bundle {
    let mut b = ctx.bundle();
    b.add_mount("/tmp", "tmpfs", "tmpfs", &["mode=1777"]);
    b.set("/linux/seccomp", seccomp);
    b
}

fn cache_dir(ctx: &TestCtx) -> PathBuf {
    ctx.rt.root.join("@seccomp-bpf")
}

/// The cache's entries (`*.bpf`).
fn entries(ctx: &TestCtx) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(cache_dir(ctx))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "bpf"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[track_caller]
fn the_one_entry(ctx: &TestCtx) -> PathBuf {
    let e = entries(ctx);
    assert_eq!(e.len(), 1, "expected one cache entry, found {e:?}");
    e[0].clone()
}

/// Runs the probe; true when the profile denied mkdir (ENOSPC), false when mkdir worked.
/// Anything else (no filter, touch refused) fails the test.
#[track_caller]
fn mkdir_denied(ctx: &TestCtx, b: &mut Bundle) -> bool {
    let o = ctx.run_sh(b, PROBE);
    let out = &o.stdout;
    assert_eq!(status_field(out, "Seccomp"), Some("2"), "no filter: {o:?}");
    assert!(
        out.contains("touch-ok"),
        "allowed syscalls must work: {o:?}"
    );
    if out.contains("mkdir-rc=0") {
        return false;
    }
    assert!(
        out.contains("mkdir-rc=1") && out.contains("No space left on device"),
        "mkdir must fail with the profile's ENOSPC: {o:?}"
    );
    true
}

// The entry layout of crates/runtime/src/seccomp_cache.rs, written independently here.
const MAGIC: &[u8; 8] = b"CDXSBPF\0";
const FORMAT: u32 = 1;
const HEADER: usize = 80;

/// `BPF_RET|BPF_K SECCOMP_RET_ALLOW`: a program that allows everything.
fn allow_all() -> Vec<u8> {
    [
        0x06u16.to_ne_bytes().as_slice(),
        &[0, 0],
        &0x7fff_0000u32.to_ne_bytes(),
    ]
    .concat()
}

fn key_of(entry: &Path) -> [u8; 32] {
    let stem = entry.file_stem().unwrap().to_str().unwrap();
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&stem[2 * i..2 * i + 2], 16).unwrap();
    }
    k
}

/// An entry for `key` holding `program`, its digest over `digest_of` (the program itself
/// for a valid entry).
fn forge(key: &[u8; 32], program: &[u8], digest_of: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(MAGIC);
    h.update(FORMAT.to_le_bytes());
    h.update(key);
    h.update(digest_of);
    let digest: [u8; 32] = h.finalize().into();
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&((program.len() / 8) as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&digest);
    out.extend_from_slice(program);
    out
}

fn write_entry(path: &Path, bytes: &[u8], mode: u32) {
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn codex_a_profile_compiled_once_is_loaded_from_the_cache_with_the_same_effect() {
    let ctx = TestCtx::new("seccomp-cache-warm");
    let mut b = bundle(&ctx, deny_mkdir(&[]));
    assert!(entries(&ctx).is_empty());
    assert!(mkdir_denied(&ctx, &mut b), "cold run: mkdir must be denied");
    let entry = the_one_entry(&ctx);
    let dir = fs::metadata(cache_dir(&ctx)).unwrap();
    assert_eq!(dir.mode() & 0o777, 0o700, "cache dir mode");
    let m = fs::metadata(&entry).unwrap();
    assert_eq!(m.mode() & 0o777, 0o600, "entry mode");
    assert_eq!(m.uid(), 0);
    let bytes = fs::read(&entry).unwrap();
    assert_eq!(&bytes[..8], MAGIC);
    assert!(bytes.len() > HEADER && (bytes.len() - HEADER).is_multiple_of(8));

    // Warm: the same denial, from the entry as it was (not rewritten: same inode, bytes).
    assert!(mkdir_denied(&ctx, &mut b), "warm run: mkdir must be denied");
    assert_eq!(the_one_entry(&ctx), entry);
    let m2 = fs::metadata(&entry).unwrap();
    assert_eq!(m2.ino(), m.ino(), "a hit must not rewrite the entry");
    assert_eq!(fs::read(&entry).unwrap(), bytes);

    // exec into a container gets the filter from the cache as well.
    let mut b = bundle(&ctx, deny_mkdir(&[]));
    b.sh("sleep 30");
    let id = ctx.id("exec");
    ctx.create_and_start(&b, &id);
    let o = ctx.exec(&id, &[], &["sh", "-c", "mkdir /tmp/e 2>&1; echo rc=$?"]);
    assert!(
        o.stdout.contains("rc=1") && o.stdout.contains("No space left on device"),
        "exec'd process must get the filter: {o:?}"
    );
    assert_eq!(fs::metadata(&entry).unwrap().ino(), m.ino());
}

#[test]
fn codex_the_default_profile_denies_the_same_cold_and_warm() {
    let ctx = TestCtx::new("seccomp-cache-default");
    let dir = ctx.mkdir("spec");
    let mut cmd = std::process::Command::new(runtime_binary());
    cmd.args(["spec", "--seccomp-default", "--bundle"])
        .arg(&dir);
    ctx.rt.run_cmd(cmd).assert_ok();
    let cfg: Value = serde_json::from_slice(&fs::read(dir.join("config.json")).unwrap()).unwrap();
    let steps = "grep -E '^Seccomp:' /proc/self/status; unshare -U true 2>&1; echo userns=$?; \
                 mkdir /tmp/x && echo mkdir-ok";
    let make = |with_profile: bool| {
        let mut b = ctx.bundle();
        b.add_mount("/tmp", "tmpfs", "tmpfs", &["mode=1777"]);
        b.set(
            "/process/capabilities",
            cfg["process"]["capabilities"].clone(),
        );
        if with_profile {
            b.set("/linux/seccomp", cfg["linux"]["seccomp"].clone());
        }
        b
    };
    // Control: without the profile, the user namespace opens.
    let c = ctx.run_sh(&mut make(false), steps);
    if !c.stdout.lines().any(|l| l == "userns=0") {
        return skip(&format!(
            "this host refuses user namespaces to a container without a profile ({}): the \
             profile's denial cannot be told from the host's",
            c.stdout.trim()
        ));
    }
    for run in ["cold", "warm"] {
        let o = ctx.run_sh(&mut make(true), steps);
        let out = &o.stdout;
        assert_eq!(status_field(out, "Seccomp"), Some("2"), "{run}: {o:?}");
        assert!(
            out.contains("Operation not permitted") && !out.contains("userns=0"),
            "{run}: unshare must fail with the profile's EPERM: {o:?}"
        );
        assert!(out.contains("mkdir-ok"), "{run}: mkdir is allowed: {o:?}");
        the_one_entry(&ctx);
    }
}

#[test]
fn codex_a_damaged_or_forged_entry_is_not_loaded_and_is_rewritten() {
    let ctx = TestCtx::new("seccomp-cache-forged");
    let mut b = bundle(&ctx, deny_mkdir(&[]));
    assert!(mkdir_denied(&ctx, &mut b));
    let entry = the_one_entry(&ctx);
    let good = fs::read(&entry).unwrap();
    let key = key_of(&entry);

    // Control: a well-formed allow-all entry, root's and 0600, is what a warm run loads.
    write_entry(&entry, &forge(&key, &allow_all(), &allow_all()), 0o600);
    assert!(
        !mkdir_denied(&ctx, &mut b),
        "control: a valid entry must be loaded (the forged allow-all lets mkdir through)"
    );

    // One flipped bit in the real program.
    let mut flipped = good.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x01;
    write_entry(&entry, &flipped, 0o600);
    assert!(mkdir_denied(&ctx, &mut b), "a damaged entry was loaded");
    assert_eq!(
        fs::read(&entry).unwrap(),
        good,
        "the damaged entry is rewritten"
    );

    // The allow-all program under a header whose digest is not its own.
    write_entry(&entry, &forge(&key, &allow_all(), &good[HEADER..]), 0o600);
    assert!(
        mkdir_denied(&ctx, &mut b),
        "an entry with a wrong digest was loaded"
    );
    assert_eq!(fs::read(&entry).unwrap(), good);

    // A valid entry of another key copied over this one.
    write_entry(
        &entry,
        &forge(&[0x55; 32], &allow_all(), &allow_all()),
        0o600,
    );
    assert!(mkdir_denied(&ctx, &mut b), "another key's entry was loaded");
    assert_eq!(fs::read(&entry).unwrap(), good);

    // A symlink to a valid allow-all entry is not followed.
    let elsewhere = ctx.path("allow-all.bpf");
    write_entry(&elsewhere, &forge(&key, &allow_all(), &allow_all()), 0o600);
    fs::remove_file(&entry).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &entry).unwrap();
    assert!(mkdir_denied(&ctx, &mut b), "a symlinked entry was followed");
    assert!(!fs::symlink_metadata(&entry).unwrap().is_symlink());
    assert_eq!(fs::read(&entry).unwrap(), good);
}

#[test]
fn codex_entries_and_directories_others_could_write_are_ignored() {
    let ctx = TestCtx::new("seccomp-cache-owner");
    let mut b = bundle(&ctx, deny_mkdir(&[]));
    assert!(mkdir_denied(&ctx, &mut b));
    let entry = the_one_entry(&ctx);
    let good = fs::read(&entry).unwrap();
    let forged = forge(&key_of(&entry), &allow_all(), &allow_all());
    // Control as above: the same bytes, root's and 0600, are loaded.
    write_entry(&entry, &forged, 0o600);
    assert!(
        !mkdir_denied(&ctx, &mut b),
        "control: a valid entry must be loaded"
    );

    // Owned by another uid.
    write_entry(&entry, &forged, 0o600);
    std::os::unix::fs::chown(&entry, Some(65534), Some(65534)).unwrap();
    assert!(mkdir_denied(&ctx, &mut b), "another uid's entry was loaded");
    let m = fs::metadata(&entry).unwrap();
    assert_eq!(
        (m.uid(), m.mode() & 0o777),
        (0, 0o600),
        "rewritten as root's"
    );
    assert_eq!(fs::read(&entry).unwrap(), good);

    // Group-writable.
    write_entry(&entry, &forged, 0o620);
    assert!(
        mkdir_denied(&ctx, &mut b),
        "a group-writable entry was loaded"
    );
    assert_eq!(fs::read(&entry).unwrap(), good);

    // A group-writable directory: not used at all (nothing read, nothing written).
    write_entry(&entry, &forged, 0o600);
    let dir = cache_dir(&ctx);
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o770)).unwrap();
    assert!(
        mkdir_denied(&ctx, &mut b),
        "an entry in a group-writable dir was loaded"
    );
    assert_eq!(
        fs::read(&entry).unwrap(),
        forged,
        "nothing is written there"
    );

    // The directory owned by another uid: the same.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    assert!(
        mkdir_denied(&ctx, &mut b),
        "an entry in another uid's dir was loaded"
    );
    assert_eq!(fs::read(&entry).unwrap(), forged);
}

/// Audit records of seccomp (type 1326) that mention `marker`, from the kernel log.
struct Kmsg(fs::File);

impl Kmsg {
    /// Positioned at the end: only what is logged from now on is read.
    fn open() -> Option<Kmsg> {
        use std::io::Seek;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .ok()?;
        f.seek(std::io::SeekFrom::End(0)).ok()?;
        Some(Kmsg(f))
    }

    fn records_naming(&mut self, marker: &str) -> Vec<String> {
        use std::io::Read;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if line.contains("type=1326") && line.contains(marker) {
                        out.push(line);
                    }
                }
                // EPIPE: records were overwritten meanwhile; go on reading.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(_) => break,
            }
        }
        out
    }
}

#[test]
fn codex_the_log_flag_is_passed_cold_and_warm() {
    let ctx = TestCtx::new("seccomp-cache-log");
    // The denied mkdir runs as a busybox copy in a directory named for this test (a
    // tmpfs the runtime mounts: mkdir is what the profile denies), so that its audit
    // record (exe=) can be told from any other's.
    let marker = format!("/tmp/{}/", ctx.id("sbl"));
    let script = format!(
        "cp /bin/busybox {marker}busybox && {marker}busybox mkdir /tmp/d 2>&1; echo mkdir-rc=$?"
    );
    let Some(mut kmsg) = Kmsg::open() else {
        return skip("/dev/kmsg cannot be read: the audit records of the LOG flag are not visible");
    };
    let run = |profile: Value, kmsg: &mut Kmsg, denied: bool| {
        let mut b = bundle(&ctx, profile);
        b.add_mount(
            marker.trim_end_matches('/'),
            "tmpfs",
            "tmpfs",
            &["mode=0755"],
        );
        let o = ctx.run_sh(&mut b, &script);
        let needle = if denied {
            "No space left on device"
        } else {
            "mkdir-rc=0"
        };
        assert!(o.stdout.contains(needle), "expected {needle}: {o:?}");
        // The record is written as the syscall returns; give kauditd a moment to print.
        let mut got = Vec::new();
        for _ in 0..20 {
            got.extend(kmsg.records_naming(&marker));
            if !got.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        got
    };
    // kauditd prints through printk's rate limit (10 records per 5 s, host-wide): another
    // process's records may crowd ours out. A run expected to be logged is retried (each
    // retry the same profile, warm) before its absence counts.
    let logged = |profile: &Value, kmsg: &mut Kmsg, denied: bool| {
        for attempt in 0..3 {
            if attempt > 0 {
                std::thread::sleep(std::time::Duration::from_secs(3));
            }
            if !run(profile.clone(), kmsg, denied).is_empty() {
                return true;
            }
        }
        false
    };
    // Control: SCMP_ACT_LOG is logged without any flag. If that leaves no record here,
    // the kernel's seccomp records are not visible and the flag cannot be checked.
    let mut log_action = deny_mkdir(&[]);
    log_action["syscalls"][0] = json!({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_LOG"});
    if !logged(&log_action, &mut kmsg, false) {
        return skip(
            "no audit record of a SCMP_ACT_LOG syscall in /dev/kmsg (no CONFIG_AUDIT, or an \
             audit daemon takes the records): the LOG flag's records cannot be seen",
        );
    }
    // With the flag the ERRNO denial is logged too: cold, the first run compiles (the
    // entry appears), any retry is warm.
    let with_flag = deny_mkdir(&["SECCOMP_FILTER_FLAG_LOG"]);
    assert!(
        logged(&with_flag, &mut kmsg, true),
        "cold run: the LOG flag was not passed"
    );
    // Without the flag it is not: the records above are the flag's doing.
    assert!(
        run(deny_mkdir(&[]), &mut kmsg, true).is_empty(),
        "logged without the LOG flag"
    );
    let before = entries(&ctx);
    assert_eq!(before.len(), 3, "one entry per profile: {before:?}");
    // Warm: from the cache (the entries stay as they are), still logged.
    assert!(
        logged(&with_flag, &mut kmsg, true),
        "warm run: the LOG flag was not passed"
    );
    assert_eq!(entries(&ctx), before);
}
