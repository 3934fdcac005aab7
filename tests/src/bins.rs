//! The binaries under test, found in the target directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The target profile directory (`target/debug`): the test executable lives in `deps/` below it.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    let dir = if deps.ends_with("deps") {
        deps.parent().expect("profile dir")
    } else {
        deps
    };
    dir.to_path_buf()
}

fn binary(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build -p stockroom -p stockroom-pool`",
        path.display()
    );
    path
}

pub fn stockroom_bin() -> PathBuf {
    binary("stockroom")
}

pub fn pool_bin() -> PathBuf {
    binary("stockroom-pool")
}

/// The path of a helper program of this package.
pub fn helper(name: &str) -> PathBuf {
    binary(name)
}

/// `stockroom` with a clean environment (no CI variables leak in from the host).
pub fn stockroom(dir: &Path) -> Command {
    let mut cmd = Command::new(stockroom_bin());
    cmd.env_clear()
        .current_dir(dir)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("TMPDIR", dir)
        .env("STOCKROOM_LOG", "info")
        .stdin(Stdio::null());
    cmd
}
