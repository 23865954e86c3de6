//! Where COPY takes its files from: the build context (a directory on the host, read
//! with `.dockerignore`) or an earlier stage's root filesystem (`COPY --from`).
//!
//! Nothing outside the tree can be reached: a source is opened from the tree's root fd
//! with `openat2` — `RESOLVE_BENEATH` for the context (a `..` or a symlink that leads out
//! of it is refused by the kernel, `EXDEV`, and reported by name), `RESOLVE_IN_ROOT` for
//! a stage's rootfs (absolute symlinks there mean that rootfs's own paths). Below a
//! source, every entry is reached from its parent's fd with `O_NOFOLLOW` and looked at
//! through that fd (`copy::node`): symlinks inside a copied directory are copied as
//! symlinks, never followed.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::ignore::{clean, glob, has_wildcards, Ignore};
use crate::copy::node::{names, Kind, Node};
use crate::error::{Context as _, Error, Result};
use crate::image::fsutil_hex;

/// A tree COPY reads from.
pub struct SourceTree {
    root: OwnedFd,
    /// For messages: the context directory, or `stage NAME`.
    shown: String,
    ignore: Ignore,
    /// A stage's rootfs (symlinks resolve inside it) rather than the build context.
    rootfs: bool,
}

/// One source a COPY names, opened (`O_PATH`).
pub struct Selected {
    pub node: Node,
    /// Its path in the tree (`""`: the root).
    pub rel: String,
    /// The name a file source gets inside a destination directory.
    pub name: OsString,
}

/// One entry met while walking a source, for the copy and the digest.
pub struct Entry<'a> {
    /// Path below the source (`""`: the source itself).
    pub rel: &'a str,
    pub node: &'a Node,
}

fn open_root(path: &Path) -> Result<OwnedFd> {
    crate::copy::open_dir_nofollow(path)
}

impl SourceTree {
    /// The build context at `dir`, with its `.dockerignore` if it has one.
    pub fn context(dir: &Path) -> Result<SourceTree> {
        let root = open_root(dir)?;
        let ignore = match Node::at(root.as_fd(), std::ffi::OsStr::new(".dockerignore"))
            .ctx(|| format!("opening {}/.dockerignore", dir.display()))?
        {
            Some(n) if n.kind() == Kind::File => {
                let mut text = String::new();
                n.open_file()
                    .and_then(|mut f| f.read_to_string(&mut text))
                    .ctx(|| format!("reading {}/.dockerignore", dir.display()))?;
                Ignore::parse(&text)
            }
            _ => Ignore::default(),
        };
        Ok(SourceTree {
            root,
            shown: std::fs::canonicalize(dir)
                .unwrap_or_else(|_| dir.to_path_buf())
                .display()
                .to_string(),
            ignore,
            rootfs: false,
        })
    }

    /// A stage's (or image's) root filesystem mounted at `dir`.
    pub fn rootfs(dir: &Path, shown: &str) -> Result<SourceTree> {
        Ok(SourceTree {
            root: open_root(dir)?,
            shown: shown.to_string(),
            ignore: Ignore::default(),
            rootfs: true,
        })
    }

    fn where_(&self) -> String {
        if self.rootfs {
            self.shown.clone()
        } else {
            format!("the build context ({})", self.shown)
        }
    }

    /// Opens a file of the tree by name (the Dockerfile), refusing escapes.
    pub fn read_file(&self, rel: &str) -> Result<Vec<u8>> {
        let sel = self.open(rel, rel)?;
        if sel.node.kind() != Kind::File {
            return Err(Error::invalid(
                "Dockerfile",
                format!(
                    "{rel} in {} is {}",
                    self.where_(),
                    sel.node.kind().describe()
                ),
            ));
        }
        let mut data = Vec::new();
        sel.node
            .open_file()
            .and_then(|mut f| f.read_to_end(&mut data))
            .ctx(|| format!("reading {rel}"))?;
        Ok(data)
    }

    /// The sources one COPY argument names (wildcards expanded), in order.
    pub fn select(&self, src: &str) -> Result<Vec<Selected>> {
        if !self.rootfs && escapes(src) {
            return Err(Error::invalid(
                "COPY",
                format!("{src}: outside the build context (paths may not climb above it)"),
            ));
        }
        let cleaned = clean(src);
        if !has_wildcards(&cleaned) {
            if !cleaned.is_empty() && self.ignore.excluded(&cleaned) {
                return Err(not_found(
                    src,
                    &self.where_(),
                    " or excluded by .dockerignore",
                ));
            }
            return Ok(vec![self.open(&cleaned, src)?]);
        }
        let mut found = Vec::new();
        self.matches(&cleaned, &mut found)?;
        if found.is_empty() {
            return Err(not_found(src, &self.where_(), ": no file matches"));
        }
        found.into_iter().map(|rel| self.open(&rel, src)).collect()
    }

