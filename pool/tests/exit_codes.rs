//! The pool binary's exit codes follow the cause (`exit_codes::pool`,
//! docs/pool.md): a database that is down is not a bad configuration.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use stockroom_protocol::exit_codes::pool;

fn pool_with(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stockroom-pool"))
        .args(args)
        .arg("--ready-file")
        .arg(dir.join("ready"))
        .env("STOCKROOM_LOG", "info")
        .env_remove("PGPASSWORD")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_unreachable_database_exits_69_before_binding_and_never_shows_the_password() {
    // Needs no PostgreSQL: nothing listens on port 1.
    let dir = tempfile::tempdir().unwrap();
    let out = pool_with(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--store",
            "postgres://bob:hunter2@127.0.0.1:1/nowhere",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(pool::STORE_UNAVAILABLE),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("cannot reach the database"),
        "{}",
        stderr(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stderr(&out).contains("hunter2") && !stdout.contains("hunter2"),
        "{}{stdout}",
        stderr(&out)
    );
    assert!(!dir.path().join("ready").exists(), "nothing was bound");
}

#[test]
fn a_store_url_of_an_unknown_kind_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = pool_with(dir.path(), &["--store", "mysql://root@127.0.0.1/db"]);
    assert_eq!(out.status.code(), Some(pool::CONFIG), "{}", stderr(&out));
    assert!(stderr(&out).contains("store"), "{}", stderr(&out));
}

#[test]
fn a_file_that_is_not_a_database_is_a_store_failure() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pool.db");
    std::fs::write(&db, vec![b'x'; 8192]).unwrap();
    let out = pool_with(
        dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--store",
            &format!("sqlite://{}", db.display()),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(pool::STORE_FAILED),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("ready").exists(), "nothing was bound");
}

#[test]
fn a_bad_flag_is_a_usage_error_and_help_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let out = pool_with(dir.path(), &["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(pool::USAGE), "{}", stderr(&out));
    let out = Command::new(env!("CARGO_BIN_EXE_stockroom-pool"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(pool::OK));
}

#[test]
fn an_address_in_use_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let db = dir.path().join("pool.db");
    let out = pool_with(
        dir.path(),
        &[
            "--listen",
            &addr,
            "--store",
            &format!("sqlite://{}", db.display()),
        ],
    );
    assert_eq!(out.status.code(), Some(pool::IO), "{}", stderr(&out));
    drop(taken);
}
