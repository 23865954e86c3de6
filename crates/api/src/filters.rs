//! Docker's `filters` query parameter: a JSON object of key -> values, either
//! `{"label": ["a=b"]}` or the older `{"label": {"a=b": true}}`. Values of one key match
//! if any matches; different keys must all match.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

pub type Filters = BTreeMap<String, Vec<String>>;

pub fn parse(raw: Option<&str>) -> ApiResult<Filters> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        return Ok(Filters::new());
    };
    let bad = |why: &str| ApiError::bad_request(format!("filters: {why}"));
    let v: Value = serde_json::from_str(raw).map_err(|e| bad(&format!("not JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| bad("not a JSON object"))?;
    let mut out = Filters::new();
    for (k, vals) in obj {
        let list = match vals {
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad(&format!("{k}: values must be strings")))?,
            Value::Object(m) => m.keys().cloned().collect(),
            Value::String(s) => vec![s.clone()],
            _ => return Err(bad(&format!("{k}: not a list of strings"))),
        };
        out.insert(k.clone(), list);
    }
    Ok(out)
}

/// Refuses keys a handler does not know (Docker answers 400 "invalid filter").
pub fn only(f: &Filters, known: &[&str]) -> ApiResult<()> {
    match f.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad_request(format!("invalid filter '{k}'"))),
        None => Ok(()),
    }
}

/// `label=KEY` or `label=KEY=VALUE` against a label map.
pub fn label_matches(want: &str, labels: &BTreeMap<String, String>) -> bool {
    match want.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(want),
    }
}

/// Whether the filters pass, `test(key, value)` deciding one value: Docker's rule is
/// that the values of one key are alternatives (`status=running` or `exited`), except
/// `label`, whose values must all match (compose filters by project *and* service).
pub fn all_match(f: &Filters, mut test: impl FnMut(&str, &str) -> bool) -> bool {
    f.iter().all(|(k, vals)| {
        if k == "label" {
            vals.iter().all(|v| test(k, v))
        } else {
            vals.iter().any(|v| test(k, v))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_filter_shapes_parse() {
        let f = parse(Some(r#"{"label":["a=b","c"],"status":{"running":true}}"#)).unwrap();
        assert_eq!(f["label"], ["a=b", "c"]);
        assert_eq!(f["status"], ["running"]);
        assert!(parse(None).unwrap().is_empty());
        assert!(parse(Some("[1]")).is_err());
        assert!(parse(Some(r#"{"label":[1]}"#))
            .unwrap_err()
            .message
            .contains("label"));
    }

    #[test]
    fn labels_match_by_key_or_key_and_value() {
        let l: BTreeMap<String, String> = [("a".to_string(), "b".to_string())].into();
        assert!(label_matches("a", &l));
        assert!(label_matches("a=b", &l));
        assert!(!label_matches("a=c", &l));
        assert!(!label_matches("x", &l));
    }

    #[test]
    fn keys_and_values_combine_as_docker_does() {
        let f = parse(Some(r#"{"label":["x","a"],"name":["web","db"]}"#)).unwrap();
        // label: x and a; name: web or db. Both keys must match.
        let has = |labels: &[&str], name: &str| {
            all_match(&f, |k, v| match k {
                "label" => labels.contains(&v),
                _ => v == name,
            })
        };
        assert!(has(&["x", "a"], "db"));
        assert!(!has(&["a"], "web"), "one label of two is not enough");
        assert!(!has(&["x", "a"], "cache"));
        assert!(only(&f, &["label", "name"]).is_ok());
        assert!(only(&f, &["label"]).unwrap_err().message.contains("name"));
    }
}
