//! The SDK example generators (examples/generators/: customers.py with the
//! Python SDK, orders.mjs with the TypeScript SDK) stocking a real pool
//! configured as examples/generators/stockroom-pool.toml documents: a job
//! leases an order, which the pool composes from a customer the Python
//! generator made and the TypeScript generator gave a card.
//!
//! Needs `cargo build -p stockroom -p stockroom-pool` first, python3 and node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use stockroom_e2e::{Pool, http, stockroom, wait_for};

const PATIENCE: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// The documented config, with the generators' paths made absolute (the
/// pool runs in a temp dir) and a ledger file standing in for the system
/// under test, where the examples note what they create and remove.
fn example_config(ledger: &Path) -> String {
    let text = std::fs::read_to_string(repo().join("examples/generators/stockroom-pool.toml"))
        .expect("read examples/generators/stockroom-pool.toml");
    let absolute = format!("\"{}/examples/generators/", repo().display());
    let env = format!(
        "env = {{ STOCKROOM_EXAMPLE_LEDGER = {:?} }}\n",
        ledger.display().to_string()
    );
    text.replace("\"examples/generators/", &absolute)
        .replace("timeout = \"30s\"\n", &format!("timeout = \"30s\"\n{env}"))
}

fn ready(pool: &Pool, type_name: &str, state: &str) -> u64 {
    let (status, catalog) = http(&pool.addr, "GET", "/api/v1/catalog", None, None);
    assert_eq!(status, 200, "{catalog}");
    catalog["types"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["type"] == type_name)
        .flat_map(|t| t["states"].as_array().cloned().unwrap_or_default())
        .find(|s| s["state"] == state)
        .and_then(|s| s["stock"]["ready"].as_u64())
        .unwrap_or(0)
}

#[test]
fn a_pool_of_the_sdk_examples_stocks_composes_and_cleans_up() {
    let work = tempfile::tempdir().expect("tempdir");
    let ledger = work.path().join("ledger.txt");
    let pool = Pool::start_with_config(Some(&example_config(&ledger)));

    // Stock: both states reach min_ready, the order through the composition.
    wait_for(
        "customer/active and order/placed in stock",
        PATIENCE,
        || {
            (ready(&pool, "customer", "active") >= 2 && ready(&pool, "order", "placed") >= 2)
                .then_some(())
        },
    );

    std::fs::write(
        work.path().join("stockroom.toml"),
        format!(
            "version = 1\npool = \"{}\"\nacquire_timeout = \"120s\"\n\n\
             [[dataset]]\nname = \"orders\"\ntype = \"order\"\nstate = \"placed\"\n",
            pool.url()
        ),
    )
    .expect("write manifest");
    let out = stockroom(work.path())
        .args(["run", "--manifest", "stockroom.toml", "--", "sh", "-c"])
        .arg("cat \"$STOCKROOM_DATASETS_FILE\"")
        .output()
        .expect("run stockroom");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        pool.log()
    );
    let datasets: Value = serde_json::from_str(&stdout).expect("the datasets file is JSON");
    // count = 1: one object, not a list.
    let order = &datasets["datasets"]["orders"];
    let order_id = order["data"]["order_id"]
        .as_str()
        .expect("order_id")
        .to_string();
    // orders.mjs copies the card from its input: the TypeScript generator's
    // extension ran on a customer the Python generator made.
    assert!(
        order["data"]["payment_method_id"]
            .as_str()
            .is_some_and(|p| p.starts_with("pm_")),
        "{order}"
    );
    let customer_id = order["data"]["customer_id"].as_str().expect("customer_id");
    // The composed dataset carries its input.
    let customer = &order["inputs"]["customer"];
    assert_eq!(customer["state"], "active-with-payment", "{order}");
    assert_eq!(customer["data"]["customer_id"], customer_id, "{order}");
    // And so does every view of it: the API's dataset view and its page.
    let (status, view) = http(
        &pool.addr,
        "GET",
        &format!("/api/v1/datasets/{}", order["id"].as_str().expect("id")),
        None,
        None,
    );
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["inputs"]["customer"]["id"], customer["id"], "{view}");
    let (status, _, page) = stockroom_e2e::http_raw(
        &pool.addr,
        "GET",
        &format!("/ui/datasets/{}", order["id"].as_str().expect("id")),
        &[("Host".to_string(), pool.addr.clone())],
        b"",
    );
    let page = page.as_str().unwrap_or_default().to_string();
    assert_eq!(status, 200, "{page}");
    let inputs = page
        .split_once("id=\"dataset-inputs\"")
        .map(|(_, rest)| rest.split_once("</dd>").map_or(rest, |(dd, _)| dd))
        .unwrap_or_default();
    assert!(
        inputs.contains("customer: ")
            && inputs.contains(customer["id"].as_str().expect("the input's id"))
            && inputs.contains("customer/active-with-payment"),
        "the page names the order's input: {page}"
    );
    let entities: Vec<&str> = order["entities"]
        .as_array()
        .expect("entities")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        entities.contains(&format!("order:{order_id}").as_str()),
        "{entities:?}"
    );
    assert!(
        entities.contains(&format!("customer:{customer_id}").as_str()),
        "the customer's entities join the order: {entities:?}"
    );

    // The generators made what the pool stocked, in the system under test.
    let created = std::fs::read_to_string(&ledger).expect("the examples wrote their ledger");
    assert!(
        created
            .lines()
            .any(|l| l == format!("created order:{order_id}")),
        "{created}"
    );
    // Cleanup: once the job is done, the consumed order is removed from it.
    wait_for("the order's cleanup call", PATIENCE, || {
        std::fs::read_to_string(&ledger)
            .ok()?
            .lines()
            .any(|l| l == format!("removed order:{order_id}"))
            .then_some(())
    });
}
