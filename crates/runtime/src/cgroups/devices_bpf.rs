//! Device rules on cgroup v2: an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE`
//! generated from the rules and attached to the container's cgroup.
//!
//! The program reads (type, access, major, minor) from its context and checks the
//! rules from last to first, returning at the first match, so a later rule wins, as
//! with the v1 `devices.allow`/`devices.deny` files. No match means deny.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::error::{Context, Error, Result};

/// One rule: `None` is a wildcard.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub allow: bool,
    /// 'a' (all), 'b' or 'c'.
    pub kind: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// Any of "rwm".
    pub access: String,
}

impl Rule {
    /// Parses the kernel's v1 syntax: `c 1:3 rwm`, `a *:* rwm`.
    pub fn parse(allow: bool, line: &str) -> Option<Rule> {
        let mut it = line.split_whitespace();
        let kind = it.next()?.chars().next()?;
        let (ma, mi) = it.next()?.split_once(':')?;
        let num = |s: &str| {
            if s == "*" {
                Some(None)
            } else {
                s.parse().ok().map(Some)
            }
        };
        Some(Rule {
            allow,
            kind,
            major: num(ma)?,
            minor: num(mi)?,
            access: it.next().unwrap_or("rwm").to_string(),
        })
    }
}

const BPF_DEVCG_DEV_BLOCK: i32 = 1;
const BPF_DEVCG_DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8, // dst in the low nibble, src in the high one
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

const LDX_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const AND_K: u8 = 0x57; // dst &= imm
const RSH_K: u8 = 0x77; // dst >>= imm
const MOV_K: u8 = 0xb7; // dst = imm
const MOV_X: u8 = 0xbf; // dst = src
const JNE_K: u8 = 0x55; // if dst != imm: pc += off
const EXIT: u8 = 0x95;

