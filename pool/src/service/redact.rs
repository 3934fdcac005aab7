//! What a `ci` token sees of a generator's error text (docs/pool.md,
//! "Generator errors"): a short summary, secrets taken out. A generator's
//! stderr or error body may carry anything (`password=hunter2` was seen);
//! the full text is kept in the store and shown to `admin` only. The API
//! and the web page both go through [`error_summary`].

use stockroom_protocol::DatasetStatus;
use stockroom_protocol::api::{Catalog, DatasetView};

/// Longest summary, in characters.
pub const SUMMARY_CHARS: usize = 200;

/// Words whose value (after `=`, `:` or a space) is taken out.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "authorization",
    "bearer",
    "cookie",
    "credential",
    "private_key",
];

fn value_end(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    let quoted = bytes.get(i).copied().filter(|b| *b == b'"' || *b == b'\'');
    if let Some(q) = quoted {
        i += 1;
        while i < bytes.len() && bytes[i] != q {
            i += 1;
        }
        return (i + 1).min(bytes.len());
    }
    while i < bytes.len() && !b" \t\r\n,;&\"')}]".contains(&bytes[i]) {
        i += 1;
    }
    i
}

/// `text` with the value after every secret-looking word replaced by `[redacted]`.
pub fn redact_secrets(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    'scan: while i < bytes.len() {
        for word in SECRET_WORDS {
            if lower.as_bytes()[i..].starts_with(word.as_bytes()) {
                let mut j = i + word.len();
                // The rest of the key (`password_hash`, `token"`), then separators.
                while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                    j += 1;
                }
                let key_end = j;
                while j < bytes.len() && b"\"' \t=:".contains(&bytes[j]) {
                    j += 1;
                }
                if j > key_end && j < bytes.len() {
                    let mut end = value_end(bytes, j);
                    // `Authorization: Bearer X`: the scheme and its credential.
                    if matches!(&lower[j..end], "bearer" | "basic") {
                        let mut k = end;
                        while k < bytes.len() && bytes[k] == b' ' {
                            k += 1;
                        }
                        end = value_end(bytes, k);
                    }
                    if end > j {
                        out.push_str(&text[i..j]);
                        out.push_str("[redacted]");
                        i = end;
                        continue 'scan;
                    }
                }
            }
        }
        let ch = text[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// A short, redacted summary of an error: its first line, secrets taken
/// out, at most [`SUMMARY_CHARS`] characters.
pub fn error_summary(text: &str) -> String {
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let more = text.trim().lines().count() > 1;
    let clean = redact_secrets(first);
    let mut out: String = clean.chars().take(SUMMARY_CHARS).collect();
    if more || clean.chars().count() > SUMMARY_CHARS {
        out.push_str(" … (the full text is shown to admin tokens)");
    }
    out
}

/// A dataset as a `ci` token sees it: its error and failure history summarised.
pub fn summarize_view(view: &mut DatasetView) {
    if let Some(e) = &view.error {
        view.error = Some(error_summary(e));
    }
    for h in &mut view.history {
        if h.to == DatasetStatus::Failed {
            h.reason = error_summary(&h.reason);
        }
    }
}

/// The catalog as a `ci` token sees it: generators' last errors summarised.
pub fn summarize_catalog(catalog: &mut Catalog) {
    for g in &mut catalog.generators {
        if let Some(e) = &g.last_error {
            g.last_error = Some(error_summary(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_taken_out_and_the_text_is_cut() {
        let s = error_summary(
            "generator exited 1: login failed password=hunter2 user=bob\nTraceback ...",
        );
        assert!(!s.contains("hunter2"), "{s}");
        assert!(
            s.contains("password=[redacted]") && s.contains("user=bob"),
            "{s}"
        );
        assert!(s.contains("admin"), "{s}");
        for (text, secret) in [
            ("Authorization: Bearer abc.def", "abc.def"),
            ("{\"token\": \"s3cr3t\"}", "s3cr3t"),
            ("api_key=XYZ&x=1", "XYZ"),
            ("PASSWORD: 'p w'", "p w"),
        ] {
            let r = redact_secrets(text);
            assert!(!r.contains(secret), "{text} -> {r}");
        }
        let long = "é".repeat(500);
        assert!(error_summary(&long).chars().count() <= SUMMARY_CHARS + 60);
        assert_eq!(error_summary("connection refused"), "connection refused");
    }
}
