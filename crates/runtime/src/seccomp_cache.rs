//! The cache of compiled seccomp programs: `<state root>/@seccomp-bpf/<key>.bpf`.
//!
//! libseccomp takes about 6 ms to turn the default profile (~300 rules) into BPF, on
//! every `create` and `exec`. The program depends only on the inputs [`key`] hashes,
//! so the runtime keeps it after the first compile and loads the raw program later
//! (docs/seccomp.md). The cache is untrusted input:
//! - the directory is `@seccomp-bpf`, a name no container id can take (`@` is not in the
//!   id alphabet), 0700, opened with O_NOFOLLOW; it is used only if owned by the
//!   effective uid with no group/other write bit;
//! - an entry is opened with O_NOFOLLOW relative to the directory's fd, must be a regular
//!   file owned by the effective uid without group/other write bits, at most
//!   [`MAX_FILE`] bytes, and carry the magic, the format version, its own key and the
//!   sha256 of key and program: anything else is a miss, and the miss rewrites it;
//! - entries are written to a temp file and renamed into place (a crash leaves a temp
//!   file, never a torn entry), mode 0600.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;
use sha2::{Digest, Sha256};

use crate::seccomp_bpf::{INSN_BYTES, MAX_INSNS};

/// The directory under the state root.
pub const DIR_NAME: &str = "@seccomp-bpf";
const MAGIC: &[u8; 8] = b"CDXSBPF\0";
/// Bump when the entry layout or what a key covers changes.
const FORMAT: u32 = 1;
/// magic, format, instruction count, key, digest.
pub const HEADER: usize = 8 + 4 + 4 + 32 + 32;
pub const MAX_FILE: usize = HEADER + MAX_INSNS * INSN_BYTES;
/// More entries than this and a miss empties the directory first: profiles are few
/// (one per distinct profile; the engine writes a handful), so reaching it means churn.
const MAX_ENTRIES: usize = 64;

pub type Key = [u8; 32];

/// Everything the compiled program depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInputs<'a> {
    /// The profile as serialised JSON (serde of the spec's `LinuxSeccomp`: field order
    /// is the struct's, so equal profiles give equal bytes).
    pub profile: &'a [u8],
    /// The native architecture (the filter's first, always present).
    pub arch: &'a str,
    /// libseccomp's version (major, minor, micro) and API level: which actions and
    /// optimisations it uses depend on both.
    pub libseccomp: (u32, u32, u32),
    pub api: u32,
    /// The running kernel's release: libseccomp's API level is probed from it.
    pub kernel: &'a [u8],
    /// The source of the code that turns a profile into libseccomp rules: a change to
    /// it may change the program without changing any of the above.
    pub compiler: &'a [&'a [u8]],
}

/// sha256 over the inputs, each length-prefixed (no two input lists hash the same bytes).
pub fn key(i: &KeyInputs) -> Key {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(MAGIC);
    field(&FORMAT.to_le_bytes());
    field(i.profile);
    field(i.arch.as_bytes());
    let (ma, mi, mc) = i.libseccomp;
    field(&[ma.to_le_bytes(), mi.to_le_bytes(), mc.to_le_bytes()].concat());
    field(&i.api.to_le_bytes());
    field(i.kernel);
    for c in i.compiler {
        field(c);
    }
    h.finalize().into()
}

/// The sources [`KeyInputs::compiler`] covers.
const COMPILER: &[&[u8]] = &[
    include_bytes!("seccomp.rs"),
    include_bytes!("seccomp_notify.rs"),
    include_bytes!("seccomp_bpf.rs"),
];

/// The key of `s` on this host with this libseccomp and this runtime.
pub fn key_for(s: &LinuxSeccomp) -> Result<Key, String> {
    let profile = serde_json::to_vec(s).map_err(|e| format!("serialising the profile: {e}"))?;
    let v = libseccomp::ScmpVersion::current()
        .map_err(|e| format!("reading libseccomp's version: {e}"))?;
    let arch = format!("{:?}", libseccomp::ScmpArch::native());
    let kernel = kernel_release()?;
    Ok(key(&KeyInputs {
        profile: &profile,
        arch: &arch,
        libseccomp: (v.major, v.minor, v.micro),
        api: libseccomp::get_api(),
        kernel: &kernel,
        compiler: COMPILER,
    }))
}

fn kernel_release() -> Result<Vec<u8>, String> {
    // SAFETY: utsname is plain bytes; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes into the struct we own.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(format!("uname: {}", std::io::Error::last_os_error()));
    }
    Ok(u.release
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect())
}

pub fn hex(k: &Key) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(key: &Key, program: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(MAGIC);
    h.update(FORMAT.to_le_bytes());
    h.update(key);
    h.update(program);
    h.finalize().into()
}

/// An entry's bytes: header, then the program.
pub fn encode(key: &Key, program: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + program.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&((program.len() / INSN_BYTES) as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&digest(key, program));
    out.extend_from_slice(program);
    out
}

