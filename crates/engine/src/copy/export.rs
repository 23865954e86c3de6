//! `export --rootfs`: a container's filesystem as a tar, from the same fd walk as `cp`.
//!
//! The tar crate's `append_dir_all` walks by path: it lists a directory, then stats and
//! opens each entry by its full path, following any symlink a running container swaps in
//! meanwhile, so a container could make its export read host files. Here every entry is
//! reached from its parent's fd with `O_NOFOLLOW`, its header comes from the `fstat` of
//! that fd and its data from the same inode ([`Node`]). Devices and FIFOs are archived as
//! entries (headers only; they are never opened); sockets are skipped, as tar does.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::node::{names, Kind, Node};
use super::tree::MAX_DEPTH;
use crate::error::{Context, Error, Result};
use crate::image::layer::ExactReader;

/// Writes the tree under `root` (a container's rootfs, possibly live) to `out` as a tar.
pub(crate) fn export_rootfs(root: &Path, out: &mut dyn Write) -> Result<()> {
    let fd = super::open_dir(root)?;
    let node = Node::from_fd(fd).ctx(|| format!("{}", root.display()))?;
    let mut ex = Exporter {
        tar: tar::Builder::new(out),
        links: HashMap::new(),
    };
    // A loop over a stack of open directories, not a recursion: depth costs one fd per
    // level, not stack.
    let mut stack = vec![ex.dir(node, Vec::new(), PathBuf::from("/"), 0)?];
    loop {
        let depth = stack.len();
        let Some(top) = stack.last_mut() else { break };
        let Some(name) = top.todo.next() else {
            stack.pop();
            continue;
        };
        let shown = top.shown.join(&name);
        // Gone since the listing: a live container removed it.
        let Some(child) =
            Node::at(top.fd.as_fd(), &name).ctx(|| format!("opening {}", shown.display()))?
        else {
            continue;
        };
        let rel = if top.rel.is_empty() {
            name.as_bytes().to_vec()
        } else {
            [&top.rel, b"/".as_slice(), name.as_bytes()].concat()
        };
        if let Some(level) = ex.entry(child, rel, shown, depth)? {
            stack.push(level);
        }
    }
    ex.tar.finish().ctx(|| "finishing the rootfs tar")
}

struct Exporter<W: Write> {
    tar: tar::Builder<W>,
    /// (dev, inode) of files with several links -> the tar path of the first one.
    links: HashMap<(u64, u64), Vec<u8>>,
}

/// A directory whose entries are being archived. `rel` is its path in the tar (`etc/ssl`,
/// empty for the root, which is `./`), `shown` its path in the container.
struct Level {
    fd: OwnedFd,
    todo: std::vec::IntoIter<OsString>,
    rel: Vec<u8>,
    shown: PathBuf,
}

impl<W: Write> Exporter<W> {
    /// Archives directory `node` and opens it for its entries.
    fn dir(&mut self, node: Node, rel: Vec<u8>, shown: PathBuf, depth: usize) -> Result<Level> {
        if depth >= MAX_DEPTH {
            return Err(Error::invalid(
                "rootfs",
                format!(
                    "{} is more than {MAX_DEPTH} directories deep",
                    shown.display()
                ),
            ));
        }
        let path = if rel.is_empty() {
            b"./".to_vec()
        } else {
            [rel.as_slice(), b"/"].concat()
        };
        let mut h = header(EntryType::Directory, &node.st);
        self.append(&mut h, &path, io::empty(), &shown)?;
        let fd = node
            .into_dir()
            .ctx(|| format!("opening {}", shown.display()))?;
        let todo = names(fd.as_fd()).ctx(|| format!("reading {}", shown.display()))?;
        Ok(Level {
            fd,
            todo: todo.into_iter(),
            rel,
            shown,
        })
    }

    /// Archives one entry; a directory is returned open, for its entries to follow.
    fn entry(
        &mut self,
        node: Node,
        rel: Vec<u8>,
        shown: PathBuf,
        depth: usize,
    ) -> Result<Option<Level>> {
        if node.kind() == Kind::Dir {
            return self.dir(node, rel, shown, depth).map(Some);
        }
        self.leaf(&node, &rel, &shown).map(|()| None)
    }

    fn leaf(&mut self, node: &Node, rel: &[u8], shown: &Path) -> Result<()> {
        let st = &node.st;
        match node.kind() {
            // Directories go through `entry`, which opens them for their entries.
            Kind::Dir => Ok(()),
            Kind::File => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key) {
                        let first = first.clone();
                        let mut h = header(EntryType::Link, st);
                        return self
                            .tar
                            .append_link(&mut h, as_path(rel), as_path(&first))
                            .ctx(|| format!("exporting {}", shown.display()));
                    }
                    self.links.insert(key, rel.to_vec());
                }
                let file = node
                    .open_file()
                    .ctx(|| format!("opening {}", shown.display()))?;
                let len = u64::try_from(st.st_size).unwrap_or(0);
                let mut h = header(EntryType::Regular, st);
                h.set_size(len);
                let data = ExactReader {
                    inner: file.take(len),
                    remaining: len,
                };
                self.append(&mut h, rel, data, shown)
            }
            Kind::Symlink => {
                let target = node
                    .read_link()
                    .ctx(|| format!("reading the symlink {}", shown.display()))?;
                let mut h = header(EntryType::Symlink, st);
                self.tar
                    .append_link(&mut h, as_path(rel), Path::new(&target))
                    .ctx(|| format!("exporting {}", shown.display()))
            }
            Kind::CharDevice | Kind::BlockDevice => {
                let kind = if node.kind() == Kind::CharDevice {
                    EntryType::Char
                } else {
                    EntryType::Block
                };
                let mut h = header(kind, st);
                let e = |e| Error::Io {
                    context: format!("exporting {}", shown.display()),
                    cause: e,
                };
                h.set_device_major(libc::major(st.st_rdev)).map_err(e)?;
                h.set_device_minor(libc::minor(st.st_rdev)).map_err(e)?;
                self.append(&mut h, rel, io::empty(), shown)
            }
            Kind::Fifo => {
                let mut h = header(EntryType::Fifo, st);
                self.append(&mut h, rel, io::empty(), shown)
            }
            Kind::Socket => Ok(()),
        }
    }

    fn append(&mut self, h: &mut Header, rel: &[u8], data: impl Read, shown: &Path) -> Result<()> {
        self.tar
            .append_data(h, as_path(rel), data)
            .ctx(|| format!("exporting {}", shown.display()))
    }
}

fn as_path(b: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(b))
}

fn header(kind: EntryType, st: &libc::stat) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_size(0);
    h
}
