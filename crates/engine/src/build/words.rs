//! Variable substitution and word splitting in instruction arguments, as Docker's
//! Dockerfile shell lexer does it (not a shell: no globbing, no command substitution).
//!
//! - `$NAME` and `${NAME}` are replaced by the variable (empty when unset);
//!   `${NAME:-word}` is `word` when NAME is unset or empty, `${NAME-word}` only when unset;
//!   `${NAME:+word}` is `word` when NAME is set and not empty, `${NAME+word}` when set;
//!   `${NAME:?msg}` / `${NAME?msg}` are errors naming NAME when it is empty/unset. The
//!   `word` is itself substituted. A `$` not followed by a name or `{` stays a `$`.
//! - Single quotes keep everything literal; double quotes keep blanks but substitute;
//!   the escape character makes the next character literal (inside double quotes only
//!   before `"`, `$` and itself). Quotes and escapes are removed from the result.

use crate::error::{Error, Result};

/// Looks a variable up: `None` when unset.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// One word, blanks kept (Docker's ProcessWord).
pub fn expand_word(s: &str, env: Lookup<'_>, escape: char) -> Result<String> {
    let mut words = Lexer::new(s, env, escape, false).run()?;
    Ok(words.pop().unwrap_or_default())
}

/// Words split at unquoted blanks (Docker's ProcessWords).
pub fn expand_words(s: &str, env: Lookup<'_>, escape: char) -> Result<Vec<String>> {
    Lexer::new(s, env, escape, true).run()
}

/// Splits at unquoted blanks keeping quotes and escapes (Docker's parseWords, used for
/// `KEY=VALUE` lists before each value is expanded).
pub fn raw_words(s: &str, escape: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == escape && q == '"' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            None => {
                cur.push(c);
                if c == escape {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == '"' || c == '\'' {
                    quote = Some(c);
                }
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    env: Lookup<'a>,
    escape: char,
    split: bool,
}

impl<'a> Lexer<'a> {
    fn new(s: &str, env: Lookup<'a>, escape: char, split: bool) -> Self {
        Lexer {
            chars: s.chars().collect(),
            pos: 0,
            env,
            escape,
            split,
        }
    }

    fn next(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied();
        self.pos += 1;
        c
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn run(mut self) -> Result<Vec<String>> {
        let mut words = Vec::new();
        let mut cur = String::new();
        // A word exists once anything (even "") was written for it.
        let mut started = !self.split;
        while let Some(c) = self.next() {
            if c == self.escape {
                started = true;
                match self.next() {
                    Some(n) => cur.push(n),
                    None => cur.push(c),
                }
            } else if c == '\'' {
                started = true;
                loop {
                    match self.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err(unterminated('\'')),
                    }
                }
            } else if c == '"' {
                started = true;
                loop {
                    match self.next() {
                        Some('"') => break,
                        Some('$') => {
                            let v = self.variable()?;
                            cur.push_str(&v);
                        }
                        Some(x) if x == self.escape => match self.peek() {
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                self.pos += 1;
                                cur.push(n);
                            }
                            _ => cur.push(x),
                        },
                        Some(x) => cur.push(x),
                        None => return Err(unterminated('"')),
                    }
                }
            } else if c == '$' {
                let v = self.variable()?;
                if !v.is_empty() {
                    started = true;
                }
                cur.push_str(&v);
            } else if self.split && c.is_whitespace() {
                if started {
                    words.push(std::mem::take(&mut cur));
                    started = false;
                }
            } else {
                started = true;
                cur.push(c);
            }
        }
        if started {
            words.push(cur);
        }
        Ok(words)
    }

    /// After a `$`: the variable's expansion (or `$` itself when no name follows).
    fn variable(&mut self) -> Result<String> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                self.braced()
            }
            Some(c) if is_name(c) => {
                let name = self.name();
                Ok((self.env)(&name).unwrap_or_default())
            }
            _ => Ok("$".to_string()),
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|c| is_name(*c)) {
            name.push(c);
            self.pos += 1;
        }
        name
    }

    /// `${...}` after the `{`.
    fn braced(&mut self) -> Result<String> {
        let name = self.name();
        if name.is_empty() {
            return Err(bad_sub("a variable name after ${"));
        }
        let value = (self.env)(&name);
        let modifier = match self.next() {
            Some('}') => return Ok(value.unwrap_or_default()),
            Some(':') => match self.next() {
                Some(m @ ('-' | '+' | '?')) => (true, m),
                _ => return Err(bad_sub(&format!("${{{name}:...}}: expected :-, :+ or :?"))),
            },
            Some(m @ ('-' | '+' | '?')) => (false, m),
            _ => return Err(bad_sub(&format!("${{{name}...}}: expected }}, -, + or ?"))),
        };
        let word = self.until_close()?;
        let word = expand_word(&word, self.env, self.escape)?;
        let (colon, op) = modifier;
        let set = value.is_some();
        let nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
        let present = if colon { nonempty } else { set };
        Ok(match op {
            '-' if present => value.unwrap_or_default(),
            '-' => word,
            '+' if present => word,
            '+' => String::new(),
            _ if present => value.unwrap_or_default(),
            _ => {
                let msg = if word.is_empty() {
                    "is not set".to_string()
                } else {
                    word
                };
                return Err(Error::invalid("Dockerfile", format!("{name}: {msg}")));
            }
        })
    }

    /// The raw text up to the `}` closing this `${`, nested `${...}` and quotes included.
    fn until_close(&mut self) -> Result<String> {
        let mut depth = 0usize;
        let mut out = String::new();
        while let Some(c) = self.next() {
            if c == self.escape {
                out.push(c);
                if let Some(n) = self.next() {
                    out.push(n);
                }
                continue;
            }
            if c == '$' && self.peek() == Some('{') {
                depth += 1;
            } else if c == '}' {
                if depth == 0 {
                    return Ok(out);
                }
                depth -= 1;
            }
            out.push(c);
        }
        Err(bad_sub("a ${ without its }"))
    }
}

