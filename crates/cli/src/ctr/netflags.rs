//! The networking flags of `create`/`run` added with published ports (kept apart from
//! args.rs, flattened into [`super::args::CreateArgs`]).

use clap::Args;
use codex_engine::network::ports::Publish;

#[derive(Debug, Args, Clone, Default)]
pub struct NetFlags {
    /// [IP:][HOSTPORT:]CONTAINERPORT[/tcp|udp] (repeatable): publish a port on the host;
    /// an empty HOSTPORT takes a free one.
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish every exposed port (--expose) on a free host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// PORT[/tcp|udp] (repeatable): a port the container serves, for -P.
    #[arg(long)]
    pub expose: Vec<String>,
    /// RATE (8mbit, 1gbit, 500kbps): limit the container's traffic, each way.
    #[arg(long = "network-rate")]
    pub network_rate: Option<String>,
}

impl NetFlags {
    pub fn network_rate(&self) -> anyhow::Result<Option<u64>> {
        Ok(self
            .network_rate
            .as_deref()
            .map(|r| codex_engine::network::rate::parse_rate("network-rate", r))
            .transpose()?)
    }

    pub fn publish(&self) -> anyhow::Result<Publish> {
        Ok(Publish::parse(
            &self.publish,
            self.publish_all,
            &self.expose,
        )?)
    }
}
