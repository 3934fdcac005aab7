//! GitHub Actions output channels: the `$GITHUB_ENV`, `$GITHUB_OUTPUT` and
//! `$GITHUB_STATE` file commands, `::add-mask::` workflow commands and the
//! step summary.
//!
//! Order matters for secrets: GitHub only hides a value in logs after it has
//! seen `::add-mask::` for it, and a later step may print any variable it
//! receives. [`GithubFile::write_vars`] therefore checks everything first,
//! then emits every mask, and only then writes any value to a file.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::env::EnvSource;
use crate::error::CiError;
use crate::providers::github::{GITHUB_ENV, GITHUB_OUTPUT, GITHUB_STATE, GITHUB_STEP_SUMMARY};
use crate::vars::ExportVar;

/// Every heredoc delimiter starts with this, as GitHub's own toolkit does.
pub const DELIMITER_PREFIX: &str = "ghadelimiter_";
/// How often a fresh delimiter is drawn before giving up. 128 random bits
/// collide with a value by accident never; the bound only stops a loop.
const DELIMITER_ATTEMPTS: usize = 8;

/// The files GitHub hands a step, from its environment; `None` outside GitHub.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GithubPaths {
    pub env_file: Option<PathBuf>,
    pub output_file: Option<PathBuf>,
    pub state_file: Option<PathBuf>,
    pub step_summary: Option<PathBuf>,
}

/// Read `GITHUB_ENV`, `GITHUB_OUTPUT`, `GITHUB_STATE` and `GITHUB_STEP_SUMMARY`.
pub fn github_paths(env: &impl EnvSource) -> GithubPaths {
    GithubPaths {
        env_file: env.get(GITHUB_ENV).map(PathBuf::from),
        output_file: env.get(GITHUB_OUTPUT).map(PathBuf::from),
        state_file: env.get(GITHUB_STATE).map(PathBuf::from),
        step_summary: env.get(GITHUB_STEP_SUMMARY).map(PathBuf::from),
    }
}

/// Which file command a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GithubFileKind {
    /// `$GITHUB_ENV`: variables for every later step of the job.
    Env,
    /// `$GITHUB_OUTPUT`: outputs of the current step.
    Output,
    /// `$GITHUB_STATE`: state an action's main step leaves for its post step.
    State,
}

impl GithubFileKind {
    /// The variable holding the file's path.
    pub fn variable(self) -> &'static str {
        match self {
            GithubFileKind::Env => GITHUB_ENV,
            GithubFileKind::Output => GITHUB_OUTPUT,
            GithubFileKind::State => GITHUB_STATE,
        }
    }

    fn target(self) -> &'static str {
        match self {
            GithubFileKind::Env => "$GITHUB_ENV",
            GithubFileKind::Output => "$GITHUB_OUTPUT",
            GithubFileKind::State => "$GITHUB_STATE",
        }
    }
}

/// A GitHub file command file, written in the heredoc form
/// `NAME<<DELIMITER\nVALUE\nDELIMITER\n` so any value, multi-line included,
/// reaches the next step unchanged. (One exception GitHub's reader imposes:
/// a value ending in a lone `\r` loses it.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubFile {
    kind: GithubFileKind,
    path: PathBuf,
}

impl GithubFile {
    pub fn new(kind: GithubFileKind, path: impl Into<PathBuf>) -> Self {
        GithubFile {
            kind,
            path: path.into(),
        }
    }

    pub fn env(path: impl Into<PathBuf>) -> Self {
        GithubFile::new(GithubFileKind::Env, path)
    }

    pub fn output(path: impl Into<PathBuf>) -> Self {
        GithubFile::new(GithubFileKind::Output, path)
    }

    pub fn state(path: impl Into<PathBuf>) -> Self {
        GithubFile::new(GithubFileKind::State, path)
    }

    /// The file named by the kind's variable (`GITHUB_ENV`, …).
    pub fn from_env(kind: GithubFileKind, env: &impl EnvSource) -> Result<Self, CiError> {
        let variable = kind.variable();
        env.get(variable)
            .map(|path| GithubFile::new(kind, path))
            .ok_or(CiError::MissingGithubFile { variable })
    }

