//! `--format '{{...}}'`: the part of Go's text/template that Docker users type, over
//! JSON values. Fields are looked up as written, then ignoring case, then as
//! snake_case (`{{.ExitCode}}` finds `exit_code`), so Docker's spellings work on
//! codex's JSON; `.State` stands for the object itself when it has no `State`
//! (`{{.State.Status}}` is `status`, as Docker users write it).
//!
//! Actions: `{{.a.b}}`, `{{.}}`, `{{json .x}}`, `{{index .m "key"}}`, `{{len .x}}`,
//! `{{upper .x}}`, `{{lower .x}}`, `{{join .list ", "}}`, pipes (`{{.x | json}}`),
//! `{{if P}}..{{else}}..{{end}}`, `{{range P}}..{{end}}` (dot is each element, or
//! each value of an object), and the `{{-`/`-}}` trim markers.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Vec<Cmd>),
    If(Vec<Cmd>, Vec<Node>, Vec<Node>),
    Range(Vec<Cmd>, Vec<Node>),
}

/// One command of a pipeline: a function and its arguments, or a lone argument.
#[derive(Debug, Clone, PartialEq)]
struct Cmd(Vec<Arg>);

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Field(Vec<String>),
    Str(String),
    Ident(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Node>);

impl Template {
    pub fn parse(src: &str) -> Result<Template, String> {
        let tokens = lex(src)?;
        let mut pos = 0;
        let (nodes, end) = parse_nodes(&tokens, &mut pos)?;
        match end {
            None => Ok(Template(nodes)),
            Some(e) => Err(format!("unexpected {{{{{e}}}}}")),
        }
    }

    pub fn render(&self, v: &Value) -> Result<String, String> {
        let mut out = String::new();
        render_nodes(&self.0, v, &mut out)?;
        Ok(out)
    }
}

enum Tok {
    Text(String),
    Action(String),
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut rest = src;
    while let Some(open) = rest.find("{{") {
        let mut text = rest[..open].to_string();
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("unclosed action at {:?}", &rest[open..]))?;
        let mut inner = &after[..close];
        if let Some(i) = inner.strip_prefix('-') {
            inner = i;
            text = text.trim_end().to_string();
        }
        let trim_next = inner.ends_with('-');
        if trim_next {
            inner = &inner[..inner.len() - 1];
        }
        toks.push(Tok::Text(text));
        toks.push(Tok::Action(inner.trim().to_string()));
        rest = &after[close + 2..];
        if trim_next {
            rest = rest.trim_start();
        }
    }
    toks.push(Tok::Text(rest.to_string()));
    Ok(toks)
}

/// Nodes up to an `end`/`else` (returned) or the end of input (`None`).
fn parse_nodes(toks: &[Tok], pos: &mut usize) -> Result<(Vec<Node>, Option<String>), String> {
    let mut nodes = Vec::new();
    while *pos < toks.len() {
        let t = &toks[*pos];
        *pos += 1;
        match t {
            Tok::Text(s) if !s.is_empty() => nodes.push(Node::Text(s.clone())),
            Tok::Text(_) => {}
            Tok::Action(a) if a == "end" || a == "else" => return Ok((nodes, Some(a.clone()))),
            Tok::Action(a) => {
                if let Some(p) = a.strip_prefix("if ") {
                    let cond = pipeline(p)?;
                    let (then, end) = parse_nodes(toks, pos)?;
                    let otherwise = match end.as_deref() {
                        Some("else") => match parse_nodes(toks, pos)? {
                            (n, Some(e)) if e == "end" => n,
                            _ => return Err("{{if}} without {{end}}".into()),
                        },
                        Some("end") => Vec::new(),
                        _ => return Err("{{if}} without {{end}}".into()),
                    };
                    nodes.push(Node::If(cond, then, otherwise));
                } else if let Some(p) = a.strip_prefix("range ") {
                    let over = pipeline(p)?;
                    match parse_nodes(toks, pos)? {
                        (body, Some(e)) if e == "end" => nodes.push(Node::Range(over, body)),
                        _ => return Err("{{range}} without {{end}}".into()),
                    }
                } else {
                    nodes.push(Node::Action(pipeline(a)?));
                }
            }
        }
    }
    Ok((nodes, None))
}

