//! `pull`'s progress: a bar per layer on a terminal (indicatif), JSON lines
//! (`{"id":..,"status":..,"current":..,"total":..}`) when stdout is not one (scripts,
//! CI logs), nothing with `-q`.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use codex_engine::image::pull::{ProgressEvent, ProgressSink};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// The sink for this invocation, or `None` when quiet.
pub fn sink(quiet: bool) -> Option<ProgressSink> {
    if quiet {
        return None;
    }
    if std::io::stdout().is_terminal() {
        Some(bars())
    } else {
        Some(ProgressSink(Arc::new(|e: &ProgressEvent| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", e.json_line());
        })))
    }
}

fn bars() -> ProgressSink {
    let multi = MultiProgress::new();
    let style =
        ProgressStyle::with_template("{prefix} {msg:18} [{bar:30}] {bytes:>10}/{total_bytes:10}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    let bars: Mutex<HashMap<String, ProgressBar>> = Mutex::new(HashMap::new());
    ProgressSink(Arc::new(move |e: &ProgressEvent| {
        let Ok(mut map) = bars.lock() else {
            return;
        };
        let bar = map.entry(e.id.clone()).or_insert_with(|| {
            let b = multi.add(ProgressBar::new(e.total));
            b.set_style(style.clone());
            b.set_prefix(e.id.clone());
            b
        });
        bar.set_length(e.total);
        bar.set_position(e.current);
        bar.set_message(e.status.clone());
        if matches!(e.status.as_str(), "Download complete" | "Already exists") {
            bar.finish();
        }
    }))
}
