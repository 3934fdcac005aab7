//! Property tests (issue 13, "fuzz the parsers"): whatever the input, the
//! manifest parser, the pool config parser and the API body types never
//! panic; a rejected file always gets a position inside it. Stable Rust
//! (proptest), bounded case counts so `cargo test` stays quick; each test
//! prints how many cases it ran.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;
use stockroom_protocol::SourceError;
use stockroom_protocol::api::{
    ExtendDatasetRequest, HeartbeatRequest, LeaseRequest, Problem, RegisterDatasets,
    ReleaseRequest, StockSettings,
};
use stockroom_protocol::manifest::Manifest;
use stockroom_protocol::pool_config::PoolConfig;

const VALID_MANIFEST: &str = r#"version = 1
pool = "http://127.0.0.1:7878"
lease_ttl = "120s"
acquire_timeout = "5m"

[inject]
env_prefix = "TD_"

[[dataset]]
name = "buyer"
type = "customer"
state = "active-with-payment"
where = { country = "DE", vip = true }
count = 2
shards = [0, 2]
on_failure = "release"
"#;

const VALID_CONFIG: &str = r#"listen = "127.0.0.1:7878"
store = "sqlite://stockroom.db"
default_lease_ttl = "120s"

[[tokens]]
name = "ci"
role = "ci"
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

[[generators]]
name = "customers"
url = "http://127.0.0.1:9001"

[[stock]]
type = "customer"
state = "active"
min_ready = 2
max_ready = 10
"#;

/// Bytes that are mostly TOML-ish: pieces of a valid file, punctuation and noise.
fn tomlish(valid: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let tokens = prop_oneof![
        Just(b"=".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"[[".to_vec()),
        Just(b"]]".to_vec()),
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"\n".to_vec()),
        Just(b",".to_vec()),
        Just("é".as_bytes().to_vec()),
        Just(vec![0xff]),
        Just(vec![0xc3]),
        Just(b"99999999999999999999".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"\"http://[::1\"".to_vec()),
        "[a-z_]{1,8}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..4),
    ];
    // A valid file with a few splices: (offset, tokens inserted, bytes cut).
    let edits = proptest::collection::vec((any::<prop::sample::Index>(), tokens, 0..6usize), 1..6);
    edits.prop_map(move |edits| {
        let mut bytes = valid.as_bytes().to_vec();
        for (at, insert, cut) in edits {
            let i = at.index(bytes.len() + 1);
            let end = (i + cut).min(bytes.len());
            bytes.splice(i..end, insert);
        }
        bytes
    })
}

fn assert_positioned(errors: &[SourceError], text_len_lines: usize) {
    assert!(
        !errors.is_empty(),
        "an invalid file gives at least one error"
    );
    for e in errors {
        assert!(e.position.line >= 1 && e.position.column >= 1, "{e}");
        assert!(e.position.line <= text_len_lines + 1, "{e} beyond the file");
        assert!(!e.message.is_empty(), "{e}");
    }
}

fn lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count() + 1
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn the_manifest_parser_never_panics_and_positions_every_error() {
    let cases = 10_000;
    let rejected = std::cell::Cell::new(0u32);
    let strategy = prop_oneof![
        3 => tomlish(VALID_MANIFEST),
        1 => proptest::collection::vec(any::<u8>(), 0..200),
    ];
    runner(cases)
        .run(&strategy, |bytes| {
            match Manifest::parse_bytes(Path::new("stockroom.toml"), &bytes) {
                Ok(m) => prop_assert!(!m.datasets.is_empty()),
                Err(e) => {
                    rejected.set(rejected.get() + 1);
                    assert_positioned(e.errors(), lines(&bytes));
                }
            }
            Ok(())
        })
        .unwrap();
    println!(
        "manifest: {cases} cases, {} rejected with a position",
        rejected.get()
    );
}

#[test]
fn the_pool_config_parser_never_panics_and_positions_every_error() {
    let cases = 10_000;
    let rejected = std::cell::Cell::new(0u32);
    let strategy = prop_oneof![
        3 => tomlish(VALID_CONFIG),
        1 => proptest::collection::vec(any::<u8>(), 0..200),
    ];
    runner(cases)
        .run(&strategy, |bytes| {
            let Ok(text) = std::str::from_utf8(&bytes) else {
                return Ok(()); // load() reads text; bytes that are not are refused before.
            };
            if let Err(e) = PoolConfig::parse(Path::new("stockroom-pool.toml"), text) {
                rejected.set(rejected.get() + 1);
                let errors = match &e {
                    stockroom_protocol::pool_config::PoolConfigError::Invalid(v) => v.clone(),
                    other => panic!("parse gave a read error: {other}"),
                };
                assert_positioned(&errors, lines(&bytes));
            }
            Ok(())
        })
        .unwrap();
    println!(
        "pool config: {cases} cases, {} rejected with a position",
        rejected.get()
    );
}

/// JSON values that look like API bodies: objects with the API's own keys.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("holder".to_string()),
        Just("items".to_string()),
        Just("type".to_string()),
        Just("state".to_string()),
        Just("where".to_string()),
        Just("count".to_string()),
        Just("name".to_string()),
        Just("outcome".to_string()),
        Just("ttl_seconds".to_string()),
        Just("wait_seconds".to_string()),
        Just("idempotency_key".to_string()),
        Just("data".to_string()),
        Just("entities".to_string()),
        Just("secret_fields".to_string()),
        Just("attributes".to_string()),
        Just("min_ready".to_string()),
        Just("max_ready".to_string()),
        Just("extension".to_string()),
        Just("datasets".to_string()),
        "[a-z_]{1,10}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        prop_oneof![
            Just("passed".to_string()),
            Just("customer".to_string()),
            Just("active".to_string()),
            Just("quarantine".to_string()),
            ".{0,12}",
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn api_bodies_never_panic_whatever_json_arrives() {
    let cases = 10_000;
    let accepted = std::cell::Cell::new(0u32);
    runner(cases)
        .run(&json_value(), |v| {
            let text = v.to_string();
            let bytes = text.as_bytes();
            accepted.set(
                accepted.get() + u32::from(serde_json::from_slice::<LeaseRequest>(bytes).is_ok()),
            );
            accepted.set(
                accepted.get() + u32::from(serde_json::from_slice::<ReleaseRequest>(bytes).is_ok()),
            );
            accepted.set(
                accepted.get()
                    + u32::from(serde_json::from_slice::<HeartbeatRequest>(bytes).is_ok()),
            );
            accepted.set(
                accepted.get()
                    + u32::from(serde_json::from_slice::<RegisterDatasets>(bytes).is_ok()),
            );
            accepted.set(
                accepted.get()
                    + u32::from(serde_json::from_slice::<ExtendDatasetRequest>(bytes).is_ok()),
            );
            accepted.set(
                accepted.get() + u32::from(serde_json::from_slice::<StockSettings>(bytes).is_ok()),
            );
            accepted
                .set(accepted.get() + u32::from(serde_json::from_slice::<Problem>(bytes).is_ok()));
            Ok(())
        })
        .unwrap();
    println!(
        "API bodies: {cases} cases x 7 types, {} accepted",
        accepted.get()
    );
}
