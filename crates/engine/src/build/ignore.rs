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

/// Whether `name` matches `pat` (both `/`-separated paths). Memoised on (pattern
/// position, name position), so a pattern of many `*`s costs at most their product, never
/// an exponential backtrack.
pub fn glob(pat: &str, name: &str) -> bool {
    let mut memo = std::collections::HashMap::new();
    m(pat.as_bytes(), name.as_bytes(), 0, 0, &mut memo)
}

type Memo = std::collections::HashMap<(usize, usize), bool>;

fn m(p: &[u8], s: &[u8], pi: usize, si: usize, memo: &mut Memo) -> bool {
    if let Some(&r) = memo.get(&(pi, si)) {
        return r;
    }
    let r = step(p, s, pi, si, memo);
    memo.insert((pi, si), r);
    r
}

fn step(p: &[u8], s: &[u8], pi: usize, si: usize, memo: &mut Memo) -> bool {
    let (pr, sr) = (&p[pi..], &s[si..]);
    if pr.is_empty() {
        return sr.is_empty();
    }
    if pr.starts_with(b"**") {
        let mut rest = pi + 2;
        // `**/` may also match no directory at all.
        if p.get(rest) == Some(&b'/') {
            rest += 1;
            if m(p, s, rest, si, memo) {
                return true;
            }
            return (si..s.len()).any(|i| s[i] == b'/' && m(p, s, rest, i + 1, memo));
        }
        return (si..=s.len()).any(|i| m(p, s, rest, i, memo));
    }
    match pr[0] {
        b'*' => {
            for i in si..=s.len() {
                if m(p, s, pi + 1, i, memo) {
                    return true;
                }
                if i < s.len() && s[i] == b'/' {
                    break;
                }
            }
            false
        }
        b'?' => !sr.is_empty() && sr[0] != b'/' && m(p, s, pi + 1, si + 1, memo),
        b'[' => {
            let Some((ok, used)) = class(&pr[1..], sr.first().copied()) else {
                // An unterminated class matches itself literally.
                return sr.first() == Some(&b'[') && m(p, s, pi + 1, si + 1, memo);
            };
            ok && sr.first() != Some(&b'/') && m(p, s, pi + 1 + used, si + 1, memo)
        }
        b'\\' if pr.len() > 1 => !sr.is_empty() && sr[0] == pr[1] && m(p, s, pi + 2, si + 1, memo),
        c => !sr.is_empty() && sr[0] == c && m(p, s, pi + 1, si + 1, memo),
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
    fn many_stars_do_not_backtrack_exponentially() {
        let pat = "*a".repeat(30) + "b";
        let name = "a".repeat(200);
        assert!(!glob(&pat, &name));
        assert!(glob(&("*a".repeat(30)), &name));
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
