//! Exec instances: `POST /containers/{id}/exec` records what to run (in memory, as
//! Docker keeps them), `POST /exec/{id}/start` runs it and, unless detached, hijacks the
//! connection: the process's stdout and stderr go out framed (raw with a terminal), the
//! client's bytes go to its stdin when it was asked for.
//!
//! The process is started by a child `codex-ctr exec` (the engine's exec forks, which a
//! multi-threaded server must not do), whose exit status is the process's.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::Arc;

use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::mpsc;

use crate::body::{self, frame, Resp, StreamKind};
use crate::containers::blocking;
use crate::create::StrOrList;
use crate::error::{ApiError, ApiResult};
use crate::query::Call;
use crate::server::Ctx;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecBody {
    pub attach_stdin: Option<bool>,
    pub attach_stdout: Option<bool>,
    pub attach_stderr: Option<bool>,
    pub tty: Option<bool>,
    pub cmd: Option<StrOrList>,
    pub env: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub privileged: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct StartBody {
    pub detach: Option<bool>,
    pub tty: Option<bool>,
}

/// One exec instance.
#[derive(Debug, Clone)]
pub struct ExecInstance {
    pub id: String,
    pub container: String,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub started: bool,
    pub running: bool,
    pub exit_code: Option<i32>,
    pub pid: Option<u32>,
    /// The terminal's master side while it runs (for resize).
    pub pty: Option<Arc<OwnedFd>>,
    /// When it ended: an ended instance is forgotten [`KEEP_ENDED`] later.
    pub ended: Option<std::time::Instant>,
}

/// How long an ended exec stays inspectable (Docker forgets them with their container;
/// a server that outlives many containers must forget them by time).
const KEEP_ENDED: std::time::Duration = std::time::Duration::from_secs(300);

fn new_id() -> ApiResult<String> {
    codex_engine::registry::new_volume_name().map_err(ApiError::from)
}

/// The `codex-ctr exec` argv for an instance (after the binary).
pub fn exec_args(root: &std::path::Path, e: &ExecInstance) -> Vec<String> {
    let mut a = vec![
        "--root".to_string(),
        root.display().to_string(),
        "exec".into(),
    ];
    if e.stdin {
        a.push("-i".into());
    }
    if e.tty {
        a.push("-t".into());
    }
    for kv in &e.env {
        a.push(format!("--env={kv}"));
    }
    if let Some(w) = &e.working_dir {
        a.push(format!("--workdir={w}"));
    }
    if let Some(u) = &e.user {
        a.push(format!("--user={u}"));
    }
    a.push(e.container.clone());
    a.extend(e.cmd.iter().cloned());
    a
}

pub async fn create(ctx: &Ctx, c: &mut Call, id: &str) -> ApiResult<Resp> {
    let b: ExecBody = c.body_json().await?;
    let id = id.to_string();
    let rec = blocking(ctx, move |e| e.get(&id)).await?;
    if rec.status != codex_engine::registry::ContainerStatus::Running {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Container {} is not running", rec.id),
        ));
    }
    if b.privileged == Some(true) {
        return Err(ApiError::bad_request(
            "Privileged: not supported by codex-ctr",
        ));
    }
    let cmd = match b.cmd {
        Some(StrOrList::List(l)) if !l.is_empty() => l,
        Some(StrOrList::One(s)) if !s.is_empty() => vec![s],
        _ => return Err(ApiError::bad_request("Cmd: no exec command specified")),
    };
    let inst = ExecInstance {
        id: new_id()?,
        container: rec.id,
        cmd,
        env: b.env.unwrap_or_default(),
        working_dir: b.working_dir.filter(|w| !w.is_empty()),
        user: b.user.filter(|u| !u.is_empty()),
        tty: b.tty.unwrap_or(false),
        stdin: b.attach_stdin.unwrap_or(false),
        stdout: b.attach_stdout.unwrap_or(true),
        stderr: b.attach_stderr.unwrap_or(true),
        started: false,
        running: false,
        exit_code: None,
        pid: None,
        pty: None,
        ended: None,
    };
    let eid = inst.id.clone();
    let mut table = ctx
        .execs
        .lock()
        .map_err(|_| ApiError::internal("exec table poisoned"))?;
    table.retain(|_, e| e.ended.is_none_or(|t| t.elapsed() < KEEP_ENDED));
    table.insert(eid.clone(), inst);
    drop(table);
    body::json(StatusCode::CREATED, &json!({"Id": eid}))
}

