//! Image endpoints over the engine's image store: list, inspect, tag, remove, prune,
//! history, load (a docker-archive or OCI tar) and pull (`/images/create`).

use std::collections::BTreeMap;

use codex_engine::image::{ImageRecord, ImageStore};
use hyper::StatusCode;
use serde_json::{json, Value};

use crate::body::{self, Resp};
use crate::containers::blocking;
use crate::error::{ApiError, ApiResult};
use crate::filters;
use crate::query::Call;
use crate::server::Ctx;

fn unix_secs(t: &str) -> i64 {
    humantime::parse_rfc3339_weak(t)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0)
}

fn tags_of(refs: &BTreeMap<String, String>, id: &str) -> Vec<String> {
    refs.iter()
        .filter(|(_, i)| i.as_str() == id)
        .map(|(r, _)| r.clone())
        .collect()
}

/// One entry of `GET /images/json`.
pub fn summary(img: &ImageRecord, tags: Vec<String>) -> Value {
    json!({
        "Id": format!("sha256:{}", img.id),
        "ParentId": "",
        "RepoTags": tags,
        "RepoDigests": [],
        "Created": unix_secs(&img.created),
        "Size": img.size,
        "SharedSize": -1,
        "VirtualSize": img.size,
        "Labels": img.config.labels,
        "Containers": -1,
    })
}

fn ports_map(ports: &[String]) -> Value {
    Value::Object(ports.iter().map(|p| (p.clone(), json!({}))).collect())
}

/// `GET /images/{name}/json`.
pub fn inspect_json(img: &ImageRecord, tags: Vec<String>) -> Value {
    let c = &img.config;
    let (os, arch) = img.platform.split_once('/').unwrap_or(("linux", ""));
    let arch = arch.split('/').next().unwrap_or(arch);
    let health = c.healthcheck.as_ref().map(|h| {
        json!({"Test": h.test, "Interval": h.interval, "Timeout": h.timeout,
               "StartPeriod": h.start_period, "Retries": h.retries})
    });
    json!({
        "Id": format!("sha256:{}", img.id),
        "RepoTags": tags,
        "RepoDigests": [],
        "Parent": "", "Comment": "", "DockerVersion": "", "Author": "",
        "Created": img.created,
        "Config": {
            "Env": c.env, "Cmd": c.cmd,
            "Entrypoint": if c.entrypoint.is_empty() { Value::Null } else { json!(c.entrypoint) },
            "WorkingDir": c.working_dir, "User": c.user, "Labels": c.labels,
            "ExposedPorts": ports_map(&c.exposed_ports),
            "StopSignal": c.stop_signal, "Healthcheck": health,
            "Volumes": null, "OnBuild": null,
        },
        "Architecture": arch,
        "Os": os,
        "Size": img.size,
        "VirtualSize": img.size,
        "GraphDriver": {"Name": "overlay", "Data": null},
        "RootFS": {"Type": "layers", "Layers": img.layers},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    })
}

pub async fn list(ctx: &Ctx, c: &Call) -> ApiResult<Resp> {
    let f = filters::parse(c.q("filters"))?;
    filters::only(&f, &["reference", "label", "dangling"])?;
    let v = blocking(ctx, move |e| {
        let store = e.images()?;
        let refs = store.references()?;
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for img in store.list()? {
            if !seen.insert(img.id.clone()) {
                continue;
            }
            let tags = tags_of(&refs, &img.id);
            let ok = filters::all_match(&f, |k, v| match k {
                "label" => filters::label_matches(v, &img.config.labels),
                "dangling" => (v == "true") == tags.is_empty(),
                "reference" => tags.iter().any(|t| {
                    t == v || t.split(':').next() == Some(v) || t.ends_with(&format!("/{v}"))
                }),
                _ => false,
            });
            if ok {
                out.push(summary(&img, tags));
            }
        }
        Ok(out)
    })
    .await?;
    body::ok_json(&v)
}

pub async fn inspect(ctx: &Ctx, name: &str) -> ApiResult<Resp> {
    let name = name.to_string();
    let v = blocking(ctx, move |e| {
        let store = e.images()?;
        let img = store.get(&name)?;
        let refs = store.references()?;
        let mut v = inspect_json(&img, tags_of(&refs, &img.id));
        // Docker's Author is the config's; its Comment the newest history entry's (what
        // `docker commit -a/-m` set). Best effort: an image without them shows "".
        if let Ok(config) = store.config_json(&img) {
            if let Some(a) = config["author"].as_str() {
                v["Author"] = a.into();
            }
        }
        if let Some(c) = store
            .history(&img)
            .ok()
            .and_then(|h| h.last().and_then(|s| s.comment.clone()))
        {
            v["Comment"] = c.into();
        }
        Ok(v)
    })
    .await?;
    body::ok_json(&v)
}

