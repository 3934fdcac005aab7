//! Why a call to a generator failed.
//!
//! Messages are lowercase fragments that read well after "failed to …" and
//! never carry data values: answers may hold secrets, so a malformed answer is
//! described by where it broke, not by what it said.

use std::fmt;
use std::time::Duration;

/// The calls of the generator protocol (docs/generators.md), lifecycle
/// calls included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    Capabilities,
    Generate,
    Extend,
    Cleanup,
    Reset,
    Verify,
}

impl From<stockroom_protocol::generator::LifecycleCall> for Operation {
    fn from(call: stockroom_protocol::generator::LifecycleCall) -> Operation {
        use stockroom_protocol::generator::LifecycleCall;
        match call {
            LifecycleCall::Cleanup => Operation::Cleanup,
            LifecycleCall::Reset => Operation::Reset,
            LifecycleCall::Verify => Operation::Verify,
        }
    }
}

impl Operation {
    pub const ALL: [Operation; 6] = [
        Operation::Capabilities,
        Operation::Generate,
        Operation::Extend,
        Operation::Cleanup,
        Operation::Reset,
        Operation::Verify,
    ];

    /// The word used as the command's first argument and as the HTTP path.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Capabilities => "capabilities",
            Operation::Generate => "generate",
            Operation::Extend => "extend",
            Operation::Cleanup => "cleanup",
            Operation::Reset => "reset",
            Operation::Verify => "verify",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a command generator ended when it did not exit 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitOutcome {
    Code(i32),
    Signal(i32),
}

impl fmt::Display for ExitOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitOutcome::Code(c) => write!(f, "exit code {c}"),
            ExitOutcome::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// What went wrong, independent of which generator and call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ErrorKind {
    /// The call (including retries) took longer than the generator's `timeout`.
    #[error("timed out after {}ms", .0.as_millis())]
    Timeout(Duration),
    /// The service could not be reached, or the connection broke.
    #[error("could not connect: {0}")]
    Connect(String),
    /// The service answered with a non-2xx status; `body` is a bounded excerpt.
    #[error("got HTTP status {status}{}", excerpt_suffix(.body))]
    HttpStatus { status: u16, body: String },
    /// The command could not be started.
    #[error("could not start the command: {0}")]
    Spawn(String),
    /// The command ended with a non-zero code or by a signal; `stderr` is its last output.
    #[error("command ended with {outcome}{}", excerpt_suffix(.stderr))]
    ExitStatus {
        outcome: ExitOutcome,
        stderr: String,
    },
    /// The answer was not the JSON the protocol asks for.
    #[error("answer is malformed: {0}")]
    Malformed(String),
    /// The answer parsed but broke the generator's own promises (fields, attributes…).
    #[error("answer breaks the contract: {0}")]
    ContractViolation(String),
    /// The generator failed too often lately; calls are held back for a while.
    #[error("generator is backing off after repeated failures, next attempt in {}ms", .0.as_millis())]
    BackingOff(Duration),
}

/// Keeps only the last line-ish part of an excerpt for the one-line message;
/// the whole excerpt stays in the field.
fn excerpt_suffix(text: &str) -> String {
    const SHOWN: usize = 400;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return String::new();
    }
    let start = trimmed.len().saturating_sub(SHOWN);
    let start = (start..=trimmed.len())
        .find(|i| trimmed.is_char_boundary(*i))
        .unwrap_or(trimmed.len());
    let prefix = if start > 0 { "…" } else { "" };
    format!(": {prefix}{}", &trimmed[start..])
}

/// A failed call to one generator.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{operation} via generator {generator:?}: {kind}")]
pub struct GeneratorError {
    pub generator: String,
    pub operation: Operation,
    pub kind: ErrorKind,
}

impl GeneratorError {
    pub fn new(generator: impl Into<String>, operation: Operation, kind: ErrorKind) -> Self {
        GeneratorError {
            generator: generator.into(),
            operation,
            kind,
        }
    }

    /// Whether this failure says something about the generator's health
    /// (a held-back call does not).
    pub fn counts_against_generator(&self) -> bool {
        !matches!(self.kind, ErrorKind::BackingOff(_))
    }

    /// The kept stderr of a command generator, if any.
    pub fn stderr(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::ExitStatus { stderr, .. } => Some(stderr),
            _ => None,
        }
    }
}

/// Describes a JSON parse failure without echoing any value from the input:
/// serde quotes offending strings, and an answer's strings may be secrets.
pub(crate) fn describe_json_error(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match err.classify() {
        Category::Io => "could not be read".to_string(),
        Category::Syntax => "is not valid JSON".to_string(),
        Category::Eof => "ends before the JSON is complete".to_string(),
        Category::Data => without_quoted_text(&err.to_string())
            .rsplit_once(" at line ")
            .map_or_else(
                || without_quoted_text(&err.to_string()),
                |(msg, _)| msg.to_string(),
            ),
    };
    format!("{what} (line {}, column {})", err.line(), err.column())
}

/// Replaces the contents of every `"…"` with an ellipsis; backtick-quoted
/// names (field names serde mentions) are kept.
fn without_quoted_text(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    for c in msg.chars() {
        if c == '"' {
            if inside {
                out.push('…');
            }
            inside = !inside;
            out.push(c);
        } else if !inside {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_never_echo_string_values() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Answer {
            entities: Vec<String>,
        }
        let err = serde_json::from_str::<Answer>(r#"{"entities": "hunter2"}"#).unwrap_err();
        let msg = describe_json_error(&err);
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("invalid type"), "{msg}");
        let err = serde_json::from_str::<Answer>("{}").unwrap_err();
        assert!(describe_json_error(&err).contains("missing field `entities`"));
        let err = serde_json::from_str::<Answer>("garbage").unwrap_err();
        assert!(describe_json_error(&err).starts_with("is not valid JSON"));
    }

    #[test]
    fn messages_are_lowercase_fragments_with_a_short_excerpt() {
        let e = GeneratorError::new(
            "customers",
            Operation::Generate,
            ErrorKind::ExitStatus {
                outcome: ExitOutcome::Code(3),
                stderr: format!("{}\nboom\n", "x".repeat(1000)),
            },
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "generate via generator \"customers\": command ended with exit code 3: …"
            ),
            "{msg}"
        );
        assert!(msg.ends_with("boom"), "{msg}");
        assert!(msg.len() < 600);
    }
}
