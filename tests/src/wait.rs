//! Waiting on conditions with deadlines: files, a child's stderr lines, any
//! check. A failed wait panics saying what it waited for.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use stockroom_testkit::poll_until;

/// Waits until `path` exists (a helper or the pool writes it when ready).
pub fn wait_for_file(path: &Path, timeout: Duration) -> bool {
    poll_until(timeout, || path.exists().then_some(())).is_some()
}

/// Polls `check` until it gives `Some`; panics naming `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    poll_until(timeout, check)
        .unwrap_or_else(|| panic!("gave up after {timeout:?} waiting for {what}"))
}

/// The lines a child writes to stderr, read as they come (by a thread), so a
/// test can wait for one line and still get all of them at the end.
pub struct StderrLines {
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    reader: Option<JoinHandle<()>>,
}

impl StderrLines {
    /// Reads `stderr` (a child's piped stderr) until it closes.
    pub fn read(stderr: impl Read + Send + 'static) -> StderrLines {
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        StderrLines {
            lines,
            seen: Vec::new(),
            reader: Some(reader),
        }
    }

    /// Waits for a line matching `wanted` and returns it; panics with every
    /// line seen so far when none comes within `timeout` or stderr closes.
    pub fn wait_for(&mut self, timeout: Duration, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no such line within {timeout:?} ({e}); stderr so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Everything written, once the child has closed its stderr (exited).
    pub fn all(mut self) -> String {
        if let Some(reader) = self.reader.take() {
            reader.join().expect("stderr reader");
        }
        self.seen.extend(self.lines.try_iter());
        self.seen.join("\n")
    }
}
