//! The progress display while `stockroom run` waits for stock, in CI mode
//! (stderr is a pipe, not a terminal): log lines naming each short dataset;
//! and the end of the wait when the only generator of a wanted state is down.
//!
//! Needs `cargo build -p stockroom -p stockroom-pool` first.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use stockroom_e2e::{Pool, StderrLines, stockroom, wait_for};

/// A generous cap: the first progress line comes after one held lease
/// request (about 5 s); nothing here depends on how fast things are.
const CAP: Duration = Duration::from_secs(90);

fn customer(i: usize) -> Value {
    json!({"type": "customer", "state": "active", "data": {"customer_id": format!("C{i}")},
           "entities": [format!("customer:C{i}")]})
}

fn order(i: usize) -> Value {
    json!({"type": "order", "state": "placed", "data": {"order_id": format!("O{i}")},
           "entities": [format!("order:O{i}")]})
}

#[test]
fn progress_names_each_short_dataset_then_the_run_proceeds_once_stock_appears() {
    let pool = Pool::start();
    // One of two customers and one of two orders: both datasets are short.
    pool.seed(json!([customer(0), order(0)]));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("stockroom.toml"),
        format!(
            "version = 1\npool = \"{}\"\nacquire_timeout = \"300s\"\n\n[[dataset]]\nname = \"buyer\"\ntype = \"customer\"\nstate = \"active\"\ncount = 2\n\n[[dataset]]\nname = \"orders\"\ntype = \"order\"\nstate = \"placed\"\ncount = 2\n",
            pool.url()
        ),
    )
    .expect("write manifest");
    let marker = dir.path().join("command-ran");
    let mut child = stockroom(dir.path())
        .args(["run", "--", "touch"])
        .arg(&marker)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stockroom run");
    let mut stderr = StderrLines::read(child.stderr.take().expect("piped stderr"));
    let progress = stderr.wait_for(CAP, |l| l.contains("waiting for stock"));
    // CI mode: a plain log line, no carriage return or terminal escapes.
    assert!(
        !progress.contains('\r') && !progress.contains('\x1b'),
        "{progress:?}"
    );
    let (_, after) = progress
        .split_once("waiting for stock (")
        .unwrap_or_else(|| panic!("{progress}"));
    let (elapsed, shortfall) = after
        .split_once("s): ")
        .unwrap_or_else(|| panic!("{progress}"));
    assert!(
        !elapsed.is_empty() && elapsed.chars().all(|c| c.is_ascii_digit()),
        "elapsed seconds in {progress}"
    );
    for part in [
        "buyer: 1 of 2 ready, 0 generating",
        "orders: 1 of 2 ready, 0 generating",
    ] {
        assert!(shortfall.contains(part), "{part:?} missing from {progress}");
    }
    assert!(!marker.exists(), "the command must wait for the stock");

    // The stock appears: the run goes on, and passes.
    pool.seed(json!([customer(1), order(1)]));
    let status = child.wait().expect("wait");
    let all = stderr.all();
    assert_eq!(status.code(), Some(0), "{all}");
    assert!(marker.exists(), "the command ran: {all}");
    let (_, body) = pool.request("GET", "/api/v1/datasets?status=consumed", None, None);
    let consumed = body["datasets"].as_array().map_or(0, Vec::len);
    assert_eq!(
        consumed, 4,
        "all four datasets leased and released as passed: {body}"
    );
}

/// A command generator of two states in `dir/accounts.sh`: `account/held`,
/// whose `generate` leaves `dir/held-arrived` and then never answers (until
/// the pool that started it is gone), and `account/broken`, whose `generate`
/// fails (exit 3, "database unreachable") once a `held` call is in flight.
fn accounts_generator(dir: &std::path::Path) -> std::path::PathBuf {
    let script = dir.join("accounts.sh");
    let arrived = dir.join("held-arrived");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  capabilities) printf '%s' '{{\"produces\": [{{\"type\": \"account\", \"state\": \"held\", \"fields\": [\"id\"]}}, {{\"type\": \"account\", \"state\": \"broken\", \"fields\": [\"id\"]}}]}}' ;;\n  generate)\n    request=$(cat)\n    case \"$request\" in\n      *'\"held\"'*) touch '{a}'; while kill -0 $PPID 2>/dev/null; do sleep 0.2; done; exit 1 ;;\n    esac\n    while [ ! -e '{a}' ]; do sleep 0.05; done\n    echo 'database unreachable' >&2; exit 3 ;;\n  *) exit 2 ;;\nesac\n",
            a = arrived.display()
        ),
    )
    .expect("write generator");
    script
}

