//! Build script of `stockroom` and `stockroom-pool` (both Cargo.toml files
//! name this one file): sets `STOCKROOM_VERSION`, what `--version` prints
//! after the program's name, to the package version and the commit it was
//! built from, e.g. `0.1.0 (commit 1a2b3c4d5e6f)`.
//!
//! The commit is `STOCKROOM_COMMIT` when set (scripts/dist.sh sets it; so can
//! a build from a source tarball), else `git rev-parse` of the source tree,
//! else `unknown` (no git, or not a checkout).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=STOCKROOM_COMMIT");
    let commit = match std::env::var("STOCKROOM_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_string(),
        _ => {
            // A new commit or checkout moves HEAD or the branch it names.
            for file in ["HEAD", "packed-refs"] {
                if let Some(path) = git(&["rev-parse", "--git-path", file]) {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
                && let Some(path) = git(&["rev-parse", "--git-path", &branch])
            {
                println!("cargo:rerun-if-changed={path}");
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_string())
        }
    };
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    println!("cargo:rustc-env=STOCKROOM_VERSION={version} (commit {commit})");
}
