//! The exec trampoline: how a foreground `run` protects the runtime binary without
//! re-executing the runtime (see [`crate::selfclone`] for the threat).
//!
//! A container could reach the binary a runtime process runs from in two ways:
//!
//! - through `/proc/PID/exe` of a runtime process it can see (a non-dumpable process
//!   needs `CAP_SYS_PTRACE` for that, which a container may be given);
//! - through the execve of its own program: `#!/proc/self/exe` (or a program path
//!   that is `/proc/self/exe`, or a binfmt_misc interpreter resolved in the container)
//!   makes the kernel execute the *caller's* binary, which is then the container's
//!   program, free to reopen it for writing once the runtime has exited.
//!
//! The general defence re-executes the runtime from a read-only view before it forks
//! (about 1 ms: a second exec of the whole binary). A foreground `run` whose init is
//! out of every container process's sight until its exec can do with less: its init
//! execs this trampoline, a 113-byte program in a sealed memfd, and the trampoline
//! execs the user's program. Whatever that exec resolves `/proc/self/exe` to is then
//! the sealed memfd, never the runtime binary. [`unsupported`] lists what keeps the
//! init out of sight; anything else takes the general defence.
//!
//! The trampoline's contract (x86_64; other architectures take the general defence):
//! `argv = [path, status, program argv...]`, `envp` the program's. `status` is a
//! one-byte string whose byte is the number of a fd the init left open without
//! close-on-exec: the runtime's end of the sync channel. The trampoline marks it
//! close-on-exec and execs `path`; the channel's EOF then says the program runs, as it
//! does for a direct exec. If the exec fails, it sends [`FAILURE_MAGIC`] and the errno
//! (little endian) as one packet on the channel and exits 127.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use oci_spec::runtime::{LinuxNamespaceType, LinuxSeccomp, Spec};

use crate::error::{Context, Error, Result};

/// The first four bytes of the trampoline's failure packet. A JSON message never
/// starts with a NUL, so the sync channel tells it from the protocol's own messages.
pub const FAILURE_MAGIC: [u8; 4] = *b"\0CXT";

/// The syscalls made under the container's seccomp filter on the way to the program:
/// the init's exec of the trampoline (`execveat`, on its memfd), then the trampoline's.
const SYSCALLS: [&str; 5] = ["execveat", "fcntl", "execve", "write", "exit_group"];

/// Where the trampoline is loaded: the usual base of x86_64 executables, far above any
/// `vm.mmap_min_addr` (64 KiB on most distributions; a higher one would fail the exec).
const LOAD_ADDR: u64 = 0x40_0000;
const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const CODE_OFFSET: usize = EHDR_SIZE + 2 * PHDR_SIZE;

/// The trampoline's machine code (x86_64, AT&T syntax; assembled with GNU as):
///
/// ```text
///  0: mov    (%rsp),%rbx              argc
///  4: cmp    $0x2,%rbx                fewer than [path, status]: just exit
///  8: jb     65
///  a: mov    0x10(%rsp),%rax          argv[1]
///  f: movzbl (%rax),%r12d             its first byte: the status fd
/// 13: mov    %r12d,%edi
/// 16: mov    $0x2,%esi                F_SETFD
/// 1b: mov    $0x1,%edx                FD_CLOEXEC
/// 20: mov    $0x48,%eax               fcntl
/// 25: syscall
/// 27: test   %rax,%rax
/// 2a: js     42                       the fd would leak into the program: report
/// 2c: mov    0x8(%rsp),%rdi           path = argv[0]
/// 31: lea    0x18(%rsp),%rsi          the program's argv = &argv[2]
/// 36: lea    0x10(%rsp,%rbx,8),%rdx   envp = &argv[argc + 1]
/// 3b: mov    $0x3b,%eax               execve
/// 40: syscall
/// 42: neg    %eax                     errno
/// 44: sub    $0x8,%rsp
/// 48: movl   $0x54584300,(%rsp)       FAILURE_MAGIC
/// 4f: mov    %eax,0x4(%rsp)
/// 53: mov    %r12d,%edi
/// 56: mov    %rsp,%rsi
/// 59: mov    $0x8,%edx
/// 5e: mov    $0x1,%eax                write(status, packet, 8)
/// 63: syscall
/// 65: mov    $0x7f,%edi
/// 6a: mov    $0xe7,%eax               exit_group(127)
/// 6f: syscall
/// ```
#[cfg(target_arch = "x86_64")]
const CODE: [u8; 113] = [
    0x48, 0x8b, 0x1c, 0x24, 0x48, 0x83, 0xfb, 0x02, 0x72, 0x5b, 0x48, 0x8b, 0x44, 0x24, 0x10, 0x44,
    0x0f, 0xb6, 0x20, 0x44, 0x89, 0xe7, 0xbe, 0x02, 0x00, 0x00, 0x00, 0xba, 0x01, 0x00, 0x00, 0x00,
    0xb8, 0x48, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x85, 0xc0, 0x78, 0x16, 0x48, 0x8b, 0x7c, 0x24,
    0x08, 0x48, 0x8d, 0x74, 0x24, 0x18, 0x48, 0x8d, 0x54, 0xdc, 0x10, 0xb8, 0x3b, 0x00, 0x00, 0x00,
    0x0f, 0x05, 0xf7, 0xd8, 0x48, 0x83, 0xec, 0x08, 0xc7, 0x04, 0x24, 0x00, 0x43, 0x58, 0x54, 0x89,
    0x44, 0x24, 0x04, 0x44, 0x89, 0xe7, 0x48, 0x89, 0xe6, 0xba, 0x08, 0x00, 0x00, 0x00, 0xb8, 0x01,
    0x00, 0x00, 0x00, 0x0f, 0x05, 0xbf, 0x7f, 0x00, 0x00, 0x00, 0xb8, 0xe7, 0x00, 0x00, 0x00, 0x0f,
    0x05,
];
#[cfg(target_arch = "x86_64")]
const MACHINE: u16 = 62; // EM_X86_64