pub async fn tag(ctx: &Ctx, c: &Call, name: &str) -> ApiResult<Resp> {
    let repo = c
        .q("repo")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::bad_request("tag: the repo parameter is required"))?;
    let repo = short_name(repo);
    let target = match c.q("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.to_string(),
    };
    let name = name.to_string();
    blocking(ctx, move |e| e.images()?.tag(&name, &target)).await?;
    Ok(body::empty(StatusCode::CREATED))
}

pub async fn remove(ctx: &Ctx, name: &str) -> ApiResult<Resp> {
    let name = name.to_string();
    let r = blocking(ctx, move |e| e.remove_image(&name)).await?;
    let mut out: Vec<Value> = r.untagged.iter().map(|u| json!({"Untagged": u})).collect();
    out.extend(
        r.deleted
            .iter()
            .map(|d| json!({"Deleted": format!("sha256:{d}")})),
    );
    body::ok_json(&out)
}

pub async fn prune(ctx: &Ctx, c: &Call) -> ApiResult<Resp> {
    let f = filters::parse(c.q("filters"))?;
    filters::only(&f, &["dangling"])?;
    let all = f
        .get("dangling")
        .is_some_and(|d| d.iter().any(|v| v == "false" || v == "0"));
    let r = blocking(ctx, move |e| e.prune_images(all)).await?;
    let mut del: Vec<Value> = r.untagged.iter().map(|u| json!({"Untagged": u})).collect();
    del.extend(
        r.deleted
            .iter()
            .map(|d| json!({"Deleted": format!("sha256:{d}")})),
    );
    body::ok_json(&json!({"ImagesDeleted": del, "SpaceReclaimed": 0}))
}

pub async fn history(ctx: &Ctx, name: &str) -> ApiResult<Resp> {
    let name = name.to_string();
    let v = blocking(ctx, move |e| {
        let store = e.images()?;
        let img = store.get(&name)?;
        let h = store.history(&img)?;
        Ok(h.iter()
            .rev()
            .map(|s| {
                json!({
                    "Id": "<missing>",
                    "Created": s.created.as_deref().map(unix_secs).unwrap_or(0),
                    "CreatedBy": s.created_by.clone().unwrap_or_default(),
                    "Tags": null,
                    "Size": 0,
                    "Comment": s.comment.clone().unwrap_or_default(),
                })
            })
            .collect::<Vec<_>>())
    })
    .await?;
    body::ok_json(&v)
}

/// `POST /images/load`: the body (a tar) is spooled to a private file as it arrives
/// (never whole in memory), then loaded.
pub async fn load(ctx: &Ctx, c: &mut Call) -> ApiResult<Resp> {
    let eng = ctx.eng.clone();
    let (path, file) = tokio::task::spawn_blocking(move || {
        let store = eng.engine().images()?;
        tempfile_in(&store)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let spooled = spool(c, tokio::fs::File::from_std(file)).await;
    let loaded = match spooled {
        Ok(()) => {
            let p = path.clone();
            blocking(ctx, move |e| e.images()?.load(&p, &Default::default())).await
        }
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&path);
    let loaded = loaded?;
    let mut out = Vec::new();
    for l in &loaded {
        if l.references.is_empty() {
            out.extend_from_slice(&body::json_line(
                &json!({"stream": format!("Loaded image ID: sha256:{}\n", l.id)}),
            ));
        }
        for r in &l.references {
            out.extend_from_slice(&body::json_line(
                &json!({"stream": format!("Loaded image: {r}\n")}),
            ));
        }
    }
    Ok(body::bytes(StatusCode::OK, "application/json", out))
}

/// Writes the request body to `f` frame by frame.
async fn spool(c: &mut Call, mut f: tokio::fs::File) -> ApiResult<()> {
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;
    let Some(mut b) = c.body.take() else {
        return Ok(());
    };
    while let Some(frame) = b.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            f.write_all(&data)
                .await
                .map_err(|e| ApiError::internal(format!("spooling the image archive: {e}")))?;
        }
    }
    f.flush()
        .await
        .map_err(|e| ApiError::internal(format!("spooling the image archive: {e}")))
}

/// A new 0600 file in the store's directory (never a shared /tmp name).
fn tempfile_in(store: &ImageStore) -> codex_engine::Result<(std::path::PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = format!(".api-load-{}", codex_engine::registry::new_volume_name()?);
    let p = store.dir().join(name);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&p)
        .map_err(|e| codex_engine::Error::Io {
            context: format!("creating {}", p.display()),
            cause: e,
        })?;
    Ok((p, f))
}

