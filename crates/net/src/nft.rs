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
