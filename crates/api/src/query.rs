//! A request as handlers see it: the path's segments (version prefix removed), the
//! query string, the body, and the connection's upgrade for hijacked streams.

use std::collections::HashMap;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper::Method;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};

pub struct Call {
    pub method: Method,
    /// The path's segments after `/vX.Y`, percent-decoded.
    pub segs: Vec<String>,
    pub query: HashMap<String, String>,
    /// Every `names=` of the query, in order (`/images/get?names=a&names=b`).
    pub names: Vec<String>,
    /// The query as sent, for parameters that repeat (`/build?t=a&t=b`).
    pub raw_query: Option<String>,
    pub body: Option<Incoming>,
    /// Set when the client asked for `Connection: Upgrade` (attach, exec start).
    pub upgrade: Option<OnUpgrade>,
}

/// Splits `/v1.47/containers/x/json` into the version and `["containers", "x", "json"]`.
pub fn split_path(path: &str) -> (Option<String>, Vec<String>) {
    let mut segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let version = match segs.first() {
        Some(v)
            if v.len() > 1
                && v.starts_with('v')
                && v[1..].chars().all(|c| c.is_ascii_digit() || c == '.') =>
        {
            Some(segs.remove(0)[1..].to_string())
        }
        _ => None,
    };
    (version, segs)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// `%2F` and friends (and `+` as a space in query strings, see [`parse_query`]).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode(&k.replace('+', " ")),
                percent_decode(&v.replace('+', " ")),
            )
        })
        .collect()
}

/// Every value of `key` in a query string, in order.
pub fn all_values(q: Option<&str>, key: &str) -> Vec<String> {
    q.unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
        .filter(|(k, _)| percent_decode(k) == key)
        .map(|(_, v)| percent_decode(&v.replace('+', " ")))
        .collect()
}

impl Call {
    /// A call with only a query (unit tests of the handlers' parsing).
    #[cfg(test)]
    pub fn for_test(query: &str) -> Call {
        Call {
            method: Method::POST,
            segs: Vec::new(),
            query: parse_query(Some(query)),
            names: all_values(Some(query), "names"),
            raw_query: Some(query.to_string()),
            body: None,
            upgrade: None,
        }
    }

    pub fn raw_query(&self) -> Option<&str> {
        self.raw_query.as_deref()
    }

    pub fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// Docker's booleans in a query: `1`, `true`, `True` (absent: `default`).
    pub fn flag(&self, key: &str, default: bool) -> bool {
        match self.q(key) {
            None => default,
            Some(v) => matches!(v, "1" | "true" | "True" | "TRUE" | "yes"),
        }
    }

    /// A number in the query; a bad one is a 400 naming the parameter.
    pub fn num<T: std::str::FromStr>(&self, key: &str) -> ApiResult<Option<T>> {
        match self.q(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("query parameter {key}: {v:?} is not a number"))
            }),
        }
    }

    pub async fn body_bytes(&mut self) -> ApiResult<Bytes> {
        match self.body.take() {
            None => Ok(Bytes::new()),
            Some(b) => Ok(b
                .collect()
                .await
                .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?
                .to_bytes()),
        }
    }

    /// The body as JSON (`T::default()` for an empty body); a field of the wrong type is
    /// a 400 that names it.
    pub async fn body_json<T: DeserializeOwned + Default>(&mut self) -> ApiResult<T> {
        let b = self.body_bytes().await?;
        parse_json(&b)
    }
}

pub fn parse_json<T: DeserializeOwned + Default>(b: &[u8]) -> ApiResult<T> {
    if b.iter().all(|c| c.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    let de = &mut serde_json::Deserializer::from_slice(b);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let mut path = e.path().to_string();
        let mut inner = e.inner().to_string();
        // A part read by `from_object` carries the rest of its path.
        if let Some((rest, msg)) = inner
            .strip_prefix(PATH_MARK)
            .and_then(|r| r.split_once(PATH_MARK))
        {
            path = match (path.as_str(), rest) {
                (_, ".") => path,
                (".", _) => rest.to_string(),
                _ => format!("{path}.{rest}"),
            };
            inner = msg.to_string();
        }
        ApiError::bad_request(format!("invalid JSON body at {path}: {inner}"))
    })
}

/// Marks the inner path in an error of [`from_object`] for [`parse_json`].
const PATH_MARK: char = '\u{1}';

/// Reads `T` from a JSON object already parsed, for a struct made of parts (serde's
/// `flatten` loses the path of a field's type error: `HostConfig` instead of
/// `HostConfig.CpuShares`); the error keeps the part's own path for [`parse_json`].
pub fn from_object<T: DeserializeOwned, E: serde::de::Error>(
    v: &serde_json::Value,
) -> Result<T, E> {
    serde_path_to_error::deserialize(v)
        .map_err(|e| E::custom(format!("{PATH_MARK}{}{PATH_MARK}{}", e.path(), e.inner())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefix_is_split_off() {
        let (v, s) = split_path("/v1.47/containers/abc/json");
        assert_eq!(v.as_deref(), Some("1.47"));
        assert_eq!(s, ["containers", "abc", "json"]);
        let (v, s) = split_path("/_ping");
        assert_eq!(v, None);
        assert_eq!(s, ["_ping"]);
        // A container named like a version is not a version: only the first segment is.
        let (_, s) = split_path("/volumes/v1");
        assert_eq!(s, ["volumes", "v1"]);
    }

    #[test]
    fn query_strings_are_decoded() {
        let q = parse_query(Some(
            "filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D&all=1&x",
        ));
        assert_eq!(q["filters"], r#"{"label":["a=b"]}"#);
        assert_eq!(q["all"], "1");
        assert_eq!(q["x"], "");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(
            all_values(Some("names=a&x=1&names=b%3A1"), "names"),
            ["a", "b:1"]
        );
    }

    #[derive(serde::Deserialize, Default, Debug)]
    struct T {
        #[serde(rename = "Memory")]
        _memory: Option<i64>,
    }

    #[test]
    fn a_wrong_type_names_the_field() {
        let e = parse_json::<T>(br#"{"Memory": "lots"}"#).unwrap_err();
        assert_eq!(e.status, hyper::StatusCode::BAD_REQUEST);
        assert!(e.message.contains("Memory"), "{}", e.message);
        assert!(parse_json::<T>(b"").is_ok());
        assert!(parse_json::<T>(br#"{"Unknown": 1}"#).is_ok());
    }
}
