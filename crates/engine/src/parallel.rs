//! Per-container work of the listing commands, spread over the CPUs.
//!
//! `ps` reads every container's record and checks each live one's supervisor: tens of
//! microseconds each, mostly system calls that do not wait on each other, so with 1000
//! containers the listing is most of what `ps` costs (docs/engine.md, "Cost model").
//! `stats` samples cgroup files the same way.

use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};

/// How a listing spreads its items: each thread gets at least `min_per_thread` (a thread
/// costs more than a few items save), and at most `max_threads` run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spread {
    pub min_per_thread: usize,
    pub max_threads: usize,
}

impl Spread {
    /// For work that is system calls and parsing (records, `/proc`): one thread per CPU,
    /// up to 4, each with at least 64 items.
    pub fn per_cpu() -> Spread {
        let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Spread {
            min_per_thread: 64,
            max_threads: cpus.min(4),
        }
    }
}

/// `items.into_iter().map(f).collect()`, in the items' order, on the threads `spread`
/// allows. This thread works too, so a thread that cannot be started only makes it
/// slower, and a panic in `f` is the caller's, as in a plain map.
pub(crate) fn map<T: Send, R: Send>(
    items: Vec<T>,
    spread: Spread,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let threads = (items.len() / spread.min_per_thread.max(1)).min(spread.max_threads);
    if threads <= 1 {
        return items.into_iter().map(f).collect();
    }
    // Chunks by index, taken from a queue by whichever thread is free.
    let per = items.len().div_ceil(threads * 2);
    let mut chunks = Vec::new();
    let mut rest = items.into_iter();
    loop {
        let chunk: Vec<T> = rest.by_ref().take(per).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push((chunks.len(), chunk));
    }
    let queue = Mutex::new(chunks);
    let done = Mutex::new(Vec::new());
    let work = || loop {
        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let Some((index, chunk)) = next else { break };
        let part: Vec<R> = chunk.into_iter().map(&f).collect();
        done.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((index, part));
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            // A thread that cannot be started leaves its share to the others.
            let _ = std::thread::Builder::new().spawn_scoped(scope, work);
        }
        work();
    });
    let mut parts = done.into_inner().unwrap_or_else(PoisonError::into_inner);
    parts.sort_unstable_by_key(|(index, _)| *index);
    parts.into_iter().flat_map(|(_, part)| part).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both spreads in use: the listings' (per CPU) and `stats`' sampling (4 threads
    /// from 8 items on, usage::map_parallel).
    #[test]
    fn results_keep_the_items_order_at_every_size() {
        let sampling = Spread {
            min_per_thread: 2,
            max_threads: 4,
        };
        for spread in [Spread::per_cpu(), sampling] {
            for n in [0, 1, 7, 8, 9, 63, 64, 200, 1000, 1001] {
                let items: Vec<usize> = (0..n).collect();
                let out = map(items, spread, |i| i * 2);
                assert_eq!(
                    out,
                    (0..n).map(|i| i * 2).collect::<Vec<_>>(),
                    "n = {n}, {spread:?}"
                );
            }
        }
    }

    /// Each item waits (up to 5 s) until a second thread has taken one: with one thread
    /// only, that never happens and the test fails. Needs 2 CPUs (CI's machines have 2).
    #[test]
    fn many_items_are_shared_among_threads() {
        use std::collections::HashSet;
        use std::time::{Duration, Instant};
        let seen = Mutex::new(HashSet::new());
        let deadline = Instant::now() + Duration::from_secs(5);
        let ids = map((0..1000).collect::<Vec<u32>>(), Spread::per_cpu(), |_| {
            let me = std::thread::current().id();
            seen.lock().unwrap().insert(me);
            while seen.lock().unwrap().len() < 2 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            me
        });
        let distinct: HashSet<_> = ids.into_iter().collect();
        let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        assert!(
            distinct.len() >= 2,
            "1000 items ran on one thread ({cpus} CPUs)"
        );
    }
}
