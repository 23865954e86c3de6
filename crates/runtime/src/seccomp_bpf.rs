//! A compiled seccomp program as raw classic BPF, and its loading with seccomp(2).
//!
//! libseccomp generates the program (see [`crate::seccomp::Filter`]); this module holds
//! the result so that the runtime can keep it (in memory across the fork into the
//! container, on disk in [`crate::seccomp_cache`]) and load it without libseccomp. It
//! passes the kernel the same flags libseccomp's own load passes for the same profile,
//! and never sets no_new_privs (the spec decides that, as with libseccomp's CTL_NNP off).

use oci_spec::runtime::LinuxSeccomp;

use crate::error::{Error, Result};

/// One instruction is 8 bytes (`struct sock_filter`); the kernel refuses programs longer
/// than BPF_MAXINSNS.
pub const INSN_BYTES: usize = 8;
pub const MAX_INSNS: usize = 4096;

/// A program ready for `seccomp(SECCOMP_SET_MODE_FILTER, flags, ...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfProgram {
    insns: Vec<libc::sock_filter>,
    flags: u32,
}

/// The seccomp(2) flags libseccomp sets at load for this profile's `flags`, or None when
/// the profile is not one the raw path loads exactly as libseccomp would:
/// - SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV only means something with a notify listener,
///   and which libseccomp versions pass it without one differs: such profiles stay on
///   libseccomp's own load;
/// - an unknown flag: libseccomp's compile refuses it with the error `create` reports.
///
/// TSYNC, LOG and SPEC_ALLOW are passed as libseccomp passes them (its CTL_TSYNC,
/// CTL_LOG and CTL_SSB attributes, which [`crate::seccomp::Filter::compile`] sets from the
/// same names).
pub fn load_flags(s: &LinuxSeccomp) -> Option<u32> {
    let mut flags = 0;
    for f in s.flags().iter().flatten() {
        flags |= match crate::seccomp::name_of(f).as_str() {
            "SECCOMP_FILTER_FLAG_TSYNC" => libc::SECCOMP_FILTER_FLAG_TSYNC as u32,
            "SECCOMP_FILTER_FLAG_LOG" => libc::SECCOMP_FILTER_FLAG_LOG as u32,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32,
            _ => return None,
        };
    }
    Some(flags)
}

impl BpfProgram {
    /// The program libseccomp exported (native byte order `struct sock_filter`s), to be
    /// loaded with `flags`. Refuses what the kernel would: empty, too long, torn.
    pub fn from_bytes(bytes: &[u8], flags: u32) -> Result<BpfProgram> {
        let bad = |why: String| Error::Container(format!("seccomp program: {why}"));
        if bytes.is_empty() || !bytes.len().is_multiple_of(INSN_BYTES) {
            return Err(bad(format!(
                "{} bytes is not a whole number of instructions",
                bytes.len()
            )));
        }
        let n = bytes.len() / INSN_BYTES;
        if n > MAX_INSNS {
            return Err(bad(format!(
                "{n} instructions, the kernel takes at most {MAX_INSNS}"
            )));
        }
        let insns = bytes
            .chunks_exact(INSN_BYTES)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Ok(BpfProgram { insns, flags })
    }

    /// The instructions as bytes, the layout [`BpfProgram::from_bytes`] reads.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.insns.len() * INSN_BYTES);
        for i in &self.insns {
            out.extend_from_slice(&i.code.to_ne_bytes());
            out.push(i.jt);
            out.push(i.jf);
            out.extend_from_slice(&i.k.to_ne_bytes());
        }
        out
    }

    pub fn len(&self) -> usize {
        self.insns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Loads the program into the calling thread (all threads with TSYNC). Allocates
    /// nothing: it runs in the container's init just before execve.
    pub fn load(&self) -> Result<()> {
        let prog = libc::sock_fprog {
            // from_bytes bounds the length to MAX_INSNS, which fits.
            len: self.insns.len() as u16,
            filter: self.insns.as_ptr().cast_mut(),
        };
        // SAFETY: seccomp(2) reads `prog` and the instructions it points to, both alive
        // for the call; the kernel copies the program.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            )
        };
        match rc {
            0 => Ok(()),
            // With TSYNC a positive return is the thread that could not be synchronised
            // (libseccomp reports it as ESRCH).
            tid if tid > 0 => Err(Error::Container(format!(
                "loading the seccomp filter: thread {tid} could not be synchronised (TSYNC)"
            ))),
            _ => Err(Error::Container(format!(
                "loading the seccomp filter: {}",
                std::io::Error::last_os_error()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(flags: &[&str]) -> LinuxSeccomp {
        serde_json::from_value(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": flags,
        }))
        .unwrap()
    }

    #[test]
    fn flags_map_to_the_kernels_bits_and_waitkill_stays_with_libseccomp() {
        assert_eq!(load_flags(&profile(&[])), Some(0));
        assert_eq!(
            load_flags(&profile(&[
                "SECCOMP_FILTER_FLAG_LOG",
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW"
            ])),
            Some((libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW) as u32)
        );
        assert_eq!(
            load_flags(&profile(&["SECCOMP_FILTER_FLAG_TSYNC"])),
            Some(libc::SECCOMP_FILTER_FLAG_TSYNC as u32)
        );
        assert_eq!(
            load_flags(&profile(&["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"])),
            None
        );
    }

    #[test]
    fn bytes_round_trip_and_torn_or_oversized_programs_are_refused() {
        let allow: Vec<u8> = [
            0x06u16.to_ne_bytes().as_slice(),
            &[0, 0],
            &0x7fff_0000u32.to_ne_bytes(),
        ]
        .concat();
        let p = BpfProgram::from_bytes(&allow, 2).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p.flags(), 2);
        assert_eq!(p.to_bytes(), allow);
        assert!(BpfProgram::from_bytes(&[], 0).is_err());
        assert!(BpfProgram::from_bytes(&allow[..7], 0).is_err());
        assert!(BpfProgram::from_bytes(&allow.repeat(MAX_INSNS), 0).is_ok());
        assert!(BpfProgram::from_bytes(&allow.repeat(MAX_INSNS + 1), 0).is_err());
    }
}
