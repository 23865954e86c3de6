//! `codex-ctr commit` and `codex-ctr build` / `image build`.

use anyhow::Result;
use clap::{ArgAction, Args};
use codex_engine::commit_api::CommitOptions;
use codex_engine::engine::Engine;

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// A Dockerfile instruction to apply to the new image's config: CMD, ENTRYPOINT, ENV,
    /// EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL, HEALTHCHECK, SHELL (repeatable).
    #[arg(short, long = "change")]
    pub change: Vec<String>,
    /// A comment for the new image's history entry.
    #[arg(short, long)]
    pub message: Option<String>,
    /// The author recorded in the new image.
    #[arg(short, long)]
    pub author: Option<String>,
    /// Freeze a running container while its changes are read (default true; --pause=false
    /// reads them live).
    #[arg(short, long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true")]
    pub pause: bool,
    /// The container (name or id).
    pub container: String,
    /// The new image's NAME[:TAG] (none: an untagged image).
    pub reference: Option<String>,
}

pub fn commit(eng: &Engine, a: CommitArgs) -> Result<i32> {
    let opts = CommitOptions {
        reference: a.reference,
        changes: a.change,
        message: a.message,
        author: a.author,
        pause: a.pause,
    };
    let image = eng.commit(&a.container, &opts)?;
    println!("sha256:{}", image.id);
    Ok(0)
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile, else CONTEXT/Containerfile).
    #[arg(short, long)]
    pub file: Option<std::path::PathBuf>,
    /// Name the image NAME[:TAG] (repeatable).
    #[arg(short, long = "tag")]
    pub tag: Vec<String>,
    /// A build argument, KEY=VALUE (repeatable; KEY alone takes this process's value).
    #[arg(long = "build-arg")]
    pub build_arg: Vec<String>,
    /// Build up to this stage (AS NAME) and name its image.
    #[arg(long)]
    pub target: Option<String>,
    /// Run every step, using no cached step.
    #[arg(long)]
    pub no_cache: bool,
    /// A label on the image, KEY=VALUE (repeatable).
    #[arg(long)]
    pub label: Vec<String>,
    /// RUN's network: none (default) or host.
    #[arg(long, value_parser = ["none", "host", "default"])]
    pub network: Option<String>,
    /// The platform to build for (only the host's: OS/ARCH).
    #[arg(long)]
    pub platform: Option<String>,
    /// Print only the image id.
    #[arg(short, long)]
    pub quiet: bool,
    /// The build context: a directory whose files COPY may use, or - for a tar (plain,
    /// gzip or zstd) on stdin.
    pub context: std::path::PathBuf,
}

fn key_values(
    what: &str,
    items: &[String],
    bare: impl Fn(&str) -> Option<String>,
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for i in items {
        match i.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            None if !i.is_empty() => {
                if let Some(v) = bare(i) {
                    out.insert(i.clone(), v);
                }
            }
            _ => anyhow::bail!("{what}: {i:?} is not KEY=VALUE"),
        }
    }
    Ok(out)
}

pub fn build(eng: &Engine, a: BuildArgs) -> Result<i32> {
    if let Some(p) = &a.platform {
        let want = codex_engine::image::Platform::parse(p)?;
        let host = codex_engine::image::Platform::host();
        if want != host {
            anyhow::bail!("--platform: {p}: only the host's platform ({host}) can be built here");
        }
    }
    // `-`: a tar of the context on stdin, unpacked for the build and removed after.
    let unpacked = if a.context.as_os_str() == "-" {
        Some(codex_engine::build::stdin::TarContext::unpack(
            eng.root(),
            std::io::stdin(),
            codex_engine::image::DEFAULT_MAX_UNPACKED,
        )?)
    } else {
        None
    };
    let context = match &unpacked {
        Some(u) => u.path().to_path_buf(),
        None => a.context,
    };
    let opts = codex_engine::build::BuildOptions {
        context,
        dockerfile: a.file,
        context_dockerfile: None,
        tags: a.tag,
        build_args: key_values("--build-arg", &a.build_arg, |k| std::env::var(k).ok())?,
        target: a.target,
        no_cache: a.no_cache,
        labels: key_values("--label", &a.label, |_| Some(String::new()))?,
        network: a.network,
        cancel: Some(cancel_on_signals()?),
    };
    let result = if a.quiet {
        eng.build(&opts, &mut std::io::sink())?
    } else {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        eng.build(&opts, &mut out)?
    };
    if a.quiet {
        // SIGPIPE is ignored for builds (see streams_a_container): no panic on a closed pipe.
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), "sha256:{}", result.id);
    }
    Ok(0)
}

/// SIGINT, SIGTERM and SIGHUP stop the build between its steps or during a RUN (whose
/// container is then killed and removed) instead of killing this process and leaving the
/// step's container behind. The signals are blocked here and read by a thread.
fn cancel_on_signals() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use nix::sys::signal::{SigSet, Signal};
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block()?;
    let fd =
        nix::sys::signalfd::SignalFd::with_flags(&set, nix::sys::signalfd::SfdFlags::SFD_CLOEXEC)?;
    let f = flag.clone();
    std::thread::spawn(move || {
        if let Ok(Some(_)) = fd.read_signal() {
            eprintln!("codex-ctr: build interrupted: stopping");
            f.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    Ok(flag)
}
