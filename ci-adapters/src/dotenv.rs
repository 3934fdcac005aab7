//! Dotenv files for GitLab's `artifacts:reports:dotenv` and `--dotenv PATH`.
//!
//! GitLab reads a dotenv report line by line as `KEY=VALUE`, splitting at the
//! first `=` and stripping whitespace around both sides; nothing else is
//! interpreted: quotes stay part of the value, there are no escapes, no
//! comments, no blank lines and no multi-line values. So this writer refuses,
//! instead of silently changing, any value that would not arrive intact:
//!
//! - a line break (`\n` or `\r`) anywhere;
//! - whitespace at the start or end (GitLab strips it);
//! - a `$`: dotenv variables are not "raw", so GitLab expands `$NAME` (and
//!   `$$`) references in them when a later job receives them;
//! - a NUL byte, which no environment variable can hold.
//!
//! Names must be ASCII `[A-Za-z_][A-Za-z0-9_]*` (GitLab itself takes
//! `[A-Za-z0-9_]`, up to 255 characters; a leading digit would not survive a
//! shell). A value refused here can always be read from the datasets JSON
//! file (`STOCKROOM_DATASETS_FILE`), which carries every value as is.
//!
//! GitLab also limits the whole report, per instance or plan:
//! - size: 5 KiB (`dotenv_size` = 5120 bytes on GitLab.com and by default);
//! - variables: `dotenv_variables`, 50 on GitLab.com Free, 100 on Premium,
//!   150 on Ultimate; self-managed instances have had 20 as default and
//!   still may.
//!
//! An artifact over a limit is rejected when the job uploads it, which fails
//! the job. Those limits are configurable, so they are not enforced here:
//! [`DotenvWritten::gitlab_limit_warnings`] says when a file is past them.
//!
//! GitLab does not mask dotenv variables: secrets written here can show up
//! in later jobs' logs if those print their environment.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::CiError;
use crate::vars::{ExportVar, is_portable_name};

/// GitLab's default (and GitLab.com's) dotenv report size limit; the file
/// must be smaller than this.
pub const GITLAB_DOTENV_MAX_BYTES: u64 = 5120;
/// The lowest dotenv variable limit a GitLab instance is likely to have.
pub const GITLAB_DOTENV_SAFE_VARIABLES: usize = 20;
/// GitLab's longest variable name.
pub const GITLAB_MAX_NAME_LEN: usize = 255;

const TARGET: &str = "the dotenv file";

/// `KEY=VALUE` lines for `vars`, or the first variable that cannot be carried.
pub fn render_dotenv(vars: &[ExportVar]) -> Result<String, CiError> {
    let mut text = String::new();
    for var in vars {
        check_name(&var.name)?;
        check_value(var)?;
        text.push_str(&var.name);
        text.push('=');
        text.push_str(&var.value);
        text.push('\n');
    }
    Ok(text)
}

/// What the dotenv file holds after a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DotenvWritten {
    /// Distinct names in the whole file (GitLab counts those).
    pub variables: usize,
    /// Size of the whole file.
    pub bytes: u64,
}

impl DotenvWritten {
    /// Warnings for a file that GitLab's default limits would reject.
    pub fn gitlab_limit_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.bytes >= GITLAB_DOTENV_MAX_BYTES {
            warnings.push(format!(
                "the dotenv file is {} bytes; GitLab rejects dotenv reports of {GITLAB_DOTENV_MAX_BYTES} bytes or more unless the instance's dotenv_size limit was raised, so read the datasets JSON file ($STOCKROOM_DATASETS_FILE) instead",
                self.bytes
            ));
        }
        if self.variables > GITLAB_DOTENV_SAFE_VARIABLES {
            warnings.push(format!(
                "the dotenv file holds {} variables; GitLab rejects more than its dotenv_variables limit (20 on some instances, 50 on GitLab.com Free), so read the datasets JSON file ($STOCKROOM_DATASETS_FILE) instead if the upload fails",
                self.variables
            ));
        }
        warnings
    }
}

/// Append `vars` to the dotenv file at `path`, creating it (mode 0600 on
/// Unix: it may hold secrets). Appending lets a job keep its own variables
/// in the same report; GitLab takes the last value of a repeated name.
/// Nothing is written when any variable is refused.
pub fn write_dotenv(path: &Path, vars: &[ExportVar]) -> Result<DotenvWritten, CiError> {
    let rendered = render_dotenv(vars)?;
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|source| CiError::io("open", path, source))?;

    // GitLab rejects a blank line, and a line glued to an unterminated last
    // line would corrupt both: start on a fresh line.
    let mut text = String::new();
    let length = file
        .metadata()
        .map_err(|source| CiError::io("inspect", path, source))?
        .len();
    if length > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(length - 1))
            .and_then(|_| file.read_exact(&mut last))
            .map_err(|source| CiError::io("read", path, source))?;
        if last[0] != b'\n' {
            text.push('\n');
        }
    }
    text.push_str(&rendered);
    file.write_all(text.as_bytes())
        .and_then(|()| file.flush())
        .map_err(|source| CiError::io("append to", path, source))?;

    let content = fs::read_to_string(path).map_err(|source| CiError::io("read", path, source))?;
    let names: BTreeSet<&str> = content
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim()))
        .collect();
    Ok(DotenvWritten {
        variables: names.len(),
        bytes: content.len() as u64,
    })
}

