//! Container names and ids: what is valid, and how new ones are made.

use crate::error::{Error, Result};

use super::files::random_bytes;

/// Length of a container id: 32 random bytes in lowercase hex.
pub const ID_LEN: usize = 64;
/// Longest accepted name.
pub const NAME_MAX: usize = 128;

/// A fresh container id: 64 lowercase hex characters from /dev/urandom.
pub(crate) fn new_id() -> Result<String> {
    Ok(random_bytes::<32>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// True for a full container id (64 lowercase hex characters). Only such strings become
/// directory names under `containers/`.
pub fn is_full_id(s: &str) -> bool {
    s.len() == ID_LEN && is_id_prefix(s)
}

/// True for a non-empty string that could start an id.
pub(crate) fn is_id_prefix(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks a container name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 128 characters
/// (Docker's rule). `Error::Invalid` with field `name` says what is wrong.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason: String| Err(Error::invalid("name", format!("{name:?}: {reason}")));
    let Some(first) = name.chars().next() else {
        return Err(Error::invalid("name", "a container name cannot be empty"));
    };
    if name.len() > NAME_MAX {
        return bad(format!("longer than {NAME_MAX} characters"));
    }
    if !first.is_ascii_alphanumeric() {
        return bad("must start with a letter or a digit".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return bad(format!(
            "{c:?} is not allowed (only letters, digits and _ . - are)"
        ));
    }
    Ok(())
}

/// A random `adjective_noun` name, Docker style; `taken` says which names are in use.
/// After a few collisions a random hex suffix keeps it unique.
pub(crate) fn generate_name(taken: impl Fn(&str) -> bool) -> Result<String> {
    for attempt in 0..16 {
        let r = random_bytes::<6>()?;
        let adjective =
            ADJECTIVES[usize::from(u16::from_le_bytes([r[0], r[1]])) % ADJECTIVES.len()];
        let noun = NOUNS[usize::from(u16::from_le_bytes([r[2], r[3]])) % NOUNS.len()];
        let name = if attempt < 8 {
            format!("{adjective}_{noun}")
        } else {
            format!("{adjective}_{noun}_{:02x}{:02x}", r[4], r[5])
        };
        if !taken(&name) {
            return Ok(name);
        }
    }
    let r = random_bytes::<8>()?;
    Ok(format!("container_{}", u64::from_le_bytes(r)))
}

const ADJECTIVES: &[&str] = &[
    "agile",
    "amazing",
    "bold",
    "brave",
    "bright",
    "busy",
    "calm",
    "careful",
    "charming",
    "cheerful",
    "clever",
    "cool",
    "curious",
    "daring",
    "determined",
    "eager",
    "elastic",
    "elegant",
    "epic",
    "fervent",
    "festive",
    "focused",
    "friendly",
    "gallant",
    "gentle",
    "happy",
    "hardy",
    "honest",
    "humble",
    "jolly",
    "keen",
    "kind",
    "lively",
    "loyal",
    "lucid",
    "merry",
    "mighty",
    "modest",
    "nice",
    "nimble",
    "noble",
    "patient",
    "peaceful",
    "polite",
    "proud",
    "quick",
    "quiet",
    "rapid",
    "relaxed",
    "serene",
    "sharp",
    "sleepy",
    "smart",
    "steady",
    "sturdy",
    "sunny",
    "swift",
    "tender",
    "tidy",
    "upbeat",
    "vivid",
    "wise",
    "witty",
    "zealous",
];

const NOUNS: &[&str] = &[
    "agnesi",
    "archimedes",
    "babbage",
    "bardeen",
    "bohr",
    "boole",
    "cerf",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euclid",
    "euler",
    "faraday",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "galileo",
    "gauss",
    "goodall",
    "hamilton",
    "hawking",
    "hertz",
    "hodgkin",
    "hopper",
    "hypatia",
    "johnson",
    "kepler",
    "knuth",
    "lamarr",
    "lamport",
    "liskov",
    "lovelace",
    "maxwell",
    "meitner",
    "mendel",
    "mirzakhani",
    "newton",
    "noether",
    "pascal",
    "pasteur",
    "planck",
    "poincare",
    "ramanujan",
    "ritchie",
    "sagan",
    "shannon",
    "somerville",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "wiles",
    "wozniak",
    "yalow",
    "yonath",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["a", "web-1", "A.b_c-d", "0day", &"x".repeat(NAME_MAX)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            ".x",
            "_x",
            "a/b",
            "a b",
            "..",
            "é",
            &"x".repeat(NAME_MAX + 1),
        ] {
            let err = validate_name(bad).expect_err(bad);
            assert!(
                matches!(err, Error::Invalid { ref field, .. } if field == "name"),
                "{err}"
            );
        }
    }

    #[test]
    fn generated_names_are_valid_and_avoid_taken_ones() {
        let name = generate_name(|_| false).unwrap();
        validate_name(&name).unwrap();
        assert!(name.contains('_'));
        let everything_plain_taken = generate_name(|n| n.matches('_').count() == 1).unwrap();
        validate_name(&everything_plain_taken).unwrap();
        assert_eq!(everything_plain_taken.matches('_').count(), 2);
        for word in ADJECTIVES.iter().chain(NOUNS) {
            validate_name(word).unwrap();
        }
    }

    #[test]
    fn ids_are_64_lowercase_hex() {
        let id = new_id().unwrap();
        assert!(is_full_id(&id), "{id}");
        assert_ne!(id, new_id().unwrap());
        assert!(!is_full_id(&id.to_uppercase()));
        assert!(!is_full_id(&id[1..]));
        assert!(!is_id_prefix(""));
    }
}
