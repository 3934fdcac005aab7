//! `stockroom extend NAME EXTENSION` against the real demo pool (three real
//! generator services): from inside `stockroom run` (the lease comes from
//! `STOCKROOM_LEASE_ID` and `STOCKROOM_DATASETS_FILE`) and after
//! `stockroom start` (the lease comes from the state file).
//!
//! Needs `cargo build -p stockroom -p stockroom-pool` first.

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use stockroom_e2e::{DemoPool, stockroom, stockroom_bin};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read_json(path: &Path) -> Value {
    let raw = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
    serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// One order in state `placed`; the demo keeps order/placed in stock.
fn write_manifest(demo: &DemoPool, dir: &Path) {
    std::fs::write(
        dir.join("stockroom.toml"),
        format!(
            "version = 1\npool = \"{}\"\nacquire_timeout = \"120s\"\n\n[[dataset]]\nname = \"orders\"\ntype = \"order\"\nstate = \"placed\"\n",
            demo.url()
        ),
    )
    .expect("write manifest");
}

fn started(demo: &DemoPool) {
    assert!(
        demo.banner
            .starts_with(&format!("Stockroom demo pool: http://{}", demo.addr)),
        "demo stdout line 1: {:?}",
        demo.banner
    );
}

/// `GET /api/v1/datasets/{id}` (with its history).
fn pool_dataset(demo: &DemoPool, id: &str) -> Value {
    let (status, body) = demo.request("GET", &format!("/api/v1/datasets/{id}"), None, None);
    assert_eq!(status, 200, "{body}");
    body
}

fn assert_extended_in_pool(demo: &DemoPool, id: &str, state: &str, extension: &str) {
    let view = pool_dataset(demo, id);
    assert_eq!(view["state"], state, "{view:#}");
    let history = view["history"].as_array().cloned().unwrap_or_default();
    assert!(
        history.iter().any(|h| h["reason"]
            .as_str()
            .is_some_and(|r| r.contains("extended") && r.contains(&format!("{extension:?}")))),
        "no history entry for extension {extension}: {view:#}"
    );
}

/// An unknown extension is a usage error (64) naming the extensions the
/// pool knows from the dataset's state.
fn assert_unknown_extension(out: &Output, from: &str, known: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("unknown extension \"refund\""), "{err}");
    assert!(
        err.contains(&format!("Known extensions from {from}: {known}")),
        "{err}"
    );
}