fn update(ctx: &Ctx, id: &str, f: impl FnOnce(&mut ExecInstance)) {
    if let Ok(mut t) = ctx.execs.lock() {
        if let Some(e) = t.get_mut(id) {
            f(e);
        }
    }
}

fn get(ctx: &Ctx, id: &str) -> ApiResult<ExecInstance> {
    ctx.execs
        .lock()
        .map_err(|_| ApiError::internal("exec table poisoned"))?
        .get(id)
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("No such exec instance: {id}"),
            )
        })
}

pub async fn start(ctx: &Ctx, c: &mut Call, id: &str) -> ApiResult<Resp> {
    let b: StartBody = c.body_json().await?;
    let mut inst = get(ctx, id)?;
    if inst.started {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("exec {id} has already been started"),
        ));
    }
    if let Some(t) = b.tty {
        inst.tty = t;
    }
    let detach = b.detach.unwrap_or(false);
    let upgrade = if detach {
        None
    } else {
        Some(c.upgrade.take().ok_or_else(|| {
            ApiError::bad_request("exec start needs an upgraded connection (Connection: Upgrade, Upgrade: tcp) unless Detach")
        })?)
    };
    let mut cmd = tokio::process::Command::new(&ctx.exe);
    cmd.args(exec_args(ctx.eng.engine().root(), &inst));
    let mut pty_master = None;
    if inst.tty {
        let p = nix::pty::openpty(None, None)
            .map_err(|e| ApiError::internal(format!("allocating a terminal: {e}")))?;
        // openpty has no O_CLOEXEC: without it, every supervisor or exec child started
        // meanwhile would inherit this terminal (the child's copies are dup2'd to 0-2,
        // which clears the flag there).
        for fd in [&p.master, &p.slave] {
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .map_err(|e| ApiError::internal(format!("terminal fds: {e}")))?;
        }
        let dup = |f: &OwnedFd| f.try_clone().map(Stdio::from);
        let io = |e: std::io::Error| ApiError::internal(format!("terminal fds: {e}"));
        cmd.stdin(dup(&p.slave).map_err(io)?)
            .stdout(dup(&p.slave).map_err(io)?)
            .stderr(Stdio::from(p.slave));
        pty_master = Some(Arc::new(p.master));
    } else {
        cmd.stdin(if inst.stdin && !detach {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(if detach {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stderr(if detach {
            Stdio::null()
        } else {
            Stdio::piped()
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| ApiError::internal(format!("starting {}: {e}", ctx.exe.display())))?;
    let pid = child.id();
    let pty2 = pty_master.clone();
    update(ctx, id, |e| {
        e.started = true;
        e.running = true;
        e.pid = pid;
        e.tty = inst.tty;
        e.pty = pty2;
    });
    let eid = id.to_string();
    let ctx2 = ctx.clone();
    let (stdout, stderr, stdin) = (child.stdout.take(), child.stderr.take(), child.stdin.take());
    let wants = (inst.stdout, inst.stderr);
    tokio::spawn(async move {
        let mut writer = None;
        if let Some(up) = upgrade {
            if let Ok(io) = up.await {
                let io = TokioIo::new(io);
                writer = Some(match &pty_master {
                    Some(m) => pump_pty(io, m).await,
                    None => pump_pipes(io, stdout, stderr, stdin, wants).await,
                });
            }
        }
        let code = child
            .wait()
            .await
            .ok()
            .and_then(|s| s.code())
            .unwrap_or(126);
        update(&ctx2, &eid, |e| {
            e.running = false;
            e.exit_code = Some(code);
            e.pty = None;
            e.ended = Some(std::time::Instant::now());
        });
        // Closed only now: a client that inspects the exec when its stream ends (as
        // docker-py's exec_run does) finds the exit code there.
        if let Some(mut w) = writer {
            let _ = w.shutdown().await;
        }
    });
    if detach {
        return Ok(body::empty(StatusCode::OK));
    }
    Ok(crate::attach::upgraded_response())
}

async fn copy_framed(
    mut r: impl AsyncRead + Unpin,
    kind: StreamKind,
    send: bool,
    tx: mpsc::Sender<bytes::Bytes>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) if send => {
                if tx.send(frame(kind, &buf[..n])).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
        }
    }
}

/// Without a terminal: stdout and stderr framed onto the connection until both end;
/// the connection's bytes to stdin.
async fn pump_pipes<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: IO,
    stdout: Option<tokio::process::ChildStdout>,
    stderr: Option<tokio::process::ChildStderr>,
    stdin: Option<tokio::process::ChildStdin>,
    (want_out, want_err): (bool, bool),
) -> WriteHalf<IO> {
    let (mut rd, mut wr) = tokio::io::split(io);
    let (tx, mut rx) = mpsc::channel::<bytes::Bytes>(16);
    let mut tasks = Vec::new();
    if let Some(o) = stdout {
        tasks.push(tokio::spawn(copy_framed(
            o,
            StreamKind::Stdout,
            want_out,
            tx.clone(),
        )));
    }
    if let Some(e) = stderr {
        tasks.push(tokio::spawn(copy_framed(
            e,
            StreamKind::Stderr,
            want_err,
            tx.clone(),
        )));
    }
    drop(tx);
    let input = stdin.map(|mut s| {
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut rd, &mut s).await;
            let _ = s.shutdown().await;
        })
    });
    while let Some(b) = rx.recv().await {
        if wr.write_all(&b).await.is_err() {
            break;
        }
    }
    let _ = wr.flush().await;
    if let Some(i) = input {
        i.abort();
    }
    for t in tasks {
        t.abort();
    }
    wr
}

