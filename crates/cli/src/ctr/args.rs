//! codex-ctr's command line, as clap types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use super::netargs::NetworkCommand;

#[derive(Debug, Parser)]
#[command(name = "codex-ctr", about = "Containers without a daemon", version)]
pub struct Cli {
    /// Engine root (default $CODEX_CTR_ROOT or /var/lib/codex-ctr).
    #[arg(long, global = true)]
    pub root: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// `run`'s arguments (also parsed alone: runparse.rs).
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Print the id and return; the container runs on.
    #[arg(short, long)]
    pub detach: bool,
}

#[derive(Debug, Args, Clone)]
pub struct CreateArgs {
    /// Keep stdin open: the attached `run` passes its stdin to the container.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the container a terminal (its output is the terminal's; `attach` types into it).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Run a small init (the host's tini-static) as PID 1: it passes signals on and reaps orphans.
    #[arg(long)]
    pub init: bool,
    /// Pull the image first: missing (default), always or never (registries on the loopback only).
    #[arg(long, default_value = "missing", hide_default_value = true)]
    pub pull: String,
    /// The container's name (a value that starts with '-' is taken, and refused by name).
    #[arg(long, allow_hyphen_values = true)]
    pub name: Option<String>,
    /// An environment variable, KEY=VALUE (repeatable; wins over --env-file and the image).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// A file of KEY=VALUE lines ('#' comments; a bare KEY takes the host's value) (repeatable).
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// The command's working directory in the container (default: the image's, else /).
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Run the command as USER[:GROUP], names from the image's /etc/passwd or numbers (default: the image's user, else root).
    #[arg(short, long)]
    pub user: Option<String>,
    /// The container's hostname (default: the first 12 characters of its id).
    #[arg(long)]
    pub hostname: Option<String>,
    /// The network to join: none, host, bridge or a network's name (default: bridge; none
    /// for strict, host for minimal).
    #[arg(long, alias = "net")]
    pub network: Option<String>,
    /// Another name for the container on its network (repeatable).
    #[arg(long = "network-alias", alias = "alias")]
    pub network_alias: Vec<String>,
    /// A nameserver for its resolv.conf (repeatable; default: the host's).
    #[arg(long)]
    pub dns: Vec<String>,
    /// HOST:IP, a line of its hosts file (repeatable; IP may be host-gateway).
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Mount SRC:DST[:ro] (repeatable); SRC is a host path or a volume name; DST alone: a
    /// new anonymous volume.
    #[arg(short, long = "volume")]
    pub volume: Vec<String>,
    /// Mount a fresh, empty tmpfs at this path (repeatable).
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// A label, KEY=VALUE, to find the container by (repeatable).
    #[arg(short, long = "label")]
    pub label: Vec<String>,
    /// A file of KEY=VALUE label lines ('#' comments) (repeatable; -l wins).
    #[arg(long = "label-file")]
    pub label_file: Vec<PathBuf>,
    /// Memory limit: bytes or 512m, 1g, 1.5GiB (powers of 1024).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// CPU limit: a number of CPUs (0.5, 2) or a percentage of one CPU (50%).
    #[arg(long)]
    pub cpus: Option<String>,
    /// The most processes and threads the container may have at once (at least 1).
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// The most open files per process (RLIMIT_NOFILE, soft = hard).
    #[arg(long = "open-files")]
    pub open_files: Option<u64>,
    /// DEVICE:RATE, e.g. /dev/vda:1mb (repeatable): cap reads from a block device.
    #[arg(long = "device-read-bps")]
    pub device_read_bps: Vec<String>,
    /// DEVICE:RATE, e.g. /dev/vda:1mb (repeatable): cap writes to a block device.
    #[arg(long = "device-write-bps")]
    pub device_write_bps: Vec<String>,
    /// Rotate the log when it would grow past this size (10m, 512k; default 10m).
    #[arg(long = "log-max-size")]
    pub log_max_size: Option<String>,
    /// Log files kept, the live one included (default 3).
    #[arg(long = "log-max-files")]
    pub log_max_files: Option<u32>,
    /// How much of the host the container shares (default: standard):
    ///   minimal   runs a host program with the host's writable root filesystem, network and
    ///             PID namespace (own cgroup and rlimits only): a development mode, NOT a sandbox
    ///   standard  own namespaces, an image's root filesystem, Docker's default capabilities
    ///             and seccomp profile
    ///   strict    standard plus a read-only root, no capabilities, a user namespace, no network
    ///             unless --network, and caps of 512 pids and 512 MiB unless given
    #[arg(
        long,
        default_value = "standard",
        hide_default_value = true,
        verbatim_doc_comment
    )]
    pub isolation: String,
    /// The signal `stop` sends first, a name or number (default: the image's, else SIGTERM).
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Seconds between the stop signal and SIGKILL (default 10).
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<u64>,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Stop the container after this long (10s, 2m, 1h); it then exits with 124.
    #[arg(long)]
    pub timeout: Option<String>,
    /// After --timeout's stop signal, SIGKILL this much later (default 1s).
    #[arg(long = "timeout-grace")]
    pub timeout_grace: Option<String>,
    /// Run this directory as the root filesystem instead of an image.
    #[arg(long)]
    pub rootfs: Option<PathBuf>,
    /// The entrypoint (overrides the image's).
    #[arg(long)]
    pub entrypoint: Option<String>,
    // Monitors: restart policy and health check (docs/monitors.md).
    /// When to restart it after it exits: no (default), on-failure[:MAX], always or
    /// unless-stopped.
    #[arg(long)]
    pub restart: Option<String>,
    /// Restart the container (by its restart policy) when it turns unhealthy.
    #[arg(long = "restart-on-unhealthy")]
    pub restart_on_unhealthy: bool,
    /// A health check: a shell command run inside the container (exit 0 = healthy).
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// A health check: HTTP GET of PORT/PATH on the container's loopback (2xx/3xx).
    #[arg(long = "health-http")]
    pub health_http: Option<String>,
    /// A health check: TCP connect to PORT on the container's loopback.
    #[arg(long = "health-tcp")]
    pub health_tcp: Option<String>,
    /// Time between health checks (default 30s).
    #[arg(long = "health-interval")]
    pub health_interval: Option<String>,
    /// A check taking longer is killed and fails (default 30s).
    #[arg(long = "health-timeout")]
    pub health_timeout: Option<String>,
    /// Failures in a row that make it unhealthy (default 3).
    #[arg(long = "health-retries")]
    pub health_retries: Option<u32>,
    /// Failures this soon after a start do not count (default 0s).
    #[arg(long = "health-start-period")]
    pub health_start_period: Option<String>,
    /// No health check, not even the image's.
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// -p, -P, --expose (netflags.rs).
    #[command(flatten)]
    pub net: super::netflags::NetFlags,
    /// --cap-add, --privileged, --read-only, --security-opt, ... (secflags.rs).
    #[command(flatten)]
    pub sec: super::secflags::SecurityFlags,
    /// --cpu-shares, --cpuset-cpus/-mems, --memory-swap (schedflags.rs).
    #[command(flatten)]
    pub sched: super::schedflags::SchedFlags,
    /// --warn-memory, --warn-cpu, --stop-on-memory, --monitor-interval (monflags.rs).
    #[command(flatten)]
    pub mon: super::monflags::MonitorFlags,
    /// IMAGE then COMMAND... (with --rootfs or minimal isolation: only COMMAND...).
    #[arg(
        trailing_var_arg = true,
        required = true,
        value_name = "IMAGE [COMMAND]"
    )]
    pub rest: Vec<String>,
}

