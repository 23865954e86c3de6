//! The bots as containers: made and started, looked at, and stopped and removed at
//! the end. Every container is referred to by id
//! (a rename by someone else does not lose it) and remembered as soon as it exists, so
//! the cleanup covers a start that failed half-way.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use codex_engine::aio::AsyncEngine;
use codex_engine::registry::ContainerStatus;
use codex_engine::usage::ContainerUsage;
use codex_engine::Error;

use crate::bots::{Bot, LABEL};
use crate::status::BotView;

/// One bot the executor made a container for.
pub struct Member {
    pub bot: Bot,
    pub id: String,
    pub last: Option<ContainerUsage>,
}

pub struct Fleet {
    pub eng: AsyncEngine,
    pub prefix: String,
    pub members: Vec<Member>,
}

/// Writes a line to stdout; a closed stdout is not worth stopping the bots for.
pub fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

impl Fleet {
    pub fn new(eng: AsyncEngine, prefix: String) -> Fleet {
        Fleet {
            eng,
            prefix,
            members: Vec::new(),
        }
    }

    /// Creates and starts the bot's container. A container of the same name that an
    /// earlier run of this executor left (killed before its cleanup) is removed first;
    /// one it did not make is an error.
    pub async fn launch(&mut self, bot: Bot) -> Result<()> {
        let name = bot.config.name.clone().unwrap_or_default();
        match self.eng.engine().get(&name) {
            Ok(old) if old.labels.get(LABEL) == Some(&self.prefix) => {
                self.eng
                    .remove(&old.id, true, true)
                    .await
                    .with_context(|| format!("removing {name}, left by an earlier run"))?;
                say(&format!("removed {name}, left by an earlier run"));
            }
            Ok(_) => bail!(
                "bot {}: a container named {name} exists that this executor did not make",
                bot.name
            ),
            Err(Error::NotFound { .. }) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("bot {}: looking up {name}", bot.name))
            }
        }
        let rec = self
            .eng
            .create(bot.config.clone())
            .await
            .with_context(|| format!("bot {}: creating {name}", bot.name))?;
        let id = rec.id.clone();
        self.members.push(Member {
            bot,
            id: id.clone(),
            last: None,
        });
        self.eng
            .start(&id)
            .await
            .with_context(|| format!("starting {name}"))?;
        say(&format!("started {name} ({})", id.get(..12).unwrap_or(&id)));
        Ok(())
    }

    /// Samples every running bot over `window`: one window for all of them; should one
    /// stop in between (the batch then fails), each is sampled alone.
    async fn sample(&self, window: Duration) -> HashMap<String, ContainerUsage> {
        let running: Vec<String> = self
            .members
            .iter()
            .filter(|m| {
                self.eng
                    .engine()
                    .get(&m.id)
                    .is_ok_and(|r| r.status == ContainerStatus::Running)
            })
            .map(|m| m.id.clone())
            .collect();
        if running.is_empty() {
            return HashMap::new();
        }
        let batch = match self.eng.usage(running.clone(), window).await {
            Ok(b) => b,
            Err(_) => {
                let mut set = tokio::task::JoinSet::new();
                for id in running {
                    let eng = self.eng.clone();
                    set.spawn(async move { eng.usage(vec![id], window).await });
                }
                let mut all = Vec::new();
                while let Some(r) = set.join_next().await {
                    if let Ok(Ok(u)) = r {
                        all.extend(u);
                    }
                }
                all
            }
        };
        batch.into_iter().map(|u| (u.id.clone(), u)).collect()
    }

    /// One round: samples every bot and returns what to show of each. The healing
    /// is the engine's (restart policies, `--restart-on-unhealthy`, and the memory
    /// ceiling as `--stop-on-memory`, all in each bot's supervisor).
    pub async fn tick(&mut self, window: Duration) -> Vec<BotView> {
        let mut usage = self.sample(window).await;
        for m in &mut self.members {
            m.last = usage.remove(&m.id);
        }
        self.members.iter().map(|m| self.view(m)).collect()
    }

    fn view(&self, m: &Member) -> BotView {
        let rec = self.eng.engine().get(&m.id);
        let (state, health, restarts) = match &rec {
            Ok(r) => (
                r.status.to_string(),
                r.health
                    .as_ref()
                    .map_or("-", |h| h.status.as_str())
                    .to_string(),
                r.restart_count,
            ),
            Err(_) => ("gone".into(), "-".into(), 0),
        };
        BotView {
            name: m.bot.name.clone(),
            state,
            health,
            restarts,
            cpu_percent: m.last.as_ref().map(|u| u.cpu_percent),
            memory: m.last.as_ref().map(|u| u.memory_usage),
            memory_ceiling: m.bot.memory_ceiling,
        }
    }

    /// Stops every bot (its stop signal, SIGKILL after its stop timeout; all at once)
    /// and removes its container and anonymous volumes. Returns whether all went.
    pub async fn shutdown(&mut self) -> bool {
        let mut set = tokio::task::JoinSet::new();
        for m in self.members.drain(..) {
            let eng = self.eng.clone();
            set.spawn(async move {
                let name = m.bot.config.name.clone().unwrap_or_default();
                let stopped = eng.stop(&m.id, m.bot.stop_timeout).await;
                let removed = eng.remove(&m.id, true, true).await;
                match (stopped, removed) {
                    (_, Ok(())) => Ok(name),
                    // Already gone (removed by someone else) is what was wanted.
                    (_, Err(Error::NotFound { .. })) => Ok(name),
                    (_, Err(e)) => Err(format!("removing {name}: {e}")),
                }
            });
        }
        let mut ok = true;
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(name)) => say(&format!("removed {name}")),
                Ok(Err(e)) => {
                    eprintln!("codex-bot-executor: {e}");
                    ok = false;
                }
                Err(e) => {
                    eprintln!("codex-bot-executor: a cleanup task failed: {e}");
                    ok = false;
                }
            }
        }
        ok
    }
}
