use super::*;

fn kw(d: &Dockerfile) -> Vec<&str> {
    d.instructions.iter().map(|r| r.keyword.as_str()).collect()
}

#[test]
fn continuations_comments_and_blank_lines() {
    let d = parse(
        "FROM busybox\n\n# a comment\nRUN echo a \\\n  # inside\n\n  && echo b\nrun echo  c   \n",
    )
    .unwrap();
    assert_eq!(kw(&d), ["FROM", "RUN", "RUN"]);
    assert_eq!(
        d.instructions[1].args,
        Args::Text("echo a   && echo b".into())
    );
    assert_eq!(d.instructions[1].line, 4);
    assert_eq!(d.instructions[2].args, Args::Text("echo  c".into()));
    assert_eq!(d.instructions[2].text, "run echo  c");
}

#[test]
fn escape_directive_changes_the_continuation_character() {
    let d = parse("# escape=`\nFROM x\nRUN dir c:\\ `\n  /w\n").unwrap();
    assert_eq!(d.escape, '`');
    assert_eq!(d.instructions[1].args, Args::Text("dir c:\\   /w".into()));
    let e = parse("# escape=x\nFROM x\n").unwrap_err().to_string();
    assert!(e.contains("line 1") && e.contains("escape"), "{e}");
}

#[test]
fn directives_only_at_the_top() {
    // After a comment or instruction, `# escape=` is a comment.
    let d = parse("# hello\n# escape=`\nFROM x\nRUN a \\\n b\n").unwrap();
    assert_eq!(d.escape, '\\');
    assert_eq!(d.instructions[1].args, Args::Text("a  b".into()));
    let d = parse("# syntax=docker/dockerfile:1\n# ESCAPE = `\nFROM x\n").unwrap();
    assert_eq!(d.escape, '`');
    assert!(parse("# escape=`\n# escape=\\\nFROM x\n").is_err());
}

#[test]
fn json_and_shell_forms() {
    let d = parse("FROM x\nCMD [\"a\", \"b c\"]\nCMD [a, b]\nENTRYPOINT echo hi\n").unwrap();
    assert_eq!(
        d.instructions[1].args,
        Args::Json(vec!["a".into(), "b c".into()])
    );
    // Not valid JSON: the text form, as Docker does.
    assert_eq!(d.instructions[2].args, Args::Text("[a, b]".into()));
    assert_eq!(d.instructions[3].args, Args::Text("echo hi".into()));
}

#[test]
fn flags_are_split_off_where_instructions_take_them() {
    let d =
        parse("FROM --platform=linux/amd64 x AS b\nCOPY --from=b --chown=1:2 /a /b\nENV --x=1\n")
            .unwrap();
    assert_eq!(
        d.instructions[0].flags,
        [("platform".to_string(), "linux/amd64".to_string())]
    );
    assert_eq!(d.instructions[1].flags.len(), 2);
    assert_eq!(d.instructions[1].args, Args::Text("/a /b".into()));
    assert!(d.instructions[2].flags.is_empty());
    let h = parse("FROM x\nHEALTHCHECK --interval=1s CMD true\n").unwrap();
    assert_eq!(h.instructions[1].args, Args::Text("CMD true".into()));
}

#[test]
fn unknown_onbuild_and_heredocs_are_refused_by_name() {
    let e = parse("FROM x\nFROBNICATE y\n").unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("FROBNICATE"), "{e}");
    let e = parse("FROM x\nONBUILD RUN true\n").unwrap_err().to_string();
    assert!(e.contains("ONBUILD"), "{e}");
    for h in ["RUN <<EOF", "RUN cat <<-'EOT' > /x", "COPY <<EOF /x"] {
        let e = parse(&format!("FROM x\n{h}\nhi\nEOF\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("heredoc"), "{h}: {e}");
    }
    // `<<<` (a here-string) and `<< ` are not heredocs.
    assert!(parse("FROM x\nRUN cat <<< hi\n").is_ok());
}

#[test]
fn trailing_continuation_at_end_of_file() {
    let d = parse("FROM x\nRUN a \\").unwrap();
    assert_eq!(d.instructions[1].args, Args::Text("a".into()));
}
