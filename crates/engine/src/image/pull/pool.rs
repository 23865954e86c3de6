//! A few blob transfers at once: `n` threads, each with its own clone of the client
//! (so a token one of them fetched is not shared, but nothing is locked either), taking
//! jobs in order; the first error stops new jobs from starting.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::client::Client;
use crate::error::{Error, Result};

/// Runs `f` on every job, up to `n` at once; the results in the jobs' order, or the
/// first error.
pub(crate) fn run<T: Sync, R: Send>(
    client: &Client,
    jobs: &[T],
    n: usize,
    f: impl Fn(&mut Client, &T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    let errors: Mutex<Vec<Error>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..n.min(jobs.len()) {
            let mut c = client.clone();
            let (next, failed, results, errors, f) = (&next, &failed, &results, &errors, &f);
            s.spawn(move || {
                while !failed.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(job) = jobs.get(i) else {
                        break;
                    };
                    match f(&mut c, job) {
                        Ok(r) => {
                            if let Ok(mut v) = results.lock() {
                                v[i] = Some(r);
                            }
                        }
                        Err(e) => {
                            failed.store(true, Ordering::SeqCst);
                            if let Ok(mut v) = errors.lock() {
                                v.push(e);
                            }
                        }
                    }
                }
            });
        }
    });
    let poisoned = || Error::invalid("registry", "a transfer thread panicked");
    let mut errors = errors.into_inner().map_err(|_| poisoned())?;
    if !errors.is_empty() {
        return Err(errors.swap_remove(0));
    }
    results
        .into_inner()
        .map_err(|_| poisoned())?
        .into_iter()
        .map(|r| r.ok_or_else(poisoned))
        .collect()
}