#[test]
fn extend_inside_run_rewrites_the_datasets_file_atomically() {
    let demo = DemoPool::start("20ms");
    started(&demo);
    let dir = tempfile::tempdir().expect("tempdir");
    write_manifest(&demo, dir.path());
    // The command extends its order, then reads the rewritten file: it passes
    // only if the new state and the new field are there.
    let script = format!(
        r#"set -u
f="$STOCKROOM_DATASETS_FILE"
stat -c '%i %a' "$f" > before.stat
cp "$f" before.json
'{bin}' extend orders pay || exit 11
stat -c '%i %a' "$f" > after.stat
cp "$f" after.json
ls -A "$(dirname "$f")" > dir.txt
echo "env still says: ${{STOCKROOM_ORDERS_PAYMENT_ID:-unset}}"
grep '"payment_id"' "$f" || exit 12
grep -q '"state": "paid"' "$f" || exit 13
'{bin}' extend orders refund 2> unknown.err
echo $? > unknown.code
"#,
        bin = stockroom_bin().display()
    );
    let out = stockroom(dir.path())
        .args(["run", "--", "sh", "-c", &script])
        .output()
        .expect("run");
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("env still says: unset"),
        "variables of a running process keep their old values: {stdout}"
    );
    assert!(stdout.contains("\"payment_id\": \"PAY"), "{stdout}");
    assert!(
        stderr.contains("extended orders") && stderr.contains("order/placed -> order/paid"),
        "{stderr}"
    );

    let before = read_json(&dir.path().join("before.json"));
    let after = read_json(&dir.path().join("after.json"));
    let id = before["datasets"]["orders"]["id"]
        .as_str()
        .expect("dataset id")
        .to_string();
    assert_eq!(before["datasets"]["orders"]["state"], "placed");
    assert!(before["datasets"]["orders"]["data"]["payment_id"].is_null());
    let order = &after["datasets"]["orders"];
    assert_eq!(order["id"], id.as_str(), "the same dataset, advanced");
    assert_eq!(order["state"], "paid", "{after:#}");
    assert!(
        order["data"]["payment_id"]
            .as_str()
            .is_some_and(|p| p.starts_with("PAY")),
        "{after:#}"
    );
    for key in ["order_id", "customer_id"] {
        if !before["datasets"]["orders"]["data"][key].is_null() {
            assert_eq!(
                order["data"][key], before["datasets"]["orders"]["data"][key],
                "{key} is kept"
            );
        }
    }
    assert_eq!(after["lease_id"], before["lease_id"]);
    // Atomic: a new file renamed over the old one (new inode, same 0600 mode),
    // and no temp file left beside it.
    let before_stat = std::fs::read_to_string(dir.path().join("before.stat")).expect("stat");
    let after_stat = std::fs::read_to_string(dir.path().join("after.stat")).expect("stat");
    let (inode_before, mode_before) = before_stat.trim().split_once(' ').expect("stat");
    let (inode_after, mode_after) = after_stat.trim().split_once(' ').expect("stat");
    assert_ne!(
        inode_before, inode_after,
        "rewritten by rename, not in place"
    );
    assert_eq!((mode_before, mode_after), ("600", "600"));
    let listing = std::fs::read_to_string(dir.path().join("dir.txt")).expect("listing");
    assert!(!listing.contains(".tmp"), "a temp file was left: {listing}");

    let code = std::fs::read_to_string(dir.path().join("unknown.code")).expect("code");
    let err = std::fs::read_to_string(dir.path().join("unknown.err")).expect("err");
    assert_eq!(code.trim(), "64", "{err}");
    assert!(err.contains("unknown extension \"refund\""), "{err}");
    assert!(
        err.contains("Known extensions from order/paid: ship"),
        "{err}"
    );

    assert_extended_in_pool(&demo, &id, "paid", "pay");
}

#[test]
fn extend_after_start_finds_the_lease_through_the_state_file() {
    let demo = DemoPool::start("20ms");
    started(&demo);
    let dir = tempfile::tempdir().expect("tempdir");
    write_manifest(&demo, dir.path());
    let state = dir.path().join("state");
    let out = stockroom(dir.path())
        .arg("start")
        .arg("--state-dir")
        .arg(&state)
        .output()
        .expect("start");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let recorded = read_json(&state.join("state.json"));
    let file = Path::new(recorded["datasets_file"].as_str().expect("datasets_file")).to_path_buf();
    let id = read_json(&file)["datasets"]["orders"]["id"]
        .as_str()
        .expect("dataset id")
        .to_string();

    // Two steps of the order's life, each rewriting the file.
    for (extension, state_after, field) in [
        ("pay", "paid", "payment_id"),
        ("ship", "shipped", "tracking_number"),
    ] {
        let out = stockroom(dir.path())
            .args(["extend", "orders", extension, "--json", "--state-dir"])
            .arg(&state)
            .output()
            .expect("extend");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let printed: Value = serde_json::from_slice(&out.stdout).expect("--json output");
        assert_eq!(printed["state"], state_after, "{printed}");
        let order = read_json(&file)["datasets"]["orders"].clone();
        assert_eq!(order["id"], id.as_str());
        assert_eq!(order["state"], state_after, "{order:#}");
        assert!(
            order["data"][field].is_string(),
            "{field} missing: {order:#}"
        );
        assert_extended_in_pool(&demo, &id, state_after, extension);
    }
    let order = read_json(&file)["datasets"]["orders"].clone();
    assert!(
        order["data"]["payment_id"].is_string(),
        "kept after ship: {order:#}"
    );

    let out = stockroom(dir.path())
        .args(["extend", "orders", "refund", "--state-dir"])
        .arg(&state)
        .output()
        .expect("extend");
    assert_unknown_extension(&out, "order/shipped", "none");
    assert_eq!(
        read_json(&file)["datasets"]["orders"]["state"],
        "shipped",
        "a refused extension leaves the file alone"
    );

    let out = stockroom(dir.path())
        .args(["stop", "--outcome", "passed", "--state-dir"])
        .arg(&state)
        .output()
        .expect("stop");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(pool_dataset(&demo, &id)["state"], "shipped");
}
