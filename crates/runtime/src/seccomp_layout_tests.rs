//! The tree layout decides every syscall as the chain does: a classic BPF interpreter
//! runs both programs libseccomp makes for a profile over the same `seccomp_data`, for
//! every syscall number of each architecture, and for the syscalls the profile filters
//! by argument, with every value its rules compare against in every argument.
//!
//! A `#[cfg(test)]` module (included with `#[path]`): its `unwrap`s are assertions, a
//! panic is the test failing, never a user's crash.

use super::*;

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;
const X32_BIT: i32 = 0x4000_0000;

struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

fn program(profile: &LinuxSeccomp, layout: Layout) -> Vec<Insn> {
    let bytes = Filter::compile_as(profile, layout)
        .unwrap()
        .export()
        .unwrap();
    bytes
        .chunks_exact(8)
        .map(|c| Insn {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect()
}

/// `struct seccomp_data`: nr, arch, instruction pointer, six arguments.
fn data(nr: i32, arch: u32, args: [u64; 6]) -> [u8; 64] {
    let mut d = [0u8; 64];
    d[0..4].copy_from_slice(&nr.to_ne_bytes());
    d[4..8].copy_from_slice(&arch.to_ne_bytes());
    for (i, a) in args.iter().enumerate() {
        d[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_ne_bytes());
    }
    d
}

/// The classic BPF subset seccomp programs use; anything else fails the test.
fn run(prog: &[Insn], d: &[u8; 64]) -> u32 {
    let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
    let mut pc = 0usize;
    let word = |k: u32| {
        let k = k as usize;
        u32::from_ne_bytes(d[k..k + 4].try_into().unwrap())
    };
    loop {
        let i = &prog[pc];
        pc += 1;
        let src = if i.code & 0x08 == 0 { i.k } else { x };
        match i.code & 0x07 {
            0x00 => match i.code & 0xe0 {
                0x20 => a = word(i.k),
                0x00 => a = i.k,
                0x60 => a = mem[i.k as usize],
                m => panic!("ld mode {m:#x}"),
            },
            0x01 => match i.code & 0xe0 {
                0x00 => x = i.k,
                0x60 => x = mem[i.k as usize],
                m => panic!("ldx mode {m:#x}"),
            },
            0x02 => mem[i.k as usize] = a,
            0x03 => mem[i.k as usize] = x,
            0x04 => {
                a = match i.code & 0xf0 {
                    0x00 => a.wrapping_add(src),
                    0x10 => a.wrapping_sub(src),
                    0x40 => a | src,
                    0x50 => a & src,
                    0x60 => a.wrapping_shl(src),
                    0x70 => a.wrapping_shr(src),
                    0xa0 => a ^ src,
                    op => panic!("alu op {op:#x}"),
                }
            }
            0x05 => {
                let taken = match i.code & 0xf0 {
                    0x00 => {
                        pc += i.k as usize;
                        continue;
                    }
                    0x10 => a == src,
                    0x20 => a > src,
                    0x30 => a >= src,
                    0x40 => a & src != 0,
                    op => panic!("jmp op {op:#x}"),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            0x06 => return if i.code & 0x18 == 0x10 { a } else { i.k },
            0x07 => match i.code & 0xf8 {
                0x00 => x = a,
                0x80 => a = x,
                op => panic!("misc op {op:#x}"),
            },
            _ => unreachable!(),
        }
    }
}

fn assert_same_decisions(profile: &LinuxSeccomp) {
    let chain = program(profile, Layout::Chain);
    let tree = program(profile, Layout::Tree);
    let mut values = vec![0u64, 1, u64::MAX, 0xffff_ffff];
    let mut filtered = Vec::new();
    for rule in profile.syscalls().iter().flatten() {
        let args = rule.args().as_deref().unwrap_or(&[]);
        if args.is_empty() {
            continue;
        }
        for arg in args {
            values.extend([arg.value(), arg.value().wrapping_add(1)]);
            values.extend(arg.value_two());
        }
        for name in rule.names() {
            if let Ok(sys) = ScmpSyscall::from_name(name) {
                filtered.push(i32::from(sys));
            }
        }
    }
    values.sort_unstable();
    values.dedup();
    let mut compared = 0usize;
    let mut decisions = std::collections::BTreeSet::new();
    for arch in [AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, AUDIT_ARCH_AARCH64] {
        let mut check = |nr: i32, args: [u64; 6]| {
            let d = data(nr, arch, args);
            let (c, t) = (run(&chain, &d), run(&tree, &d));
            assert_eq!(
                c, t,
                "nr {nr} arch {arch:#x} args {args:x?}: chain {c:#x}, tree {t:#x}"
            );
            compared += 1;
            decisions.insert(t);
        };
        for nr in (-1..=600).chain((0..=600).map(|n| n | X32_BIT)) {
            check(nr, [0; 6]);
            check(nr, [u64::MAX; 6]);
        }
        for &nr in &filtered {
            for &v in &values {
                for i in 0..6 {
                    let mut args = [0u64; 6];
                    args[i] = v;
                    check(nr, args);
                }
                check(nr, [v; 6]);
            }
        }
    }
    assert!(compared > 7000, "only {compared} inputs compared");
    // Positive control: the inputs reach more than one of the profile's decisions
    // (allowed, refused, by argument), so equal answers are not one constant.
    assert!(decisions.len() >= 3, "decisions seen: {decisions:x?}");
}

#[test]
fn the_tree_layout_decides_the_default_profiles_as_the_chain_does() {
    for caps in [
        &[][..],
        &[
            "CAP_SYS_ADMIN",
            "CAP_SYS_PTRACE",
            "CAP_SYS_BOOT",
            "CAP_SYSLOG",
        ][..],
    ] {
        assert_same_decisions(&crate::seccomp_default::default_profile(caps));
    }
}

#[test]
fn the_tree_layout_decides_argument_rules_of_every_operator_as_the_chain_does() {
    let profile: LinuxSeccomp = serde_json::from_value(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_NE"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]},
            {"names": ["ioctl"], "action": "SCMP_ACT_KILL",
             "args": [{"index": 1, "value": 21522, "op": "SCMP_CMP_GT"}]},
            {"names": ["clone"], "action": "SCMP_ACT_TRAP",
             "args": [{"index": 0, "value": 268435456, "valueTwo": 268435456,
                       "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["mmap"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
             "args": [{"index": 2, "value": 4, "op": "SCMP_CMP_GE"},
                      {"index": 3, "value": 32, "op": "SCMP_CMP_LT"}]},
            {"names": ["kill"], "action": "SCMP_ACT_LOG",
             "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_LE"}]},
            {"names": ["mkdir", "rmdir", "unshare"], "action": "SCMP_ACT_ERRNO"}
        ]
    }))
    .unwrap();
    assert_same_decisions(&profile);
}
