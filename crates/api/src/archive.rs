//! `/containers/{id}/archive` (`docker cp`, docker-py's `get_archive`/`put_archive`) over
//! the engine's `cp`, which resolves every path inside the container's root and never
//! follows a symlink out of it (see codex_engine::copy). A GET copies the path out into
//! a private directory under the engine root, then sends it as a tar; a PUT unpacks the
//! client's tar into such a directory, then copies each top entry in. The directory goes
//! when the request ends. HEAD answers the path's stat (it copies the path out too: the
//! engine has no stat-only call yet).

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use codex_engine::engine::{CopyDirection, Engine};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, StatusCode};
use serde_json::json;

use crate::body::{self, Resp};
use crate::containers::blocking;
use crate::error::{ApiError, ApiResult};
use crate::query::Call;
use crate::server::Ctx;

/// A private (0700) scratch directory under the engine root, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(eng: &Engine) -> codex_engine::Result<Scratch> {
        let p = eng.root().join(format!(
            ".api-cp-{}",
            codex_engine::registry::new_volume_name()?
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&p)
            .map_err(|e| codex_engine::Error::Io {
                context: format!("creating {}", p.display()),
                cause: e,
            })?;
        Ok(Scratch(p))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> codex_engine::Error + '_ {
    move |e| codex_engine::Error::Io {
        context: what.to_string(),
        cause: e,
    }
}

/// Docker's `X-Docker-Container-Path-Stat`: base64 of `{name, size, mode, mtime, linkTarget}`
/// (`mode` in Go's os.FileMode bits: directories and symlinks have their own high bits).
pub fn path_stat(name: &str, md: &std::fs::Metadata, link: &str) -> String {
    let mut mode = md.mode() & 0o7777;
    if md.is_dir() {
        mode |= 1 << 31;
    } else if md.file_type().is_symlink() {
        mode |= 1 << 27;
    }
    let mtime = humantime::format_rfc3339(
        std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(u64::try_from(md.mtime()).unwrap_or(0)),
    )
    .to_string();
    let v =
        json!({"name": name, "size": md.len(), "mode": mode, "mtime": mtime, "linkTarget": link});
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

/// Copies `path` out of the container; its stat header and, with `want_tar`, a tar of it.
fn get(
    eng: &Engine,
    id: &str,
    path: &str,
    want_tar: bool,
) -> codex_engine::Result<(String, Vec<u8>)> {
    let s = Scratch::new(eng)?;
    eng.copy(
        id,
        CopyDirection::Out {
            from: Path::new(path),
            to: &s.0,
        },
    )?;
    let name = Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into());
    let copied = s.0.join(&name);
    let md = std::fs::symlink_metadata(&copied).map_err(io_err("reading the copy"))?;
    let link = std::fs::read_link(&copied)
        .map(|l| l.display().to_string())
        .unwrap_or_default();
    let stat = path_stat(&name, &md, &link);
    if !want_tar {
        return Ok((stat, Vec::new()));
    }
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let add = if md.is_dir() {
        b.append_dir_all(&name, &copied)
    } else {
        b.append_path_with_name(&copied, &name)
    };
    add.map_err(io_err("making the tar"))?;
    let data = b.into_inner().map_err(io_err("making the tar"))?;
    Ok((stat, data))
}

/// Unpacks the client's tar and copies what it holds into `path` (a directory).
fn put(eng: &Engine, id: &str, path: &str, data: &[u8]) -> codex_engine::Result<()> {
    let s = Scratch::new(eng)?;
    let mut a = tar::Archive::new(data);
    a.set_preserve_permissions(true);
    a.set_overwrite(false);
    // Entries are unpacked one by one, each kept inside the scratch dir (the tar crate
    // refuses `..` and paths through symlinks that lead out of it).
    for entry in a.entries().map_err(io_err("reading the tar"))? {
        let mut entry = entry.map_err(io_err("reading the tar"))?;
        entry.unpack_in(&s.0).map_err(io_err("unpacking the tar"))?;
    }
    let top = std::fs::read_dir(&s.0).map_err(io_err("listing the tar's content"))?;
    for e in top {
        let e = e.map_err(io_err("listing the tar's content"))?;
        eng.copy(
            id,
            CopyDirection::In {
                from: &e.path(),
                to: Path::new(path),
            },
        )?;
    }
    Ok(())
}

pub async fn archive(ctx: &Ctx, c: &mut Call, id: &str) -> ApiResult<Resp> {
    let path = c
        .q("path")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad_request("path: required"))?
        .to_string();
    let id = id.to_string();
    if c.method == Method::PUT {
        let data = c.body_bytes().await?;
        blocking(ctx, move |e| {
            let rec = e.get(&id)?;
            put(e, &rec.id, &path, &data)
        })
        .await
        .map_err(not_found_path)?;
        return Ok(body::empty(StatusCode::OK));
    }
    let head = c.method == Method::HEAD;
    let (stat, data) = blocking(ctx, move |e| {
        let rec = e.get(&id)?;
        get(e, &rec.id, &path, !head)
    })
    .await
    .map_err(not_found_path)?;
    let mut r = if head {
        body::empty(StatusCode::OK)
    } else {
        body::bytes(StatusCode::OK, "application/x-tar", data)
    };
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    if let Ok(v) = HeaderValue::from_str(&stat) {
        r.headers_mut().insert("X-Docker-Container-Path-Stat", v);
    }
    Ok(r)
}

/// A path missing in the container is Docker's 404 (the CLI says "Could not find the file").
fn not_found_path(e: ApiError) -> ApiError {
    if e.status == StatusCode::INTERNAL_SERVER_ERROR && e.message.contains("No such file") {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Could not find the file in container: {}", e.message),
        )
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_stat_is_base64_json_with_go_mode_bits() {
        let d = tempfile_dir();
        let md = std::fs::symlink_metadata(&d).unwrap();
        let s = path_stat("tmp", &md, "");
        let raw = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v["name"], "tmp");
        assert_ne!(
            v["mode"].as_u64().unwrap() & (1 << 31),
            0,
            "a directory has Go's ModeDir bit"
        );
        let _ = std::fs::remove_dir(&d);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("codex-api-stat-{}", std::process::id()));
        let _ = std::fs::create_dir(&d);
        d
    }
}
