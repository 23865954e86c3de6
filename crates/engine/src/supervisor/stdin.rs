//! The stdin of a container made with `-i` and started without a caller's pipe (`run
//! -di`, or a Docker API client that starts it and attaches later): a pipe whose read
//! end is the supervisor's fd 0 (so the container, and every restart of it, reads it)
//! and whose write end the supervisor keeps open for the container's life. `attach`
//! writes into a copy of that end (`crate::attach`), and detaching never closes the
//! container's stdin (Docker's `-di`).

use std::os::fd::{AsRawFd, OwnedFd};

use crate::config::ContainerConfig;
use crate::error::{Context, Result};

/// The write end, when this container gets a stdin of the supervisor's own: made with
/// `-i`, no terminal, and nothing but /dev/null (no caller's pipe) as fd 0.
pub(super) fn own_stdin(cfg: &ContainerConfig) -> Result<Option<OwnedFd>> {
    if !cfg.interactive || cfg.tty {
        return Ok(None);
    }
    // A caller's pipe (an attached `run -i`) is fd 0 already: that one is the stdin.
    let given = nix::sys::stat::fstat(std::io::stdin())
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO)
        .unwrap_or(false);
    if given {
        return Ok(None);
    }
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "the stdin pipe")?;
    // SAFETY: dup2 onto this process's own stdin; the read end is then fd 0 (not
    // close-on-exec), inherited by the container at create.
    if unsafe { libc::dup2(r.as_raw_fd(), 0) } < 0 {
        return Err(std::io::Error::last_os_error()).ctx(|| "making the stdin pipe fd 0");
    }
    Ok(Some(w))
}
