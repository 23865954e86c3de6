//! nftables through the `nft` binary (Debian's `nftables` package): the engine's pure
//! network logic decides the rules (NAT, isolation, published ports) and writes them as
//! one nft script; this applies it as one transaction (`nft -f -` commits a whole file
//! or nothing), and finds and removes codex's tables. Speaking nf_tables' netlink
//! directly would save a process per change but is a protocol of its own; a network
//! changes rules only on create, connect and rm, off the hot path.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::netns::Netns;

/// Debian installs `nft` in /usr/sbin, which a supervisor's PATH may lack.
const NFT: &str = "nft";
const NFT_PATH: &str = "/usr/sbin/nft";

fn nft(ns: Option<&OwnedFd>, args: &[&str], stdin: Option<&str>, what: &str) -> Result<String> {
    let bin = if std::path::Path::new(NFT_PATH).exists() {
        NFT_PATH
    } else {
        NFT
    };
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(fd) = ns {
        let raw = fd.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and makes one
        // async-signal-safe syscall on an fd that stays open across the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(raw, libc::CLONE_NEWNET) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            " (install the nftables package)"
        } else {
            ""
        };
        Error::kernel(format!("{what}: running {NFT}{hint}"), e)
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| Error::kernel(format!("{what}: writing the script to {NFT}"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::kernel(format!("{what}: waiting for {NFT}"), e))?;
    if !out.status.success() {
        return Err(Error::Nft {
            what: what.to_string(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn open(ns: Option<Netns>) -> Result<Option<OwnedFd>> {
    ns.map(|n| n.open()).transpose()
}

/// Applies `script` (nft syntax) as one transaction: all of it, or nothing and an error
/// carrying nft's message (which names the line).
pub fn apply(ns: Option<Netns>, script: &str) -> Result<()> {
    let fd = open(ns)?;
    nft(
        fd.as_ref(),
        &["-f", "-"],
        Some(script),
        "applying nft rules",
    )
    .map(drop)
}

/// Every table as (family, name), e.g. ("inet", "codex").
pub fn tables(ns: Option<Netns>) -> Result<Vec<(String, String)>> {
    let fd = open(ns)?;
    let out = nft(fd.as_ref(), &["list", "tables"], None, "listing nft tables")?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next(), w.next()) {
                (Some("table"), Some(f), Some(n)) => Some((f.to_string(), n.to_string())),
                _ => None,
            }
        })
        .collect())
}

/// Deletes table `name` of `family` with everything in it; `false` when it was not there.
pub fn delete_table(ns: Option<Netns>, family: &str, name: &str) -> Result<bool> {
    let ok_word = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !ok_word(family) || !ok_word(name) {
        return Err(Error::invalid(
            format!("nft table {family} {name}"),
            "family and name are letters, digits, '-' and '_'",
        ));
    }
    if !tables(ns)?.iter().any(|(f, n)| f == family && n == name) {
        return Ok(false);
    }
    let fd = open(ns)?;
    nft(
        fd.as_ref(),
        &["delete", "table", family, name],
        None,
        &format!("deleting nft table {family} {name}"),
    )?;
    Ok(true)
}

// include/uapi/linux/netfilter/nfnetlink.h and nf_tables.h
const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFTA_TABLE_NAME: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;

/// The nfnetlink GETTABLE request for table `name` of `family` (an NFPROTO_* number).
fn gettable_request(family: u8, name: &str) -> Vec<u8> {
    let mut attr = Vec::new();
    let payload = name.len() + 1; // NUL-terminated
    attr.extend_from_slice(&((4 + payload) as u16).to_ne_bytes());
    attr.extend_from_slice(&NFTA_TABLE_NAME.to_ne_bytes());
    attr.extend_from_slice(name.as_bytes());
    attr.push(0);
    while attr.len() % 4 != 0 {
        attr.push(0);
    }
    let len = NLMSG_HDRLEN + 4 + attr.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE).to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    m.extend_from_slice(&[family, 0, 0, 0]); // nfgenmsg: family, version 0, res_id 0
    m.extend_from_slice(&attr);
    m
}

/// What the answers in `buf` say: `Some(true)` the table exists, `Some(false)` it does
/// not, `None` not answered yet; an error the kernel gave otherwise.
fn read_answer(buf: &[u8], found: &mut bool) -> std::result::Result<Option<bool>, i32> {
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let word = |at: usize| {
            buf.get(at..at + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_ne_bytes)
                .unwrap_or(0)
        };
        let len = word(off) as usize;
        let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            return Err(libc::EPROTO);
        }
        if kind == NLMSG_ERROR {
            let code = word(off + NLMSG_HDRLEN) as i32;
            return match code {
                0 => Ok(Some(*found)),
                c if c == -libc::ENOENT => Ok(Some(false)),
                c => Err(-c),
            };
        }
        if kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE {
            *found = true;
        }
        off += (len + 3) & !3;
    }
    Ok(None)
}