    pub fn kind(&self) -> GithubFileKind {
        self.kind
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `vars` to the file, masking secrets first.
    ///
    /// 1. Every name is checked and every entry rendered; on error nothing
    ///    has been written anywhere.
    /// 2. `::add-mask::` commands for every secret value go to `mask_out`
    ///    (the step's stdout, where GitHub reads workflow commands), flushed.
    /// 3. Only then is the file opened (append, create) and written in one go.
    pub fn write_vars(&self, vars: &[ExportVar], mask_out: &mut impl Write) -> Result<(), CiError> {
        let mut text = String::new();
        for var in vars {
            text.push_str(&render_entry(
                self.kind.target(),
                &var.name,
                &var.value,
                &mut random_delimiter,
            )?);
        }
        write_masks(vars, mask_out).map_err(|source| CiError::MaskOutput { source })?;
        append(&self.path, "append to", &text)
    }
}

/// Write `::add-mask::` commands for every secret in `vars`, then flush.
pub fn write_masks(vars: &[ExportVar], out: &mut impl Write) -> std::io::Result<()> {
    for var in vars.iter().filter(|var| var.secret) {
        for line in add_mask_lines(&var.value) {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()
}

/// The `::add-mask::` commands that hide `secret` in GitHub's logs.
///
/// GitHub masks log output line by line, so a multi-line secret (a PEM key)
/// printed in a log would never match as a whole: each of its non-blank
/// lines is masked on its own, trimmed of surrounding whitespace (a log line
/// that shows it then still contains it). A single-line secret is masked
/// whole, plus trimmed when that differs. A blank secret gives nothing:
/// masking whitespace would blank out every log line.
pub fn add_mask_lines(secret: &str) -> Vec<String> {
    let mut pieces: Vec<&str> = Vec::new();
    if secret.contains(['\n', '\r']) {
        for line in secret.split(['\n', '\r']).map(str::trim) {
            if !line.is_empty() && !pieces.contains(&line) {
                pieces.push(line);
            }
        }
    } else if !secret.trim().is_empty() {
        pieces.push(secret);
        if secret.trim() != secret {
            pieces.push(secret.trim());
        }
    }
    pieces
        .into_iter()
        .map(|piece| format!("::add-mask::{}", escape_command_data(piece)))
        .collect()
}

/// GitHub's escaping for the data part of a workflow command.
pub fn escape_command_data(data: &str) -> String {
    data.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// One heredoc entry, `NAME<<DELIMITER\nVALUE\nDELIMITER\n`, with a fresh
/// random delimiter that neither name nor value contains.
pub fn heredoc_entry(name: &str, value: &str) -> Result<String, CiError> {
    render_entry(
        "a GitHub Actions file command",
        name,
        value,
        &mut random_delimiter,
    )
}

/// `ghadelimiter_` and 32 hex digits from the operating system's random source.
pub fn random_delimiter() -> Result<String, CiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| CiError::Random {
        detail: error.to_string(),
    })?;
    let mut delimiter = String::with_capacity(DELIMITER_PREFIX.len() + 32);
    delimiter.push_str(DELIMITER_PREFIX);
    for byte in bytes {
        delimiter.push_str(&format!("{byte:02x}"));
    }
    Ok(delimiter)
}

/// Append `markdown` to the step summary file, ending it with a newline so
/// the next addition starts on its own line.
pub fn append_step_summary(path: &Path, markdown: &str) -> Result<(), CiError> {
    let mut text = markdown.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    append(path, "append to", &text)
}

fn render_entry(
    target: &'static str,
    name: &str,
    value: &str,
    next_delimiter: &mut impl FnMut() -> Result<String, CiError>,
) -> Result<String, CiError> {
    check_name(target, name)?;
    for _ in 0..DELIMITER_ATTEMPTS {
        let delimiter = next_delimiter()?;
        if !value.contains(&delimiter) && !name.contains(&delimiter) {
            return Ok(format!("{name}<<{delimiter}\n{value}\n{delimiter}\n"));
        }
    }
    Err(CiError::DelimiterCollision {
        name: name.to_string(),
    })
}

fn check_name(target: &'static str, name: &str) -> Result<(), CiError> {
    let reason = if name.is_empty() {
        Some("the name is empty; give the variable a name")
    } else if name.contains(['\n', '\r']) {
        Some("a name cannot hold a line break; rename the variable")
    } else if name.contains('=') {
        Some("GitHub reads everything before '=' as the name; rename the variable without '='")
    } else if name.contains("<<") {
        Some(
            "GitHub reads '<<' as the start of a multi-line value; rename the variable without '<<'",
        )
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CiError::InvalidVariableName {
            name: name.to_string(),
            target,
            reason,
        }),
        None => Ok(()),
    }
}

fn append(path: &Path, action: &'static str, text: &str) -> Result<(), CiError> {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|source| CiError::io("open", path, source))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.flush())
        .map_err(|source| CiError::io(action, path, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_env::env;
    use std::fs;

    /// The runner's reader for file commands (actions/runner
    /// `FileCommandManager`): `NAME=VALUE` lines, or `NAME<<DELIM` followed
    /// by lines up to one equal to `DELIM`; the value is the exact text in
    /// between, without the newline before the delimiter.
    fn parse_like_runner(text: &str) -> Result<Vec<(String, String)>, String> {
        fn next_line<'a>(text: &'a str, pos: &mut usize) -> Option<(&'a str, Option<usize>)> {
            if *pos >= text.len() {
                return None;
            }
            let rest = &text[*pos..];
            match rest.find('\n') {
                Some(i) if i > 0 && rest.as_bytes()[i - 1] == b'\r' => {
                    *pos += i + 1;
                    Some((&rest[..i - 1], Some(2)))
                }
                Some(i) => {
                    *pos += i + 1;
                    Some((&rest[..i], Some(1)))
                }
                None => {
                    *pos = text.len();
                    Some((rest, None))
                }
            }
        }
        let mut entries = Vec::new();
        let mut pos = 0;
        while let Some((line, _)) = next_line(text, &mut pos) {
            if line.is_empty() {
                continue;
            }
            let equals = line.find('=');
            let heredoc = line.find("<<");
            match (equals, heredoc) {
                (Some(e), h) if h.is_none_or(|h| e < h) => {
                    entries.push((line[..e].to_string(), line[e + 1..].to_string()));
                }
                (e, Some(h)) if e.is_none_or(|e| h < e) => {
                    let (name, delimiter) = (&line[..h], &line[h + 2..]);
                    if name.is_empty() || delimiter.is_empty() {
                        return Err(format!("invalid format {line:?}"));
                    }
                    let start = pos;
                    let mut end = pos;
                    loop {
                        let Some((value_line, newline)) = next_line(text, &mut pos) else {
                            return Err(format!("delimiter {delimiter} not found"));
                        };
                        if value_line == delimiter {
                            break;
                        }
                        let Some(newline) = newline else {
                            return Err("EOF marker missing new line".into());
                        };
                        end = pos - newline;
                    }
                    entries.push((name.to_string(), text[start..end].to_string()));
                }
                _ => return Err(format!("invalid format {line:?}")),
            }
        }
        Ok(entries)
    }

    #[test]
    fn heredoc_file_round_trips_through_the_runner_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("github_env");
        let file = GithubFile::env(&path);
        let pem = "-----BEGIN KEY-----\nMIIB\r\nabc=\n-----END KEY-----\n";
        let first = [
            ExportVar::plain("STOCKROOM_LEASE_ID", "lease_01J"),
            ExportVar::secret("STOCKROOM_BUYER_KEY", pem),
        ];
        let second = [
            ExportVar::plain("STOCKROOM_BUYER_NOTE", "a=b<<c EOF"),
            ExportVar::plain("STOCKROOM_EMPTY", ""),
        ];
        let mut masks = Vec::new();
        file.write_vars(&first, &mut masks).unwrap();
        file.write_vars(&second, &mut masks).unwrap();

        let text = fs::read_to_string(&path).unwrap();
        let parsed = parse_like_runner(&text).unwrap();
        let expected: Vec<(String, String)> = first
            .iter()
            .chain(&second)
            .map(|var| (var.name.clone(), var.value.clone()))
            .collect();
        assert_eq!(parsed, expected);

        let delimiters: Vec<&str> = text
            .lines()
            .filter_map(|line| line.split_once("<<").map(|(_, d)| d))
            .filter(|d| d.starts_with(DELIMITER_PREFIX))
            .collect();
        assert_eq!(delimiters.len(), 4, "{text}");
        let mut unique = delimiters.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 4, "delimiters repeat: {delimiters:?}");
        for delimiter in delimiters {
            let hex = &delimiter[DELIMITER_PREFIX.len()..];
            assert_eq!(hex.len(), 32, "{delimiter}");
            assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{delimiter}");
        }
    }

