//! `diff` (Docker's `/containers/{id}/changes`): what a container changed, from its
//! overlay upper dir read against the image's layers.
//!
//! The upper dir is walked as `commit` walks it (every entry reached from its parent's
//! fd with `O_NOFOLLOW`, looked at with `fstat`; nothing opened but directories). An
//! overlay whiteout (a 0:0 character device) is a deletion; any other entry is an
//! addition when the image has nothing at that path, else a modification. A directory
//! the image has too is reported only when something under it is, or its mode or owner
//! changed: overlayfs copies up every parent of a changed file, and the engine's mount
//! points (`etc/hosts`, left out as `commit` leaves them out) would otherwise show their
//! directories as changed in every container. An opaque directory (the container removed
//! a directory of the image and made it again) is modified, and each name of the image's
//! directory that it no longer has is deleted.
//!
//! The image's view of a path is read from the layers as overlayfs reads them (top layer
//! first; a whiteout or a non-directory on the way hides everything below; an opaque
//! directory hides the lower layers' content under it), also by fds without following a
//! symlink: a symlink in the image is an entry, never a way out of the layer.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::upper::{refuse_partial, xattr};
use super::{UpperOptions, OVERLAY_OPAQUE_XATTR};
use crate::copy::node::{names, Kind, Node};
use crate::error::{Error, Result};

/// Deeper trees are refused (one open fd per level), as `commit` does.
const MAX_DEPTH: usize = 256;

/// Docker's change kinds, with Docker's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Modified = 0,
    Added = 1,
    Deleted = 2,
}

impl ChangeKind {
    /// `docker diff`'s letter.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Modified => 'C',
            ChangeKind::Added => 'A',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One changed path (absolute, as seen in the container).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
}

fn is_whiteout(n: &Node) -> bool {
    n.kind() == Kind::CharDevice && n.st.st_rdev == 0
}

fn opaque(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(xattr(fd, OVERLAY_OPAQUE_XATTR)?.is_some_and(|v| v == b"y"))
}

/// What one layer says about a path.
enum Probe {
    /// It has an entry there.
    Found(Node),
    /// A whiteout at the path or above it, or a non-directory above it: lower layers are
    /// hidden there.
    Hidden,
    /// Nothing; `opaque`: a directory above it in this layer hides the lower layers.
    Absent { opaque: bool },
}

/// The image's layers, top first, as overlayfs stacks them.
struct Lowers {
    roots: Vec<OwnedFd>,
}

impl Lowers {
    fn probe(&self, layer: usize, comps: &[OsString]) -> io::Result<Probe> {
        let mut dir = self.roots[layer].try_clone()?;
        let mut seen_opaque = false;
        for (k, c) in comps.iter().enumerate() {
            let Some(node) = Node::at(dir.as_fd(), c)? else {
                return Ok(Probe::Absent {
                    opaque: seen_opaque,
                });
            };
            if is_whiteout(&node) {
                return Ok(Probe::Hidden);
            }
            if k + 1 == comps.len() {
                return Ok(Probe::Found(node));
            }
            if node.kind() != Kind::Dir {
                return Ok(Probe::Hidden);
            }
            dir = node.into_dir()?;
            seen_opaque |= opaque(dir.as_fd())?;
        }
        // The root itself: every layer has it.
        Ok(Probe::Found(Node::from_fd(dir)?))
    }

    /// The image's entry at `comps`, if it has one.
    fn lookup(&self, comps: &[OsString]) -> io::Result<Option<Node>> {
        for layer in 0..self.roots.len() {
            match self.probe(layer, comps)? {
                Probe::Found(n) => return Ok(Some(n)),
                Probe::Hidden | Probe::Absent { opaque: true } => return Ok(None),
                Probe::Absent { opaque: false } => {}
            }
        }
        Ok(None)
    }

    /// The names the image shows in its directory at `comps`.
    fn children(&self, comps: &[OsString]) -> io::Result<BTreeSet<OsString>> {
        let mut shown = BTreeSet::new();
        let mut hidden = BTreeSet::new();
        for layer in 0..self.roots.len() {
            match self.probe(layer, comps)? {
                Probe::Found(n) if n.kind() == Kind::Dir => {
                    let fd = n.into_dir()?;
                    for name in names(fd.as_fd())? {
                        if shown.contains(&name) || hidden.contains(&name) {
                            continue;
                        }
                        match Node::at(fd.as_fd(), &name)? {
                            Some(e) if is_whiteout(&e) => hidden.insert(name),
                            Some(_) => shown.insert(name),
                            None => false,
                        };
                    }
                    if opaque(fd.as_fd())? {
                        break;
                    }
                }
                Probe::Found(_) | Probe::Hidden | Probe::Absent { opaque: true } => break,
                Probe::Absent { opaque: false } => {}
            }
        }
        Ok(shown)
    }
}

struct Walker<'a> {
    lowers: Lowers,
    opts: &'a UpperOptions,
    upper: &'a Path,
}

fn shown(comps: &[OsString]) -> String {
    let mut s = String::new();
    for c in comps {
        s.push('/');
        s.push_str(&c.to_string_lossy());
    }
    s
}