    /// Paths (no symlink followed) matching `pattern`, walking only as deep as it can
    /// reach.
    fn matches(&self, pattern: &str, out: &mut Vec<String>) -> Result<()> {
        let depth = if pattern.contains("**") {
            usize::MAX
        } else {
            pattern.split('/').count()
        };
        let mut stack = vec![(
            String::new(),
            nix::unistd::dup(self.root.as_fd()).ctx(|| "dup")?,
            0usize,
        )];
        while let Some((rel, fd, d)) = stack.pop() {
            let list = names(fd.as_fd()).ctx(|| format!("reading {rel:?} in {}", self.where_()))?;
            for name in list {
                let Some(name) = name.to_str().map(str::to_string) else {
                    continue;
                };
                let path = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                if self.ignore.excluded(&path) {
                    continue;
                }
                if glob(pattern, &path) {
                    out.push(path.clone());
                    continue;
                }
                if d + 1 < depth {
                    if let Some(n) = Node::at(fd.as_fd(), std::ffi::OsStr::new(&name))
                        .ctx(|| format!("opening {path}"))?
                    {
                        if n.kind() == Kind::Dir {
                            let dir = n.into_dir().ctx(|| format!("opening {path}"))?;
                            stack.push((path, dir, d + 1));
                        }
                    }
                }
            }
        }
        out.sort();
        Ok(())
    }

    fn open(&self, rel: &str, src: &str) -> Result<Selected> {
        let resolve = libc::RESOLVE_NO_MAGICLINKS
            | if self.rootfs {
                libc::RESOLVE_IN_ROOT
            } else {
                libc::RESOLVE_BENEATH
            };
        let path = if rel.is_empty() { "." } else { rel };
        let fd = codex_runtime::sys::openat2(
            self.root.as_fd(),
            Path::new(path),
            libc::O_PATH,
            0,
            resolve,
        )
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EXDEV) => Error::invalid(
                "COPY",
                format!(
                    "{src}: leads outside {} (through a symlink); refused",
                    self.where_()
                ),
            ),
            Some(libc::ENOENT | libc::ENOTDIR) => not_found(src, &self.where_(), ""),
            _ => Error::Io {
                context: format!("opening {src} in {}", self.where_()),
                cause: e,
            },
        })?;
        let node = Node::from_fd(fd).ctx(|| src.to_string())?;
        let name = Path::new(rel)
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| OsString::from("root"));
        Ok(Selected {
            node,
            rel: rel.to_string(),
            name,
        })
    }

    /// Walks a selected source (itself, then what is under it, sorted, depth first),
    /// leaving out what `.dockerignore` excludes. `visit` gets each entry; a directory's
    /// children follow it.
    pub fn walk(
        &self,
        sel: &Selected,
        visit: &mut dyn FnMut(Entry<'_>) -> Result<()>,
    ) -> Result<()> {
        let shown = || format!("{} in {}", sel.rel, self.where_());
        let dup = nix::unistd::dup(sel.node_fd()).ctx(shown)?;
        let first = Node::from_fd(dup).ctx(shown)?;
        visit(Entry {
            rel: "",
            node: &first,
        })?;
        if first.kind() != Kind::Dir {
            return Ok(());
        }
        let mut stack: Vec<(String, OwnedFd, std::vec::IntoIter<OsString>)> = Vec::new();
        let fd = first.into_dir().ctx(shown)?;
        let list = names(fd.as_fd()).ctx(shown)?;
        stack.push((String::new(), fd, list.into_iter()));
        while let Some((rel, fd, todo)) = stack.last_mut() {
            let Some(name) = todo.next() else {
                stack.pop();
                continue;
            };
            let child = if rel.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", name.to_string_lossy())
            };
            let in_tree = if sel.rel.is_empty() {
                child.clone()
            } else {
                format!("{}/{child}", sel.rel)
            };
            let excluded = self.ignore.excluded(&in_tree);
            let Some(node) = Node::at(fd.as_fd(), &name)
                .ctx(|| format!("opening {in_tree} in {}", self.where_()))?
            else {
                continue;
            };
            if node.kind() == Kind::Dir {
                if excluded && !self.ignore.has_exceptions_under(&in_tree) {
                    continue;
                }
                // An excluded directory walked for an exception under it is made too,
                // as Docker does, to hold what the exception brings back.
                visit(Entry {
                    rel: &child,
                    node: &node,
                })?;
                let dir = node.into_dir().ctx(|| in_tree.clone())?;
                let list = names(dir.as_fd()).ctx(|| in_tree.clone())?;
                stack.push((child, dir, list.into_iter()));
                if stack.len() > 256 {
                    return Err(Error::invalid("COPY", format!("{in_tree}: too deep")));
                }
                continue;
            }
            if !excluded {
                visit(Entry {
                    rel: &child,
                    node: &node,
                })?;
            }
        }
        Ok(())
    }
}

