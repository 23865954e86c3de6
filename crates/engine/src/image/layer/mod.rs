//! Layer tarballs, both ways.
//!
//! [`unpack`] walks the tar entries itself (never `tar::Entry::unpack_in`): every path is
//! split into components, absolute paths and `..` are refused, and every entry is created
//! relative to a file descriptor of its parent directory, reached from the layer root one
//! component at a time with `O_NOFOLLOW | O_DIRECTORY` — so a symlink in the layer (or
//! anything but a real directory) can never be walked through, and nothing is written
//! outside the layer. OCI whiteouts become overlayfs whiteouts: `.wh.NAME` a 0:0 character
//! device `NAME`, `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory.
//!
//! [`pack`] writes the *canonical* tar of a directory tree: entries in sorted depth-first
//! order, GNU headers with numeric ids only (no user or group names), second-resolution
//! mtimes, hard links by (dev, inode), overlay whiteouts turned back into `.wh.` entries,
//! and only the xattrs a layer carries (`user.*`, `security.capability`). The same tree
//! always gives the same bytes, so a directory and any tar (plain, gzip, zstd) of it give
//! the same digest; and `unpack` applies exactly what `pack` records, so packing an
//! unpacked layer reproduces it.

mod archive;
mod changes;
mod pack;
mod sys;
mod unpack;
mod upper;

pub(crate) use archive::{decoder, looks_like_tar, open_archive, Compression};
pub(crate) use changes::changes;
pub use changes::{Change, ChangeKind};
pub(crate) use pack::{pack, ExactReader};
pub(crate) use unpack::{unpack, unpack_limited};
pub(crate) use upper::{pack_upper, IdMap, IdRange, UpperOptions};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &std::ffi::CStr = c"trusted.overlay.opaque";

/// The xattrs a layer carries; everything else (security.selinux, ACLs, trusted.*) is
/// host-specific and dropped.
fn layer_xattr(name: &[u8]) -> bool {
    name.starts_with(b"user.") || name == b"security.capability"
}
