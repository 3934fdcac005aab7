//! Helpers shared by the integration tests: real scripts in a temp dir, real
//! servers on loopback.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Writes an `sh` script and returns the argv that runs it.
pub fn sh_script(dir: &Path, name: &str, body: &str) -> Vec<String> {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    vec!["sh".to_string(), path.display().to_string()]
}

/// Writes a python script and returns the argv that runs it.
pub fn py_script(dir: &Path, name: &str, body: &str) -> Vec<String> {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write script");
    vec!["python3".to_string(), path.display().to_string()]
}

/// Generous: the tests never depend on it being short.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Whether a process is gone (or a zombie waiting for whoever reaps orphans).
pub fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Waits (up to `PATIENCE`) for a condition that the code under test makes true.
pub async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

pub fn read_pid(path: &PathBuf) -> i32 {
    std::fs::read_to_string(path)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid")
}

/// The repository root (the workspace), for the examples.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}
