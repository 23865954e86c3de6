//! An async subscription to the engine's events, for tokio programs that react to what
//! happens to containers (a `die`, a `restart`, a `health_status`) without a thread
//! per subscriber and without polling: the [`EventReader`]'s inotify watch of the root
//! is registered with tokio's reactor, and each wake-up reads only what was appended
//! since the last one.
//!
//! ```no_run
//! # async fn demo(eng: codex_engine::aio::AsyncEngine) -> codex_engine::Result<()> {
//! use codex_engine::events::EventQuery;
//! let query = EventQuery {
//!     filters: EventQuery::parse_filters(&["event=die".into(), "event=restart".into()])?,
//!     ..Default::default()
//! };
//! // From now on: what is already kept in the events file is skipped.
//! let mut events = eng.subscribe(query, false)?;
//! loop {
//!     let e = events.next().await?;
//!     println!("{} {} {:?}", e.name, e.action, e.attributes.get("exit_code"));
//! }
//! # }
//! ```

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use crate::aio::AsyncEngine;
use crate::error::{Context, Error, Result};
use crate::events::{Event, EventQuery, EventReader};

/// Longest sleep between looks at the events file, should a wake-up be lost (an
/// inotify queue overflow): a subscriber is late then, never stuck.
const RECHECK: Duration = Duration::from_secs(1);

/// Events as they are written; from [`AsyncEngine::subscribe`].
pub struct EventSubscription {
    reader: EventReader,
    wake: AsyncFd<OwnedFd>,
    query: EventQuery,
    pending: VecDeque<Event>,
}

impl EventSubscription {
    /// Subscribes to the events of the engine root `root` that `query` selects; with
    /// `backlog`, every event still kept comes first, else only those written from now.
    pub fn open(root: &Path, query: EventQuery, backlog: bool) -> Result<EventSubscription> {
        let mut reader = EventReader::open(root)?;
        if !backlog {
            // Moves the reader to the end of what is there (the watch is already set,
            // so nothing written from here on can be missed).
            reader.read_new()?;
        }
        let fd = reader
            .wake_fd()
            .try_clone_to_owned()
            .ctx(|| "duplicating the events inotify fd")?;
        // SAFETY: the AsyncFd owns the OwnedFd, so the fd stays open and the same for the
        // AsyncFd's whole life.
        let wake = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| Error::Io {
                context: "registering the events watch with the tokio reactor".into(),
                cause: e.into_parts().1,
            })?;
        Ok(EventSubscription {
            reader,
            wake,
            query,
            pending: VecDeque::new(),
        })
    }

    /// The next event the query selects, waiting for it as long as it takes. Events
    /// come in the order they were written. Cancel-safe: an event read but not yet
    /// returned stays queued for the next call.
    pub async fn next(&mut self) -> Result<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(e);
            }
            self.take_new()?;
            if !self.pending.is_empty() {
                continue;
            }
            if let Ok(ready) = tokio::time::timeout(RECHECK, self.wake.readable()).await {
                let mut guard = ready.ctx(|| "waiting for events")?;
                guard.clear_ready();
            }
            // Drains the watch's queue (its events only say "look again"); anything
            // written after this wakes the fd again.
            self.reader.wait(Duration::ZERO)?;
        }
    }

    /// The selected events written since the last look, without waiting.
    pub fn try_next_batch(&mut self) -> Result<Vec<Event>> {
        self.take_new()?;
        Ok(self.pending.drain(..).collect())
    }

    fn take_new(&mut self) -> Result<()> {
        let query = &self.query;
        self.pending.extend(
            self.reader
                .read_new()?
                .into_iter()
                .filter(|e| query.matches(e)),
        );
        Ok(())
    }
}

impl AsyncEngine {
    /// Subscribes to this engine's events (see [`EventSubscription`]): those `query`
    /// selects, with every kept one first if `backlog`, else from now on. Events are
    /// best effort (an event that could not be written is lost, the action it reports
    /// is not undone), bounded (the file rotates past 1 MiB: a subscriber more than a
    /// rotation behind loses the oldest) and shared by every process using the root.
    pub fn subscribe(&self, query: EventQuery, backlog: bool) -> Result<EventSubscription> {
        EventSubscription::open(self.engine().root(), query, backlog)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::emit;

    fn event(action: &str, name: &str) -> Event {
        Event {
            time: codex_runtime::state::now_rfc3339(),
            action: action.into(),
            id: format!("{name}0000"),
            name: name.into(),
            attributes: Default::default(),
        }
    }

    fn query(filters: &[&str]) -> EventQuery {
        let f: Vec<String> = filters.iter().map(|s| s.to_string()).collect();
        EventQuery {
            filters: EventQuery::parse_filters(&f).unwrap(),
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_subscriber_wakes_for_new_events_and_skips_the_backlog_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        emit(&root, &event("create", "old"));
        let mut from_now = EventSubscription::open(&root, query(&[]), false).unwrap();
        let mut all = EventSubscription::open(&root, query(&[]), true).unwrap();
        assert_eq!(all.next().await.unwrap().name, "old", "the backlog first");
        // Written by another task after the subscriber is already waiting: it must be
        // woken by the write (the bound is far above the 1 s recheck, so a missed
        // wake-up would still pass; the order check below is what matters).
        let writer_root = root.clone();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            emit(&writer_root, &event("start", "new"));
            emit(&writer_root, &event("die", "new"));
        });
        let got = tokio::time::timeout(Duration::from_secs(20), from_now.next())
            .await
            .expect("woken")
            .unwrap();
        assert_eq!((got.name.as_str(), got.action.as_str()), ("new", "start"));
        let got = from_now.next().await.unwrap();
        assert_eq!(got.action, "die");
        writer.await.unwrap();
        let rest: Vec<String> = [all.next().await.unwrap(), all.next().await.unwrap()]
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(rest, ["start", "die"]);
        assert!(from_now.try_next_batch().unwrap().is_empty());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_query_selects_what_a_subscriber_sees() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut dies = EventSubscription::open(root, query(&["event=die"]), true).unwrap();
        emit(root, &event("start", "a"));
        emit(root, &event("die", "a"));
        emit(root, &event("start", "b"));
        emit(root, &event("die", "b"));
        let names: Vec<String> = [dies.next().await.unwrap(), dies.next().await.unwrap()]
            .into_iter()
            .map(|e| format!("{}:{}", e.name, e.action))
            .collect();
        assert_eq!(names, ["a:die", "b:die"]);
        assert!(dies.try_next_batch().unwrap().is_empty());
    }
}
