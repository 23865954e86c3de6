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
}

impl NetFlags {
    pub fn publish(&self) -> anyhow::Result<Publish> {
        Ok(Publish::parse(
            &self.publish,
            self.publish_all,
            &self.expose,
        )?)
    }
}
