//! The real `stockroom` binary exits with each documented code
//! (`stockroom_protocol::exit_codes`, docs/sidecar.md "Exit codes") for a
//! real cause: real child processes and signals, real HTTP to a stub pool.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::stub_pool::{HeartbeatAnswerKind, LeaseAnswer, StubPool};
use stockroom_protocol::exit_codes;

/// `stockroom` in `dir` with a clean environment: no CI, no STOCKROOM_* of the caller.
fn stockroom(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stockroom"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("STOCKROOM_RETRY_FOR", "0s");
    cmd
}

fn stockroom_in(dir: &Path, args: &[&str]) -> Output {
    stockroom(dir).args(args).output().expect("run stockroom")
}

fn write_manifest(dir: &Path, pool: Option<&str>) {
    let pool = pool
        .map(|p| format!("pool = \"{p}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        dir.join("stockroom.toml"),
        format!(
            "version = 1\n{pool}acquire_timeout = \"1s\"\n[[dataset]]\nname = \"buyer\"\ntype = \"customer\"\nstate = \"active\"\n"
        ),
    )
    .expect("write the manifest");
}

/// `stockroom run [flags] -- command…` against `pool`.
fn run(pool: &StubPool, flags: &[&str], command: &[&str]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    write_manifest(dir.path(), Some(&pool.url()));
    let out = stockroom(dir.path())
        .arg("run")
        .args(flags)
        .arg("--")
        .args(command)
        .output()
        .expect("run stockroom");
    (out, dir)
}

fn assert_exit(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", stderr(out));
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn released_as(pool: &StubPool) -> Vec<String> {
    pool.seen("/release")
        .iter()
        .map(|s| s.body["outcome"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn granting() -> StubPool {
    StubPool::start(LeaseAnswer::Grant, HeartbeatAnswerKind::Alive)
}

#[test]
fn the_commands_end_gives_the_exit_code_and_the_release_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write the script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let script = script.to_str().expect("utf-8 path");
    let cases: [(&str, &[&str], i32, &str); 5] = [
        ("exit 3", &["sh", "-c", "exit 3"], 3, "failed"),
        ("exit 0", &["sh", "-c", "exit 0"], exit_codes::OK, "passed"),
        (
            "killed by SIGTERM",
            &["sh", "-c", "kill -TERM $$"],
            exit_codes::for_signal(15),
            "failed",
        ),
        (
            "not found",
            &["stockroom-test-no-such-command"],
            exit_codes::NOT_FOUND,
            "failed",
        ),
        (
            "not executable",
            &[script],
            exit_codes::NOT_EXECUTABLE,
            "failed",
        ),
    ];
    for (what, command, code, outcome) in cases {
        let pool = granting();
        let (out, _dir) = run(&pool, &[], command);
        assert_eq!(out.status.code(), Some(code), "{what}: {}", stderr(&out));
        assert_eq!(released_as(&pool), [outcome], "{what}");
    }
}

#[test]
fn a_lease_lost_with_fail_stops_the_command_and_gives_lease_lost() {
    let pool = StubPool::start(LeaseAnswer::Grant, HeartbeatAnswerKind::Gone);
    // The command would run for a minute; the first heartbeat (after 1 s) finds the lease gone.
    let (out, _dir) = run(
        &pool,
        &["--on-lease-lost", "fail", "--grace", "5s"],
        &["sleep", "60"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(exit_codes::LEASE_LOST), "{err}");
    assert!(err.contains("LEASE LOST"), "{err}");
    assert!(
        released_as(&pool).is_empty(),
        "a lost lease is not released again"
    );
}

#[test]
fn no_stock_within_acquire_timeout_gives_no_stock() {
    let pool = StubPool::start(LeaseAnswer::NoStock, HeartbeatAnswerKind::Alive);
    let (out, _dir) = run(&pool, &[], &["true"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(exit_codes::NO_STOCK), "{err}");
    assert!(err.contains("buyer: 0 of 1 ready"), "{err}");
}

/// The lease token proves holding the lease to the pool, and goes nowhere
/// else: not in the command's environment, its datasets file or the logs.
#[test]
fn the_lease_token_goes_to_the_pool_only() {
    let pool = granting();
    let (out, _dir) = run(
        &pool,
        &[],
        &[
            "sh",
            "-c",
            "env; cat \"$STOCKROOM_DATASETS_FILE\"; echo; cat \"$STOCKROOM_LEASE_TOKEN_FILE\" | wc -c",
        ],
    );
    assert_exit(&out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains(common::stub_pool::LEASE_TOKEN), "{stdout}");
    assert!(!stderr(&out).contains(common::stub_pool::LEASE_TOKEN));
    assert!(stdout.contains("STOCKROOM_LEASE_TOKEN_FILE="), "{stdout}");
    let release = pool.seen("/release");
    assert_eq!(release.len(), 1);
    assert_eq!(
        release[0].lease_token.as_deref(),
        Some(common::stub_pool::LEASE_TOKEN)
    );
    let lease = pool.seen("/leases");
    let instance = lease[0].body["holder"]["instance"].as_str().unwrap_or("");
    assert!(
        instance.len() >= 16,
        "a per-process instance: {:?}",
        lease[0].body
    );
}

/// Another live process holds the lease of the same idempotency key: 78
/// with the advice, and the command never runs.
#[test]
fn an_idempotency_conflict_gives_configuration_with_advice() {
    let pool = StubPool::start(LeaseAnswer::KeyConflict, HeartbeatAnswerKind::Alive);
    let (out, dir) = run(&pool, &[], &["touch", "ran"]);
    assert_exit(&out, exit_codes::CONFIG);
    let err = stderr(&out);
    for advice in [
        "--shard-index",
        "--shard-total",
        "STOCKROOM_IDEMPOTENCY_KEY",
    ] {
        assert!(err.contains(advice), "{err}");
    }
    assert!(!dir.path().join("ran").exists());
}

#[test]
fn a_rejected_token_gives_token_rejected() {
    let pool = StubPool::start(LeaseAnswer::RejectToken, HeartbeatAnswerKind::Alive);
    let (out, _dir) = run(&pool, &[], &["true"]);
    assert_exit(&out, exit_codes::TOKEN_REJECTED);
}

#[test]
fn a_pool_that_is_not_listening_gives_pool_unreachable() {
    // A port that was just free: nothing listens there any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let dir = tempfile::tempdir().expect("tempdir");
    write_manifest(dir.path(), Some(&format!("http://{closed}")));
    let out = stockroom_in(dir.path(), &["run", "--", "true"]);
    assert_exit(&out, exit_codes::POOL_UNREACHABLE);
}

#[test]
fn the_sidecars_own_failures_before_any_pool_give_their_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = stockroom_in(dir.path(), &["run", "--no-such-flag", "--", "true"]);
    assert_exit(&out, exit_codes::USAGE);

    // No pool anywhere: not in the manifest, no --pool, no STOCKROOM_POOL.
    write_manifest(dir.path(), None);
    let out = stockroom_in(dir.path(), &["run", "--", "true"]);
    assert_exit(&out, exit_codes::CONFIG);

    std::fs::write(dir.path().join("stockroom.toml"), "version = 1\ncont = 2\n")
        .expect("write a broken manifest");
    let out = stockroom_in(dir.path(), &["run", "--", "true"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(exit_codes::BAD_MANIFEST), "{err}");
    assert!(err.contains("stockroom.toml:2:"), "{err}");

    let out = stockroom_in(dir.path(), &["--help"]);
    assert_exit(&out, exit_codes::OK);
}

/// The rows of the "Exit codes" table in docs/sidecar.md that start with a number.
fn documented_codes() -> Vec<i32> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/sidecar.md");
    let docs = std::fs::read_to_string(path).expect("read docs/sidecar.md");
    let table = docs
        .split("\n## Exit codes\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/sidecar.md has an \"Exit codes\" section");
    table
        .lines()
        .filter_map(|line| line.strip_prefix("| "))
        .filter_map(|row| row.split(" |").next())
        .filter_map(|first| first.trim().parse().ok())
        .collect()
}

#[test]
fn the_docs_table_lists_exactly_the_sidecars_own_codes() {
    let mut documented = documented_codes();
    documented.retain(|c| *c != exit_codes::OK);
    documented.sort_unstable();
    let mut own: Vec<i32> = exit_codes::OWN_CODES.iter().map(|(c, _)| *c).collect();
    own.sort_unstable();
    assert_eq!(documented, own, "docs/sidecar.md vs exit_codes::OWN_CODES");
}
