//! The progress display while `stockroom run` waits for stock, in CI mode
//! (stderr is a pipe, not a terminal): log lines naming each short dataset.
//!
//! Needs `cargo build -p stockroom -p stockroom-pool` first.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use stockroom_e2e::{Pool, StderrLines, stockroom};

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
