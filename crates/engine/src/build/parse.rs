//! Splitting a Dockerfile into instructions, as Docker's parser does.
//!
//! - Parser directives (`# escape=`, `# syntax=`, `# check=`) are read only at the very
//!   top, before any instruction, blank line or other comment; `escape` must be `\` or
//!   `` ` ``. `syntax` names a BuildKit frontend image: there is no frontend here, so it
//!   is accepted and ignored (the file is read with this parser).
//! - A line whose first non-blank character is `#` is a comment, also inside a
//!   continuation; a line ending in the escape character (trailing blanks ignored)
//!   continues on the next one; blank lines inside a continuation are skipped.
//! - An instruction is a keyword (any case), then `--flag=value` options for the
//!   instructions that take them, then its arguments: JSON (`["a", "b"]`) when they parse
//!   as a JSON array of strings, else text.
//!
//! Variables are substituted later ([`super::words`]), step by step, because the
//! environment changes as ENV and ARG instructions run.

use crate::error::{Error, Result};

/// One instruction as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw {
    /// 1-based line of the keyword (for messages).
    pub line: usize,
    /// Upper-cased keyword (`RUN`).
    pub keyword: String,
    /// `--name=value` options (`--from=build` -> ("from", "build")); a bare `--name` has
    /// an empty value.
    pub flags: Vec<(String, String)>,
    pub args: Args,
    /// The instruction as one line (continuations joined), for `Step N/M : ...` and the
    /// image history.
    pub text: String,
}

/// An instruction's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// The JSON (exec) form: `["sh", "-c", "x"]`.
    Json(Vec<String>),
    /// Everything else, as written after the flags (trimmed).
    Text(String),
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub escape: char,
    pub instructions: Vec<Raw>,
}

/// Instructions that take `--flag` options before their arguments.
const FLAGGED: &[&str] = &["FROM", "RUN", "COPY", "ADD", "HEALTHCHECK"];

/// Every instruction this builder knows (ONBUILD is known, to be refused by name).
pub const KEYWORDS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "ENTRYPOINT",
    "SHELL",
    "ENV",
    "ARG",
    "LABEL",
    "EXPOSE",
    "WORKDIR",
    "USER",
    "VOLUME",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "COPY",
    "ADD",
    "MAINTAINER",
    "ONBUILD",
];

fn err(line: usize, msg: impl std::fmt::Display) -> Error {
    Error::invalid("Dockerfile", format!("line {line}: {msg}"))
}

/// Parses a whole Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile> {
    let lines: Vec<&str> = text.lines().collect();
    let mut escape = '\\';
    let mut i = 0;
    // Directives: only in the leading run of `# key=value` lines.
    let mut seen = std::collections::HashSet::new();
    while i < lines.len() {
        let Some((key, value)) = directive(lines[i]) else {
            break;
        };
        if !seen.insert(key.clone()) {
            return Err(err(i + 1, format!("the {key} directive is given twice")));
        }
        if key == "escape" {
            escape = match value.as_str() {
                "\\" => '\\',
                "`" => '`',
                other => {
                    return Err(err(
                        i + 1,
                        format!("invalid escape token {other:?}: it must be \\ or `"),
                    ))
                }
            };
        }
        i += 1;
    }
    let mut instructions = Vec::new();
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut joined = String::new();
        let mut cur = line;
        loop {
            let t = cur.trim_end();
            if let Some(body) = t.strip_suffix(escape) {
                joined.push_str(body);
                i += 1;
                // Comments and blank lines inside a continuation are dropped.
                while i < lines.len() {
                    let n = lines[i].trim_start();
                    if n.is_empty() || n.starts_with('#') {
                        i += 1;
                    } else {
                        break;
                    }
                }
                match lines.get(i) {
                    Some(next) => cur = next,
                    None => break,
                }
            } else {
                joined.push_str(cur);
                i += 1;
                break;
            }
        }
        instructions.push(instruction(start, joined.trim())?);
    }
    Ok(Dockerfile {
        escape,
        instructions,
    })
}

/// `# key=value` at the top of the file: a known directive's (lower-cased key, value).
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim().strip_prefix('#')?;
    let (k, v) = rest.split_once('=')?;
    let key = k.trim().to_ascii_lowercase();
    if !matches!(key.as_str(), "escape" | "syntax" | "check") {
        return None;
    }
    if key.is_empty() || key.contains(char::is_whitespace) {
        return None;
    }
    Some((key, v.trim().to_string()))
}

/// One joined instruction line: keyword, flags, arguments.
pub fn instruction(line: usize, text: &str) -> Result<Raw> {
    let (kw, rest) = match text.find(char::is_whitespace) {
        Some(p) => (&text[..p], text[p..].trim_start()),
        None => (text, ""),
    };
    let keyword = kw.to_ascii_uppercase();
    if !KEYWORDS.contains(&keyword.as_str()) {
        return Err(err(line, format!("unknown instruction {kw:?}")));
    }
    if keyword == "ONBUILD" {
        return Err(err(
            line,
            "ONBUILD is not supported by this builder (triggers for later builds)",
        ));
    }
    let mut flags = Vec::new();
    let mut rest = rest;
    if FLAGGED.contains(&keyword.as_str()) {
        while let Some(f) = rest.strip_prefix("--") {
            let end = f.find(char::is_whitespace).unwrap_or(f.len());
            let (name, value) = match f[..end].split_once('=') {
                Some((n, v)) => (n, v),
                None => (&f[..end], ""),
            };
            if name.is_empty() {
                return Err(err(line, format!("{keyword}: an empty flag name")));
            }
            flags.push((name.to_ascii_lowercase(), value.to_string()));
            rest = f[end..].trim_start();
            if keyword == "HEALTHCHECK" && (rest.starts_with("CMD") || rest.starts_with("NONE")) {
                break;
            }
        }
    }
    if matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") && has_heredoc(rest) {
        return Err(err(
            line,
            format!("{keyword}: heredocs (<<WORD) are not supported by this builder"),
        ));
    }
    let args = match json_array(rest) {
        Some(v) => Args::Json(v),
        None => Args::Text(rest.to_string()),
    };
    Ok(Raw {
        line,
        keyword,
        flags,
        args,
        text: text.to_string(),
    })
}

/// `["a", "b"]`: a JSON array of strings (anything else is the text form, as in Docker).
fn json_array(s: &str) -> Option<Vec<String>> {
    if !s.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(s).ok()
}

/// A heredoc marker: `<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'` (not `<<<` nor `<< EOF`).
fn has_heredoc(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i + 2 < b.len() + 1 {
        if b[i..].starts_with(b"<<") && !b[i..].starts_with(b"<<<") && (i == 0 || b[i - 1] != b'<')
        {
            let mut j = i + 2;
            if b.get(j) == Some(&b'-') {
                j += 1;
            }
            if matches!(b.get(j), Some(&(b'"' | b'\''))) {
                j += 1;
            }
            if b.get(j)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
            {
                return true;
            }
        }
        i += 1;
    }
    false
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
