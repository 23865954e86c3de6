//! Finding `codex-shim` next to the supervisor binary and handing it the running
//! container.
//!
//! The shim is executed through a read-only view of its directory (a detached,
//! lower-only overlayfs, as codex-runtime's `selfclone` makes for the binary itself),
//! so no supervisor ever runs a file that could be written through its
//! `/proc/PID/exe`; the shim execs `codex-ctr` back through the same view.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use codex_runtime::sys::{self, FsContext};
use codex_shim::handoff::{ShimArgs, SHIM_NAME};

/// Set to `off` (or `0`), supervisors stay in one process and never exec the shim.
pub const SHIM_ENV: &str = "CODEX_CTR_SHIM";

pub(super) struct Shim {
    /// The supervisor binary as started (argv[0], made absolute).
    exe: PathBuf,
    /// A read-only view of its directory.
    view: OwnedFd,
    /// The shim, opened through the view.
    file: OwnedFd,
}

impl Shim {
    /// The shim next to this binary, opened through a read-only view of their
    /// directory; `None` when it is switched off ([`SHIM_ENV`]), not installed, or
    /// no view can be made (then the supervisor stays in one process).
    pub(super) fn locate() -> Option<Shim> {
        if matches!(std::env::var(SHIM_ENV).as_deref(), Ok("off" | "0")) {
            return None;
        }
        // The engine starts the supervisor by path, and the re-execution from the
        // binary's read-only view keeps the arguments: argv[0] is that path.
        let exe = PathBuf::from(std::env::args_os().next()?);
        let exe = if exe.is_absolute() {
            exe
        } else if exe.components().count() > 1 {
            std::fs::canonicalize(&exe).ok()?
        } else {
            return None;
        };
        let dir = exe.parent()?;
        exe.file_name()?;
        if !dir.join(SHIM_NAME).is_file() {
            return None;
        }
        let view = read_only_view(dir).ok()?;
        let file = sys::openat2(
            view.as_fd(),
            Path::new(SHIM_NAME),
            libc::O_RDONLY | libc::O_CLOEXEC,
            0,
            libc::RESOLVE_BENEATH,
        )
        .ok()?;
        Some(Shim { exe, view, file })
    }

    pub(super) fn supervisor_exe(&self) -> &Path {
        &self.exe
    }

    /// The view's fd number, which the shim inherits.
    pub(super) fn view_fd(&self) -> RawFd {
        self.view.as_raw_fd()
    }

    /// Execs the shim with `args`, handing it the view and `pass`; every other fd
    /// is closed by the exec. Returns only if the exec failed, with the handed fds
    /// close-on-exec again.
    pub(super) fn exec(&self, args: &ShimArgs, pass: &[BorrowedFd]) -> io::Error {
        // Nothing crosses the exec but what is handed over (a kernel older than 5.11
        // cannot do this in one call; fds are close-on-exec by default anyway).
        let _ = codex_shim::sys::cloexec_from(3);
        let handed: Vec<BorrowedFd> = std::iter::once(self.view.as_fd())
            .chain(pass.iter().copied())
            .collect();
        let restore = |fds: &[BorrowedFd]| {
            for fd in fds {
                let _ = codex_shim::sys::set_cloexec(*fd, true);
            }
        };
        for (i, fd) in handed.iter().enumerate() {
            if let Err(e) = codex_shim::sys::set_cloexec(*fd, false) {
                restore(&handed[..i]);
                return e;
            }
        }
        let argv0: OsString = self.exe.with_file_name(SHIM_NAME).into();
        let argv: Vec<OsString> = std::iter::once(argv0).chain(args.to_args()).collect();
        let e = codex_shim::sys::fexecve(self.file.as_fd(), &argv);
        restore(&handed);
        e
    }
}

/// A detached, read-only overlayfs whose only layers are `dir` and an empty tmpfs:
/// the same files, on a superblock that cannot be written.
fn read_only_view(dir: &Path) -> io::Result<OwnedFd> {
    let empty = FsContext::open("tmpfs")?;
    empty.set("size", Some("4k"))?;
    let empty = empty.mount(0)?;
    let lower = format!("{}:/proc/self/fd/{}", dir.display(), empty.as_raw_fd());
    // Overlayfs options are split at commas and layers at colons.
    if dir.to_str().is_none_or(|d| d.contains([',', ':', '\\'])) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} cannot be an overlayfs layer", dir.display()),
        ));
    }
    let ovl = FsContext::open("overlay")?;
    ovl.set("lowerdir", Some(&lower))?;
    ovl.mount(sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOSUID)
}