/// The program in an entry, if the entry is whole and is `key`'s.
pub fn decode<'a>(key: &Key, bytes: &'a [u8]) -> Result<&'a [u8], String> {
    if bytes.len() < HEADER {
        return Err(format!("{} bytes, shorter than the header", bytes.len()));
    }
    let (head, program) = bytes.split_at(HEADER);
    if &head[..8] != MAGIC {
        return Err("bad magic".into());
    }
    let word = |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    if word(8) != FORMAT {
        return Err(format!("format {} (this runtime writes {FORMAT})", word(8)));
    }
    let n = word(12) as usize;
    if n == 0 || n > MAX_INSNS || program.len() != n * INSN_BYTES {
        return Err(format!(
            "header says {n} instructions, the file holds {} bytes of program",
            program.len()
        ));
    }
    if &head[16..48] != key {
        return Err("the entry is another profile's".into());
    }
    if head[48..80] != digest(key, program) {
        return Err("the program does not match its sha256".into());
    }
    Ok(program)
}

/// The open cache directory.
pub struct Cache {
    dir: OwnedFd,
}

fn check_owner(st: &libc::stat, what: &str) -> Result<(), String> {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if st.st_uid != euid {
        return Err(format!("{what} is owned by uid {}, not {euid}", st.st_uid));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(format!(
            "{what} is writable by group or others (mode {:o})",
            st.st_mode & 0o7777
        ));
    }
    Ok(())
}

fn fstat(fd: &impl AsRawFd) -> std::io::Result<libc::stat> {
    // SAFETY: stat is plain data that fstat fills.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on an fd we own, into the struct we own.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

fn cstr(s: &str) -> Result<std::ffi::CString, String> {
    std::ffi::CString::new(s).map_err(|e| e.to_string())
}

impl Cache {
    /// Opens (creating it 0700 if needed) `<root>/@seccomp-bpf`. Err says why the cache
    /// is not used (the caller compiles as without one).
    pub fn open(root: &Path) -> Result<Cache, String> {
        let path = root.join(DIR_NAME);
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
        // SAFETY: a NUL-terminated path; mkdir creates at most a directory.
        if unsafe { libc::mkdir(c.as_ptr(), 0o700) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(format!("creating {}: {e}", path.display()));
            }
        }
        // SAFETY: a NUL-terminated path and plain flags; the kernel returns a new fd.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(format!(
                "opening {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: open returned a new fd that nothing else owns.
        let dir = unsafe { OwnedFd::from_raw_fd(fd) };
        let st = fstat(&dir).map_err(|e| format!("stat {}: {e}", path.display()))?;
        check_owner(&st, &path.display().to_string())?;
        Ok(Cache { dir })
    }

    fn name(key: &Key) -> String {
        format!("{}.bpf", hex(key))
    }

    /// The program stored under `key`. Err says why there is none usable: absent, or an
    /// entry that fails a check (which [`Cache::put`] then replaces).
    pub fn get(&self, key: &Key) -> Result<Vec<u8>, Miss> {
        let name = Self::name(key);
        let c = cstr(&name).map_err(Miss::Bad)?;
        // SAFETY: a NUL-terminated name relative to our directory fd; O_NONBLOCK so that
        // a FIFO planted there cannot block the open.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.kind() {
                std::io::ErrorKind::NotFound => Miss::Absent,
                _ => Miss::Bad(format!("opening {name}: {e}")),
            });
        }
        // SAFETY: openat returned a new fd that nothing else owns.
        let mut f = unsafe { File::from_raw_fd(fd) };
        let st = fstat(&f).map_err(|e| Miss::Bad(format!("stat {name}: {e}")))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(Miss::Bad(format!("{name} is not a regular file")));
        }
        check_owner(&st, &name).map_err(Miss::Bad)?;
        if st.st_size as u64 > MAX_FILE as u64 {
            return Err(Miss::Bad(format!("{name} is larger than {MAX_FILE} bytes")));
        }
        let mut bytes = Vec::with_capacity(st.st_size as usize);
        // Bounded again: the file may grow between fstat and read.
        (&mut f)
            .take(MAX_FILE as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Miss::Bad(format!("reading {name}: {e}")))?;
        let program = decode(key, &bytes).map_err(|e| Miss::Bad(format!("{name}: {e}")))?;
        Ok(program.to_vec())
    }

    /// Stores `program` under `key`: temp file and rename, mode 0600. Not fsynced: an
    /// entry a host crash tears fails its digest and is a miss.
    pub fn put(&self, key: &Key, program: &[u8]) -> Result<(), String> {
        self.evict_if_full();
        let path = self.path_of(&Self::name(key));
        codex_sys::atomic::AtomicFile::new(&path)
            .mode(0o600)
            .not_durable()
            .write(&encode(key, program))
            .map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// The directory's entries by way of its fd (never its path again).
    fn path_of(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}/{name}", self.dir.as_raw_fd()))
    }

    fn evict_if_full(&self) {
        let Ok(entries) = std::fs::read_dir(self.path_of("")) else {
            return;
        };
        let names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
        if names.len() < MAX_ENTRIES {
            return;
        }
        for n in names {
            let Ok(c) = std::ffi::CString::new(n.as_bytes()) else {
                continue;
            };
            // SAFETY: unlinkat of a name in our directory fd; never a directory.
            unsafe { libc::unlinkat(self.dir.as_raw_fd(), c.as_ptr(), 0) };
        }
    }
}