/// With a terminal: raw bytes both ways between the connection and the pty master.
async fn pump_pty<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: IO,
    master: &Arc<OwnedFd>,
) -> WriteHalf<IO> {
    let (mut rd, mut wr) = tokio::io::split(io);
    let (Ok(r), Ok(w)) = (master.try_clone(), master.try_clone()) else {
        return wr;
    };
    let mut from_pty = tokio::fs::File::from_std(std::fs::File::from(r));
    let mut to_pty = tokio::fs::File::from_std(std::fs::File::from(w));
    let input = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut rd, &mut to_pty).await;
    });
    // Reading the master fails with EIO once the process (the slave's last user) ends.
    let _ = tokio::io::copy(&mut from_pty, &mut wr).await;
    let _ = wr.flush().await;
    input.abort();
    wr
}

pub fn inspect(ctx: &Ctx, id: &str) -> ApiResult<Resp> {
    let e = get(ctx, id)?;
    body::ok_json(&json!({
        "ID": e.id,
        "Running": e.running,
        "ExitCode": e.exit_code,
        "ProcessConfig": {
            "tty": e.tty, "entrypoint": e.cmd.first(), "arguments": e.cmd.iter().skip(1).collect::<Vec<_>>(),
            "privileged": false, "user": e.user.clone().unwrap_or_default(),
        },
        "OpenStdin": e.stdin, "OpenStderr": e.stderr, "OpenStdout": e.stdout,
        "CanRemove": false,
        "ContainerID": e.container,
        "DetachKeys": "",
        "Pid": e.pid.unwrap_or(0),
    }))
}

/// Sets the exec's terminal size (a no-op without a terminal, as Docker answers).
pub fn resize(ctx: &Ctx, c: &Call, id: &str) -> ApiResult<Resp> {
    let e = get(ctx, id)?;
    let (h, w): (Option<u16>, Option<u16>) = (c.num("h")?, c.num("w")?);
    if let (Some(m), Some(h), Some(w)) = (&e.pty, h, w) {
        let ws = libc::winsize {
            ws_row: h,
            ws_col: w,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads the winsize we pass; the fd is the pty master we own.
        unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    Ok(body::empty(StatusCode::OK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_argv_carries_every_setting() {
        let e = ExecInstance {
            id: "x".into(),
            container: "c1".into(),
            cmd: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["A=1".into()],
            working_dir: Some("/tmp".into()),
            user: Some("1000".into()),
            tty: false,
            stdin: true,
            stdout: true,
            stderr: true,
            started: false,
            running: false,
            exit_code: None,
            pid: None,
            pty: None,
            ended: None,
        };
        let a = exec_args(std::path::Path::new("/r"), &e);
        assert_eq!(
            a,
            [
                "--root",
                "/r",
                "exec",
                "-i",
                "--env=A=1",
                "--workdir=/tmp",
                "--user=1000",
                "c1",
                "sh",
                "-c",
                "echo hi"
            ]
        );
    }
}
