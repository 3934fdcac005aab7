//! One `stockroom-pool` process: spawned on port 0 with a ready file, its
//! stderr in a log file, stopped by SIGTERM (or SIGKILL) and always reaped.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::wait::POLL;

/// How many lines of the pool's stderr an error quotes.
const TAIL_LINES: usize = 40;

/// Why a pool process could not be started, signalled or stopped.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot prepare {path}: {source}")]
    Prepare {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {bin}: {source}")]
    Spawn {
        bin: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{bin} exited with {status} before writing its ready file; its stderr ends with:\n{tail}"
    )]
    ExitedEarly {
        bin: PathBuf,
        status: ExitStatus,
        tail: String,
    },
    #[error(
        "{bin} did not write its ready file {ready} within {timeout:?}; its stderr ends with:\n{tail}"
    )]
    NotReady {
        bin: PathBuf,
        ready: PathBuf,
        timeout: Duration,
        tail: String,
    },
    #[error("the ready file {ready} holds {text:?}, not an address: {source}")]
    BadReadyFile {
        ready: PathBuf,
        text: String,
        source: std::net::AddrParseError,
    },
    #[error("cannot send {signal} to pool process {pid}: {source}")]
    Signal {
        pid: u32,
        signal: Signal,
        source: nix::Error,
    },
    #[error("cannot wait for pool process {pid}: {source}")]
    Wait { pid: u32, source: std::io::Error },
    #[error("pool process {pid} did not stop within {grace:?} of SIGTERM; killed")]
    StopTimeout { pid: u32, grace: Duration },
}

/// How to start the pool: the binary, where its ready file and log go, and
/// what else it is given. `spawn` always adds `--listen 127.0.0.1:0` and
/// `--ready-file`, so a test never picks (or reuses) a port itself.
#[derive(Debug, Clone)]
pub struct PoolCommand {
    bin: PathBuf,
    dir: PathBuf,
    label: String,
    leading_args: Vec<OsString>,
    store: Option<String>,
    config: Option<PathBuf>,
    env: Vec<(OsString, Option<OsString>)>,
    stdout_piped: bool,
    fresh_log: bool,
    ready_timeout: Duration,
}

impl PoolCommand {
    /// The pool binary `bin`, writing `DIR/pool.ready` and `DIR/pool.log`.
    pub fn new(bin: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> PoolCommand {
        PoolCommand {
            bin: bin.into(),
            dir: dir.into(),
            label: "pool".to_string(),
            leading_args: Vec::new(),
            store: None,
            config: None,
            env: Vec::new(),
            stdout_piped: false,
            fresh_log: false,
            // Generous: start-up opens and migrates a store, on a busy machine too.
            ready_timeout: Duration::from_secs(120),
        }
    }

    /// Names the ready file and the log (`DIR/LABEL.ready`, `DIR/LABEL.log`),
    /// so several pools can share a directory.
    pub fn label(mut self, label: impl Into<String>) -> PoolCommand {
        self.label = label.into();
        self
    }

    /// Arguments before the listen flags, e.g. `["demo", "--latency", "20ms"]`.
    pub fn leading_args<I, S>(mut self, args: I) -> PoolCommand
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.leading_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// `--store URL`.
    pub fn store(mut self, url: impl Into<String>) -> PoolCommand {
        self.store = Some(url.into());
        self
    }

    /// `--config PATH`.
    pub fn config(mut self, path: impl Into<PathBuf>) -> PoolCommand {
        self.config = Some(path.into());
        self
    }

    /// Sets an environment variable of the pool.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> PoolCommand {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Removes an environment variable the pool would inherit.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> PoolCommand {
        self.env.push((key.into(), None));
        self
    }

    /// Keeps the pool's stdout readable ([`PoolProcess::take_stdout`]);
    /// otherwise it goes to /dev/null.
    pub fn stdout_piped(mut self) -> PoolCommand {
        self.stdout_piped = true;
        self
    }

