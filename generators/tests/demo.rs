//! The demo shop and the documented Python example, called for real and
//! checked against the contract.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap should fail loudly

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{PATIENCE, workspace_root};
use serde_json::json;
use stockroom_generators::{
    AnyGenerator, CatalogGraph, GeneratorClient, HealthPolicy, TrackedGenerator, start_demo_shop,
};
use stockroom_protocol::HumanDuration;
use stockroom_protocol::dataset::Dataset;
use stockroom_protocol::generator::{ExtendRequest, GenerateRequest};
use stockroom_protocol::pool_config::{GeneratorConfig, GeneratorEndpoint};
use tokio::io::AsyncBufReadExt;

type Gens = BTreeMap<String, TrackedGenerator>;

async fn connect(configs: Vec<GeneratorConfig>) -> (Gens, CatalogGraph) {
    let mut gens = BTreeMap::new();
    let mut caps = Vec::new();
    for c in &configs {
        let g = TrackedGenerator::new(AnyGenerator::from_config(c), HealthPolicy::default());
        caps.push((c.name.clone(), g.capabilities().await.unwrap()));
        gens.insert(c.name.clone(), g);
    }
    (gens, CatalogGraph::build(caps).unwrap())
}

/// Generates through the checked path, as the pool will.
async fn make(
    gens: &Gens,
    graph: &CatalogGraph,
    t: &str,
    s: &str,
    attrs: serde_json::Value,
    inputs: BTreeMap<String, Dataset>,
) -> Dataset {
    let spec = graph.state(t, s).unwrap().as_produced_state();
    let generator = graph.producer(t, s).unwrap();
    let request = GenerateRequest {
        request_id: format!("req-{t}-{s}"),
        type_name: t.into(),
        state: s.into(),
        attributes: serde_json::from_value(attrs).unwrap(),
        inputs,
    };
    let answer = gens[generator].generate(&spec, &request).await.unwrap();
    Dataset {
        id: format!("ds-{t}-{s}"),
        type_name: t.into(),
        state: s.into(),
        attributes: answer.attributes,
        data: answer.data,
        secret_fields: answer.secret_fields,
        entities: answer.entities,
        inputs: Default::default(),
    }
}

async fn advance(gens: &Gens, graph: &CatalogGraph, dataset: Dataset, extension: &str) -> Dataset {
    let ext = graph.extension(&dataset.type_name, extension).unwrap();
    let target = graph.state(&dataset.type_name, &ext.spec.to).unwrap();
    let request = ExtendRequest {
        request_id: format!("req-{extension}"),
        extension: extension.into(),
        dataset: dataset.clone(),
    };
    let answer = gens[&ext.generator]
        .extend(&ext.spec, &target.fields, &request)
        .await
        .unwrap();
    Dataset {
        state: ext.spec.to.clone(),
        data: answer.data,
        secret_fields: answer.secret_fields,
        entities: answer.entities,
        inputs: Default::default(),
        ..dataset
    }
}

