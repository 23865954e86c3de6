//! `.dockerignore` and COPY wildcards: Go's `filepath.Match` patterns (`*` and `?` within
//! one path component, `[a-z]` / `[^a-z]` classes, `\` escapes) plus `**` for any number
//! of directories, as Docker's pattern matcher reads them.
//!
//! `.dockerignore` lines: `#` comments, blank lines skipped, `!` an exception, a leading
//! `/` and `./` dropped, the pattern cleaned (`a//b/../c` -> `a/c`). A path is excluded
//! when the last pattern matching it or one of its parent directories is not an
//! exception (so `!dir/keep` re-includes a file under an excluded `dir`).

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    rules: Vec<(String, bool)>,
}

impl Ignore {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Ignore {
        let mut rules = Vec::new();
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (exception, p) = match l.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, l),
            };
            let p = clean(p);
            if p.is_empty() {
                continue;
            }
            rules.push((p, exception));
        }
        Ignore { rules }
    }

    /// True when `rel` (a path in the context, `/`-separated, no leading `/`) is left out.
    pub fn excluded(&self, rel: &str) -> bool {
        let mut out = false;
        for (pat, exception) in &self.rules {
            if matches_or_parent(pat, rel) {
                out = !exception;
            }
        }
        out
    }

    /// True when some exception could re-include a path under directory `rel` (so an
    /// excluded directory must still be walked).
    pub fn has_exceptions_under(&self, rel: &str) -> bool {
        self.rules.iter().any(|(p, exc)| {
            *exc && (p.starts_with(&format!("{rel}/")) || p.contains('*') || p.contains('?'))
        })
    }
}

fn matches_or_parent(pat: &str, rel: &str) -> bool {
    if glob(pat, rel) {
        return true;
    }
    let mut end = rel.len();
    while let Some(i) = rel[..end].rfind('/') {
        if glob(pat, &rel[..i]) {
            return true;
        }
        end = i;
    }
    false
}

/// `a//b/./c/../d` -> `a/b/d`; a leading `/` or `./` dropped; `..` above the top dropped.
pub fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// True when the pattern has wildcard characters.
pub fn has_wildcards(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// Whether `name` matches `pat` (both `/`-separated paths).
pub fn glob(pat: &str, name: &str) -> bool {
    m(pat.as_bytes(), name.as_bytes())
}

fn m(p: &[u8], s: &[u8]) -> bool {
    if p.is_empty() {
        return s.is_empty();
    }
    if p.starts_with(b"**") {
        let mut rest = &p[2..];
        // `**/` may also match no directory at all.
        if rest.first() == Some(&b'/') {
            rest = &rest[1..];
            if m(rest, s) {
                return true;
            }
            return (0..s.len()).any(|i| s[i] == b'/' && m(rest, &s[i + 1..]));
        }
        return (0..=s.len()).any(|i| m(rest, &s[i..]));
    }
    match p[0] {
        b'*' => {
            let rest = &p[1..];
            for i in 0..=s.len() {
                if m(rest, &s[i..]) {
                    return true;
                }
                if i < s.len() && s[i] == b'/' {
                    break;
                }
            }
            false
        }
        b'?' => !s.is_empty() && s[0] != b'/' && m(&p[1..], &s[1..]),
        b'[' => {
            let Some((ok, used)) = class(&p[1..], s.first().copied()) else {
                // An unterminated class matches itself literally.
                return s.first() == Some(&b'[') && m(&p[1..], &s[1..]);
            };
            ok && s.first() != Some(&b'/') && m(&p[1 + used..], &s[1..])
        }
        b'\\' if p.len() > 1 => !s.is_empty() && s[0] == p[1] && m(&p[2..], &s[1..]),
        c => !s.is_empty() && s[0] == c && m(&p[1..], &s[1..]),
    }
}

/// A `[...]` class after the `[`: (matches `c`, bytes used including `]`).
fn class(p: &[u8], c: Option<u8>) -> Option<(bool, usize)> {
    let c = c?;
    let mut i = 0;
    let negate = matches!(p.first(), Some(b'^' | b'!'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == b']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        let mut lo = p[i];
        if lo == b'\\' && i + 1 < p.len() {
            i += 1;
            lo = p[i];
        }
        let mut hi = lo;
        if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            hi = p[i + 2];
            i += 2;
        }
        if lo <= c && c <= hi {
            hit = true;
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_match_semantics() {
        assert!(glob("*.txt", "a.txt"));
        assert!(!glob("*.txt", "d/a.txt"));
        assert!(glob("d/*.txt", "d/a.txt"));
        assert!(glob("?.go", "a.go"));
        assert!(!glob("?.go", "ab.go"));
        assert!(glob("[a-c]x", "bx"));
        assert!(!glob("[^a-c]x", "bx"));
        assert!(glob("[!a-c]x", "dx"));
        assert!(glob("\\*", "*"));
        assert!(!glob("\\*", "a"));
        assert!(glob("**/*.log", "a.log"));
        assert!(glob("**/*.log", "x/y/a.log"));
        assert!(glob("a/**", "a/b/c"));
        assert!(glob("a/**/z", "a/z"));
        assert!(glob("a/**/z", "a/b/c/z"));
        assert!(!glob("a/**/z", "b/z"));
    }

    #[test]
    fn dockerignore_rules() {
        let i = Ignore::parse("# comment\n\n*.log\n/secret\nbuild/\n!build/keep\n./tmp/../cache\n");
        assert!(i.excluded("a.log"));
        assert!(!i.excluded("d/a.log"));
        assert!(i.excluded("secret"));
        assert!(i.excluded("secret/inner/file"));
        assert!(i.excluded("build/x"));
        assert!(!i.excluded("build/keep"));
        assert!(i.excluded("cache"));
        assert!(!i.excluded("src/main.rs"));
        assert!(i.has_exceptions_under("build"));
        assert!(!i.has_exceptions_under("secret"));
        let all = Ignore::parse("*\n!Dockerfile\n");
        assert!(all.excluded("x") && !all.excluded("Dockerfile"));
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean("/a//b/./c/../d"), "a/b/d");
        assert_eq!(clean("../../x"), "x");
        assert_eq!(clean("./"), "");
    }
}