/// The errno a trampoline failure packet carries, or `None` for any other packet.
pub fn failure_errno(packet: &[u8]) -> Option<i32> {
    let (magic, errno) = packet.split_first_chunk::<4>()?;
    let errno: [u8; 4] = errno.try_into().ok()?;
    (*magic == FAILURE_MAGIC).then(|| i32::from_le_bytes(errno))
}

/// Why a foreground `run` of `spec` cannot use the trampoline (the init could be seen
/// by a container process before its exec, or the trampoline could not report), or
/// `None` when it can.
pub fn unsupported(spec: &Spec, preserve_fds: u32) -> Option<&'static str> {
    if !cfg!(target_arch = "x86_64") {
        return Some("no trampoline for this architecture");
    }
    let pid = crate::spec::namespaces(spec).find(|n| n.typ() == LinuxNamespaceType::Pid);
    match pid {
        None => return Some("no pid namespace: the init is visible to other processes"),
        Some(ns) if ns.path().is_some() => {
            return Some("a joined pid namespace: the init is visible to its processes")
        }
        Some(_) => {}
    }
    if let Some(h) = spec.hooks() {
        // Both run as forks of the init inside the container's namespaces.
        let any = |v: &Option<Vec<_>>| v.as_ref().is_some_and(|v| !v.is_empty());
        if any(h.create_container()) || any(h.start_container()) {
            return Some("createContainer or startContainer hooks exec from the init");
        }
    }
    // The status fd is handed over as one byte, above the preserved fds.
    if preserve_fds > 200 {
        return Some("more than 200 preserved fds");
    }
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    if seccomp.is_some_and(|s| !allows_trampoline(s)) {
        return Some("the seccomp profile does not plainly allow the trampoline's syscalls");
    }
    None
}

