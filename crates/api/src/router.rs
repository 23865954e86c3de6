//! Which handler answers a request. Anything not listed answers 501 with a message
//! that names it (never a hang, never a bare 404 for a route Docker has).

use hyper::{Method, StatusCode};

use crate::body::{self, Resp};
use crate::error::{ApiError, ApiResult};
use crate::query::Call;
use crate::server::Ctx;
use crate::{build, containers, events, exec, images, networks, system, volumes};

pub async fn route(ctx: &Ctx, mut c: Call) -> ApiResult<Resp> {
    let segs: Vec<String> = c.segs.clone();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = c.method.clone();
    let get = m == Method::GET;
    let head = m == Method::HEAD;
    match (s.as_slice(), &m) {
        (["_ping"], _) if get || head => Ok(system::ping(head)),
        (["version"], &Method::GET) => system::version(ctx),
        (["info"], &Method::GET) => system::info(ctx).await,
        (["events"], &Method::GET) => events::events(ctx, &c).await,
        (["system", "df"], &Method::GET) => system::df(ctx).await,
        (["auth"], _) => Err(ApiError::not_implemented(
            "POST /auth (use `codex-ctr login` for registry credentials)",
        )),
        (["build"], &Method::POST) => build::build(ctx, &mut c).await,
        (["commit"], &Method::POST) => crate::commit::commit(ctx, &mut c).await,

        // No plugins here: an empty list, and Docker's 404 for one (`docker inspect X`
        // asks for a plugin X after a container, image, network and volume X).
        (["plugins"], &Method::GET) => body::ok_json(&serde_json::json!([])),
        (["plugins", name, "json"], &Method::GET) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("plugin \"{name}\" not found"),
        )),

        (["containers", "json"], &Method::GET) => containers::list(ctx, &c).await,
        (["containers", "create"], &Method::POST) => containers::create(ctx, &mut c).await,
        (["containers", "prune"], &Method::POST) => containers::prune(ctx).await,
        (["containers", id, "json"], &Method::GET) => containers::inspect(ctx, id).await,
        (["containers", id, "logs"], &Method::GET) => crate::logs::logs(ctx, &c, id).await,
        (["containers", id, "stats"], &Method::GET) => crate::stats::stats(ctx, &c, id).await,
        (["containers", id, "wait"], &Method::POST) => crate::wait::wait(ctx, &c, id).await,
        (["containers", id, "attach"], &Method::POST) => {
            crate::attach::attach(ctx, &mut c, id).await
        }
        (["containers", id, "update"], &Method::POST) => {
            crate::update::update(ctx, &mut c, id).await
        }
        (["containers", id, "top"], &Method::GET) => crate::top::top(ctx, &c, id).await,
        (["containers", id, "changes"], &Method::GET) => crate::commit::changes(ctx, id).await,
        (["containers", id, "export"], &Method::GET) => containers::export(ctx, id).await,
        (["containers", id, "exec"], &Method::POST) => exec::create(ctx, &mut c, id).await,
        (["containers", id, action], &Method::POST) if containers::is_action(action) => {
            containers::action(ctx, &c, id, action).await
        }
        (["containers", id], &Method::DELETE) => containers::remove(ctx, &c, id).await,
        (["containers", id, "archive"], _) if get || head || m == Method::PUT => {
            crate::archive::archive(ctx, &mut c, id).await
        }

        (["exec", id, "start"], &Method::POST) => exec::start(ctx, &mut c, id).await,
        (["exec", id, "json"], &Method::GET) => exec::inspect(ctx, id),
        (["exec", id, "resize"], &Method::POST) => exec::resize(ctx, &c, id),

        (["images", "json"], &Method::GET) => images::list(ctx, &c).await,
        (["images", "create"], &Method::POST) => images::pull(ctx, &c).await,
        (["images", "load"], &Method::POST) => images::load(ctx, &mut c).await,
        (["images", "prune"], &Method::POST) => images::prune(ctx, &c).await,
        (["images", rest @ .., "json"], &Method::GET) if !rest.is_empty() => {
            images::inspect(ctx, &rest.join("/")).await
        }
        (["images", rest @ .., "tag"], &Method::POST) if !rest.is_empty() => {
            images::tag(ctx, &c, &rest.join("/")).await
        }
        (["images", "get"], &Method::GET) => images::save(ctx, c.names.clone()).await,
        (["images", rest @ .., "get"], &Method::GET) if !rest.is_empty() => {
            images::save(ctx, vec![rest.join("/")]).await
        }
        (["images", rest @ .., "history"], &Method::GET) if !rest.is_empty() => {
            images::history(ctx, &rest.join("/")).await
        }
        (["images", rest @ ..], &Method::DELETE) if !rest.is_empty() => {
            images::remove(ctx, &rest.join("/")).await
        }

        (["networks"], &Method::GET) => networks::list(ctx, &c).await,
        (["networks", "create"], &Method::POST) => networks::create(ctx, &mut c).await,
        (["networks", "prune"], &Method::POST) => networks::prune(ctx, &c).await,
        (["networks", id, "connect"], &Method::POST) => networks::connect(ctx, id, &mut c).await,
        (["networks", id, "disconnect"], &Method::POST) => {
            networks::disconnect(ctx, id, &mut c).await
        }
        (["networks", id], &Method::GET) => networks::inspect(ctx, id).await,
        (["networks", id], &Method::DELETE) => networks::remove(ctx, id).await,

        (["volumes"], &Method::GET) => volumes::list(ctx, &c).await,
        (["volumes", "create"], &Method::POST) => volumes::create(ctx, &mut c).await,
        (["volumes", "prune"], &Method::POST) => volumes::prune(ctx, &c).await,
        (["volumes", name], &Method::GET) => volumes::inspect(ctx, name).await,
        (["volumes", name], &Method::DELETE) => volumes::remove(ctx, &c, name).await,

        _ => Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "{} /{} is not implemented by codex-ctr",
                c.method,
                c.segs.join("/")
            ),
        )),
    }
}
