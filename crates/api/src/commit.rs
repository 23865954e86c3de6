//! `POST /commit` (`docker commit`, docker-py's `container.commit()`) over the engine's
//! `commit`, and `GET /containers/{id}/changes` (`docker diff`) over its `diff`.

use codex_engine::commit_api::CommitOptions;
use codex_engine::diff_api::Change;
use hyper::StatusCode;
use serde_json::{json, Value};

use crate::body::{self, Resp};
use crate::containers::blocking;
use crate::error::{ApiError, ApiResult};
use crate::images::short_name;
use crate::query::{all_values, parse_json, Call};
use crate::server::Ctx;

/// The container and the engine's options of a commit request: `container`, `repo`,
/// `tag` (Docker's `latest` when a repo has none), `comment`, `author`, `pause`
/// (default true) and `changes` (repeated, or lines of one value: Dockerfile
/// instructions).
pub fn commit_options(c: &Call) -> ApiResult<(String, CommitOptions)> {
    let container = c
        .q("container")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("container: the container to commit is required"))?
        .to_string();
    let tag = c.q("tag").filter(|t| !t.is_empty());
    let reference = match c.q("repo").filter(|r| !r.is_empty()) {
        Some(repo) => Some(format!("{}:{}", short_name(repo), tag.unwrap_or("latest"))),
        None if tag.is_some() => {
            return Err(ApiError::bad_request(
                "tag: a tag needs a repo (repo=NAME&tag=TAG)",
            ))
        }
        None => None,
    };
    let changes = all_values(c.raw_query(), "changes")
        .iter()
        .flat_map(|v| {
            v.lines()
                .map(str::trim)
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.is_empty())
        .collect();
    let text = |k: &str| c.q(k).filter(|v| !v.is_empty()).map(String::from);
    Ok((
        container,
        CommitOptions {
            reference,
            changes,
            message: text("comment"),
            author: text("author"),
            pause: c.flag("pause", true),
        },
    ))
}

/// The body may carry a container `Config` to apply to the image; codex-ctr takes the
/// config edits as `changes` only, so a body that asks for one is refused by name.
fn check_body(b: &[u8]) -> ApiResult<()> {
    let v: Option<serde_json::Map<String, Value>> = parse_json(b)?;
    let asks = v.iter().flatten().any(|(_, x)| {
        !(x.is_null()
            || x == &json!({})
            || x == &json!([])
            || x == &json!("")
            || x == &json!(false)
            || x == &json!(0))
    });
    if asks {
        return Err(ApiError::bad_request(
            "body: a container Config in a commit is not supported by codex-ctr; give the edits as changes= (CMD, ENV, LABEL, ... instructions)",
        ));
    }
    Ok(())
}

pub async fn commit(ctx: &Ctx, c: &mut Call) -> ApiResult<Resp> {
    let (container, opts) = commit_options(c)?;
    check_body(&c.body_bytes().await?)?;
    let image = blocking(ctx, move |e| e.commit(&container, &opts)).await?;
    body::json(
        StatusCode::CREATED,
        &json!({"Id": format!("sha256:{}", image.id)}),
    )
}

/// Docker's shape of a change: `{"Path": "/etc", "Kind": 0}` (0 modified, 1 added, 2
/// deleted).
pub fn changes_json(changes: &[Change]) -> Value {
    changes
        .iter()
        .map(|c| json!({"Path": c.path, "Kind": c.kind as u8}))
        .collect()
}

pub async fn changes(ctx: &Ctx, id: &str) -> ApiResult<Resp> {
    let id = id.to_string();
    let list = blocking(ctx, move |e| e.diff(&id)).await?;
    body::ok_json(&changes_json(&list))
}

#[cfg(test)]
mod tests {
    use super::*;
    use codex_engine::diff_api::ChangeKind;

    #[test]
    fn commit_queries_map_to_the_engines_options() {
        let c = Call::for_test(
            "container=web&repo=docker.io%2Flibrary%2Fsnap&tag=v1&comment=a+note&author=me&pause=0\
             &changes=ENV+A%3D1&changes=CMD+%5B%22sh%22%5D%0ALABEL+x%3Dy",
        );
        let (id, o) = commit_options(&c).unwrap();
        assert_eq!(id, "web");
        assert_eq!(o.reference.as_deref(), Some("snap:v1"));
        assert_eq!(o.message.as_deref(), Some("a note"));
        assert_eq!(o.author.as_deref(), Some("me"));
        assert!(!o.pause);
        assert_eq!(o.changes, ["ENV A=1", "CMD [\"sh\"]", "LABEL x=y"]);
        // Docker's defaults: latest, paused, untagged without a repo.
        let (_, o) = commit_options(&Call::for_test("container=web&repo=snap")).unwrap();
        assert_eq!(o.reference.as_deref(), Some("snap:latest"));
        assert!(o.pause);
        let (_, o) = commit_options(&Call::for_test("container=web")).unwrap();
        assert_eq!(o.reference, None);
        for (q, field) in [("repo=x", "container"), ("container=web&tag=v1", "tag")] {
            let e = commit_options(&Call::for_test(q)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.starts_with(field), "{q}: {}", e.message);
        }
    }

    #[test]
    fn commit_bodies_without_a_config_pass_and_others_are_refused() {
        for ok in ["", "null", "{}", r#"{"Cmd":null,"Env":[],"Labels":{}}"#] {
            check_body(ok.as_bytes()).unwrap();
        }
        let e = check_body(br#"{"Cmd":["sh"]}"#).unwrap_err();
        assert!(e.message.starts_with("body"), "{}", e.message);
        let e = check_body(b"[1]").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn changes_have_dockers_kinds() {
        let v = changes_json(&[
            Change {
                path: "/etc".into(),
                kind: ChangeKind::Modified,
            },
            Change {
                path: "/new".into(),
                kind: ChangeKind::Added,
            },
            Change {
                path: "/old".into(),
                kind: ChangeKind::Deleted,
            },
        ]);
        assert_eq!(
            v,
            json!([{"Path": "/etc", "Kind": 0}, {"Path": "/new", "Kind": 1}, {"Path": "/old", "Kind": 2}])
        );
    }
}
