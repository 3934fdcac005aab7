//! Positions in a source file (`file:line:column`), shared by every parser of
//! user-written files so that each error points at the spot to fix.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A 1-based line and column (in characters) in a named file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl SourcePosition {
    /// The position of byte `offset` in `text`. Offsets past the end point
    /// just after the last character.
    pub fn from_offset(file: &Path, text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = &text[..floor_char_boundary(text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        SourcePosition {
            file: file.to_path_buf(),
            line,
            column,
        }
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

impl fmt::Display for SourcePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// An error at a position in a user-written file: `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{position}: {message}")]
pub struct SourceError {
    pub position: SourcePosition,
    pub message: String,
}

impl SourceError {
    pub fn at(file: &Path, text: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        SourceError {
            position: SourcePosition::from_offset(file, text, span.start),
            message: message.into(),
        }
    }

    /// Turns a `toml` parse or deserialize error into a positioned one. The
    /// toml crate's own message repeats the source line with a caret; only
    /// its first line (the reason) is kept, since the position says where.
    pub fn from_toml(file: &Path, text: &str, err: &toml::de::Error) -> Self {
        let offset = err.span().map_or(text.len(), |s| s.start);
        SourceError {
            position: SourcePosition::from_offset(file, text, offset),
            message: friendly_toml_message(err.message().trim()),
        }
    }
}

/// Rust type names mean nothing to a person editing TOML.
fn friendly_toml_message(message: &str) -> String {
    let mut out = message.to_string();
    for ty in ["i64", "u64", "u32", "i32", "usize"] {
        out = out.replace(&format!("expected {ty}"), "expected a whole number");
    }
    out.replace("expected a boolean", "expected true or false")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_to_one_based_line_and_column() {
        let text = "a = 1\nbb = 2\n\nccc";
        let p = |o| SourcePosition::from_offset(Path::new("f.toml"), text, o);
        assert_eq!((p(0).line, p(0).column), (1, 1));
        assert_eq!((p(4).line, p(4).column), (1, 5));
        assert_eq!((p(6).line, p(6).column), (2, 1));
        assert_eq!((p(13).line, p(13).column), (3, 1));
        assert_eq!((p(15).line, p(15).column), (4, 2));
        assert_eq!((p(999).line, p(999).column), (4, 4));
        assert_eq!(p(6).to_string(), "f.toml:2:1");
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = "name = \"é\" x";
        // 'x' starts at byte 12 but is the 12th character (é takes 2 bytes).
        let p = SourcePosition::from_offset(Path::new("m"), text, 12);
        assert_eq!(p.column, 12);
        let p = SourcePosition::from_offset(Path::new("m"), text, 11);
        assert_eq!(p.column, 11);
    }
}
