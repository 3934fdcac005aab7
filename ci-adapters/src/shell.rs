//! POSIX shell `export` lines, for `stockroom start --format shell` and
//! `eval "$(stockroom start --format shell)"` in a CI script.

use crate::error::CiError;
use crate::vars::{ExportVar, is_portable_name};

/// `export NAME='value'` lines, one per variable. Every value is single-quoted,
/// so nothing in it is expanded; an embedded `'` becomes `'\''`. Values may
/// span lines. Names must be `[A-Za-z_][A-Za-z0-9_]*` (a name is not quoted,
/// so anything else could run code); a NUL byte cannot be exported at all.
pub fn shell_exports(vars: &[ExportVar]) -> Result<String, CiError> {
    let mut text = String::new();
    for var in vars {
        if !is_portable_name(&var.name) {
            return Err(CiError::InvalidVariableName {
                name: var.name.clone(),
                target: "shell exports",
                reason: "shell names must be ASCII letters, digits and '_', not starting with a digit; rename the variable",
            });
        }
        if var.value.contains('\0') {
            return Err(CiError::NulInValue {
                name: var.name.clone(),
            });
        }
        text.push_str("export ");
        text.push_str(&var.name);
        text.push('=');
        text.push_str(&shell_quote(&var.value));
        text.push('\n');
    }
    Ok(text)
}

/// `value` as one single-quoted POSIX shell word.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("plain"), "'plain'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn exports_survive_a_real_shell() {
        let values = [
            "plain",
            "",
            "it's",
            "''",
            r"'\''",
            "$HOME ${PATH} $(echo pwned) `echo pwned`",
            "back\\slash \\n and \"double\" quotes",
            "multi\nline\r\nvalue\n",
            "glob * ? [a] ~ ; & | < > # !",
            "unicode é 漢字 🚀",
            "  spaced  ",
            "-n",
        ];
        let vars: Vec<ExportVar> = values
            .iter()
            .enumerate()
            .map(|(i, value)| ExportVar::secret(format!("STOCKROOM_V{i}"), *value))
            .collect();
        // A child shell prints every value back, NUL-separated: it only sees
        // them if they were exported, not merely set.
        let mut child = String::new();
        for var in &vars {
            child.push_str(&format!("printf '%s\\0' \"${}\"\n", var.name));
        }
        let script = format!(
            "{}exec /bin/sh -c {}\n",
            shell_exports(&vars).unwrap(),
            shell_quote(&child)
        );
        let output = Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .env_clear()
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let printed = String::from_utf8(output.stdout).unwrap();
        let got: Vec<&str> = printed.split_terminator('\0').collect();
        assert_eq!(got, values);
    }

    #[test]
    fn refuses_unsafe_names_and_nul() {
        for bad in ["A;touch x", "1A", "A B", "$(x)", ""] {
            let error = shell_exports(&[ExportVar::plain(bad, "v")]).unwrap_err();
            assert!(
                matches!(error, CiError::InvalidVariableName { .. }),
                "{bad:?}"
            );
        }
        let error = shell_exports(&[ExportVar::plain("A", "x\0y")]).unwrap_err();
        assert!(error.to_string().contains("NUL"), "{error}");
    }
}