    #[test]
    fn delimiter_found_in_the_value_is_drawn_again() {
        let value = "payload ghadelimiter_first payload";
        let mut drawn = vec![
            "ghadelimiter_second".to_string(),
            "ghadelimiter_first".to_string(),
        ];
        let mut next = || Ok(drawn.pop().unwrap());
        let entry = render_entry("$GITHUB_ENV", "V", value, &mut next).unwrap();
        assert_eq!(
            entry,
            format!("V<<ghadelimiter_second\n{value}\nghadelimiter_second\n")
        );

        let mut always_same = || Ok("ghadelimiter_first".to_string());
        let error = render_entry("$GITHUB_ENV", "V", value, &mut always_same).unwrap_err();
        assert!(
            matches!(error, CiError::DelimiterCollision { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn bad_names_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("github_output");
        for bad in ["", "A=B", "A\nB", "A\rB", "A<<B"] {
            let vars = [
                ExportVar::secret("GOOD", "s3cret"),
                ExportVar::plain(bad, "value"),
            ];
            let mut masks = Vec::new();
            let error = GithubFile::output(&path)
                .write_vars(&vars, &mut masks)
                .unwrap_err();
            match &error {
                CiError::InvalidVariableName { name, target, .. } => {
                    assert_eq!(name, bad);
                    assert_eq!(*target, "$GITHUB_OUTPUT");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
            assert!(masks.is_empty(), "{bad:?}: masks written");
            assert!(!path.exists(), "{bad:?}: file written");
        }
        assert!(heredoc_entry("A=B", "v").is_err());
        assert!(
            heredoc_entry("OK", "v")
                .unwrap()
                .starts_with("OK<<ghadelimiter_")
        );
    }

    /// Records what it is given and, at every write, checks that the file
    /// does not hold a secret yet.
    struct MaskProbe<'a> {
        file: &'a Path,
        secrets: &'a [&'a str],
        written: Vec<u8>,
    }

    impl Write for MaskProbe<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let file = fs::read_to_string(self.file).unwrap_or_default();
            for secret in self.secrets {
                for line in secret.lines() {
                    assert!(
                        !file.contains(line),
                        "secret line {line:?} written before its mask"
                    );
                }
            }
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn masks_come_before_any_secret_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("github_env");
        let key = "-----BEGIN KEY-----\nMIIBsecretbody\n-----END KEY-----";
        let secrets = ["hunter2", key];
        let vars = [
            ExportVar::plain("STOCKROOM_BUYER_EMAIL", "a@x.test"),
            ExportVar::secret("STOCKROOM_BUYER_PASSWORD", "hunter2"),
            ExportVar::secret("STOCKROOM_BUYER_KEY", key),
        ];
        let mut probe = MaskProbe {
            file: &path,
            secrets: &secrets,
            written: Vec::new(),
        };
        GithubFile::env(&path)
            .write_vars(&vars, &mut probe)
            .unwrap();

        let masks = String::from_utf8(probe.written).unwrap();
        assert_eq!(
            masks,
            "::add-mask::hunter2\n\
             ::add-mask::-----BEGIN KEY-----\n\
             ::add-mask::MIIBsecretbody\n\
             ::add-mask::-----END KEY-----\n"
        );
        assert!(!masks.contains("a@x.test"), "plain values are not masked");
        // And the file did get the secrets afterwards.
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("MIIBsecretbody") && text.contains("hunter2"));
    }

    #[test]
    fn mask_failure_writes_no_secret() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "closed",
                ))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("github_env");
        let error = GithubFile::env(&path)
            .write_vars(&[ExportVar::secret("S", "hunter2")], &mut Broken)
            .unwrap_err();
        assert!(matches!(error, CiError::MaskOutput { .. }), "{error:?}");
        assert!(!path.exists());
    }

    #[test]
    fn mask_lines() {
        let cases: &[(&str, &[&str])] = &[
            ("hunter2", &["::add-mask::hunter2"]),
            ("100%", &["::add-mask::100%25"]),
            (" padded ", &["::add-mask:: padded ", "::add-mask::padded"]),
            (
                "line1\nline2\r\n\n  line3  \nline1\n",
                &[
                    "::add-mask::line1",
                    "::add-mask::line2",
                    "::add-mask::line3",
                ],
            ),
            ("a\rb", &["::add-mask::a", "::add-mask::b"]),
            ("", &[]),
            ("   ", &[]),
            ("\n\n", &[]),
        ];
        for (secret, expected) in cases {
            assert_eq!(add_mask_lines(secret), *expected, "{secret:?}");
        }
        assert_eq!(escape_command_data("a%b\rc\nd"), "a%25b%0Dc%0Ad");
    }

    #[test]
    fn step_summary_appends_with_newlines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.md");
        append_step_summary(&path, "## Stockroom").unwrap();
        append_step_summary(&path, "| a | b |\n").unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "## Stockroom\n| a | b |\n"
        );
    }

    #[test]
    fn paths_come_from_the_environment() {
        let paths = github_paths(&env(&[
            (
                "GITHUB_ENV",
                "/runner/_temp/_runner_file_commands/set_env_1",
            ),
            (
                "GITHUB_OUTPUT",
                "/runner/_temp/_runner_file_commands/set_output_1",
            ),
            (
                "GITHUB_STEP_SUMMARY",
                "/runner/_temp/_runner_file_commands/step_summary_1",
            ),
        ]));
        assert_eq!(
            paths,
            GithubPaths {
                env_file: Some("/runner/_temp/_runner_file_commands/set_env_1".into()),
                output_file: Some("/runner/_temp/_runner_file_commands/set_output_1".into()),
                state_file: None,
                step_summary: Some("/runner/_temp/_runner_file_commands/step_summary_1".into()),
            }
        );
        let missing = GithubFile::from_env(GithubFileKind::State, &env(&[])).unwrap_err();
        assert!(
            missing.to_string().contains("GITHUB_STATE is not set"),
            "{missing}"
        );
        let found =
            GithubFile::from_env(GithubFileKind::Env, &env(&[("GITHUB_ENV", "/tmp/e")])).unwrap();
        assert_eq!(found.path(), Path::new("/tmp/e"));
    }
}