/// `run --help`'s examples: the common forms, copied and pasted.
pub(super) const RUN_EXAMPLES: &str = "\
Examples:
  codex-ctr run --rm busybox echo hi                 run a command and remove the container
  codex-ctr run -d --name web -p 8080:80 IMAGE       in the background, host port 8080 to 80
  codex-ctr run --rm -v data:/data busybox ls /data  with the named volume data at /data
  codex-ctr run --rm --isolation strict busybox id   read-only root, no capabilities, user ns";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and start a container (attached unless -d).
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Create a container.
    Create(CreateArgs),
    /// Start created or exited containers.
    Start {
        /// Stream the container's output and exit with its code (one container).
        #[arg(short, long)]
        attach: bool,
        /// Start every `always` (and not user-stopped `unless-stopped`) container whose
        /// supervisor is gone, e.g. at boot.
        #[arg(long = "all-restartable", conflicts_with_all = ["attach", "containers"])]
        all_restartable: bool,
        /// Containers to start (names or ids).
        containers: Vec<String>,
    },
    /// Stop containers: the stop signal, then SIGKILL after the timeout.
    Stop {
        /// Seconds to wait after the stop signal before SIGKILL (default: the container's
        /// --stop-timeout, else 10).
        #[arg(short = 't', long = "time")]
        time: Option<u64>,
        /// The signal to send first instead of the container's stop signal (a name or number).
        #[arg(short = 's', long)]
        signal: Option<String>,
        /// Containers to stop (names or ids).
        containers: Vec<String>,
    },
    /// Send a signal to every process of containers.
    Kill {
        /// The signal: a name (KILL, SIGTERM, RTMIN+1) or a number.
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        /// Containers to signal (names or ids).
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Stop running containers first.
        #[arg(short, long)]
        force: bool,
        /// Remove their anonymous volumes too (named volumes stay: `volume rm`).
        #[arg(short, long)]
        volumes: bool,
        /// Containers to remove (names or ids).
        containers: Vec<String>,
    },
    /// List containers.
    #[command(alias = "list")]
    Ps {
        /// Stopped and created containers too (default: running, paused, restarting).
        #[arg(short, long)]
        all: bool,
        /// name=, label=KEY[=VALUE], status=, id= (repeatable; all must match).
        #[arg(short, long)]
        filter: Vec<String>,
        /// Only the containers' short ids, one a line.
        #[arg(short, long)]
        quiet: bool,
        /// table, json, a template ('{{.Names}} {{.Status}}') or 'table TEMPLATE' (with a header).
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// A container's published ports (or the host address of one of them).
    Port {
        /// The container (name or id).
        container: String,
        /// Only this port, CONTAINERPORT[/tcp|udp]: print its host address.
        port: Option<String>,
    },
    /// Everything about a container (--spec: its OCI spec).
    Inspect {
        /// Print the OCI runtime spec made for the container instead of its record.
        #[arg(long)]
        spec: bool,
        /// A template per container ('{{.State.Status}}', '{{json .Config}}'), or json.
        #[arg(short, long)]
        format: Option<String>,
        /// The containers (names or ids): one prints its object, several an array.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// A container's output.
    Logs {
        /// Prefix each line with the time it was written (RFC 3339).
        #[arg(short, long)]
        timestamps: bool,
        /// Keep printing new output until the container stops.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines (with -f: then the new ones).
        #[arg(short = 'n', long)]
        tail: Option<usize>,
        /// Only lines since a time (2026-11-23T10:00:00Z), a duration ago (10m) or
        /// Unix seconds.
        #[arg(long)]
        since: Option<String>,
        /// Only the container's stdout.
        #[arg(long)]
        stdout: bool,
        /// Only the container's stderr.
        #[arg(long)]
        stderr: bool,
        /// The container (name or id).
        container: String,
    },
    /// Wait for containers to exit and print their exit codes; with --condition, wait
    /// until each is running, healthy, exited or removed and print its name.
    Wait {
        /// running, healthy, exited or removed.
        #[arg(long)]
        condition: Option<String>,
        /// Give up after this long (1s, 500ms, 2m): exit code 1.
        #[arg(long, requires = "condition")]
        timeout: Option<String>,
        /// Containers to wait for (names or ids).
        containers: Vec<String>,
    },
    /// Stop and start containers again.
    Restart {
        /// Seconds to wait after the stop signal before SIGKILL (default: the container's
        /// --stop-timeout, else 10).
        #[arg(short = 't', long = "time")]
        time: Option<u64>,
        /// Containers to restart (names or ids).
        containers: Vec<String>,
    },
    /// Connect to a running container: its output from now on, and its terminal
    /// (typing, resizes) when it has one (-t); Ctrl-P Ctrl-Q detaches.
    Attach {
        /// The running container (name or id).
        container: String,
    },
    /// A live view of every container (q quits), or one running container's processes.
    Top(super::ops::TopArgs),
    /// Change the limits of containers; running ones get them at once, and every later start.
    Update(super::ops::UpdateArgs),
    /// Freeze every process of containers.
    Pause {
        /// Containers to pause (names or ids).
        containers: Vec<String>,
    },
    /// Thaw paused containers.
    Unpause {
        /// Containers to unpause (names or ids).
        containers: Vec<String>,
    },
    /// Run a command in a running container; exits with its code.
    Exec {
        /// Connect stdin.
        #[arg(short, long)]
        interactive: bool,
        /// Give the command a terminal.
        #[arg(short, long)]
        tty: bool,
        /// An environment variable, KEY=VALUE, replacing the container's (repeatable).
        #[arg(short, long = "env")]
        env: Vec<String>,
        /// The command's working directory (default: the container's).
        #[arg(short = 'w', long = "workdir")]
        workdir: Option<String>,
        /// Run the command as USER[:GROUP], names from the container's /etc/passwd or numbers (default: the container's user).
        #[arg(short, long)]
        user: Option<String>,
        /// The running container (name or id).
        container: String,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Resource usage of running containers, streamed, once, or as a plot of the history.
    Stats(super::monflags::StatsArgs),
    /// Copy files or directories into or out of a container: NAME:PATH on one side.
    Cp {
        /// What to copy: a host path, or CONTAINER:PATH.
        source: String,
        /// Where to copy it: CONTAINER:PATH, or a host path.
        destination: String,
    },
    /// Remove every container that is not running.
    Prune,
    /// Give a container a new name (also while it runs).
    Rename {
        /// The container (name or id).
        container: String,
        /// Its new name.
        new_name: String,
    },
    /// A container's state as JSON, or (--rootfs) a tar of its filesystem.
    Export {
        /// Write to this file (default: stdout).
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
        /// A tar of the container's root filesystem instead of its state as JSON.
        #[arg(long)]
        rootfs: bool,
        /// The container (name or id).
        container: String,
    },
    /// What happened to containers (create, start, die, oom, restart, health_status,
    /// stop, kill, pause, unpause, destroy); follows new ones unless --until is given.
    Events {
        /// Only events since a time (2026-11-23T10:00:00Z), a duration ago (10m) or
        /// Unix seconds.
        #[arg(long)]
        since: Option<String>,
        /// Only events until then (same forms); then exit.
        #[arg(long)]
        until: Option<String>,
        /// container=NAME|ID, event=ACTION, label=KEY[=VALUE] (repeatable).
        #[arg(short, long)]
        filter: Vec<String>,
        /// Output format: table, or json (one event a line).
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
    /// The engine's version.
    Version,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Write man pages (codex-ctr.1 and one per command) into a directory.
    #[command(hide = true)]
    Manpages {
        /// The directory to write them into (made if missing).
        dir: PathBuf,
    },
    /// The host and the engine: cgroup version and driver, kernel, root, counts.
    Info,
    /// Serve the Docker Engine API on a unix socket (docs/docker-api.md).
    Serve(super::serve::ServeArgs),
    /// Pull an image from a registry (as `image pull`).
    Pull(super::image::PullArgs),
    /// Push an image to a registry (as `image push`).
    Push(super::image::PushArgs),
    /// Make an image of a container's changes (one new layer; --change edits the config).
    Commit(super::build::CommitArgs),
    /// The paths a container added (A), changed (C) or deleted (D) in its image's files.
    Diff(super::diff::DiffArgs),
    /// Build an image from a Dockerfile and a context directory.
    Build(super::build::BuildArgs),
    /// Store credentials for a registry in Docker's config.json (0600).
    Login(super::image::LoginArgs),
    /// List images (as `image ls`).
    Images {
        /// Output format: table or json.
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Only the images' short ids, one a line.
        #[arg(short, long)]
        quiet: bool,
        /// dangling=true|false, reference=PATTERN, label=KEY[=VALUE] (repeatable).
        #[arg(short, long)]
        filter: Vec<String>,
    },
    /// Remove images (as `image rm`).
    Rmi {
        /// Images to remove: NAME[:TAG], or an id (then every reference to it).
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Images.
    Image {
        #[command(subcommand)]
        command: super::image::ImageCommand,
    },
    /// Named volumes.
    Volume {
        #[command(subcommand)]
        command: VolumeCommand,
    },
    /// Networks: a bridge, a subnet and its addresses.
    Network {
        #[command(subcommand)]
        command: NetworkCommand,
    },
    /// The engine as a whole.
    System {
        #[command(subcommand)]
        command: SystemCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Disk used by images, containers and volumes, and how much nothing uses.
    Df(super::ops::DfArgs),
    /// Check the whole root: repair what interrupted commands left (the registry's files,
    /// addresses of containers that are gone), and notice every container whose
    /// supervisor died. Other commands do this only for what they touch.
    Check,
    /// Remove stopped containers, networks no container is on, and dangling images
    /// (-a: every image no container uses; --volumes: volumes no container mounts).
    Prune {
        /// Every image no container uses, not only dangling ones.
        #[arg(short, long)]
        all: bool,
        /// Also volumes no container mounts.
        #[arg(long)]
        volumes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume (an existing one of that name is kept).
    Create {
        /// The volume's name.
        name: String,
    },
    /// List volumes and the containers that mount them.
    #[command(alias = "list")]
    Ls {
        /// Only the volumes' names, one a line.
        #[arg(short, long)]
        quiet: bool,
        /// Output format: table or json.
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
    /// A volume as JSON.
    Inspect {
        /// The volume's name.
        name: String,
    },
    /// Remove volumes and their data (refused while a container mounts one).
    Rm {
        /// Volumes to remove (names).
        names: Vec<String>,
    },
    /// Remove every volume no container mounts.
    Prune,
}
impl Command {
    /// Whether the command streams a container's output while it holds the container
    /// (attached `run`, `start -a`): a closed stdout must not kill it mid-way.
    pub fn streams_a_container(&self) -> bool {
        match self {
            Command::Run(run) => !run.detach,
            Command::Start { attach, .. } => *attach,
            // A client that goes away must not end the server.
            Command::Serve(_) => true,
            // A closed reader must not stop a build half-way: its progress is dropped.
            Command::Build(_)
            | Command::Image {
                command: super::image::ImageCommand::Build(_),
            } => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command and every flag says what it does in `--help`: a user reads the
    /// help, not the source.
    #[test]
    fn every_command_and_flag_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.is_hide_set() || sub.get_name() == "help" {
                    continue;
                }
                let p = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(format!("{p} (the command)"));
                }
                walk(sub, &p, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "codex-ctr", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
