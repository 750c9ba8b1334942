//! Validation of user-chosen names (projects, tables, models, cubes, columns). Names become
//! parts of metadata paths and file names, so anything that could escape a directory is refused.

use crate::error::{Error, Result};

/// Longest accepted name. Long enough for generated names, short enough for file systems.
pub const MAX_NAME_LEN: usize = 128;

/// Accepts `[A-Za-z0-9_]`, starting with a letter or `_`, 1..=128 characters.
pub fn validate_name(kind: &'static str, name: &str) -> Result<()> {
    let fail = |reason: &str| {
        let shown: String = name.chars().take(40).collect();
        let shown = if name.chars().count() > 40 {
            format!("{shown}…")
        } else {
            shown
        };
        Err(Error::InvalidName {
            kind,
            name: shown,
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return fail("must not be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return fail(&format!(
            "is {} bytes long; at most {MAX_NAME_LEN} allowed",
            name.len()
        ));
    }
    if name.contains(['/', '\\']) || name.contains("..") {
        return fail("must not contain path separators or '..'");
    }
    let first = name.chars().next().unwrap_or('_');
    if !(first.is_ascii_alphabetic() || first == '_') {
        return fail("must start with a letter or '_'");
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return fail(&format!(
            "contains {bad:?}; only letters, digits and '_' are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in ["ssb", "lineorder", "SSB_CUBE_1", "_x"] {
            validate_name("cube", n).unwrap();
        }
    }

    #[test]
    fn refuses_hostile_names_with_a_reason() {
        let long = "a".repeat(10_000);
        for (n, needle) in [
            ("", "empty"),
            ("../x", "path separators"),
            ("a/b", "path separators"),
            ("a\\b", "path separators"),
            ("..", "path separators"),
            (long.as_str(), "at most 128"),
            ("1abc", "start with"),
            ("a b", "only letters"),
            ("a\0b", "only letters"),
            ("名字", "start with"),
        ] {
            let err = validate_name("cube", n).unwrap_err().to_string();
            assert!(err.contains(needle), "{n:?}: {err}");
            assert!(err.len() < 200, "message should stay short: {err}");
        }
    }
}