/// Why [`Cache::get`] found nothing usable.
#[derive(Debug)]
pub enum Miss {
    Absent,
    /// An entry that fails a check (said here).
    Bad(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(profile: &'a [u8]) -> KeyInputs<'a> {
        KeyInputs {
            profile,
            arch: "X8664",
            libseccomp: (2, 5, 4),
            api: 6,
            kernel: b"6.1.0",
            compiler: &[b"fn compile() {}"],
        }
    }

    fn profile(v: serde_json::Value) -> Vec<u8> {
        let s: LinuxSeccomp = serde_json::from_value(v).unwrap();
        serde_json::to_vec(&s).unwrap()
    }

    #[test]
    fn every_input_changes_the_key_and_equal_inputs_give_the_same() {
        let base = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read", "execve"], "action": "SCMP_ACT_ALLOW"}],
        }));
        let k = key(&inputs(&base));
        assert_eq!(k, key(&inputs(&base.clone())));
        let with_flag = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["read", "execve"], "action": "SCMP_ACT_ALLOW"}],
        }));
        let other_rule = profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read", "execve"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}],
        }));
        let mut keys = vec![k, key(&inputs(&with_flag)), key(&inputs(&other_rule))];
        let mut i = inputs(&base);
        i.arch = "AARCH64";
        keys.push(key(&i));
        let mut i = inputs(&base);
        i.libseccomp = (2, 6, 0);
        keys.push(key(&i));
        let mut i = inputs(&base);
        i.api = 7;
        keys.push(key(&i));
        let mut i = inputs(&base);
        i.kernel = b"6.1.1";
        keys.push(key(&i));
        let mut i = inputs(&base);
        i.compiler = &[b"fn compile() { changed }"];
        keys.push(key(&i));
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), n, "two different inputs gave one key");
    }

    #[test]
    fn fields_are_length_prefixed_so_moving_bytes_between_them_changes_the_key() {
        let mut a = inputs(b"{}");
        a.compiler = &[b"ab", b"c"];
        let mut b = inputs(b"{}");
        b.compiler = &[b"a", b"bc"];
        assert_ne!(key(&a), key(&b));
    }

    #[test]
    fn the_key_for_a_real_profile_follows_its_flags() {
        let a: LinuxSeccomp =
            serde_json::from_value(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW"})).unwrap();
        let b: LinuxSeccomp = serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        }))
        .unwrap();
        assert_eq!(key_for(&a).unwrap(), key_for(&a).unwrap());
        assert_ne!(key_for(&a).unwrap(), key_for(&b).unwrap());
    }

    #[test]
    fn entries_round_trip_and_every_damage_is_refused() {
        let k = [7u8; 32];
        let program = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
        let e = encode(&k, &program);
        assert_eq!(e.len(), HEADER + program.len());
        assert_eq!(decode(&k, &e).unwrap(), program);
        // A flipped bit anywhere is refused.
        for at in 0..e.len() {
            let mut bad = e.clone();
            bad[at] ^= 1;
            assert!(decode(&k, &bad).is_err(), "flipped byte {at} was accepted");
        }
        // Another key's entry, truncated or extended entries.
        assert!(decode(&[8u8; 32], &e).is_err());
        assert!(decode(&k, &e[..e.len() - 8]).is_err());
        assert!(decode(&k, &[e.as_slice(), &[0; 8]].concat()).is_err());
        assert!(decode(&k, &e[..HEADER - 1]).is_err());
        // A header claiming more instructions than the kernel takes.
        let big = vec![0u8; (MAX_INSNS + 1) * INSN_BYTES];
        assert!(decode(&k, &encode(&k, &big)).is_err());
    }

    #[test]
    fn the_cache_stores_reads_and_refuses_unsafe_files() {
        let t = tempfile::tempdir().unwrap();
        let c = Cache::open(t.path()).unwrap();
        let dir = t.path().join(DIR_NAME);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let k = [3u8; 32];
        assert!(matches!(c.get(&k), Err(Miss::Absent)));
        c.put(&k, &[9u8; 16]).unwrap();
        let file = dir.join(Cache::name(&k));
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(c.get(&k).unwrap(), vec![9u8; 16]);
        // Group-writable: refused, then put replaces it.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o620)).unwrap();
        assert!(matches!(c.get(&k), Err(Miss::Bad(m)) if m.contains("writable")));
        c.put(&k, &[9u8; 16]).unwrap();
        assert_eq!(c.get(&k).unwrap(), vec![9u8; 16]);
        // A symlink in place of the entry is not followed.
        std::fs::remove_file(&file).unwrap();
        let elsewhere = t.path().join("elsewhere");
        std::fs::write(&elsewhere, encode(&k, &[9u8; 16])).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
        assert!(matches!(c.get(&k), Err(Miss::Bad(_))));
        // A group-writable directory is not used at all.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
        assert!(Cache::open(t.path()).err().unwrap().contains("writable"));
    }
}
