//! Lifecycle calls (cleanup, reset, verify) of command and HTTP generators:
//! real python3 processes and a real loopback server, good and bad answers.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap should fail loudly

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::py_script;
use stockroom_generators::{AnyGenerator, ErrorKind, HealthPolicy, TrackedGenerator};
use stockroom_protocol::dataset::Dataset;
use stockroom_protocol::generator::LifecycleRequest;
use stockroom_protocol::pool_config::{GeneratorConfig, GeneratorEndpoint};

/// Answers each call as `mode` says; logs argv[1], its request and its
/// environment and working directory to `log`.
const SCRIPT: &str = r#"
import json, os, sys, time
call, mode, log = sys.argv[-1], sys.argv[1], sys.argv[2]
request = json.load(sys.stdin)
with open(log, "a") as f:
    f.write(json.dumps({"call": call, "request_id": request["request_id"], "id": request["dataset"]["id"],
                        "env": os.environ.get("SHOP_URL"), "home": "HOME" in os.environ, "cwd": os.getcwd()}) + "\n")
if mode == "malformed":
    print("{nope")
elif mode == "huge":
    sys.stdout.write('{"valid": true, "reason": "' + "x" * (17 * 1024 * 1024) + '"}')
elif mode == "slow":
    time.sleep(10)
elif mode == "fail":
    print("the shop is down", file=sys.stderr)
    sys.exit(3)
elif call == "reset":
    d = request["dataset"]
    print(json.dumps({"data": dict(d["data"], password="pw"), "secret_fields": d["secret_fields"], "entities": d["entities"]}))
elif call == "verify":
    print(json.dumps({"valid": mode != "invalid", "reason": "gone" if mode == "invalid" else None}))
elif call == "lying-reset":
    print(json.dumps({"data": {}}))
else:
    print("{}")
"#;

fn dataset() -> Dataset {
    Dataset {
        id: "ds_1".into(),
        type_name: "customer".into(),
        state: "active".into(),
        data: serde_json::json!({"customer_id": "C1", "password": "changed"}),
        secret_fields: vec!["password".into()],
        entities: vec!["customer:C1".into()],
        ..Dataset::default()
    }
}

fn request(id: &str) -> LifecycleRequest {
    LifecycleRequest {
        request_id: id.into(),
        dataset: dataset(),
    }
}

fn command(dir: &std::path::Path, mode: &str, timeout: Duration) -> TrackedGenerator {
    let mut argv = py_script(dir, "gen.py", SCRIPT);
    argv.push(mode.to_string());
    argv.push(dir.join("calls.log").display().to_string());
    let mut config = GeneratorConfig::new("shop", GeneratorEndpoint::Command(argv));
    config.timeout = stockroom_protocol::HumanDuration(timeout);
    config.env = BTreeMap::from([("SHOP_URL".to_string(), "http://127.0.0.1:9".to_string())]);
    config.cwd = Some(dir.to_path_buf());
    TrackedGenerator::new(AnyGenerator::from_config(&config), HealthPolicy::default())
}

fn calls(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_command_answers_cleanup_reset_and_verify_with_its_env_and_cwd() {
    let dir = tempfile::tempdir().unwrap();
    let g = command(dir.path(), "ok", Duration::from_secs(30));
    g.cleanup(&request("r-clean")).await.unwrap();
    let reset = g
        .reset(
            &["customer_id".into(), "password".into()],
            &request("r-reset"),
        )
        .await
        .unwrap();
    assert_eq!(reset.data["password"], "pw");
    assert_eq!(reset.entities, vec!["customer:C1".to_string()]);
    let verdict = g.verify(&request("r-verify")).await.unwrap();
    assert!(verdict.valid);
    let log = calls(dir.path());
    let seen: Vec<(&str, &str)> = log
        .iter()
        .map(|c| {
            (
                c["call"].as_str().unwrap(),
                c["request_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("cleanup", "r-clean"),
            ("reset", "r-reset"),
            ("verify", "r-verify")
        ]
    );
    for c in &log {
        assert_eq!(c["env"], "http://127.0.0.1:9", "env is set: {c}");
        assert_eq!(c["home"], true, "the pool's environment is inherited: {c}");
        assert_eq!(
            std::path::Path::new(c["cwd"].as_str().unwrap())
                .canonicalize()
                .unwrap(),
            dir.path().canonicalize().unwrap()
        );
    }
    let invalid = command(dir.path(), "invalid", Duration::from_secs(30));
    let verdict = invalid.verify(&request("r2")).await.unwrap();
    assert_eq!(
        (verdict.valid, verdict.reason.as_deref()),
        (false, Some("gone"))
    );
}

#[tokio::test]
async fn bad_lifecycle_answers_are_failed_calls_and_count_against_health() {
    let dir = tempfile::tempdir().unwrap();
    let fields = ["customer_id".to_string()];
    let malformed = command(dir.path(), "malformed", Duration::from_secs(30));
    let e = malformed.reset(&fields, &request("r")).await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Malformed(_)), "{e}");
    let huge = command(dir.path(), "huge", Duration::from_secs(30));
    let e = huge.verify(&request("r")).await.unwrap_err();
    assert!(e.to_string().contains("larger than"), "{e}");
    let slow = command(dir.path(), "slow", Duration::from_millis(500));
    let e = slow.cleanup(&request("r")).await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Timeout(_)), "{e}");
    let failing = command(dir.path(), "fail", Duration::from_secs(30));
    let e = failing.cleanup(&request("r")).await.unwrap_err();
    assert!(e.to_string().contains("the shop is down"), "{e}");
    // A reset that drops a promised field breaks the contract.
    let ok = command(dir.path(), "ok", Duration::from_secs(30));
    let e = ok
        .reset(&["email".to_string()], &request("r"))
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::ContractViolation(_)), "{e}");
    // Failing lifecycle calls back the generator off like failing generates.
    for _ in 0..3 {
        let _ = failing.cleanup(&request("r")).await;
    }
    assert!(!failing.ready_to_call(), "{:?}", failing.health());
    let e = failing.verify(&request("r")).await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::BackingOff(_)), "{e}");
}

#[tokio::test]
async fn an_http_generator_gets_post_url_call_with_the_request() {
    let shop = stockroom_generators::start_demo_shop(Duration::ZERO)
        .await
        .unwrap();
    let config = GeneratorConfig::new(
        "customers",
        GeneratorEndpoint::Http(shop.customers_url.clone()),
    );
    let g = TrackedGenerator::new(AnyGenerator::from_config(&config), HealthPolicy::default());
    // A customer the shop does not know: verify says so, reset fails, cleanup is fine.
    let verdict = g.verify(&request("r1")).await.unwrap();
    assert!(!verdict.valid, "{verdict:?}");
    let e = g.reset(&[], &request("r2")).await.unwrap_err();
    assert!(e.to_string().contains("409"), "{e}");
    g.cleanup(&request("r3")).await.unwrap();
    shop.shutdown().await;
}