/// A pool whose only generator is `accounts_generator`, with `account/held`
/// and `account/broken` in stock, once that generator counts as down.
fn pool_with_a_down_generator(dir: &std::path::Path) -> Pool {
    let script = accounts_generator(dir);
    let pool = Pool::start_with_config(Some(&format!(
        "[[generators]]\nname = \"accounts\"\ncommand = [\"sh\", \"{}\"]\ntimeout = \"600s\"\n\n\
         [[stock]]\ntype = \"account\"\nstate = \"held\"\nmin_ready = 1\nmax_ready = 1\n\n\
         [[stock]]\ntype = \"account\"\nstate = \"broken\"\nmin_ready = 3\nmax_ready = 3\n",
        script.display()
    )));
    wait_for("the generator to be down", CAP, || {
        let (_, catalog) = pool.request("GET", "/api/v1/catalog", None, None);
        let accounts = catalog["generators"]
            .as_array()?
            .iter()
            .find(|g| g["name"] == "accounts")?
            .clone();
        (accounts["available"] == false).then_some(())
    });
    pool
}

fn write_manifest(dir: &std::path::Path, pool: &Pool, state: &str) {
    std::fs::write(
        dir.join("stockroom.toml"),
        format!(
            "version = 1\npool = \"{}\"\nacquire_timeout = \"300s\"\n\n[[dataset]]\nname = \"user\"\ntype = \"account\"\nstate = \"{state}\"\n",
            pool.url()
        ),
    )
    .expect("write manifest");
}

/// While one of a wanted state is still generating, the wait goes on, and
/// each progress line says that its generator is down and why.
#[test]
fn progress_says_which_generator_is_down_and_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = pool_with_a_down_generator(dir.path());
    write_manifest(dir.path(), &pool, "held");
    let marker = dir.path().join("command-ran");
    let mut child = stockroom(dir.path())
        .args(["run", "--", "touch"])
        .arg(&marker)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stockroom run");
    let mut stderr = StderrLines::read(child.stderr.take().expect("piped stderr"));
    let progress = stderr.wait_for(CAP, |l| l.contains("waiting for stock"));
    assert!(
        progress.contains(
            "user: 0 of 1 ready, 1 generating (generator accounts is down: generate via generator \"accounts\": command ended with exit code 3: database unreachable)"
        ),
        "{progress}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = child.wait().expect("wait");
    let all = stderr.all();
    assert_eq!(status.code(), Some(128 + 15), "{all}");
    assert!(
        !marker.exists(),
        "the command must wait for the stock: {all}"
    );
}

/// The pool answers `generator-failed` (502) when no route can make a wanted
/// state because its generator is down: the sidecar stops waiting at once and
/// exits 78 with a message naming the generator and why (docs/sidecar.md,
/// "Exit codes"), and the command never runs.
#[test]
fn a_down_generator_ends_the_wait_with_exit_78_naming_it_and_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = pool_with_a_down_generator(dir.path());
    // Nothing of account/broken is ready or generating: no waiting helps.
    write_manifest(dir.path(), &pool, "broken");
    let marker = dir.path().join("command-ran");
    let started = std::time::Instant::now();
    let out = stockroom(dir.path())
        .args(["run", "--", "touch"])
        .arg(&marker)
        .output()
        .expect("run stockroom");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "ended early, not after acquire_timeout: {stderr}"
    );
    for part in [
        "Generator failed",
        "account/broken",
        "generator \"accounts\" is down",
        "exit code 3",
        "database unreachable",
    ] {
        assert!(stderr.contains(part), "{part:?} missing from {stderr}");
    }
    assert!(!marker.exists(), "the command must not run: {stderr}");
}
