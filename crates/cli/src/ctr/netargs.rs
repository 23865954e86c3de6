//! `codex-ctr network ...` arguments.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network (its subnet chosen to avoid the host's routes unless given).
    Create {
        /// IPv4 CIDR, e.g. 10.89.0.0/24.
        #[arg(long)]
        subnet: Option<String>,
        /// The bridge's address (default: the subnet's first).
        #[arg(long)]
        gateway: Option<String>,
        /// No route out of the network.
        #[arg(long)]
        internal: bool,
        /// KEY=VALUE (repeatable).
        #[arg(short, long = "label")]
        label: Vec<String>,
        /// The network's name.
        name: String,
    },
    /// List networks (the default one included).
    #[command(alias = "list")]
    Ls {
        /// label=KEY[=VALUE] (repeatable; all must match).
        #[arg(short, long)]
        filter: Vec<String>,
        /// Only the networks' names, one a line.
        #[arg(short, long)]
        quiet: bool,
        /// Output format: table or json.
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
    /// Networks as JSON: subnet, gateway, bridge, and each container's IP, MAC, aliases.
    Inspect {
        /// Networks to show (names or ids).
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks (refused while a container is on one, unless -f).
    #[command(alias = "remove")]
    Rm {
        /// Remove a network even while containers are on it (they lose that network).
        #[arg(short, long)]
        force: bool,
        /// Networks to remove (names or ids).
        names: Vec<String>,
    },
    /// Remove every network no container is on (never the default one).
    Prune {
        /// label=KEY[=VALUE] (repeatable; all must match).
        #[arg(long)]
        filter: Vec<String>,
    },
    /// Connect a container to a network (a running one at once: a new interface, its
    /// name and aliases resolvable by the network's other containers).
    Connect {
        /// A name the container is also known by on this network (repeatable).
        #[arg(long = "alias")]
        alias: Vec<String>,
        /// Its IPv4 address on the network (default: the lowest free one).
        #[arg(long)]
        ip: Option<String>,
        /// The network (name or id).
        network: String,
        /// The container (name or id).
        container: String,
    },
    /// Disconnect a container from a network (a running one loses the interface at once).
    Disconnect {
        /// Free the address even if the interface could not be removed.
        #[arg(short, long)]
        force: bool,
        /// The network (name or id).
        network: String,
        /// The container (name or id).
        container: String,
    },
}
