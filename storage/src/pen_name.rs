//! `PenName`: the host application's stable identifier of an author identity.
//!
//! The host owns authors and display names; the engine only needs an identifier that is
//! safe to use as a key prefix, a path segment and a log field. So a pen name is *parsed*,
//! never merely wrapped: 1–64 ASCII letters, digits, `-`, `_` and `.`, not starting with
//! `.`, compared case-sensitively. Nothing is normalised — `Jane` and `jane` are two pen
//! names, and input with surrounding spaces is refused rather than trimmed, because two
//! different host identifiers must never collapse into one workspace.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest accepted pen name, in bytes (all accepted characters are one byte).
pub const PEN_NAME_MAX_LEN: usize = 64;

/// A validated pen name. The only way to build one is [`PenName::parse`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PenName(String);

/// Why a string is not a pen name. Each refusal has its own variant so callers (and the
/// HTTP API) can say exactly what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PenNameError {
    #[error("a pen name cannot be empty")]
    Empty,
    #[error("a pen name is at most {PEN_NAME_MAX_LEN} characters; this one has {0}")]
    TooLong(usize),
    #[error("a pen name cannot start with '.'")]
    LeadingDot,
    #[error("'.' and '..' are not pen names")]
    DotSegment,
    #[error("a pen name cannot contain whitespace (found at position {0})")]
    Whitespace(usize),
    #[error("a pen name cannot contain control characters (found at position {0})")]
    ControlCharacter(usize),
    #[error("a pen name cannot contain a path separator '{ch}' (found at position {at})")]
    PathSeparator { ch: char, at: usize },
    #[error("a pen name must be ASCII (found {ch:?} at position {at})")]
    NonAscii { ch: char, at: usize },
    #[error("a pen name may contain only letters, digits, '-', '_' and '.' (found {ch:?} at position {at})")]
    InvalidCharacter { ch: char, at: usize },
}

impl PenNameError {
    /// Stable machine-readable code for this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            PenNameError::Empty => "pen_name_empty",
            PenNameError::TooLong(_) => "pen_name_too_long",
            PenNameError::LeadingDot => "pen_name_leading_dot",
            PenNameError::DotSegment => "pen_name_dot_segment",
            PenNameError::Whitespace(_) => "pen_name_whitespace",
            PenNameError::ControlCharacter(_) => "pen_name_control_character",
            PenNameError::PathSeparator { .. } => "pen_name_path_separator",
            PenNameError::NonAscii { .. } => "pen_name_non_ascii",
            PenNameError::InvalidCharacter { .. } => "pen_name_invalid_character",
        }
    }
}

impl PenName {
    /// Parses a host identifier into a pen name, or says precisely why it is not one.
    pub fn parse(input: &str) -> Result<PenName, PenNameError> {
        if input.is_empty() {
            return Err(PenNameError::Empty);
        }
        if input == "." || input == ".." {
            return Err(PenNameError::DotSegment);
        }
        // Character checks come before the length check so that a long name with a bad
        // character is told about the character (the more useful fix).
        for (at, ch) in input.chars().enumerate() {
            match ch {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => {}
                '/' | '\\' => return Err(PenNameError::PathSeparator { ch, at }),
                c if c.is_control() => return Err(PenNameError::ControlCharacter(at)),
                c if c.is_whitespace() => return Err(PenNameError::Whitespace(at)),
                c if !c.is_ascii() => return Err(PenNameError::NonAscii { ch: c, at }),
                c => return Err(PenNameError::InvalidCharacter { ch: c, at }),
            }
        }
        if input.starts_with('.') {
            return Err(PenNameError::LeadingDot);
        }
        if input.len() > PEN_NAME_MAX_LEN {
            return Err(PenNameError::TooLong(input.len()));
        }
        Ok(PenName(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PenName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PenName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PenName({})", self.0)
    }
}

impl std::str::FromStr for PenName {
    type Err = PenNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PenName::parse(s)
    }
}

impl AsRef<str> for PenName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Decoding re-validates: a stored or transmitted pen name that is not valid is refused
/// instead of slipping past the parser.
impl<'de> Deserialize<'de> for PenName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        PenName::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_each_invalid_form_with_its_own_error() {
        let cases: &[(&str, PenNameError)] = &[
            ("", PenNameError::Empty),
            (".", PenNameError::DotSegment),
            ("..", PenNameError::DotSegment),
            (".hidden", PenNameError::LeadingDot),
            ("jane doe", PenNameError::Whitespace(4)),
            (" jane", PenNameError::Whitespace(0)),
            ("jane\u{a0}doe", PenNameError::Whitespace(4)),
            ("jane\tdoe", PenNameError::ControlCharacter(4)),
            ("jane\0", PenNameError::ControlCharacter(4)),
            ("jane\u{7f}", PenNameError::ControlCharacter(4)),
            ("a/b", PenNameError::PathSeparator { ch: '/', at: 1 }),
            ("a\\b", PenNameError::PathSeparator { ch: '\\', at: 1 }),
            ("josé", PenNameError::NonAscii { ch: 'é', at: 3 }),
            ("写作者", PenNameError::NonAscii { ch: '写', at: 0 }),
            (
                "jane@doe",
                PenNameError::InvalidCharacter { ch: '@', at: 4 },
            ),
            (
                "jane:doe",
                PenNameError::InvalidCharacter { ch: ':', at: 4 },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                PenName::parse(input).as_ref(),
                Err(expected),
                "input {input:?}"
            );
        }
        let long = "a".repeat(PEN_NAME_MAX_LEN + 1);
        assert_eq!(PenName::parse(&long), Err(PenNameError::TooLong(65)));
    }

    #[test]
    fn every_refusal_has_a_distinct_code() {
        let errors = [
            PenNameError::Empty,
            PenNameError::TooLong(65),
            PenNameError::LeadingDot,
            PenNameError::DotSegment,
            PenNameError::Whitespace(0),
            PenNameError::ControlCharacter(0),
            PenNameError::PathSeparator { ch: '/', at: 0 },
            PenNameError::NonAscii { ch: 'é', at: 0 },
            PenNameError::InvalidCharacter { ch: '@', at: 0 },
        ];
        let codes: std::collections::HashSet<_> = errors.iter().map(|e| e.code()).collect();
        assert_eq!(codes.len(), errors.len());
    }

    #[test]
    fn accepts_valid_names_verbatim_without_folding_case() {
        for name in [
            "jane",
            "Jane.Doe",
            "a",
            "author-42_pen.name",
            "0",
            "a..b",
            "trailing.",
        ] {
            let parsed = PenName::parse(name).expect(name);
            // The normalisation is the identity: what the host sent is what is stored.
            assert_eq!(parsed.as_str(), name);
        }
        let max = "Z".repeat(PEN_NAME_MAX_LEN);
        assert_eq!(PenName::parse(&max).unwrap().as_str().len(), 64);
        assert_ne!(
            PenName::parse("Jane").unwrap(),
            PenName::parse("jane").unwrap()
        );
    }

    #[test]
    fn deserialising_revalidates() {
        let bad: Result<PenName, _> = serde_json::from_str("\"../etc\"");
        assert!(bad.is_err());
        let good: PenName = serde_json::from_str("\"jane\"").unwrap();
        assert_eq!(good.as_str(), "jane");
    }
}