/// Whether table `name` of family `ip` exists in the caller's network namespace, asked
/// over nfnetlink (about a hundred microseconds, where running `nft` costs a process).
pub fn ip_table_exists(name: &str) -> Result<bool> {
    let fail = |what: &str, e: std::io::Error| Error::kernel(format!("nfnetlink: {what}"), e);
    // SAFETY: socket() with constant arguments; the fd is owned right after.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(fail("socket", std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just returned by socket() and is owned by nothing else.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: setsockopt with a valid timeval of the size given.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    let req = gettable_request(libc::NFPROTO_IPV4 as u8, name);
    // SAFETY: sending a buffer we own, of its own length, on our socket (to the kernel:
    // the socket is unconnected and unbound, the kernel's address is the default).
    let sent = unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if sent < 0 {
        return Err(fail("send", std::io::Error::last_os_error()));
    }
    let mut found = false;
    let mut buf = vec![0u8; 16384];
    loop {
        // SAFETY: receiving into a buffer we own, at most its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(fail("recv", std::io::Error::last_os_error()));
        }
        match read_answer(buf.get(..n as usize).unwrap_or_default(), &mut found) {
            Ok(Some(exists)) => return Ok(exists),
            Ok(None) => continue,
            Err(code) => return Err(fail("GETTABLE", std::io::Error::from_raw_os_error(code))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_one_aligned_message_naming_the_table() {
        let m = gettable_request(2, "codex_1");
        assert_eq!(m.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(m[..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x0a01);
        assert_eq!(m[16], 2);
        assert!(m.windows(8).any(|w| w == b"codex_1\0"));
    }

    #[test]
    fn answers_say_found_missing_or_the_error() {
        let msg = |kind: u16, code: Option<i32>| {
            let mut m = Vec::new();
            let len = 16 + 4;
            m.extend_from_slice(&(len as u32).to_ne_bytes());
            m.extend_from_slice(&kind.to_ne_bytes());
            m.extend_from_slice(&[0; 10]);
            m.extend_from_slice(&code.unwrap_or(0).to_ne_bytes());
            m
        };
        let mut found = false;
        let mut both = msg(0x0a00, None);
        both.extend(msg(NLMSG_ERROR, Some(0)));
        assert_eq!(read_answer(&both, &mut found), Ok(Some(true)));
        let mut found = false;
        assert_eq!(
            read_answer(&msg(NLMSG_ERROR, Some(-libc::ENOENT)), &mut found),
            Ok(Some(false))
        );
        assert_eq!(
            read_answer(&msg(NLMSG_ERROR, Some(-libc::EPERM)), &mut found),
            Err(libc::EPERM)
        );
        assert_eq!(read_answer(&msg(0x0a00, None), &mut found), Ok(None));
        assert!(read_answer(
            &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &mut found
        )
        .is_err());
    }
}
