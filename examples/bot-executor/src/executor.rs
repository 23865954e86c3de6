//! The loop: launch every bot, then until SIGINT or SIGTERM, print the engine's events
//! about them as they come and, every interval, sample them and print the status
//! block; then stop and remove them all.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};

use codex_engine::aio::AsyncEngine;
use codex_engine::engine::Engine;
use codex_engine::events::{Event, EventQuery};

use crate::args::{self, Args};
use crate::bots::{self, LABEL};
use crate::fleet::{say, Fleet};
use crate::status;

/// Runs the bots until a signal; whether everything was cleaned up.
pub async fn run(args: Args) -> Result<bool> {
    // Every bot is checked before anything is made.
    let bots = bots::load(&args.bots, &args.prefix)?;
    let supervisor = args::supervisor(args.supervisor.clone())?;
    let engine = Engine::open(&args.root, supervisor)
        .with_context(|| format!("opening the engine root {}", args.root.display()))?;
    let eng = AsyncEngine::new(engine);
    // Registered before the first container exists: a signal during the launch is
    // queued and seen by the loop, which then cleans up.
    let mut term = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    let query = EventQuery {
        filters: vec![("label".into(), format!("{LABEL}={}", args.prefix))],
        ..Default::default()
    };
    let mut events = eng.subscribe(query, false)?;
    let mut fleet = Fleet::new(eng, args.prefix.clone());
    for bot in bots {
        if let Err(e) = fleet.launch(bot).await {
            fleet.shutdown().await;
            return Err(e);
        }
    }
    let tty = std::io::stdout().is_terminal();
    let window = (args.interval / 2).min(Duration::from_millis(500));
    let mut ticker = tokio::time::interval(args.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drawn = 0;
    let why = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            e = events.next() => match e {
                Ok(e) => {
                    // On a terminal the line scrolls up above the block, which is
                    // drawn anew below it.
                    say(&event_line(&e));
                    drawn = 0;
                }
                Err(e) => eprintln!("codex-bot-executor: reading events: {e}"),
            },
            _ = ticker.tick() => {
                let views = fleet.tick(window).await;
                if tty {
                    say(status::tty_block(drawn, &views).trim_end());
                    drawn = views.len() + 1;
                } else {
                    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
                    say(status::plain_block(&now.to_string(), &views).trim_end());
                }
            }
        }
    };
    say(&format!("{why}: stopping and removing the bots"));
    Ok(fleet.shutdown().await)
}

/// `event TIME BOT ACTION key=value...` (the labels left out).
fn event_line(e: &Event) -> String {
    let mut s = format!("event {} {} {}", e.time, e.name, e.action);
    for (k, v) in &e.attributes {
        if !k.starts_with("codex.") {
            s.push_str(&format!(" {k}={v}"));
        }
    }
    s
}