    /// Truncates the log at start; by default a restart appends to it.
    pub fn fresh_log(mut self) -> PoolCommand {
        self.fresh_log = true;
        self
    }

    /// How long `spawn` waits for the ready file (default 120 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> PoolCommand {
        self.ready_timeout = timeout;
        self
    }

    /// Where the pool's stderr goes.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.label))
    }

    fn ready_path(&self) -> PathBuf {
        self.dir.join(format!("{}.ready", self.label))
    }

    /// Starts the pool and returns once its ready file names the address it
    /// listens on. Fails, quoting the tail of the pool's stderr, when the
    /// pool exits first or the file does not come within the ready timeout
    /// (the process is killed then).
    pub fn spawn(&self) -> Result<PoolProcess, LaunchError> {
        let ready = self.ready_path();
        match std::fs::remove_file(&ready) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(LaunchError::Prepare {
                    path: ready,
                    source: e,
                });
            }
            _ => {}
        }
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(!self.fresh_log)
            .truncate(self.fresh_log)
            .open(&log_path)
            .map_err(|source| LaunchError::Prepare {
                path: log_path.clone(),
                source,
            })?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.leading_args)
            .args(["--listen", "127.0.0.1:0", "--ready-file"])
            .arg(&ready);
        // The demo's shop API too gets a free port, named in a ready file.
        let shop_url_file = (self.leading_args.first().is_some_and(|a| a == "demo")
            && !self.leading_args.iter().any(|a| a == "--shop-listen"))
        .then(|| self.dir.join(format!("{}.shop-url", self.label)));
        if let Some(file) = &shop_url_file {
            let _ = std::fs::remove_file(file);
            cmd.args(["--shop-listen", "127.0.0.1:0", "--shop-url-file"])
                .arg(file);
        }
        if let Some(store) = &self.store {
            cmd.arg("--store").arg(store);
        }
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        for (key, value) in &self.env {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        cmd.stdin(Stdio::null())
            .stdout(if self.stdout_piped {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(log);
        let child = cmd.spawn().map_err(|source| LaunchError::Spawn {
            bin: self.bin.clone(),
            source,
        })?;
        let mut process = PoolProcess {
            child,
            exited: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            bin: self.bin.clone(),
            log: log_path,
            shop_url: None,
        };
        process.addr = process.wait_ready(&ready, self.ready_timeout)?;
        // The demo writes its shop URL before the pool listens.
        process.shop_url = shop_url_file.and_then(|f| std::fs::read_to_string(f).ok());
        Ok(process)
    }
}

/// A running pool; killed and reaped when dropped.
#[derive(Debug)]
pub struct PoolProcess {
    child: Child,
    exited: Option<ExitStatus>,
    addr: SocketAddr,
    bin: PathBuf,
    log: PathBuf,
    shop_url: Option<String>,
}

impl PoolProcess {
    /// The demo shop's API (`http://ADDR`, routes under `/shop`), when this
    /// is `stockroom-pool demo` started with the shop on a free port.
    pub fn shop_url(&self) -> Option<&str> {
        self.shop_url.as_deref()
    }

    /// The address from the ready file.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the pool wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of [`PoolProcess::log`].
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }

    /// The pool's stdout, once, if the command asked for it to be piped.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// The exit status, if the pool has exited (reaping it).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, LaunchError> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().map_err(|source| LaunchError::Wait {
                pid: self.pid(),
                source,
            })?;
        }
        Ok(self.exited)
    }

    /// Sends `signal` to the pool (nothing when it has already been reaped).
    pub fn signal(&mut self, signal: Signal) -> Result<(), LaunchError> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = self.pid();
        let raw = i32::try_from(pid).map_err(|_| LaunchError::Signal {
            pid,
            signal,
            source: nix::Error::ESRCH,
        })?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), signal).map_err(|source| {
            LaunchError::Signal {
                pid,
                signal,
                source,
            }
        })
    }

    /// SIGKILL: the pool vanishes without a goodbye. Returns once reaped.
    pub fn kill(&mut self) -> Result<ExitStatus, LaunchError> {
        self.signal(Signal::SIGKILL)?;
        self.wait()
    }

    /// SIGTERM, then waits up to `grace` for the exit; after that SIGKILL
    /// and [`LaunchError::StopTimeout`].
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus, LaunchError> {
        self.signal(Signal::SIGTERM)?;
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.kill()?;
                return Err(LaunchError::StopTimeout {
                    pid: self.pid(),
                    grace,
                });
            }
            // The poll interval of a wait with a deadline.
            std::thread::sleep(POLL);
        }
    }

    fn wait(&mut self) -> Result<ExitStatus, LaunchError> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        let status = self.child.wait().map_err(|source| LaunchError::Wait {
            pid: self.pid(),
            source,
        })?;
        self.exited = Some(status);
        Ok(status)
    }

    fn wait_ready(&mut self, ready: &Path, timeout: Duration) -> Result<SocketAddr, LaunchError> {
        let deadline = Instant::now() + timeout;
        loop {
            // The pool writes the file whole (a rename), so any text read is all of it.
            if let Ok(text) = std::fs::read_to_string(ready) {
                return text
                    .trim()
                    .parse()
                    .map_err(|source| LaunchError::BadReadyFile {
                        ready: ready.to_path_buf(),
                        text,
                        source,
                    });
            }
            if let Some(status) = self.try_wait()? {
                return Err(LaunchError::ExitedEarly {
                    bin: self.bin.clone(),
                    status,
                    tail: self.log_tail(),
                });
            }
            if Instant::now() >= deadline {
                let _ = self.kill();
                return Err(LaunchError::NotReady {
                    bin: self.bin.clone(),
                    ready: ready.to_path_buf(),
                    timeout,
                    tail: self.log_tail(),
                });
            }
            // The poll interval of a wait with a deadline.
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for PoolProcess {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in "pool": a shell script that gets the same flags.
    fn script(dir: &Path, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("fake-pool");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    #[test]
    fn reads_the_address_from_the_ready_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        // $4 is the ready file: --listen 127.0.0.1:0 --ready-file FILE
        let bin = script(
            dir,
            "echo started >&2; printf 127.0.0.1:4242 > \"$4.tmp\"; mv \"$4.tmp\" \"$4\"; exec sleep 600",
        );
        let mut pool = PoolCommand::new(&bin, dir).spawn().expect("ready");
        assert_eq!(pool.addr().to_string(), "127.0.0.1:4242");
        assert_eq!(pool.base_url(), "http://127.0.0.1:4242");
        assert!(pool.log().contains("started"));
        let status = pool
            .stop(Duration::from_secs(30))
            .expect("stops on SIGTERM");
        assert!(!status.success());
    }

    #[test]
    fn an_early_exit_names_the_status_and_the_stderr_tail() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let bin = script(dir, "echo 'cannot open the store' >&2; exit 78");
        let err = PoolCommand::new(&bin, dir)
            .spawn()
            .expect_err("exits first");
        let text = err.to_string();
        assert!(matches!(err, LaunchError::ExitedEarly { .. }), "{text}");
        assert!(
            text.contains("78") && text.contains("cannot open the store"),
            "{text}"
        );
    }

    #[test]
    fn no_ready_file_by_the_deadline_kills_the_process() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let bin = script(dir, "echo 'still migrating' >&2; exec sleep 600");
        let err = PoolCommand::new(&bin, dir)
            .ready_timeout(Duration::from_millis(200))
            .spawn()
            .expect_err("never ready");
        let text = err.to_string();
        assert!(matches!(err, LaunchError::NotReady { .. }), "{text}");
        assert!(text.contains("still migrating"), "{text}");
    }
}
