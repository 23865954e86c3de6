//! Where the registry's root puts its stores on the filesystem: the root is marked
//! `chattr +T` (ext2/3/4's `FS_TOPDIR_FL`) so that each directory made in it is placed as
//! a tree of its own (codex_sys::placement). Unprivileged. Where the temp directory's
//! filesystem is not ext2/3/4 (a tmpfs /tmp), what is checked is that the mark, refused
//! there, changes nothing else.

use std::path::Path;

use codex_engine::registry::{Registry, CONTAINERS_DIR, NAMES_DIR};

mod common;
use common::{mode, temp_root};

/// The `T` attribute (`FS_TOPDIR_FL`) of the directory at `path`, or `None` where its
/// filesystem has no such flags (ext2/3/4 have them).
fn topdir_flag(path: &Path) -> Option<bool> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(path).expect("open dir");
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int to the pointer, which points at ours.
    let r = unsafe { libc::ioctl(dir.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
    (r == 0).then_some(flags & 0x0002_0000 != 0)
}

/// Whether `path` is on ext2/3/4 (statfs magic 0xEF53), the filesystems with the flag.
fn on_ext(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    // SAFETY: statfs fills the zeroed struct we own from a NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut st) }, 0, "statfs");
    st.f_type as i64 == 0xEF53
}

#[test]
fn open_marks_the_root_so_that_each_store_is_placed_apart() {
    let tmp = temp_root();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).expect("mkdir");
    if !on_ext(&root) {
        // The filesystem refuses the flag: open goes on as ever, nothing is marked.
        Registry::open(&root).expect("open where the mark is refused");
        assert_ne!(topdir_flag(&root), Some(true));
        assert_eq!(mode(&root), 0o710);
        return;
    }
    assert_eq!(
        topdir_flag(&root),
        Some(false),
        "a new directory is unmarked"
    );
    // An existing root without the mark (an earlier version's) gets it on open.
    Registry::open(&root).expect("open");
    assert_eq!(topdir_flag(&root), Some(true), "the root is marked");
    // Its stores are not: each container's directory stays beside the others (spreading
    // them costs a cold read of a block group's bitmaps per container).
    assert_eq!(topdir_flag(&root.join(CONTAINERS_DIR)), Some(false));
    assert_eq!(topdir_flag(&root.join(NAMES_DIR)), Some(false));
    // A fresh root is marked before its stores are made, and a reopen keeps the mark.
    let fresh = tmp.path().join("fresh/root");
    Registry::open(&fresh).expect("open fresh");
    Registry::open(&fresh).expect("reopen");
    assert_eq!(topdir_flag(&fresh), Some(true));
    assert_eq!(mode(&fresh), 0o710, "the mark leaves the mode alone");
}