impl Selected {
    fn node_fd(&self) -> BorrowedFd<'_> {
        self.node.fd()
    }
}

/// True when a path climbs above its start (`../x`, `a/../../x`).
pub fn escapes(p: &str) -> bool {
    let mut depth = 0i64;
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

fn not_found(src: &str, where_: &str, why: &str) -> Error {
    Error::invalid("COPY", format!("{src}: not found in {where_}{why}"))
}

/// The cache digest of what a COPY copies: for each entry, where it lands, its type,
/// mode, size and content (or symlink target). Owners and mtimes are not in it: the copy
/// sets owners, and a touched but unchanged file reuses the cached step (as Docker).
pub fn digest(tree: &SourceTree, sources: &[Selected]) -> Result<String> {
    let mut h = Sha256::new();
    for (i, sel) in sources.iter().enumerate() {
        h.update(format!("source {i} {}\n", sel.rel).as_bytes());
        tree.walk(sel, &mut |e| {
            let st = &e.node.st;
            h.update(e.rel.as_bytes());
            h.update(
                format!(
                    "\0{:?}\0{:o}\0{}\0",
                    e.node.kind(),
                    st.st_mode & 0o7777,
                    st.st_size
                )
                .as_bytes(),
            );
            match e.node.kind() {
                Kind::File => {
                    let mut f: File = e.node.open_file().ctx(|| e.rel.to_string())?;
                    let mut fh = Sha256::new();
                    let mut buf = vec![0u8; 1 << 16];
                    loop {
                        let n = f.read(&mut buf).ctx(|| e.rel.to_string())?;
                        if n == 0 {
                            break;
                        }
                        fh.update(&buf[..n]);
                    }
                    h.update(fh.finalize());
                }
                Kind::Symlink => h.update(e.node.read_link().ctx(|| e.rel.to_string())?.as_bytes()),
                _ => {}
            }
            h.update(b"\n");
            Ok(())
        })?;
    }
    Ok(fsutil_hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn climbing_paths_escape() {
        assert!(escapes("../x"));
        assert!(escapes("a/../../x"));
        assert!(escapes("/../x"));
        assert!(!escapes("a/../x"));
        assert!(!escapes("./a/b"));
    }

    #[test]
    fn context_selection_refuses_escapes_and_honours_dockerignore() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::write(&outside, "host").unwrap();
        let ctx = t.path().join("ctx");
        std::fs::create_dir_all(ctx.join("d/sub")).unwrap();
        std::fs::write(ctx.join("a.txt"), "a").unwrap();
        std::fs::write(ctx.join("b.txt"), "b").unwrap();
        std::fs::write(ctx.join("d/sub/c.txt"), "c").unwrap();
        std::fs::write(ctx.join("d/skip.log"), "l").unwrap();
        std::fs::write(ctx.join(".dockerignore"), "*.log\n**/*.log\nb.txt\n").unwrap();
        std::os::unix::fs::symlink(&outside, ctx.join("out-abs")).unwrap();
        std::os::unix::fs::symlink("../outside", ctx.join("out-rel")).unwrap();
        std::os::unix::fs::symlink("a.txt", ctx.join("in")).unwrap();
        let tree = SourceTree::context(&ctx).unwrap();
        // Controls: plain files, a symlink inside, a wildcard.
        assert_eq!(tree.select("a.txt").unwrap().len(), 1);
        assert_eq!(tree.select("in").unwrap()[0].node.kind(), Kind::File);
        let w: Vec<String> = tree
            .select("*.txt")
            .unwrap()
            .into_iter()
            .map(|s| s.rel)
            .collect();
        assert_eq!(w, ["a.txt"]);
        for bad in ["../outside", "d/../../outside"] {
            let e = tree.select(bad).err().unwrap().to_string();
            assert!(e.contains("outside the build context"), "{bad}: {e}");
        }
        for bad in ["out-abs", "out-rel"] {
            let e = tree.select(bad).err().unwrap().to_string();
            assert!(e.contains("leads outside"), "{bad}: {e}");
        }
        let e = tree.select("b.txt").err().unwrap().to_string();
        assert!(e.contains("excluded by .dockerignore"), "{e}");
        // A walk of d leaves the ignored log out.
        let d = tree.select("d").unwrap();
        let mut seen = Vec::new();
        tree.walk(&d[0], &mut |e| {
            seen.push(e.rel.to_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, ["", "sub", "sub/c.txt"]);
        // The digest follows content, not mtimes.
        let d1 = digest(&tree, &d).unwrap();
        std::fs::write(ctx.join("d/sub/c.txt"), "c").unwrap();
        assert_eq!(digest(&tree, &tree.select("d").unwrap()).unwrap(), d1);
        std::fs::write(ctx.join("d/sub/c.txt"), "C").unwrap();
        assert_ne!(digest(&tree, &tree.select("d").unwrap()).unwrap(), d1);
    }
}