/// True when `profile` allows each of the trampoline's syscalls whatever its arguments:
/// no rule names it with another action (conditional or not), and the default or an
/// unconditional rule allows it.
fn allows_trampoline(profile: &LinuxSeccomp) -> bool {
    let allowing = |a: &str| a == "SCMP_ACT_ALLOW" || a == "SCMP_ACT_LOG";
    let action_name = |a: &oci_spec::runtime::LinuxSeccompAction| {
        serde_json::to_value(a)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let default_allows = allowing(&action_name(&profile.default_action()));
    let rules = profile.syscalls().as_deref().unwrap_or(&[]);
    SYSCALLS.iter().all(|name| {
        let naming = rules.iter().filter(|r| r.names().iter().any(|n| n == name));
        let mut allowed = default_allows;
        for rule in naming {
            if !allowing(&action_name(&rule.action())) {
                return false;
            }
            if rule.args().as_ref().is_none_or(|a| a.is_empty()) {
                allowed = true;
            }
        }
        allowed
    })
}

/// The trampoline as a static ELF executable: a header, a loadable segment (the whole
/// file, read and execute), a non-executable stack, the code.
#[cfg(target_arch = "x86_64")]
pub fn image() -> Vec<u8> {
    let total = (CODE_OFFSET + CODE.len()) as u64;
    let mut f = Vec::with_capacity(total as usize);
    // e_ident: magic, 64-bit, little endian, version 1, System V ABI, padding.
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&MACHINE.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    f.extend_from_slice(&(LOAD_ADDR + CODE_OFFSET as u64).to_le_bytes()); // e_entry
    f.extend_from_slice(&(EHDR_SIZE as u64).to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no sections
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    f.extend_from_slice(&(EHDR_SIZE as u16).to_le_bytes());
    f.extend_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes()); // e_phnum
    f.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    let mut phdr = |typ: u32, flags: u32, size: u64, align: u64| {
        f.extend_from_slice(&typ.to_le_bytes());
        f.extend_from_slice(&flags.to_le_bytes());
        f.extend_from_slice(&0u64.to_le_bytes()); // p_offset
        let addr = if size == 0 { 0 } else { LOAD_ADDR };
        f.extend_from_slice(&addr.to_le_bytes()); // p_vaddr
        f.extend_from_slice(&addr.to_le_bytes()); // p_paddr
        f.extend_from_slice(&size.to_le_bytes()); // p_filesz
        f.extend_from_slice(&size.to_le_bytes()); // p_memsz
        f.extend_from_slice(&align.to_le_bytes());
    };
    phdr(1, 0b101, total, 0x1000); // PT_LOAD, R+X
    phdr(0x6474_e551, 0b110, 0, 16); // PT_GNU_STACK, R+W
    f.extend_from_slice(&CODE);
    f
}

#[cfg(not(target_arch = "x86_64"))]
pub fn image() -> Vec<u8> {
    Vec::new()
}

/// The trampoline in a sealed memfd, made by the runtime before it forks the init.
pub struct Trampoline {
    file: OwnedFd,
}

impl Trampoline {
    /// Fails where memfds may not be executed (`vm.memfd_noexec`) or on an
    /// architecture without a trampoline; the caller then takes the general defence.
    pub fn new() -> Result<Trampoline> {
        let image = image();
        if image.is_empty() {
            return Err(Error::Unsupported(
                "no trampoline for this architecture".into(),
            ));
        }
        let file = crate::selfclone::sealed_memfd(c"codex-trampoline", &image)?;
        Ok(Trampoline { file })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Execs `path` through the trampoline, which reports a failed exec on `status`
    /// (see the module's contract). Returns only if the trampoline itself could not
    /// be executed; the copy of `status` handed to it is closed then.
    pub fn exec(
        &self,
        path: &CStr,
        argv: &[CString],
        envp: &[CString],
        status: BorrowedFd,
    ) -> Error {
        let fd = match handover_fd(status) {
            Ok(fd) => fd,
            Err(e) => return e,
        };
        let Ok(byte) = u8::try_from(fd.as_raw_fd()) else {
            return Error::Other(format!("the status fd {} is above 255", fd.as_raw_fd()));
        };
        let status_arg = CString::from_vec_with_nul(vec![byte, 0]);
        let Ok(status_arg) = status_arg else {
            return Error::Other("the status fd is 0".into());
        };
        let mut args: Vec<&CStr> = Vec::with_capacity(argv.len() + 2);
        args.push(path);
        args.push(&status_arg);
        args.extend(argv.iter().map(CString::as_c_str));
        let Err(err) = nix::unistd::fexecve(&self.file, &args, envp);
        drop(fd);
        Error::Io {
            context: "executing the exec trampoline".into(),
            cause: err.into(),
        }
    }
}

/// A copy of `status` without close-on-exec, numbered as low as it can be (at least 3).
fn handover_fd(status: BorrowedFd) -> Result<OwnedFd> {
    // SAFETY: F_DUPFD on a valid fd returns a new fd (without FD_CLOEXEC) or -1.
    let fd = unsafe { libc::fcntl(status.as_raw_fd(), libc::F_DUPFD, 3) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .ctx(|| "handing the status fd to the trampoline");
    }
    // SAFETY: F_DUPFD returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
#[path = "trampoline_tests.rs"]
mod tests;