/// The docker CLI spells Docker Hub's names in full (`docker.io/library/x`); the
/// engine's store keeps them as users type them (`x`), as `codex-ctr image` does.
pub fn short_name(repo: &str) -> &str {
    repo.strip_prefix("docker.io/library/")
        .or_else(|| repo.strip_prefix("docker.io/"))
        .unwrap_or(repo)
}

/// `GET /images/{name}/get` and `GET /images/get?names=...`: `docker save`, a docker
/// archive streamed as the engine writes it.
pub async fn save(ctx: &Ctx, names: Vec<String>) -> ApiResult<Resp> {
    if names.is_empty() {
        return Err(ApiError::bad_request("names: give at least one image"));
    }
    let check = names.clone();
    blocking(ctx, move |e| {
        let store = e.images()?;
        check.iter().try_for_each(|n| store.get(n).map(|_| ()))
    })
    .await?;
    Ok(crate::tarstream::stream_tar(ctx, move |e, out| {
        e.images()?
            .save_to(&names, codex_engine::image::SaveFormat::DockerArchive, out)
    }))
}

/// Registries on this machine's loopback are insecure registries (plain HTTP or
/// unverified HTTPS, as dockerd allows there); any other is spoken to over verified
/// HTTPS.
fn insecure_ok(reference: &str) -> bool {
    let host = reference.split('/').next().unwrap_or("");
    reference.contains('/')
        && (host.starts_with("localhost") || host.starts_with("127.") || host.starts_with("[::1]"))
}

/// `POST /images/create?fromImage=NAME&tag=TAG`: a pull, reported as Docker's JSON
/// progress lines (an error is a line with `error`, as Docker sends it after a 200).
pub async fn pull(ctx: &Ctx, c: &Call) -> ApiResult<Resp> {
    if c.q("fromSrc").is_some() {
        return Err(ApiError::not_implemented(
            "POST /images/create?fromSrc (import; use `codex-ctr image import`)",
        ));
    }
    let from = c
        .q("fromImage")
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ApiError::bad_request("fromImage: required"))?;
    let reference = match c.q("tag").filter(|t| !t.is_empty()) {
        Some(t) if !from.contains('@') => format!("{from}:{t}"),
        _ => from.to_string(),
    };
    let from = from.to_string();
    let (tx, resp) = body::stream("application/json");
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let _ = tx
            .send(body::json_line(&json!({"status": format!("Pulling from {from}"), "id": reference.rsplit(':').next()})))
            .await;
        let r2 = reference.clone();
        let ptx = tx.clone();
        let got = blocking(&ctx, move |e| {
            // Docker's progress lines, one per blob event (from the engine's download
            // threads, outside the async runtime: a blocking send is right there).
            let progress = codex_engine::image::pull::ProgressSink(std::sync::Arc::new(
                move |ev: &codex_engine::image::pull::ProgressEvent| {
                    // Only a download in progress has numbers: the docker CLI shows a
                    // line with them as a bar on a terminal and drops it otherwise.
                    let detail = if ev.status == "Downloading" {
                        json!({"current": ev.current, "total": ev.total})
                    } else {
                        json!({})
                    };
                    let _ = ptx.blocking_send(body::json_line(&json!({
                        "status": ev.status,
                        "id": ev.id,
                        "progressDetail": detail,
                    })));
                },
            ));
            let opts = codex_engine::image::pull::PullOptions {
                transport: codex_engine::image::pull::Transport {
                    insecure: insecure_ok(&r2),
                    ..Default::default()
                },
                progress: Some(progress),
                ..Default::default()
            };
            e.images()?.pull(&r2, &opts)
        })
        .await;
        let line = match got {
            Ok(l) => {
                json!({"status": format!("Status: Downloaded newer image for {reference} (sha256:{})", l.id)})
            }
            Err(e) => json!({"errorDetail": {"message": e.message}, "error": e.message}),
        };
        let _ = tx.send(body::json_line(&line)).await;
    });
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_names_are_kept_short() {
        assert_eq!(short_name("docker.io/library/loadme"), "loadme");
        assert_eq!(short_name("docker.io/me/app"), "me/app");
        assert_eq!(short_name("127.0.0.1:5000/app"), "127.0.0.1:5000/app");
    }

    #[test]
    fn only_loopback_registries_go_plain_http() {
        assert!(insecure_ok("127.0.0.1:5000/busybox:1"));
        assert!(insecure_ok("localhost:5000/x"));
        assert!(!insecure_ok("busybox"));
        assert!(!insecure_ok("example.com/busybox"));
    }
}
