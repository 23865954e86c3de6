//! Pull progress: events per blob, for a terminal display or JSON lines (the CLI's
//! choice), throttled so a big layer makes about a hundred events, not one per read.

use std::sync::Arc;

/// One step of one blob's download.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProgressEvent {
    /// The blob's digest, short (12 hex digits, as Docker shows layers).
    pub id: String,
    /// `Waiting`, `Downloading`, `Resuming`, `Verifying`, `Download complete`,
    /// `Already exists`.
    pub status: String,
    /// Bytes of the blob on disk so far.
    pub current: u64,
    /// The blob's size (from its descriptor).
    pub total: u64,
}

impl ProgressEvent {
    pub(crate) fn new(hex: &str, status: &str, current: u64, total: u64) -> ProgressEvent {
        ProgressEvent {
            id: hex.chars().take(12).collect(),
            status: status.to_string(),
            current,
            total,
        }
    }

    /// The JSON line form: `{"id":..,"status":..,"current":..,"total":..}`.
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Where events go (called from the download threads).
#[derive(Clone)]
pub struct ProgressSink(pub Arc<dyn Fn(&ProgressEvent) + Send + Sync>);

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressSink")
    }
}

impl ProgressSink {
    pub(crate) fn emit(sink: Option<&ProgressSink>, ev: ProgressEvent) {
        if let Some(s) = sink {
            (s.0)(&ev);
        }
    }
}

/// Whether a download at `current` (last reported at `last`) is worth an event: after
/// each 1% of the blob (but no closer than 512 KiB apart), and always at the end.
pub(crate) fn due(last: u64, current: u64, total: u64) -> bool {
    let step = (total / 100).max(512 << 10);
    current >= total || current.saturating_sub(last) >= step
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_throttled_to_a_percent_or_half_a_mebibyte() {
        let total = 100 << 20; // 100 MiB: a step of 1 MiB
        assert!(!due(0, 1000, total));
        assert!(!due(0, (1 << 20) - 1, total));
        assert!(due(0, 1 << 20, total));
        assert!(due(5 << 20, total, total), "the end always");
        // Small blobs: 512 KiB steps, and the end.
        assert!(!due(0, 100 << 10, 1 << 20));
        assert!(due(0, 512 << 10, 1 << 20));
        assert!(due(0, 10, 10));
        // Counting a large blob's events: about 100.
        let (mut last, mut n) = (0, 0);
        let mut cur = 0;
        while cur < total {
            cur = (cur + 64 * 1024).min(total);
            if due(last, cur, total) {
                n += 1;
                last = cur;
            }
        }
        assert!((95..=101).contains(&n), "{n}");
    }

    #[test]
    fn json_lines_have_docker_like_fields() {
        let e = ProgressEvent::new(&"ab".repeat(32), "Downloading", 5, 10);
        assert_eq!(
            e.json_line(),
            r#"{"id":"abababababab","status":"Downloading","current":5,"total":10}"#
        );
    }
}