/// The program for `rules` (evaluated last to first).
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    // r2 = type, r3 = access, r4 = major, r5 = minor (from struct bpf_cgroup_dev_ctx)
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(AND_K, 2, 0, 0, 0xffff),
        insn(LDX_W, 3, 1, 0, 0),
        insn(RSH_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for r in rules.iter().rev() {
        let mut block: Vec<Insn> = Vec::new();
        // Each check jumps to the end of this block; the offsets are fixed below.
        let mut jumps = Vec::new();
        match r.kind {
            'b' | 'c' => {
                let t = if r.kind == 'b' {
                    BPF_DEVCG_DEV_BLOCK
                } else {
                    BPF_DEVCG_DEV_CHAR
                };
                jumps.push(block.len());
                block.push(insn(JNE_K, 2, 0, 0, t));
            }
            _ => {}
        }
        let mask = r.access.chars().fold(0, |m, c| {
            m | match c {
                'm' => ACC_MKNOD,
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                _ => 0,
            }
        });
        if mask != ACC_MKNOD | ACC_READ | ACC_WRITE {
            // Matches only if every requested access is in the rule.
            block.push(insn(MOV_X, 6, 3, 0, 0));
            block.push(insn(AND_K, 6, 0, 0, !mask & 7));
            jumps.push(block.len());
            block.push(insn(JNE_K, 6, 0, 0, 0));
        }
        if let Some(m) = r.major {
            jumps.push(block.len());
            block.push(insn(JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = r.minor {
            jumps.push(block.len());
            block.push(insn(JNE_K, 5, 0, 0, m as i32));
        }
        block.push(insn(MOV_K, 0, 0, 0, i32::from(r.allow)));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let len = block.len();
        let catch_all = jumps.is_empty();
        for j in jumps {
            block[j].off = (len - j - 1) as i16;
        }
        p.extend(block);
        if catch_all {
            // Nothing after a rule that matches everything can run, and the verifier
            // refuses unreachable instructions.
            return p;
        }
    }
    p.push(insn(MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    _rest: [u64; 8],
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    _rest: [u32; 7],
}

/// Loads `prog`; with `log`, the verifier writes its log there (level 1). Returns the
/// raw syscall result.
fn load(prog: &[Insn], log: Option<&mut [u8]>) -> libc::c_long {
    let mut name = [0u8; 16];
    name[..11].copy_from_slice(b"codex_devcg");
    let (log_level, log_size, log_buf) = match log {
        Some(l) => (1, l.len() as u32, l.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: c"Apache-2.0".as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        prog_name: name,
        ..Default::default()
    };
    // SAFETY: attr points to a valid bpf_attr prefix; insns, license and log outlive the call.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    }
}

/// Loads the program for `rules` and attaches it to the cgroup directory `dir`.
pub fn attach(dir: &Path, rules: &[Rule]) -> Result<()> {
    let prog = program(rules);
    // Without a log first: a verifier log that outgrows its buffer fails the load
    // (ENOSPC) of a program the verifier accepts (a long rule list does that). The
    // log is asked for only to explain a refusal.
    let fd = load(&prog, None);
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        let mut log = vec![0u8; 64 * 1024];
        let _ = load(&prog, Some(&mut log));
        let text = String::from_utf8_lossy(&log);
        let text = text.trim_end_matches('\0').trim();
        // The end of the log says why; its start is the walk that led there.
        let tail: String = {
            let chars: Vec<char> = text.chars().collect();
            chars[chars.len().saturating_sub(600)..].iter().collect()
        };
        return Err(Error::Other(format!(
            "loading the device-cgroup eBPF program: {err}{}",
            if tail.is_empty() {
                String::new()
            } else {
                format!(" (verifier: ...{tail})")
            }
        )));
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cg = std::fs::File::open(dir).ctx(|| format!("opening cgroup {}", dir.display()))?;
    let attr = AttachAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    // SAFETY: attr is a valid bpf_attr prefix for BPF_PROG_ATTACH.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const AttachAttr,
            std::mem::size_of::<AttachAttr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error())
            .ctx(|| format!("attaching the device program to {}", dir.display()));
    }
    Ok(())
}

const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
    _rest: [u64; 6],
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
    _rest: [u32; 9],
}

/// The device programs attached to the cgroup `cg` itself (not its ancestors'), opened.
fn attached(cg: &std::fs::File, dir: &Path) -> Result<Vec<OwnedFd>> {
    // the kernel allows 64 programs per attach point with BPF_F_ALLOW_MULTI
    let mut ids = [0u32; 64];
    let mut q = QueryAttr {
        target_fd: cg.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    // SAFETY: q is a valid bpf_attr prefix; prog_ids points to prog_cnt writable u32s.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            &mut q as *mut QueryAttr,
            std::mem::size_of::<QueryAttr>(),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error())
            .ctx(|| format!("listing the device programs of {}", dir.display()));
    }
    let n = (q.prog_cnt as usize).min(ids.len());
    let mut fds = Vec::with_capacity(n);
    for id in &ids[..n] {
        let a = GetFdAttr {
            prog_id: *id,
            ..Default::default()
        };
        // SAFETY: a is a valid bpf_attr prefix for BPF_PROG_GET_FD_BY_ID.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_GET_FD_BY_ID,
                &a as *const GetFdAttr,
                std::mem::size_of::<GetFdAttr>(),
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .ctx(|| format!("opening device program {id} of {}", dir.display()));
        }
        // SAFETY: the kernel returned a new fd that nothing else owns.
        fds.push(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    }
    Ok(fds)
}

/// New rules for a cgroup that has a device program already (`update` of a running
/// container): the new program is attached first and the old ones detached after, so
/// while both are attached a device must pass both and the container never holds more
/// than the old or the new rules allow.
pub fn replace(dir: &Path, rules: &[Rule]) -> Result<()> {
    let cg = std::fs::File::open(dir).ctx(|| format!("opening cgroup {}", dir.display()))?;
    let old = attached(&cg, dir)?;
    attach(dir, rules)?;
    for prog in old {
        let a = AttachAttr {
            target_fd: cg.as_raw_fd() as u32,
            attach_bpf_fd: prog.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        // SAFETY: a is a valid bpf_attr prefix for BPF_PROG_DETACH.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_DETACH,
                &a as *const AttachAttr,
                std::mem::size_of::<AttachAttr>(),
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error())
                .ctx(|| format!("detaching the old device program of {}", dir.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Interprets the generated program (only the opcodes it uses), to check the rule
    /// logic without loading anything into the kernel.
    fn run(p: &[Insn], kind: char, access: &str, major: u32, minor: u32) -> bool {
        let t = if kind == 'b' {
            BPF_DEVCG_DEV_BLOCK
        } else {
            BPF_DEVCG_DEV_CHAR
        } as u64;
        let acc = access.chars().fold(0u64, |m, c| {
            m | match c {
                'm' => 1,
                'r' => 2,
                'w' => 4,
                _ => 0,
            }
        });
        let ctx = [((acc << 16) | t) as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => r[dst] = ctx[i.off as usize / 4] as u64,
                AND_K => r[dst] &= i.imm as u32 as u64,
                RSH_K => r[dst] >>= i.imm,
                MOV_K => r[dst] = i.imm as u64,
                MOV_X => r[dst] = r[src],
                JNE_K => {
                    if r[dst] != i.imm as u32 as u64 {
                        pc += i.off as usize;
                    }
                }
                EXIT => return r[0] == 1,
                other => panic!("unexpected opcode {other:#x}"),
            }
            let _ = src;
        }
    }

    fn rules(lines: &[(bool, &str)]) -> Vec<Rule> {
        lines
            .iter()
            .map(|(a, l)| Rule::parse(*a, l).unwrap())
            .collect()
    }

    #[test]
    fn deny_all_then_allow_some() {
        let p = program(&rules(&[
            (false, "a *:* rwm"),
            (true, "c 1:3 rwm"),
            (true, "c 136:* rw"),
        ]));
        assert!(run(&p, 'c', "rw", 1, 3));
        assert!(!run(&p, 'c', "r", 1, 5));
        assert!(run(&p, 'c', "w", 136, 7));
        assert!(!run(&p, 'c', "m", 136, 7), "mknod is not in rw");
        assert!(!run(&p, 'b', "r", 1, 3), "type must match");
    }

    #[test]
    fn later_rules_win() {
        let p = program(&rules(&[(true, "a *:* rwm"), (false, "b 8:0 w")]));
        assert!(run(&p, 'b', "r", 8, 0));
        assert!(!run(&p, 'b', "w", 8, 0));
        assert!(run(&p, 'c', "rwm", 4, 4));
    }

    #[test]
    fn nothing_follows_a_catch_all_rule() {
        let p = program(&rules(&[(false, "a *:* rwm"), (true, "c 1:3 rwm")]));
        assert_eq!(p.last().map(|i| i.code), Some(EXIT));
        assert_eq!(p.iter().filter(|i| i.code == EXIT).count(), 2, "{p:?}");
        assert!(!run(&p, 'c', "r", 1, 5));
    }

    #[test]
    fn no_rule_means_deny() {
        assert!(!run(&program(&[]), 'c', "r", 1, 3));
    }
}
