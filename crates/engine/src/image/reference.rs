//! Image references `NAME[:TAG]`, validated with Docker's grammar (distribution/reference):
//! an optional `registry[:port]/` prefix, then lowercase path components
//! `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` separated by `/`, at most 255 characters, and a tag
//! `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` (default `latest`). Names are kept as written:
//! `busybox` is not expanded to `docker.io/library/busybox`.

use std::fmt;

use crate::error::{Error, Result};

pub const DEFAULT_TAG: &str = "latest";
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A parsed, valid `NAME:TAG`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    pub name: String,
    pub tag: String,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

impl std::str::FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Reference::parse(s)
    }
}

impl Reference {
    /// Parses `NAME[:TAG]`; errors name the `reference` field, quote the input and say
    /// which part is wrong.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: String| Error::invalid("reference", format!("{s:?}: {why}"));
        if s.is_empty() {
            return Err(bad("is empty".into()));
        }
        if s.contains('@') {
            return Err(bad(
                "digest references (NAME@sha256:...) are not supported here".into(),
            ));
        }
        // The tag separator is the last ':' after the last '/' (an earlier ':' is a port).
        let last_slash = s.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match s[last_slash..].rfind(':') {
            Some(i) => (&s[..last_slash + i], Some(&s[last_slash + i + 1..])),
            None => (s, None),
        };
        let tag = match tag {
            Some(t) => {
                check_tag(t).map_err(|why| bad(format!("tag {t:?} {why}")))?;
                t
            }
            None => DEFAULT_TAG,
        };
        check_name(name).map_err(|why| bad(format!("name {name:?} {why}")))?;
        Ok(Reference {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }
}

fn check_tag(t: &str) -> std::result::Result<(), String> {
    if t.is_empty() {
        return Err("is empty".into());
    }
    if t.len() > TAG_MAX {
        return Err(format!(
            "is {} characters long; at most {TAG_MAX} are allowed",
            t.len()
        ));
    }
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = t.chars();
    if !chars.next().is_some_and(word) {
        return Err("must start with a letter, a digit or '_'".into());
    }
    if !chars.all(|c| word(c) || c == '.' || c == '-') {
        return Err("may only contain letters, digits, '_', '.' and '-'".into());
    }
    Ok(())
}

fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > NAME_MAX {
        return Err(format!(
            "is {} characters long; at most {NAME_MAX} are allowed",
            name.len()
        ));
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // Docker's rule: the first of several components is a registry host when it has a
    // '.' or a ':', is "localhost", or has an uppercase letter.
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains(['.', ':'])
            || first == "localhost"
            || first.chars().any(|c| c.is_ascii_uppercase())
        {
            check_domain(first)?;
            parts.remove(0);
        }
    }
    for (i, part) in parts.iter().enumerate() {
        check_component(part).map_err(|why| {
            if parts.len() == 1 {
                why
            } else {
                format!("(component {} {part:?}) {why}", i + 1)
            }
        })?;
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn check_component(c: &str) -> std::result::Result<(), String> {
    if c.is_empty() {
        return Err("has an empty path component (\"//\" or a leading or trailing '/')".into());
    }
    if c.chars().any(|ch| ch.is_ascii_uppercase()) {
        return Err("must be lowercase".into());
    }
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let sep_err =
        || Err("must be lowercase letters and digits, separated by '.', '_', '__' or '-'".into());
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return sep_err();
        }
        if i == b.len() {
            return Ok(());
        }
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return sep_err(),
        }
        if i == b.len() {
            return sep_err();
        }
    }
}

/// A registry host: DNS labels separated by '.', optionally `:port`.
fn check_domain(d: &str) -> std::result::Result<(), String> {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.is_empty() || !host.split('.').all(label_ok) {
        return Err(format!("has an invalid registry host {host:?}"));
    }
    if let Some(p) = port {
        let ok = !p.is_empty()
            && p.len() <= 5
            && p.chars().all(|c| c.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
        if !ok {
            return Err(format!("has an invalid registry port {p:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str, name: &str, tag: &str) {
        let r = Reference::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        assert_eq!((r.name.as_str(), r.tag.as_str()), (name, tag), "{s:?}");
    }

    #[test]
    fn valid_references() {
        ok("busybox", "busybox", "latest");
        ok("busybox:1.36", "busybox", "1.36");
        ok(
            "library/busybox:stable-glibc",
            "library/busybox",
            "stable-glibc",
        );
        ok(
            "localhost:5000/bots/runner",
            "localhost:5000/bots/runner",
            "latest",
        );
        ok(
            "localhost:5000/bots/runner:v2",
            "localhost:5000/bots/runner",
            "v2",
        );
        ok(
            "Registry.Example.com/a/b:_x",
            "Registry.Example.com/a/b",
            "_x",
        );
        ok("a__b/c--d/e.f/g_h", "a__b/c--d/e.f/g_h", "latest");
        ok(&format!("x:{}", "t".repeat(128)), "x", &"t".repeat(128));
    }

    #[test]
    fn invalid_references_name_the_field() {
        for s in [
            "",
            "UPPER",
            "a//b",
            "/a",
            "a/",
            "a:",
            "a:-x",
            "a:b/c",
            "a b",
            "a___b",
            "a.-b",
            "-a",
            "a.",
            "a@sha256:00",
            "host:99999/a",
            "host:/a",
            "ex ample.com/a",
            "a/B",
        ] {
            let e = Reference::parse(s).expect_err(s).to_string();
            assert!(e.starts_with("reference: "), "{s:?}: {e}");
            assert!(e.contains(&format!("{s:?}")), "{s:?}: {e}");
        }
        let long = format!("x:{}", "t".repeat(129));
        let e = Reference::parse(&long).unwrap_err().to_string();
        assert!(e.contains("tag") && e.contains("at most 128"), "{e}");
        let e = Reference::parse(&"a".repeat(256)).unwrap_err().to_string();
        assert!(e.contains("at most 255"), "{e}");
        let e = Reference::parse("UPPER").unwrap_err().to_string();
        assert!(e.contains("lowercase"), "{e}");
    }
}
