//! An image's config as a container's defaults, Docker's rules: the image's Entrypoint
//! unless `--entrypoint` is given, its Cmd unless a command (or an entrypoint) is given,
//! its User, StopSignal and Labels unless the container sets them. (Env and WorkingDir
//! are merged when the spec is made: `profile::spec_value`.)
//!
//! A User given by name (`nobody`, `www:www`) is resolved to numbers here, from the
//! image's own `/etc/passwd` and `/etc/group` (the topmost layer that has each), because
//! the runtime takes numbers only; a name the image does not define is an error, never
//! root.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::ImageConfig;
use crate::config::ContainerConfig;
use crate::error::{Error, Result};

/// Fills what `config` leaves unset from the image. `lowers` are the image's layer
/// directories, top first (for resolving a user name).
pub fn apply_defaults(
    image: &ImageConfig,
    lowers: &[PathBuf],
    config: &mut ContainerConfig,
) -> Result<()> {
    if config.entrypoint.is_empty() {
        config.entrypoint = image.entrypoint.clone();
        if config.command.is_empty() {
            config.command = image.cmd.clone();
        }
    }
    if config.user.is_none() && !image.user.is_empty() {
        config.user = Some(resolve_user("the image's User", &image.user, &|p| {
            read_from_layers(lowers, p)
        })?);
    } else {
        resolve_named_user(lowers, config)?;
    }
    if config.stop_signal.is_none() && !image.stop_signal.is_empty() {
        config.stop_signal = Some(image.stop_signal.clone());
    }
    for (k, v) in &image.labels {
        config.labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    super::service::apply(image, config)
}

/// `--user NAME[:GROUP]` (`-u www`) as `UID:GID`, from the `/etc/passwd` and
/// `/etc/group` of the container's root (`lowers`: the image's layers, top first, or a
/// `--rootfs` directory). Numbers are kept as they are; without a root to read (minimal
/// isolation) a name is an error.
pub fn resolve_named_user(lowers: &[PathBuf], config: &mut ContainerConfig) -> Result<()> {
    let Some(u) = config.user.clone() else {
        return Ok(());
    };
    if u.split(':').all(|p| p.parse::<u32>().is_ok()) {
        return Ok(());
    }
    if lowers.is_empty() {
        return Err(Error::invalid(
            "user",
            format!("{u:?}: a name needs the container's /etc/passwd; with the host's root give UID[:GID]"),
        ));
    }
    config.user = Some(resolve_user("--user", &u, &|p| {
        read_from_layers(lowers, p)
    })?);
    Ok(())
}

/// `USER[:GROUP]` (names or numbers) as `UID:GID`. `read` returns a file of the image
/// (`etc/passwd`, `etc/group`), if it has one; `what` names the value in errors.
pub(crate) fn resolve_user(
    what: &str,
    spec: &str,
    read: &dyn Fn(&str) -> Option<String>,
) -> Result<String> {
    let bad = |why: String| Error::invalid("user", format!("{what} {spec:?}: {why}"));
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || group.is_some_and(str::is_empty) {
        return Err(bad("empty user or group".into()));
    }
    let passwd = read("etc/passwd").unwrap_or_default();
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(uid) => {
            let gid = passwd_entry(&passwd, |f| f[2] == user).and_then(|f| f[3].parse().ok());
            (uid, gid.unwrap_or(uid))
        }
        Err(_) => {
            let f = passwd_entry(&passwd, |f| f[0] == user)
                .ok_or_else(|| bad(format!("no user {user:?} in the image's /etc/passwd")))?;
            let uid = f[2]
                .parse()
                .map_err(|_| bad(format!("bad uid for {user:?} in /etc/passwd")))?;
            let gid = f[3]
                .parse()
                .map_err(|_| bad(format!("bad gid for {user:?} in /etc/passwd")))?;
            (uid, gid)
        }
    };
    let gid = match group {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = read("etc/group").unwrap_or_default();
                let f = passwd_entry(&groups, |f| f[0] == g)
                    .ok_or_else(|| bad(format!("no group {g:?} in the image's /etc/group")))?;
                f[2].parse()
                    .map_err(|_| bad(format!("bad gid for {g:?} in /etc/group")))?
            }
        },
    };
    Ok(format!("{uid}:{gid}"))
}

