//! The `stockroom` binary's own smoke tests. Having an integration test here
//! also makes `cargo test --workspace` build the binary (fresh) before any
//! test runs, which the end-to-end tests in `tests/` rely on.

use std::process::Command;

fn stockroom() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stockroom"));
    cmd.env_remove("STOCKROOM_POOL")
        .env_remove("STOCKROOM_MANIFEST");
    cmd
}

#[test]
fn version_names_the_program_its_version_and_commit() {
    let out = stockroom()
        .arg("--version")
        .output()
        .expect("run stockroom");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let commit = text
        .trim()
        .strip_prefix(&format!("stockroom {} (commit ", env!("CARGO_PKG_VERSION")))
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not `stockroom VERSION (commit C)`: {text}"));
    assert!(
        commit == "unknown"
            || (!commit.is_empty() && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{text}"
    );
}

#[test]
fn the_example_manifest_is_valid_and_a_broken_one_exits_65_with_its_position() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/stockroom.toml");
    let out = stockroom()
        .args([
            "check",
            "--manifest",
            example,
            "--pool",
            "http://127.0.0.1:9",
        ])
        .output()
        .expect("run stockroom");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stockroom.toml");
    std::fs::write(&path, "version = 1\n[[dataset]]\nname = \"buyer\"\ntype = \"customer\"\nstate = \"active\"\ncont = 2\n")
        .expect("write manifest");
    let out = stockroom()
        .args(["check", "--manifest"])
        .arg(&path)
        .output()
        .expect("run stockroom");
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stockroom.toml:6:1: unknown field `cont`"),
        "{err}"
    );
}

#[test]
fn check_agrees_with_run_about_the_shard_total() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stockroom.toml");
    std::fs::write(
        &path,
        "version = 1\n[[dataset]]\nname = \"orders\"\ntype = \"order\"\nstate = \"placed\"\nshards = [0, 1]\n",
    )
    .expect("write manifest");
    let check = |extra: &[&str], env: &[(&str, &str)]| {
        let mut cmd = stockroom();
        cmd.env_remove("STOCKROOM_SHARD_INDEX")
            .env_remove("STOCKROOM_SHARD_TOTAL")
            .args(["check", "--offline", "--manifest"])
            .arg(&path)
            .args(extra)
            .envs(env.iter().copied());
        cmd.output().expect("run stockroom")
    };

    // No total anywhere: `run` would use one shard and exit 65, so check warns.
    let out = check(&[], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("lists shard 1, but no shard total is given")
            && err.contains("pass --shard-total 2"),
        "{err}"
    );

    // A total from the flag or from the environment is checked as `run` checks it.
    for (extra, env) in [
        (&["--shard-total", "1"][..], &[][..]),
        (
            &[][..],
            &[
                ("STOCKROOM_SHARD_INDEX", "0"),
                ("STOCKROOM_SHARD_TOTAL", "1"),
            ][..],
        ),
    ] {
        let out = check(extra, env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(65), "{err}");
        assert!(
            err.contains(
                "stockroom.toml:6:10: dataset \"orders\" lists shard 1, but this job has 1 shard(s)"
            ),
            "{err}"
        );
    }

    let out = check(&["--shard-total", "2"], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("shard"), "{err}");
}
