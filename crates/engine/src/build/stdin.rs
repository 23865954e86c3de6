//! `build -`: a build context sent as a tar (plain, gzip or zstd) on stdin, unpacked with
//! the layer unpacker's checks (no entry outside the directory, no link out) into a
//! private directory under `<root>/build-tmp`, removed when the build is done.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// An unpacked context directory, removed when dropped.
pub struct TarContext(PathBuf);

impl TarContext {
    /// Unpacks the tar read from `input`, refusing one that unpacks to more than
    /// `max_bytes`.
    pub fn unpack(
        root: &Path,
        mut input: impl Read + 'static,
        max_bytes: u64,
    ) -> Result<TarContext> {
        use std::os::unix::fs::DirBuilderExt;
        let base = root.join("build-tmp");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&base)
            .ctx(|| format!("creating {}", base.display()))?;
        let dir = base.join(crate::image::unique_work_name("context-"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .ctx(|| format!("creating {}", dir.display()))?;
        let ctx = TarContext(dir);
        let mut head = Vec::with_capacity(512);
        (&mut input)
            .take(512)
            .read_to_end(&mut head)
            .ctx(|| "reading the context from stdin")?;
        let source = Path::new("<stdin>");
        let stream = Cursor::new(head.clone()).chain(input);
        let (reader, _) = crate::image::layer::decoder(stream, &head, source)?;
        crate::image::layer::unpack_limited(reader, &ctx.0, source, max_bytes)?;
        Ok(ctx)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TarContext {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