/// The first `name:x:id:...` line (at least 4 fields) that `pick` accepts.
fn passwd_entry(text: &str, pick: impl Fn(&[&str]) -> bool) -> Option<Vec<&str>> {
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .find(|f| pick(f))
}

/// A small file of the image: from the topmost layer that has `rel` (a whiteout there
/// means the image deleted it). Resolved inside each layer, never followed out of it.
fn read_from_layers(lowers: &[PathBuf], rel: &str) -> Option<String> {
    for dir in lowers {
        let Ok(root) = std::fs::File::open(dir) else {
            continue;
        };
        let opened = crate::copy::in_root(
            std::os::fd::AsFd::as_fd(&root),
            Path::new(rel),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK,
        );
        match opened {
            Ok(fd) => {
                let f = std::fs::File::from(fd);
                if !f.metadata().is_ok_and(|m| m.is_file()) {
                    return None; // a whiteout (0:0 device) or something odd: not there
                }
                let mut s = String::new();
                f.take(1 << 20).read_to_string(&mut s).ok()?;
                return Some(s);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(_) => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34:www:/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:\n";

    fn files(p: &str) -> Option<String> {
        match p {
            "etc/passwd" => Some(PASSWD.into()),
            "etc/group" => Some(GROUP.into()),
            _ => None,
        }
    }

    #[test]
    fn names_and_numbers_resolve() {
        assert_eq!(resolve_user("User", "www", &files).unwrap(), "33:34");
        assert_eq!(resolve_user("User", "www:staff", &files).unwrap(), "33:50");
        assert_eq!(resolve_user("User", "33", &files).unwrap(), "33:34");
        assert_eq!(resolve_user("User", "1000", &files).unwrap(), "1000:1000");
        assert_eq!(resolve_user("User", "1000:7", &files).unwrap(), "1000:7");
        assert_eq!(resolve_user("User", "root:staff", &files).unwrap(), "0:50");
    }

    #[test]
    fn unknown_names_are_errors_not_root() {
        for spec in ["nobody", "www:wheel", ":", "www:"] {
            let e = resolve_user("User", spec, &files).unwrap_err().to_string();
            assert!(e.starts_with("user:"), "{spec}: {e}");
        }
        let e = resolve_user("User", "www", &|_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no user \"www\""), "{e}");
    }

    #[test]
    fn container_settings_win_over_the_image() {
        let image = ImageConfig {
            entrypoint: vec!["/ep".into()],
            cmd: vec!["c1".into()],
            user: "5:6".into(),
            stop_signal: "SIGINT".into(),
            labels: [("a".into(), "image".into()), ("b".into(), "image".into())].into(),
            ..Default::default()
        };
        let mut c = ContainerConfig::default();
        apply_defaults(&image, &[], &mut c).unwrap();
        assert_eq!(
            (c.entrypoint.clone(), c.command.clone()),
            (vec!["/ep".into()], vec!["c1".into()])
        );
        assert_eq!(c.user.as_deref(), Some("5:6"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));

        // A command replaces Cmd and keeps the Entrypoint; an entrypoint drops Cmd.
        let mut c = ContainerConfig {
            command: vec!["x".into()],
            user: Some("0".into()),
            labels: [("a".into(), "mine".into())].into(),
            ..Default::default()
        };
        apply_defaults(&image, &[], &mut c).unwrap();
        assert_eq!(
            (c.entrypoint.clone(), c.command.clone()),
            (vec!["/ep".into()], vec!["x".into()])
        );
        assert_eq!(c.user.as_deref(), Some("0"));
        assert_eq!(c.labels.get("a").map(String::as_str), Some("mine"));
        assert_eq!(c.labels.get("b").map(String::as_str), Some("image"));
        let mut c = ContainerConfig {
            entrypoint: vec!["/other".into()],
            ..Default::default()
        };
        apply_defaults(&image, &[], &mut c).unwrap();
        assert!(c.command.is_empty());
    }
}