fn pipeline(src: &str) -> Result<Vec<Cmd>, String> {
    let words = split_words(src)?;
    let mut cmds = vec![Cmd(Vec::new())];
    for w in words {
        if w == "|" {
            cmds.push(Cmd(Vec::new()));
            continue;
        }
        let arg = if let Some(s) = w.strip_prefix('"') {
            Arg::Str(s.strip_suffix('"').unwrap_or(s).replace("\\\"", "\""))
        } else if w == "." {
            Arg::Field(Vec::new())
        } else if let Some(path) = w.strip_prefix('.') {
            Arg::Field(path.split('.').map(str::to_string).collect())
        } else if w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            Arg::Ident(w)
        } else {
            return Err(format!("{w:?} is not a field, a string or a function"));
        };
        if let Some(last) = cmds.last_mut() {
            last.0.push(arg);
        }
    }
    if cmds.iter().any(|c| c.0.is_empty()) {
        return Err(format!("empty command in {{{{{src}}}}}"));
    }
    Ok(cmds)
}

/// Words of an action: quoted strings whole, `|` on its own.
fn split_words(src: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = src.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            let mut w = String::from('"');
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        w.push('\\');
                        w.push(n);
                    }
                    continue;
                }
                w.push(c);
                if c == '"' {
                    closed = true;
                    break;
                }
            }
            if !closed {
                return Err(format!("unterminated string in {src:?}"));
            }
            words.push(w);
        } else if c == '|' {
            chars.next();
            words.push("|".into());
        } else {
            let mut w = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '|' {
                    break;
                }
                w.push(c);
                chars.next();
            }
            words.push(w);
        }
    }
    Ok(words)
}

fn render_nodes(nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), String> {
    for n in nodes {
        match n {
            Node::Text(s) => out.push_str(s),
            Node::Action(p) => out.push_str(&display(&eval(p, dot)?)),
            Node::If(c, then, otherwise) => {
                let branch = if truthy(&eval(c, dot)?) {
                    then
                } else {
                    otherwise
                };
                render_nodes(branch, dot, out)?;
            }
            Node::Range(p, body) => match eval(p, dot)? {
                Value::Array(items) => {
                    for item in &items {
                        render_nodes(body, item, out)?;
                    }
                }
                Value::Object(map) => {
                    for item in map.values() {
                        render_nodes(body, item, out)?;
                    }
                }
                Value::Null => {}
                other => return Err(format!("range over {}", kind(&other))),
            },
        }
    }
    Ok(())
}

fn eval(p: &[Cmd], dot: &Value) -> Result<Value, String> {
    let mut piped: Option<Value> = None;
    for Cmd(args) in p {
        let mut vals = Vec::new();
        let func = match &args[0] {
            Arg::Ident(f) => Some(f.as_str()),
            _ => None,
        };
        let rest = if func.is_some() {
            &args[1..]
        } else {
            &args[..]
        };
        for a in rest {
            vals.push(match a {
                Arg::Field(path) => lookup(dot, path)?,
                Arg::Str(s) => Value::String(s.clone()),
                Arg::Ident(i) => return Err(format!("{i:?} must come first: it is a function")),
            });
        }
        if let Some(v) = piped.take() {
            vals.push(v);
        }
        piped = Some(match func {
            None if vals.len() == 1 => vals.remove(0),
            None => return Err("a value cannot take arguments".into()),
            Some(f) => call(f, vals)?,
        });
    }
    Ok(piped.unwrap_or(Value::Null))
}

fn call(f: &str, mut a: Vec<Value>) -> Result<Value, String> {
    let one = |a: &mut Vec<Value>| -> Result<Value, String> {
        if a.len() == 1 {
            Ok(a.remove(0))
        } else {
            Err(format!("{f} takes one argument, not {}", a.len()))
        }
    };
    Ok(match f {
        "json" => Value::String(serde_json::to_string(&one(&mut a)?).map_err(|e| e.to_string())?),
        "upper" => Value::String(display(&one(&mut a)?).to_uppercase()),
        "lower" => Value::String(display(&one(&mut a)?).to_lowercase()),
        "len" => Value::from(match one(&mut a)? {
            Value::Array(v) => v.len(),
            Value::Object(m) => m.len(),
            Value::String(s) => s.chars().count(),
            Value::Null => 0,
            other => return Err(format!("len of {}", kind(&other))),
        }),
        "index" => {
            if a.is_empty() {
                return Err("index needs a value and keys".into());
            }
            let mut v = a.remove(0);
            for k in a {
                v = match (&v, &k) {
                    (Value::Object(m), Value::String(s)) => {
                        m.get(s).cloned().unwrap_or(Value::Null)
                    }
                    (Value::Array(l), Value::Number(n)) => n
                        .as_u64()
                        .and_then(|i| l.get(i as usize))
                        .cloned()
                        .unwrap_or(Value::Null),
                    _ => return Err(format!("index of {} by {}", kind(&v), kind(&k))),
                };
            }
            v
        }
        "join" => match a.as_slice() {
            [Value::Array(items), Value::String(sep)] => {
                Value::String(items.iter().map(display).collect::<Vec<_>>().join(sep))
            }
            [Value::Null, Value::String(_)] => Value::String(String::new()),
            _ => return Err("join takes a list and a separator".into()),
        },
        "println" => Value::String(format!(
            "{}\n",
            a.iter().map(display).collect::<Vec<_>>().join(" ")
        )),
        _ => {
            return Err(format!(
                "{f:?} is not a function (json, index, len, upper, lower, join, println)"
            ))
        }
    })
}

