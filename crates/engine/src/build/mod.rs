//! `build`: a Dockerfile into the image store, with no daemon and no BuildKit.
//!
//! - [`parse`] splits the file into instructions (directives, comments, continuations,
//!   JSON or text arguments) and [`words`] substitutes variables as Docker does;
//!   [`instr`] turns each into a checked, typed instruction;
//! - [`config`] applies metadata instructions to the image config (also for
//!   `commit --change`).

pub mod config;
pub(crate) mod context;
pub(crate) mod copy;
pub mod exec;
pub mod ignore;
pub mod instr;
pub mod parse;
pub mod plan;
pub mod stdin;
mod step;
pub mod words;

pub use exec::{BuildOptions, BuildResult};

/// Entry point for the fuzz target `dockerfile` (fuzz/): the parser, substitution, the
/// config changes and the pattern matcher on arbitrary text. Panics if an accepted
/// Dockerfile breaks what the builder relies on. Not a stable API.
#[doc(hidden)]
pub fn fuzz_dockerfile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(df) = parse::parse(text) {
        assert!(df.escape == '\\' || df.escape == '`');
        let env = |k: &str| (k == "X").then(|| "x y".to_string());
        let mut cfg = serde_json::json!({});
        for raw in &df.instructions {
            assert!(parse::KEYWORDS.contains(&raw.keyword.as_str()));
            assert_ne!(raw.keyword, "ONBUILD");
            // The joined text parses back to the same instruction.
            let again = parse::instruction(raw.line, &raw.text);
            assert!(
                matches!(&again, Ok(a) if a.keyword == raw.keyword),
                "{:?} re-parsed as {again:?}",
                raw.text
            );
            if let Ok(i) = instr::resolve(raw, &env, df.escape) {
                if !i.makes_layer()
                    && !matches!(
                        i,
                        instr::Instruction::From { .. } | instr::Instruction::Arg(_)
                    )
                {
                    let applied = config::apply_step(&mut cfg, Some(&i));
                    assert!(applied.is_ok(), "{i:?}: {applied:?}");
                    assert!(cfg.is_object());
                }
            }
        }
        let _ = plan::Plan::of(&df);
    }
    let _ = words::expand_words(text, &|_| None, '\\');
    let (pat, name) = text.split_once('\n').unwrap_or((text, text));
    let _ = ignore::glob(pat, name);
    let _ = ignore::Ignore::parse(text).excluded(name);
}