impl Walker<'_> {
    fn rel(comps: &[OsString]) -> Vec<u8> {
        comps
            .iter()
            .map(|c| c.as_bytes())
            .collect::<Vec<_>>()
            .join(&b'/')
    }

    fn io(&self, comps: &[OsString]) -> impl Fn(io::Error) -> Error + '_ {
        let path = self.upper.join(OsStr::from_bytes(&Self::rel(comps)));
        move |e| Error::Io {
            context: format!("reading {}", path.display()),
            cause: e,
        }
    }

    /// Whether mode or owner of a directory differ from the image's (owners mapped back
    /// from the host's ids under a user namespace).
    fn meta_differs(&self, upper: &libc::stat, image: &libc::stat) -> bool {
        let uid = self.opts.uids.to_container(upper.st_uid);
        let gid = self.opts.gids.to_container(upper.st_gid);
        upper.st_mode != image.st_mode || uid != Some(image.st_uid) || gid != Some(image.st_gid)
    }

    /// Appends the changes under the upper directory `dir` (at `comps`) to `out`.
    fn walk(&self, dir: OwnedFd, comps: &mut Vec<OsString>, out: &mut Vec<Change>) -> Result<()> {
        if comps.len() >= MAX_DEPTH {
            return Err(Error::invalid(
                "container",
                format!(
                    "{} is more than {MAX_DEPTH} directories deep",
                    self.upper
                        .join(OsStr::from_bytes(&Self::rel(comps)))
                        .display()
                ),
            ));
        }
        let entries = names(dir.as_fd()).map_err(self.io(comps))?;
        for name in &entries {
            comps.push(name.clone());
            let res = self.entry(dir.as_fd(), comps, out);
            comps.pop();
            res?;
        }
        Ok(())
    }

    fn entry(
        &self,
        dir: BorrowedFd<'_>,
        comps: &mut Vec<OsString>,
        out: &mut Vec<Change>,
    ) -> Result<()> {
        if self.opts.exclude.contains(&Self::rel(comps)) {
            return Ok(());
        }
        let Some(name) = comps.last().cloned() else {
            return Ok(());
        };
        // Gone since the listing: a running container removed it.
        let Some(node) = Node::at(dir, &name).map_err(self.io(comps))? else {
            return Ok(());
        };
        let image = self.lowers.lookup(comps).map_err(self.io(comps))?;
        let path = shown(comps);
        if is_whiteout(&node) {
            if image.is_some() {
                out.push(Change {
                    path,
                    kind: ChangeKind::Deleted,
                });
            }
            return Ok(());
        }
        if node.kind() != Kind::Dir {
            let kind = if image.is_some() {
                ChangeKind::Modified
            } else {
                ChangeKind::Added
            };
            out.push(Change { path, kind });
            return Ok(());
        }
        let st = node.st;
        let fd = node.into_dir().map_err(self.io(comps))?;
        refuse_partial(
            fd.as_fd(),
            &self.upper.join(OsStr::from_bytes(&Self::rel(comps))),
        )?;
        let mut under = Vec::new();
        let is_opaque = opaque(fd.as_fd()).map_err(self.io(comps))?;
        if is_opaque && image.as_ref().is_some_and(|i| i.kind() == Kind::Dir) {
            let mine: BTreeSet<OsString> = names(fd.as_fd())
                .map_err(self.io(comps))?
                .into_iter()
                .collect();
            for gone in self
                .lowers
                .children(comps)
                .map_err(self.io(comps))?
                .difference(&mine)
            {
                comps.push(gone.clone());
                under.push(Change {
                    path: shown(comps),
                    kind: ChangeKind::Deleted,
                });
                comps.pop();
            }
        }
        self.walk(fd, comps, &mut under)?;
        match &image {
            None => out.push(Change {
                path,
                kind: ChangeKind::Added,
            }),
            // Replaced (opaque), or something under it changed, or its mode or owner.
            Some(i)
                if i.kind() != Kind::Dir
                    || is_opaque
                    || !under.is_empty()
                    || self.meta_differs(&st, &i.st) =>
            {
                out.push(Change {
                    path,
                    kind: ChangeKind::Modified,
                })
            }
            Some(_) => {}
        }
        out.extend(under);
        Ok(())
    }
}

/// The changes of the upper dir `upper` over the image layers `lowers` (top first, as in
/// overlayfs' `lowerdir`), sorted by path.
pub(crate) fn changes(
    upper: &Path,
    lowers: &[PathBuf],
    opts: &UpperOptions,
) -> Result<Vec<Change>> {
    let mut roots = Vec::with_capacity(lowers.len());
    for l in lowers {
        roots.push(crate::copy::open_dir_nofollow(l)?);
    }
    let w = Walker {
        lowers: Lowers { roots },
        opts,
        upper,
    };
    let root = crate::copy::open_dir_nofollow(upper)?;
    let mut out = Vec::new();
    w.walk(root, &mut Vec::new(), &mut out)?;
    out.sort();
    Ok(out)
}

#[cfg(test)]
#[path = "changes_tests.rs"]
mod tests;
