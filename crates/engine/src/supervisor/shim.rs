//! Finding `codex-shim` next to the supervisor binary and executing it.
//!
//! The shim is executed through a read-only view of its directory (a detached,
//! lower-only overlayfs, as codex-runtime's `selfclone` makes for the binary itself),
//! so the long-lived supervisor never runs a file that could be written through its
//! `/proc/PID/exe`; the shim runs `codex-ctr` through the same view at the end. (A
//! supervisor forked by `run` runs from the writable binary until it execs the shim:
//! see `forked_start`.)

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use codex_runtime::sys::{self, FsContext};
use codex_shim::handoff::{ShimArgs, SHIM_NAME};

/// The supervisor's binary, in a supervisor forked from a `run` (see `forked_start`).
static FORKED_FROM: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Names the binary a forked supervisor runs (its argv[0] is the command's).
pub(super) fn set_supervisor_exe(exe: &Path) {
    let _ = FORKED_FROM.set(exe.to_path_buf());
}

/// Set to `off` (or `0`), supervisors stay in one process and never exec the shim.
pub const SHIM_ENV: &str = "CODEX_CTR_SHIM";

pub(super) struct Shim {
    /// The supervisor binary as started (argv[0], made absolute).
    exe: PathBuf,
}

impl Shim {
    /// The shim next to this binary; `None` when it is switched off ([`SHIM_ENV`])
    /// or not installed (then the supervisor stays in one process).
    pub(super) fn find() -> Option<Shim> {
        if matches!(std::env::var(SHIM_ENV).as_deref(), Ok("off" | "0")) {
            return None;
        }
        // The engine starts the supervisor by path, and the re-execution from the
        // binary's read-only view keeps the arguments: argv[0] is that path. A forked
        // supervisor has the command's arguments, and was told the path.
        let exe = match FORKED_FROM.get() {
            Some(exe) => exe.clone(),
            None => PathBuf::from(std::env::args_os().next()?),
        };
        let exe = if exe.is_absolute() {
            exe
        } else if exe.components().count() > 1 {
            std::fs::canonicalize(&exe).ok()?
        } else {
            return None;
        };
        exe.file_name()?;
        exe.with_file_name(SHIM_NAME)
            .is_file()
            .then_some(Shim { exe })
    }

    pub(super) fn supervisor_exe(&self) -> &Path {
        &self.exe
    }

    /// Execs the shim with `args`, through a new read-only view of its directory
    /// (handed over as `args.view`), handing it `pass` too; every other fd is closed
    /// by the exec. Returns only if that failed, with the handed fds close-on-exec
    /// again.
    pub(super) fn exec(&self, args: &mut ShimArgs, pass: &[BorrowedFd]) -> io::Error {
        let dir = self.exe.parent().unwrap_or(Path::new("/"));
        let view = match read_only_view(dir) {
            Ok(v) => v,
            Err(e) => return e,
        };
        let file = match sys::openat2(
            view.as_fd(),
            Path::new(SHIM_NAME),
            libc::O_RDONLY | libc::O_CLOEXEC,
            0,
            libc::RESOLVE_BENEATH,
        ) {
            Ok(f) => f,
            Err(e) => return e,
        };
        args.view = Some(view.as_raw_fd());
        // Nothing crosses the exec but what is handed over (a kernel older than 5.11
        // cannot do this in one call; fds are close-on-exec by default anyway).
        let _ = codex_shim::sys::cloexec_from(3);
        let handed: Vec<BorrowedFd> = std::iter::once(view.as_fd())
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
        let e = codex_shim::sys::fexecve(file.as_fd(), &argv);
        restore(&handed);
        args.view = None;
        e
    }
}

/// A detached, read-only overlayfs whose only layers are `dir` and an empty tmpfs:
/// the same files, on a superblock that cannot be written.
fn read_only_view(dir: &Path) -> io::Result<OwnedFd> {
    // Overlayfs options are split at commas, layers at colons.
    let Some(d) = dir.to_str().filter(|d| !d.contains([',', ':', '\\'])) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} cannot be an overlayfs layer", dir.display()),
        ));
    };
    let empty = FsContext::open("tmpfs")?;
    empty.set("size", Some("4k"))?;
    let empty = empty.mount(0)?;
    let lower = format!("{d}:/proc/self/fd/{}", empty.as_raw_fd());
    let ovl = FsContext::open("overlay")?;
    ovl.set("lowerdir", Some(&lower))?;
    ovl.mount(sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOSUID)
}