/// `path` under `v`, with Docker's spellings: see the module doc.
fn lookup(v: &Value, path: &[String]) -> Result<Value, String> {
    let mut cur = v.clone();
    for (i, key) in path.iter().enumerate() {
        cur = match &cur {
            Value::Object(m) => match find_key(m, key) {
                Some(x) => x.clone(),
                // Docker's inspect nests the state; codex's has it at the top.
                None if key == "State" && i == 0 => cur.clone(),
                None => Value::Null,
            },
            Value::Null => Value::Null,
            other => {
                return Err(format!(
                    "{} is {}, it has no field {key:?}",
                    path[..i].join("."),
                    kind(other)
                ))
            }
        };
    }
    Ok(cur)
}

fn find_key<'a>(m: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key)
        .or_else(|| {
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        })
        .or_else(|| m.get(&snake_case(key)))
}

/// `ExitCode` -> `exit_code`, `IPAddress` -> `ip_address`.
fn snake_case(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev_lower = i > 0 && chars[i - 1].is_lowercase();
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// As Go prints a value: strings bare, `<no value>` for a missing one, JSON-ish for
/// the rest (maps as `map[k:v]` would be unreadable: JSON is what users pipe on).
fn display(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &str, v: &Value) -> String {
        Template::parse(t).unwrap().render(v).unwrap()
    }

    fn doc() -> Value {
        json!({
            "name": "web", "status": "running", "exit_code": 3, "pid": 42,
            "config": {"labels": {"app": "x", "tier": "db"}, "command": ["sleep", "9"]},
            "networks": {"n1": {"ip_address": "10.0.0.2"}, "n2": {"ip_address": "10.0.1.2"}},
            "ok": true, "empty": []
        })
    }

    #[test]
    fn fields_take_dockers_spellings() {
        let d = doc();
        assert_eq!(
            render("{{.State.Status}} {{.ExitCode}} {{.Name}}", &d),
            "running 3 web"
        );
        assert_eq!(render("{{.status}}/{{.Pid}}", &d), "running/42");
        assert_eq!(render("{{.Nothing}}", &d), "<no value>");
        assert_eq!(render("{{.Config.Labels.app}}", &d), "x");
        assert_eq!(snake_case("IPAddress"), "ip_address");
        assert_eq!(snake_case("ExitCode"), "exit_code");
    }

    #[test]
    fn functions_pipes_and_control() {
        let d = doc();
        assert_eq!(render("{{json .Config.Command}}", &d), r#"["sleep","9"]"#);
        assert_eq!(render("{{.Config.Command | json}}", &d), r#"["sleep","9"]"#);
        assert_eq!(render(r#"{{index .Config.Labels "tier"}}"#, &d), "db");
        assert_eq!(
            render("{{len .Config.Labels}} {{upper .status}}", &d),
            "2 RUNNING"
        );
        assert_eq!(render(r#"{{join .Config.Command " "}}"#, &d), "sleep 9");
        assert_eq!(
            render("{{range .Networks}}{{.IPAddress}};{{end}}", &d),
            "10.0.0.2;10.0.1.2;"
        );
        assert_eq!(render("{{if .ok}}yes{{else}}no{{end}}", &d), "yes");
        assert_eq!(render("{{if .empty}}yes{{else}}no{{end}}", &d), "no");
        assert_eq!(render("a  {{- .pid -}}  b", &d), "a42b");
        assert_eq!(render("{{.}}", &json!("x")), "x");
    }

    #[test]
    fn bad_templates_say_what_is_wrong() {
        for bad in [
            "{{.a",
            "{{if .a}}x",
            "{{range .a}}",
            "{{end}}",
            "{{nosuch .a}}",
            "{{.a | }}",
        ] {
            let r = Template::parse(bad).and_then(|t| t.render(&doc()));
            assert!(r.is_err(), "{bad} should fail: {r:?}");
        }
        let e = Template::parse("{{.name.first}}")
            .unwrap()
            .render(&doc())
            .unwrap_err();
        assert!(e.contains("name") && e.contains("string"), "{e}");
    }
}
