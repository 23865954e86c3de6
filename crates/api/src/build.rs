//! `POST /build`: the classic builder's endpoint (`docker build` with
//! `DOCKER_BUILDKIT=0`, docker-py's `images.build`). The body is the context as a tar
//! (plain, gzip or zstd), spooled to a private file and unpacked with the layer
//! unpacker's checks; the engine's builder runs on a blocking thread and its progress
//! lines are streamed as Docker's JSON lines (`{"stream": ...}`), ending with
//! `{"aux":{"ID":...}}` and `Successfully built ID`, or `{"error": ...}`.

use std::collections::BTreeMap;
use std::io::Write;

use bytes::Bytes;
use codex_engine::build::stdin::TarContext;
use codex_engine::build::BuildOptions;
use serde_json::json;
use tokio::sync::mpsc;

use crate::body::{self, Resp};
use crate::error::{ApiError, ApiResult};
use crate::query::{self, Call};
use crate::server::Ctx;

/// A context larger than this, unpacked, is refused.
const MAX_CONTEXT: u64 = 8 << 30;

/// The build's options from the query (Docker's names); the context is set later.
pub fn options_from(c: &Call) -> ApiResult<BuildOptions> {
    let map = |key: &str| -> ApiResult<BTreeMap<String, String>> {
        match c.q(key).filter(|v| !v.is_empty()) {
            None => Ok(BTreeMap::new()),
            Some(v) => {
                let m: BTreeMap<String, Option<String>> = serde_json::from_str(v)
                    .map_err(|e| ApiError::bad_request(format!("{key}: {e}")))?;
                Ok(m.into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
            }
        }
    };
    let network = match c.q("networkmode") {
        None | Some("" | "default" | "none") => None,
        Some("host") => Some("host".to_string()),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "networkmode: {other:?} (RUN steps have none or host)"
            )))
        }
    };
    Ok(BuildOptions {
        tags: query::all_values(c.raw_query(), "t"),
        // Relative to the context, and read from inside it (never a host path).
        context_dockerfile: c
            .q("dockerfile")
            .filter(|d| !d.is_empty())
            .map(str::to_string),
        build_args: map("buildargs")?,
        labels: map("labels")?,
        target: c.q("target").filter(|t| !t.is_empty()).map(str::to_string),
        no_cache: c.flag("nocache", false),
        network,
        ..Default::default()
    })
}

/// Progress lines as Docker's `{"stream": ...}` items, sent as they are written.
struct Progress(mpsc::Sender<Bytes>);

impl Write for Progress {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        // A client that went away does not stop the build.
        let _ = self
            .0
            .blocking_send(body::json_line(&json!({ "stream": text })));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub async fn build(ctx: &Ctx, c: &mut Call) -> ApiResult<Resp> {
    if c.q("remote").is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::not_implemented(
            "POST /build?remote= (a context from a URL): send the context as the body",
        ));
    }
    let mut opts = options_from(c)?;
    let data = c.body_bytes().await?;
    let (tx, resp) = body::stream("application/json");
    let eng = ctx.eng.clone();
    tokio::task::spawn_blocking(move || {
        let eng = eng.engine();
        let mut out = Progress(tx.clone());
        let result = TarContext::unpack(eng.root(), std::io::Cursor::new(data), MAX_CONTEXT)
            .and_then(|context| {
                opts.context = context.path().to_path_buf();
                let r = eng.build(&opts, &mut out);
                drop(context);
                r
            });
        let end = match result {
            Ok(r) => {
                let short: String = r.id.chars().take(12).collect();
                let mut lines = vec![
                    json!({"aux": {"ID": format!("sha256:{}", r.id)}}),
                    json!({"stream": format!("Successfully built {short}\n")}),
                ];
                for t in &opts.tags {
                    lines.push(json!({"stream": format!("Successfully tagged {t}\n")}));
                }
                lines
            }
            Err(e) => {
                let msg = e.to_string();
                vec![json!({"error": msg, "errorDetail": {"message": msg}})]
            }
        };
        for l in end {
            let _ = tx.blocking_send(body::json_line(&l));
        }
    });
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_args_and_labels_are_json_maps_and_null_values_are_dropped() {
        let c = Call::for_test(
            "t=a:1&t=b&buildargs=%7B%22X%22%3A%221%22%2C%22Y%22%3Anull%7D&nocache=1&target=s",
        );
        let o = options_from(&c).unwrap();
        assert_eq!(o.tags, ["a:1", "b"]);
        assert_eq!(o.build_args.get("X").map(String::as_str), Some("1"));
        assert!(!o.build_args.contains_key("Y"));
        assert!(o.no_cache);
        assert_eq!(o.target.as_deref(), Some("s"));
        assert!(options_from(&Call::for_test("buildargs=notjson")).is_err());
        assert!(options_from(&Call::for_test("networkmode=bridge")).is_err());
    }
}
