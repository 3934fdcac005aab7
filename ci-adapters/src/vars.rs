//! A variable handed to later CI steps, shared by every output channel
//! ($GITHUB_ENV, dotenv, shell exports).

use std::fmt;

use stockroom_protocol::dataset::REDACTED;
use stockroom_protocol::env_names::EnvVar;

/// One variable to export. `secret` values are masked on GitHub before they
/// are written anywhere, and never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct ExportVar {
    pub name: String,
    pub value: String,
    pub secret: bool,
}

impl ExportVar {
    /// A variable whose value may appear in logs.
    pub fn plain(name: impl Into<String>, value: impl Into<String>) -> Self {
        ExportVar {
            name: name.into(),
            value: value.into(),
            secret: false,
        }
    }

    /// A variable whose value must never appear in logs.
    pub fn secret(name: impl Into<String>, value: impl Into<String>) -> Self {
        ExportVar {
            name: name.into(),
            value: value.into(),
            secret: true,
        }
    }
}

/// A variable a test sees, handed on to later steps; only `source` (which
/// field it came from) stays behind, as no output channel writes it.
impl From<EnvVar> for ExportVar {
    fn from(var: EnvVar) -> Self {
        let EnvVar {
            name,
            value,
            secret,
            source: _,
        } = var;
        ExportVar {
            name,
            value,
            secret,
        }
    }
}

impl From<&EnvVar> for ExportVar {
    fn from(var: &EnvVar) -> Self {
        ExportVar::from(var.clone())
    }
}

impl fmt::Debug for ExportVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value: &dyn fmt::Debug = if self.secret { &REDACTED } else { &self.value };
        f.debug_struct("ExportVar")
            .field("name", &self.name)
            .field("value", value)
            .field("secret", &self.secret)
            .finish()
    }
}

/// Whether `name` is a portable environment variable name:
/// `[A-Za-z_][A-Za-z0-9_]*`, ASCII only.
pub(crate) fn is_portable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(first) if first.is_ascii_alphabetic() || first == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secret_values_only() {
        let secret = format!(
            "{:?}",
            ExportVar::secret("STOCKROOM_BUYER_PASSWORD", "hunter2")
        );
        assert!(!secret.contains("hunter2"), "{secret}");
        assert!(secret.contains(REDACTED), "{secret}");
        let plain = format!(
            "{:?}",
            ExportVar::plain("STOCKROOM_BUYER_EMAIL", "a@x.test")
        );
        assert!(plain.contains("a@x.test"), "{plain}");
    }

    #[test]
    fn a_test_variable_keeps_its_name_value_and_secrecy() {
        let var = EnvVar {
            name: "STOCKROOM_BUYER_PASSWORD".into(),
            value: "hunter2".into(),
            secret: true,
            source: "buyer.data.password".into(),
        };
        let export = ExportVar::from(&var);
        assert_eq!(
            export,
            ExportVar::secret("STOCKROOM_BUYER_PASSWORD", "hunter2")
        );
        assert!(!format!("{export:?}").contains("hunter2"));
        let plain = EnvVar {
            secret: false,
            ..var
        };
        assert_eq!(
            ExportVar::from(plain),
            ExportVar::plain("STOCKROOM_BUYER_PASSWORD", "hunter2")
        );
    }

    #[test]
    fn portable_names() {
        for ok in ["A", "_", "STOCKROOM_BUYER_0_ID", "a1_b"] {
            assert!(is_portable_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "ÄB", "A=B", "A\nB", "A.B"] {
            assert!(!is_portable_name(bad), "{bad:?}");
        }
    }
}
