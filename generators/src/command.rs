//! A generator run as a local command: one process per call, `CMD capabilities`,
//! `CMD generate` or `CMD extend`, the request on stdin, the answer on stdout.
//!
//! The child runs in its own process group so that everything it starts can
//! be stopped together: on timeout (or when the call is dropped) the whole
//! group gets SIGKILL and the child is reaped. When the child exits, members
//! it left behind are killed too, so a stray grandchild can neither keep the
//! answer pipe open nor outlive the call.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use stockroom_protocol::generator::{
    Capabilities, ExtendAnswer, ExtendRequest, GenerateAnswer, GenerateRequest,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::client::{CallLimits, GeneratorClient, MAX_ANSWER_BYTES, decode, encode};
use crate::error::{ErrorKind, ExitOutcome, GeneratorError, Operation};

/// How much of a command's stderr is kept with a failure: its last 64 KiB.
pub const STDERR_TAIL_BYTES: usize = 64 * 1024;

/// How long the output pipes may stay open once the child's group is gone.
const PIPE_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct CommandGenerator {
    pub(crate) limits: CallLimits,
    argv: Vec<String>,
    /// Set on top of the pool's environment (which the command inherits).
    env: BTreeMap<String, String>,
    /// Where it runs; `None`: the pool's working directory.
    cwd: Option<PathBuf>,
}

impl CommandGenerator {
    pub fn new(name: &str, argv: Vec<String>, timeout: Duration, concurrency: usize) -> Self {
        CommandGenerator {
            limits: CallLimits::new(name, timeout, concurrency),
            argv,
            env: BTreeMap::new(),
            cwd: None,
        }
    }

    /// Variables set for every call, on top of the inherited environment,
    /// and the working directory (docs/generators.md, "Environment and
    /// working directory").
    pub fn with_env(mut self, env: BTreeMap<String, String>, cwd: Option<PathBuf>) -> Self {
        self.env = env;
        self.cwd = cwd;
        self
    }

    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// One run of the command with `operation` as its argument and the body
    /// on stdin (lifecycle calls use it too, see [`crate::lifecycle`]).
    pub(crate) async fn call(
        &self,
        operation: Operation,
        stdin_body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, GeneratorError> {
        let _slot = self.limits.slot().await;
        let fail = |kind| self.limits.error(operation, kind);
        let Some((program, args)) = self.argv.split_first() else {
            return Err(fail(ErrorKind::Spawn("the command is empty".to_string())));
        };
        let mut command = Command::new(program);
        command.envs(&self.env);
        if let Some(dir) = &self.cwd {
            command.current_dir(dir);
        }
        let mut child = command
            .args(args)
            .arg(operation.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(ErrorKind::Spawn(format!("{program}: {e}"))))?;
        let group = GroupGuard(
            child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .map(Pid::from_raw),
        );

        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(fail(ErrorKind::Spawn(
                "the command's pipes could not be opened".to_string(),
            )));
        };
        // A generator that exits without reading its request closes the pipe;
        // that is not an error of ours, its exit status tells.
        let writer = tokio::spawn(async move {
            if let Some(body) = stdin_body {
                let _ = stdin.write_all(&body).await;
            }
            drop(stdin);
        });
        let stdout_reader = tokio::spawn(read_capped(stdout, MAX_ANSWER_BYTES));
        let stderr_reader = tokio::spawn(read_tail(stderr, STDERR_TAIL_BYTES));

        let waited = tokio::time::timeout(self.limits.timeout, child.wait()).await;
        // Whether the child ended or timed out, nothing of its group may stay.
        group.kill();
        let status = match waited {
            Ok(Ok(status)) => Some(status),
            Ok(Err(e)) => {
                return Err(fail(ErrorKind::Spawn(format!(
                    "could not wait for the command: {e}"
                ))));
            }
            Err(_) => {
                let _ = child.wait().await;
                None
            }
        };
        writer.abort();
        // The group is gone, so the pipes are closed; a process that left the
        // group (setsid) could hold them open, so do not wait for ever.
        let stderr = match tokio::time::timeout(PIPE_GRACE, stderr_reader).await {
            Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            _ => String::new(),
        };
        let Some(status) = status else {
            return Err(fail(ErrorKind::Timeout(self.limits.timeout)));
        };
        if !status.success() {
            use std::os::unix::process::ExitStatusExt;
            let outcome = match (status.code(), status.signal()) {
                (Some(code), _) => ExitOutcome::Code(code),
                (None, Some(signal)) => ExitOutcome::Signal(signal),
                (None, None) => ExitOutcome::Code(-1),
            };
            return Err(fail(ErrorKind::ExitStatus { outcome, stderr }));
        }
        match tokio::time::timeout(PIPE_GRACE, stdout_reader).await {
            Ok(Ok(Ok(answer))) => Ok(answer),
            Ok(Ok(Err(too_large))) => Err(fail(ErrorKind::Malformed(too_large))),
            Ok(Err(_)) => Err(fail(ErrorKind::Malformed("the answer could not be read".to_string()))),
            Err(_) => Err(fail(ErrorKind::Malformed(
                "stdout stayed open after the command exited (a process outside its group holds it)".to_string(),
            ))),
        }
    }
}

/// Kills the child's whole process group when dropped (a cancelled call
/// must not leave generators running) or when asked.
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn kill(&self) {
        if let Some(pgid) = self.0 {
            // ESRCH (nobody left) is the usual, good outcome.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads everything; more than `limit` bytes is refused (but still drained,
/// so the child never blocks on a full pipe).
async fn read_capped(mut pipe: impl AsyncRead + Unpin, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut too_large = false;
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) if !too_large && out.len() + n <= limit => out.extend_from_slice(&buf[..n]),
            Ok(_) => too_large = true,
        }
    }
    if too_large {
        Err(format!("answer is larger than {limit} bytes"))
    } else {
        Ok(out)
    }
}

/// Reads everything, keeping only the last `keep` bytes.
async fn read_tail(mut pipe: impl AsyncRead + Unpin, keep: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > 2 * keep {
                    out.drain(..out.len() - keep);
                }
            }
        }
    }
    if out.len() > keep {
        out.drain(..out.len() - keep);
    }
    out
}

impl GeneratorClient for CommandGenerator {
    fn name(&self) -> &str {
        &self.limits.name
    }

    async fn capabilities(&self) -> Result<Capabilities, GeneratorError> {
        let body = self.call(Operation::Capabilities, None).await?;
        decode(&self.limits, Operation::Capabilities, &body)
    }

    async fn generate(&self, request: &GenerateRequest) -> Result<GenerateAnswer, GeneratorError> {
        let body = self
            .call(Operation::Generate, Some(encode(request)))
            .await?;
        decode(&self.limits, Operation::Generate, &body)
    }

    async fn extend(&self, request: &ExtendRequest) -> Result<ExtendAnswer, GeneratorError> {
        let body = self.call(Operation::Extend, Some(encode(request))).await?;
        decode(&self.limits, Operation::Extend, &body)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_tail_of_a_long_stream_is_kept() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes()[..1].to_vec())
            .collect();
        let tail = read_tail(&text[..], 1000).await;
        assert_eq!(tail, text[text.len() - 1000..]);
        assert!(read_capped(&text[..], 10).await.is_err());
        assert_eq!(
            read_capped(&text[..], text.len()).await.unwrap().len(),
            text.len()
        );
    }
}