fn check_name(name: &str) -> Result<(), CiError> {
    let reason = if !is_portable_name(name) {
        Some(
            "names must be ASCII letters, digits and '_', not starting with a digit; rename the variable",
        )
    } else if name.len() > GITLAB_MAX_NAME_LEN {
        Some("GitLab takes names of at most 255 characters; use a shorter name")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CiError::InvalidVariableName {
            name: name.to_string(),
            target: TARGET,
            reason,
        }),
        None => Ok(()),
    }
}

fn check_value(var: &ExportVar) -> Result<(), CiError> {
    let value = &var.value;
    let reason = if value.contains(['\n', '\r']) {
        Some(
            "its value spans several lines, and GitLab's dotenv reports hold one line per variable",
        )
    } else if value.contains('\0') {
        Some("its value contains a NUL byte, which no environment variable can hold")
    } else if value.trim() != value {
        Some("its value starts or ends with whitespace, which GitLab strips")
    } else if value.contains('$') {
        Some(
            "its value contains '$', which GitLab expands as a variable reference in dotenv variables",
        )
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CiError::DotenvValue {
            name: var.name.clone(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_key_value_lines() {
        let text = render_dotenv(&[
            ExportVar::plain("STOCKROOM_LEASE_ID", "lease_01J"),
            ExportVar::secret("STOCKROOM_BUYER_PASSWORD", "p=w \"q\" 'r' #s"),
            ExportVar::plain("STOCKROOM_EMPTY", ""),
        ])
        .unwrap();
        assert_eq!(
            text,
            "STOCKROOM_LEASE_ID=lease_01J\nSTOCKROOM_BUYER_PASSWORD=p=w \"q\" 'r' #s\nSTOCKROOM_EMPTY=\n"
        );
    }

    #[test]
    fn refuses_what_gitlab_cannot_carry() {
        let long_name = format!("A{}", "B".repeat(GITLAB_MAX_NAME_LEN));
        // (name, value, whether the value is at fault, words the reason must hold)
        let cases: Vec<(String, &str, bool, &str)> = vec![
            (
                "STOCKROOM_KEY".into(),
                "line1\nline2",
                true,
                "several lines",
            ),
            ("STOCKROOM_KEY".into(), "line1\r", true, "several lines"),
            ("STOCKROOM_KEY".into(), " padded", true, "whitespace"),
            ("STOCKROOM_KEY".into(), "padded\t", true, "whitespace"),
            ("STOCKROOM_KEY".into(), "pa$word", true, "'$'"),
            ("STOCKROOM_KEY".into(), "nul\0byte", true, "NUL"),
            ("1STOCKROOM".into(), "v", false, "not starting with a digit"),
            ("STOCKROOM-KEY".into(), "v", false, "ASCII letters"),
            ("STOCKROOM_KÄSE".into(), "v", false, "ASCII letters"),
            ("A=B".into(), "v", false, "ASCII letters"),
            ("".into(), "v", false, "ASCII letters"),
            (long_name, "v", false, "255"),
        ];
        for (name, value, value_at_fault, reason) in cases {
            let vars = [
                ExportVar::plain("STOCKROOM_FIRST", "ok"),
                ExportVar::plain(&name, value),
            ];
            let error = render_dotenv(&vars).unwrap_err();
            match &error {
                CiError::DotenvValue { name: named, .. } if value_at_fault => {
                    assert_eq!(named, &name)
                }
                CiError::InvalidVariableName { name: named, .. } if !value_at_fault => {
                    assert_eq!(named, &name)
                }
                other => panic!("{name:?}={value:?}: {other:?}"),
            }
            let message = error.to_string();
            assert!(message.contains(&name), "{message}");
            assert!(message.contains(reason), "{message} lacks {reason:?}");
            if value_at_fault {
                assert!(message.contains("datasets JSON file"), "{message}");
            }
            // Nothing is written when any variable is refused.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("stockroom.env");
            assert!(write_dotenv(&path, &vars).is_err());
            assert!(!path.exists());
        }
    }

    #[test]
    fn appends_on_a_fresh_line_and_counts_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("build.env");
        fs::write(&path, "BUILD_VERSION=1.2\nSTOCKROOM_LEASE_ID=old").unwrap();
        let written = write_dotenv(
            &path,
            &[
                ExportVar::plain("STOCKROOM_LEASE_ID", "lease_new"),
                ExportVar::plain("STOCKROOM_SHARD_INDEX", "0"),
            ],
        )
        .unwrap();
        let content = fs::read_to_string(&path).unwrap();
        assert_eq!(
            content,
            "BUILD_VERSION=1.2\nSTOCKROOM_LEASE_ID=old\nSTOCKROOM_LEASE_ID=lease_new\nSTOCKROOM_SHARD_INDEX=0\n"
        );
        assert_eq!(
            written,
            DotenvWritten {
                variables: 3,
                bytes: content.len() as u64
            }
        );
        assert!(written.gitlab_limit_warnings().is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn new_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stockroom.env");
        write_dotenv(
            &path,
            &[ExportVar::secret("STOCKROOM_BUYER_PASSWORD", "hunter2")],
        )
        .unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn warns_past_gitlab_default_limits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.env");
        let vars: Vec<ExportVar> = (0..30)
            .map(|i| ExportVar::plain(format!("STOCKROOM_ITEM_{i}_DATA"), "x".repeat(200)))
            .collect();
        let written = write_dotenv(&path, &vars).unwrap();
        assert_eq!(written.variables, 30);
        assert!(written.bytes >= GITLAB_DOTENV_MAX_BYTES);
        let warnings = written.gitlab_limit_warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("5120 bytes"), "{}", warnings[0]);
        assert!(warnings[1].contains("30 variables"), "{}", warnings[1]);
    }
}