fn is_name(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn unterminated(q: char) -> Error {
    Error::invalid("Dockerfile", format!("unterminated {q} quote"))
}

fn bad_sub(what: &str) -> Error {
    Error::invalid("Dockerfile", format!("bad substitution: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "X" => Some("ex".into()),
            "EMPTY" => Some(String::new()),
            "SP" => Some("a b".into()),
            _ => None,
        }
    }

    fn w(s: &str) -> String {
        expand_word(s, &env, '\\').unwrap()
    }

    #[test]
    fn plain_and_braced_variables() {
        assert_eq!(w("$X"), "ex");
        assert_eq!(w("${X}y"), "exy");
        assert_eq!(w("$Xy"), "");
        assert_eq!(w("a$UNSET-b"), "a-b");
        assert_eq!(w("cost $5"), "cost ");
        assert_eq!(w("a $ b"), "a $ b");
        assert_eq!(w("end$"), "end$");
    }

    #[test]
    fn modifiers_as_docker() {
        assert_eq!(w("${UNSET:-d}"), "d");
        assert_eq!(w("${EMPTY:-d}"), "d");
        assert_eq!(w("${EMPTY-d}"), "");
        assert_eq!(w("${UNSET-d}"), "d");
        assert_eq!(w("${X:-d}"), "ex");
        assert_eq!(w("${X:+a}"), "a");
        assert_eq!(w("${EMPTY:+a}"), "");
        assert_eq!(w("${EMPTY+a}"), "a");
        assert_eq!(w("${UNSET:+a}"), "");
        assert_eq!(w("${UNSET:-$X/x}"), "ex/x");
        assert_eq!(w("${UNSET:-${X:+in}}"), "in");
        let e = expand_word("${UNSET:?must be set}", &env, '\\').unwrap_err();
        assert!(e.to_string().contains("UNSET: must be set"), "{e}");
        assert!(expand_word("${X", &env, '\\').is_err());
        assert!(expand_word("${}", &env, '\\').is_err());
        assert!(expand_word("${X:x}", &env, '\\').is_err());
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(w("'$X'"), "$X");
        assert_eq!(w("\"$X\""), "ex");
        assert_eq!(w("\\$X"), "$X");
        assert_eq!(w("\"a\\\"b\""), "a\"b");
        assert_eq!(w("\"a\\nb\""), "a\\nb");
        assert_eq!(w("a\\ b"), "a b");
        assert_eq!(expand_word("`$X", &env, '`').unwrap(), "$X");
        assert_eq!(expand_word("c:\\dir", &env, '`').unwrap(), "c:\\dir");
        assert!(expand_word("'open", &env, '\\').is_err());
        assert!(expand_word("\"open", &env, '\\').is_err());
    }

    #[test]
    fn words_split_on_unquoted_blanks_only() {
        let ws = |s| expand_words(s, &env, '\\').unwrap();
        assert_eq!(ws("a  b\tc"), ["a", "b", "c"]);
        assert_eq!(ws("\"a b\" c"), ["a b", "c"]);
        assert_eq!(ws("'' x"), ["", "x"]);
        // A variable's blanks do not split (unlike a shell).
        assert_eq!(ws("$SP z"), ["a b", "z"]);
        assert_eq!(ws("$UNSET z"), ["z"]);
        assert!(ws("").is_empty());
    }

    #[test]
    fn raw_words_keep_quotes() {
        assert_eq!(
            raw_words("A=\"x y\" B='1 2' C=a\\ b", '\\'),
            ["A=\"x y\"", "B='1 2'", "C=a\\ b"]
        );
    }
}
