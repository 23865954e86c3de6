//! Which supervisor has a container: the id a supervisor started ahead is told, and the
//! claim that makes it the container's only supervisor (or the record that already
//! names it, for one a `run` forked).

use std::os::fd::{FromRawFd, OwnedFd};

use codex_sys::ProcessId;

use crate::error::{Context, Error, Result};
use crate::registry::{ContainerStatus, Registry};

/// What a starter writes on the id pipe, a line at a time: first, optionally, that the
/// container's directory holds its layer list, upper and work dirs (`mount ID
/// volatile|durable`: its rootfs may be mounted before the record commits), then the
/// full id once the container is created, then the pipe's end.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Told {
    Mount {
        id: String,
        volatile: bool,
    },
    Id(String),
    /// The pipe's end without an id (the starter gave up or died), or a line that is
    /// none of the above.
    End,
}

/// The line that says the rootfs of container `id` may be mounted now.
pub(crate) fn mount_line(id: &str, volatile: bool) -> String {
    let how = if volatile { "volatile" } else { "durable" };
    format!("mount {id} {how}\n")
}

/// The supervisor's end of the id pipe ([`super::ID_FD`]).
pub(super) struct IdPipe(std::io::BufReader<std::io::Take<std::fs::File>>);

impl IdPipe {
    /// Takes `fd`.
    pub(super) fn take(fd: i32) -> IdPipe {
        use std::io::Read;
        // SAFETY: the starter handed us `fd`, and nothing else in this process uses it
        // (a fresh exec, or a fork that moved it there).
        let pipe = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        // Two lines at most: a starter never says more.
        let most = 2 * (crate::registry::ID_LEN as u64 + 20);
        IdPipe(std::io::BufReader::new(pipe.take(most)))
    }

    /// The next thing the starter says (blocks until it does).
    pub(super) fn next(&mut self) -> Told {
        use std::io::BufRead;
        let mut line = String::new();
        if self.0.read_line(&mut line).is_err() || !line.ends_with('\n') {
            return Told::End;
        }
        parse_told(line.trim_end_matches('\n'))
    }
}

fn parse_told(line: &str) -> Told {
    let full = |id: &str| crate::registry::is_full_id(id).then(|| id.to_string());
    let mut words = line.split(' ');
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some(id), None, None, None) => full(id).map_or(Told::End, Told::Id),
        (Some("mount"), Some(id), Some(how @ ("volatile" | "durable")), None) => {
            full(id).map_or(Told::End, |id| Told::Mount {
                id,
                volatile: how == "volatile",
            })
        }
        _ => Told::End,
    }
}

/// [`claim`], unless the record already names this process as the supervisor of the
/// created container (a `run` that forked it named it at the create,
/// `Engine::create_for`): then one read instead of a locked write. True if it claimed.
pub(super) fn claim_unless_named(registry: &Registry, id: &str) -> Result<bool> {
    let me =
        ProcessId::of(std::process::id() as i32).ctx(|| "reading this process's start time")?;
    let named = registry.get(id).is_ok_and(|r| {
        r.status == ContainerStatus::Created
            && r.supervisor_pid == Some(me.pid)
            && r.supervisor_start == Some(me.start_time)
    });
    if named {
        return Ok(false);
    }
    claim(registry, id).map(|()| true)
}

/// Records this process as the container's supervisor, unless the container is not
/// startable or another live supervisor has it.
fn claim(registry: &Registry, id: &str) -> Result<()> {
    let me =
        ProcessId::of(std::process::id() as i32).ctx(|| "reading this process's start time")?;
    registry.update_container(id, |r| {
        if let Some(p) = r.live_supervisor().filter(|p| *p != me) {
            return Err(Error::wrong_state(
                &r.name,
                r.status,
                format!(
                    "its supervisor (process {}) is starting or running it",
                    p.pid
                ),
            ));
        }
        if !matches!(
            r.status,
            ContainerStatus::Created
                | ContainerStatus::Exited
                | ContainerStatus::Stopped
                | ContainerStatus::Failed
        ) {
            return Err(Error::wrong_state(
                &r.name,
                r.status,
                "start needs it created or exited",
            ));
        }
        if r.status != ContainerStatus::Created {
            // The attached `run --rm` that made it removes only what its own start ran:
            // a container it left behind (both it and the supervisor died) and that is
            // started again stays until it is removed, like any other.
            r.remover_pid = None;
            r.remover_start = None;
        }
        r.set_deleter(None);
        r.set_supervisor(Some(me));
        Ok(())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_pipe_lines_parse_and_anything_else_is_its_end() {
        let id = "a".repeat(crate::registry::ID_LEN);
        assert_eq!(parse_told(&id), Told::Id(id.clone()));
        for volatile in [true, false] {
            let line = mount_line(&id, volatile);
            let id = id.clone();
            assert_eq!(parse_told(line.trim_end()), Told::Mount { id, volatile });
        }
        for bad in [
            String::new(),
            "abc".to_string(),
            format!("{id} {id}"),
            format!("mount {id}"),
            format!("mount {id} sometimes"),
            format!("mount ../{id} durable"),
            format!("unmount {id} durable"),
            format!("mount {id} durable extra"),
            "g".repeat(crate::registry::ID_LEN),
        ] {
            assert_eq!(parse_told(&bad), Told::End, "{bad:?}");
        }
    }

    #[test]
    fn a_pipe_read_gives_the_mount_then_the_id_then_its_end() {
        let id = "b".repeat(crate::registry::ID_LEN);
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut w = std::fs::File::from(w);
        use std::io::Write;
        writeln!(w, "{}{id}", mount_line(&id, false)).unwrap();
        drop(w);
        let raw = std::os::fd::IntoRawFd::into_raw_fd(r);
        let mut pipe = IdPipe::take(raw);
        assert_eq!(
            pipe.next(),
            Told::Mount {
                id: id.clone(),
                volatile: false
            }
        );
        assert_eq!(pipe.next(), Told::Id(id.clone()));
        assert_eq!(pipe.next(), Told::End);
        // An id cut short by the starter's death is no id.
        let (r, w) = nix::unistd::pipe().unwrap();
        std::fs::File::from(w)
            .write_all(&id.as_bytes()[..10])
            .unwrap();
        let mut pipe = IdPipe::take(std::os::fd::IntoRawFd::into_raw_fd(r));
        assert_eq!(pipe.next(), Told::End);
    }
}
