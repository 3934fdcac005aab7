//! Secrets never leave the sidecar in text: every secret value of a leased
//! dataset and the token are registered here, and everything written to
//! stderr (logs, errors, panics) passes through [`redact`]. Machine output
//! (`--json`) is built from redacted datasets and filtered as well.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::RwLock;

use stockroom_protocol::dataset::REDACTED;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds values that must never be printed.
pub fn register<I: IntoIterator<Item = String>>(values: I) {
    let mut secrets = match SECRETS.write() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    for v in values {
        let v = v.trim().to_string();
        if !v.is_empty() && !secrets.contains(&v) {
            secrets.push(v);
        }
    }
    // Longest first, so a secret that contains another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every registered secret replaced by `[redacted]`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let secrets = match SECRETS.read() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    if !secrets.iter().any(|s| text.contains(s.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    Cow::Owned(out)
}

/// A stderr writer that redacts each write (tracing formats one event per write).
pub struct RedactingStderr;

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        io::stderr().lock().write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingStderr
    }
}

/// Writes machine output to stdout, redacted.
pub fn print_stdout(text: &str) {
    let mut out = io::stdout().lock();
    // A closed stdout (`stockroom catalog | head`) is not an error worth reporting.
    let _ = out.write_all(redact(text).as_bytes());
    let _ = out.flush();
}

/// Panics print through the redactor too.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let text = format!("stockroom: internal error (a bug; please report it): {info}\n");
        let _ = io::stderr().lock().write_all(redact(&text).as_bytes());
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_are_replaced_longest_first() {
        register([
            "s3cr3t-token-redact-test".to_string(),
            "s3cr3t".to_string(),
            String::new(),
        ]);
        assert_eq!(
            redact("a s3cr3t-token-redact-test b s3cr3t c"),
            "a [redacted] b [redacted] c"
        );
        assert!(matches!(redact("nothing here"), Cow::Borrowed(_)));
    }
}
