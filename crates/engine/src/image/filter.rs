//! `image ls --filter`: Docker's `dangling=true|false`, `reference=PATTERN` (a glob on
//! `NAME:TAG` or `NAME`, `*` not crossing `/`) and `label=KEY[=VALUE]`. Every filter
//! given must match (different keys), any value of a repeated key may.

use std::collections::BTreeMap;

use super::ImageRecord;
use crate::error::{Error, Result};

/// Parsed filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFilter {
    dangling: Option<bool>,
    references: Vec<String>,
    labels: Vec<(String, Option<String>)>,
}

impl ImageFilter {
    /// Parses `KEY=VALUE` filters.
    pub fn parse(filters: &[String]) -> Result<ImageFilter> {
        let mut f = ImageFilter::default();
        for s in filters {
            let bad = |why: &str| Error::invalid("filter", format!("{s:?}: {why}"));
            let (k, v) = s.split_once('=').ok_or_else(|| bad("expected KEY=VALUE"))?;
            match k {
                "dangling" => {
                    f.dangling = Some(match v {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(bad("dangling takes true or false")),
                    })
                }
                "reference" if !v.is_empty() => f.references.push(v.to_string()),
                "label" if !v.is_empty() => f.labels.push(match v.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (v.to_string(), None),
                }),
                _ => {
                    return Err(bad(
                        "filters are dangling=, reference=PATTERN, label=KEY[=VALUE]",
                    ))
                }
            }
        }
        Ok(f)
    }

    /// Whether an image with these references matches.
    pub fn matches(&self, image: &ImageRecord, references: &[String]) -> bool {
        if let Some(d) = self.dangling {
            if references.is_empty() != d {
                return false;
            }
        }
        if !self.references.is_empty()
            && !references.iter().any(|r| {
                let name = r.rsplit_once(':').map_or(r.as_str(), |(n, _)| n);
                self.references.iter().any(|p| glob(p, r) || glob(p, name))
            })
        {
            return false;
        }
        self.labels
            .iter()
            .all(|(k, v)| label_matches(&image.config.labels, k, v.as_deref()))
    }
}

fn label_matches(labels: &BTreeMap<String, String>, k: &str, v: Option<&str>) -> bool {
    match (labels.get(k), v) {
        (Some(_), None) => true,
        (Some(have), Some(want)) => have == want,
        (None, _) => false,
    }
}

/// `*` matches any run of characters but `/`, `?` one such character; the rest is literal.
fn glob(pattern: &str, s: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len())
                .take_while(|&i| i == 0 || t[i - 1] != '/')
                .any(|i| go(rest, &t[i..])),
            Some(('?', rest)) => t.first().is_some_and(|&c| c != '/') && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    go(&p, &t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(labels: &[(&str, &str)]) -> ImageRecord {
        ImageRecord {
            version: 2,
            id: "0".repeat(64),
            name: None,
            tag: None,
            created: String::new(),
            layers: vec![],
            size: 0,
            config: super::super::ImageConfig {
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            },
            manifest: None,
            platform: String::new(),
        }
    }

    fn f(s: &[&str]) -> ImageFilter {
        ImageFilter::parse(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn filters_match_like_docker() {
        let img = image(&[("team", "a"), ("tier", "web")]);
        let named = vec!["reg:5000/team/app:v1".to_string()];
        assert!(f(&["dangling=true"]).matches(&img, &[]));
        assert!(!f(&["dangling=true"]).matches(&img, &named));
        assert!(f(&["dangling=false"]).matches(&img, &named));
        assert!(f(&["reference=reg:5000/team/*"]).matches(&img, &named));
        assert!(f(&["reference=reg:5000/team/app:v?"]).matches(&img, &named));
        assert!(
            !f(&["reference=reg:5000/*"]).matches(&img, &named),
            "* does not cross /"
        );
        assert!(!f(&["reference=app"]).matches(&img, &named));
        assert!(f(&["reference=nope", "reference=*/*/app"]).matches(&img, &named));
        assert!(f(&["label=team"]).matches(&img, &named));
        assert!(f(&["label=team=a", "label=tier=web"]).matches(&img, &named));
        assert!(!f(&["label=team=b"]).matches(&img, &named));
        assert!(!f(&["label=team", "dangling=true"]).matches(&img, &named));
    }

    #[test]
    fn bad_filters_are_refused_by_name() {
        for s in ["dangling=maybe", "size=1", "reference=", "label", "label="] {
            let e = ImageFilter::parse(&[s.to_string()])
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("filter:"), "{s}: {e}");
        }
    }
}