#[tokio::test]
async fn the_demo_shop_serves_a_whole_order_lifecycle_that_passes_validation() {
    let shop = start_demo_shop(Duration::from_millis(20)).await.unwrap();
    let (gens, graph) = connect(shop.generator_configs()).await;
    assert_eq!(graph.known_states().len(), 7, "{:?}", graph.known_states());
    // The one reusable state: reset after a passed run (docs/pool.md, "The demo").
    let reusable: Vec<String> = graph
        .known_states()
        .into_iter()
        .filter(|k| {
            k.split_once('/')
                .and_then(|(t, s)| graph.state(t, s))
                .is_some_and(|i| i.reusable)
        })
        .collect();
    assert_eq!(reusable, vec!["customer/returning".to_string()]);

    let new = make(
        &gens,
        &graph,
        "customer",
        "new",
        json!({"country": "FR"}),
        BTreeMap::new(),
    )
    .await;
    assert!(new.data["customer_id"].as_str().unwrap().starts_with('C'));
    assert!(new.data["email"].as_str().unwrap().ends_with("@x.test"));
    assert_eq!(new.secret_fields, vec!["password".to_string()]);
    assert_eq!(new.attributes["country"].as_str(), "FR");

    let active = advance(&gens, &graph, new, "verify-email").await;
    let paying = advance(&gens, &graph, active, "add-card").await;
    assert!(paying.secret_fields.contains(&"card.number".to_string()));
    assert_eq!(paying.entities.len(), 2, "{:?}", paying.entities);

    let customer_id = paying.data["customer_id"].clone();
    let placed = make(
        &gens,
        &graph,
        "order",
        "placed",
        json!({}),
        [("customer".to_string(), paying)].into(),
    )
    .await;
    assert_eq!(placed.data["customer_id"], customer_id);
    assert_eq!(
        placed.attributes["country"].as_str(),
        "FR",
        "inherited from the customer"
    );
    let shipped = advance(
        &gens,
        &graph,
        advance(&gens, &graph, placed, "pay").await,
        "ship",
    )
    .await;
    assert!(
        shipped.data["tracking_number"]
            .as_str()
            .unwrap()
            .starts_with("TRK")
    );
    assert!(shipped.data["payment_id"].is_string());

    let direct = make(
        &gens,
        &graph,
        "customer",
        "active",
        json!({"country": "US"}),
        BTreeMap::new(),
    )
    .await;
    assert_ne!(direct.data["customer_id"], customer_id);
    for g in gens.values() {
        let h = g.health();
        assert!(h.available && h.failure_rate == Some(0.0), "{h:?}");
    }
    shop.shutdown().await;
}

#[tokio::test]
async fn the_demo_shop_refuses_what_it_cannot_do() {
    let shop = start_demo_shop(Duration::ZERO).await.unwrap();
    let (gens, _) = connect(shop.generator_configs()).await;
    let request: GenerateRequest =
        serde_json::from_value(json!({"type": "order", "state": "placed"})).unwrap();
    let err = gens["orders"]
        .client()
        .generate(&request)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("got HTTP status 422: input `customer`"),
        "{err}"
    );
}

fn example_argv() -> Vec<String> {
    vec![
        "python3".into(),
        workspace_root()
            .join("examples/generators/customers.py")
            .display()
            .to_string(),
    ]
}

#[tokio::test]
async fn the_documented_python_example_works_as_a_command_generator() {
    let config = GeneratorConfig {
        name: "customers".into(),
        endpoint: GeneratorEndpoint::Command(example_argv()),
        timeout: HumanDuration(PATIENCE),
        concurrency: 2,
        env: Default::default(),
        cwd: None,
    };
    let (gens, graph) = connect(vec![config]).await;
    let new = make(
        &gens,
        &graph,
        "customer",
        "new",
        json!({"country": "DE"}),
        BTreeMap::new(),
    )
    .await;
    assert_eq!(new.attributes["country"].as_str(), "DE");
    let active = advance(&gens, &graph, new, "verify-email").await;
    assert!(active.data["email_verified_at"].is_string());

    let bad: GenerateRequest =
        serde_json::from_value(json!({"type": "customer", "state": "gone"})).unwrap();
    let err = gens["customers"].client().generate(&bad).await.unwrap_err();
    assert!(
        err.stderr()
            .unwrap()
            .contains("cannot generate customer/gone"),
        "{err}"
    );
}

#[tokio::test]
async fn the_documented_python_example_works_as_an_http_generator() {
    let mut child = tokio::process::Command::new("python3")
        .arg(&example_argv()[1])
        .args(["serve", "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = first.strip_prefix("listening on ").unwrap().to_string();
    let config = GeneratorConfig {
        name: "customers".into(),
        endpoint: GeneratorEndpoint::Http(url),
        timeout: HumanDuration(PATIENCE),
        concurrency: 2,
        env: Default::default(),
        cwd: None,
    };
    let (gens, graph) = connect(vec![config]).await;
    let active = make(
        &gens,
        &graph,
        "customer",
        "active",
        json!({"country": "US"}),
        BTreeMap::new(),
    )
    .await;
    assert!(active.entities[0].starts_with("customer:C"));
    child.kill().await.unwrap();
}
