//! The catalog graph and the planner over it.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap should fail loudly

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use stockroom_generators::{
    CatalogGraph, Goal, GraphError, Operation, PlanContext, PlanError, PlanStep, Route, plan,
};
use stockroom_protocol::api::{GeneratorHealth, Production, StockCounts};
use stockroom_protocol::generator::Capabilities;

fn caps(v: Value) -> Capabilities {
    serde_json::from_value(v).unwrap()
}

fn state(t: &str, s: &str, requires: Value) -> Value {
    json!({"type": t, "state": s, "fields": ["id"], "attributes": {"country": ["DE", "US"]}, "requires": requires})
}

fn ext(name: &str, t: &str, from: &str, to: &str) -> Value {
    json!({"name": name, "type": t, "from": from, "to": to, "fields": [format!("{name}_id")]})
}

fn req(name: &str, t: &str, s: &str) -> Value {
    json!({"name": name, "type": t, "state": s})
}

/// The shop: customers make new/active, payments add a card, orders need a paying customer.
fn shop() -> Vec<(String, Capabilities)> {
    vec![
        (
            "customers".into(),
            caps(json!({
                "produces": [state("customer", "new", json!([])), state("customer", "active", json!([]))],
                "extensions": [ext("verify-email", "customer", "new", "active")]
            })),
        ),
        (
            "payments".into(),
            caps(
                json!({"extensions": [ext("add-card", "customer", "active", "active-with-payment")]}),
            ),
        ),
        (
            "orders".into(),
            caps(json!({
                "produces": [state("order", "placed", json!([req("customer", "customer", "active-with-payment")]))],
                "extensions": [ext("pay", "order", "placed", "paid"), ext("ship", "order", "paid", "shipped")]
            })),
        ),
    ]
}

#[test]
fn the_shop_builds_with_derived_states_and_lookups() {
    let g = CatalogGraph::build(shop()).unwrap();
    assert_eq!(
        g.known_states(),
        vec![
            "customer/active",
            "customer/active-with-payment",
            "customer/new",
            "order/paid",
            "order/placed",
            "order/shipped"
        ]
    );
    let awp = g.state("customer", "active-with-payment").unwrap();
    assert_eq!(awp.declared_by, None);
    assert_eq!(
        awp.fields,
        vec!["id".to_string(), "add-card_id".to_string()]
    );
    assert_eq!(awp.attributes["country"].len(), 2);
    let shipped = g.state("order", "shipped").unwrap();
    assert_eq!(shipped.fields, vec!["id", "pay_id", "ship_id"]);
    assert_eq!(g.producer("customer", "active"), Some("customers"));
    assert_eq!(
        g.requires("order", "placed")[0].state,
        "active-with-payment"
    );
    assert_eq!(
        g.extensions_into("customer", "active")[0].spec.name,
        "verify-email"
    );
    assert_eq!(
        g.extensions_from("customer", "active")[0].generator,
        "payments"
    );
    assert_eq!(g.extension("order", "ship").unwrap().spec.from, "paid");
    assert_eq!(
        g.routes("customer", "active"),
        &[
            Route::Generate {
                generator: "customers".into(),
                requires: vec![]
            },
            Route::Extend {
                generator: "customers".into(),
                extension: "verify-email".into(),
                from: "new".into()
            },
        ]
    );
}

#[test]
fn the_catalog_lists_productions_stock_and_availability() {
    let g = CatalogGraph::build(shop()).unwrap();
    let health = vec![GeneratorHealth {
        name: "payments".into(),
        available: false,
        ..GeneratorHealth::default()
    }];
    let catalog = g.to_catalog(
        |t, s| StockCounts {
            ready: if (t, s) == ("customer", "new") { 7 } else { 0 },
            ..StockCounts::default()
        },
        &health,
    );
    assert_eq!(catalog.types.len(), 2);
    assert_eq!(catalog.find("customer", "new").unwrap().stock.ready, 7);
    assert!(catalog.find("customer", "active").unwrap().available);
    // Payments is down: a paying customer, and every order, cannot be made.
    assert!(
        !catalog
            .find("customer", "active-with-payment")
            .unwrap()
            .available
    );
    assert!(!catalog.find("order", "shipped").unwrap().available);
    assert_eq!(
        catalog.find("order", "paid").unwrap().produced_by,
        vec![Production::Extend {
            generator: "orders".into(),
            from: "placed".into(),
            extension: "pay".into()
        }]
    );
    let names: Vec<_> = catalog
        .generators
        .iter()
        .map(|h| (h.name.as_str(), h.available))
        .collect();
    assert_eq!(
        names,
        vec![("customers", true), ("payments", false), ("orders", true)]
    );
    let text = serde_json::to_value(&catalog).unwrap();
    assert_eq!(
        text["types"][1]["states"][1]["produced_by"][0]["kind"],
        "generate"
    );
}

#[test]
fn every_problem_is_reported_and_the_rest_still_works() {
    let mut all = shop();
    all.push((
        "impostor".into(),
        caps(json!({
            "produces": [state("customer", "new", json!([])), state("invoice", "open", json!([req("order", "order", "cancelled")]))],
            "extensions": [ext("refund", "order", "returned", "refunded"), ext("pay", "order", "placed", "paid")]
        })),
    ));
    let (graph, problems) = CatalogGraph::build_lenient(all.clone());
    let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(
        problems.contains(&GraphError::DuplicateState {
            type_name: "customer".into(),
            state: "new".into(),
            generators: vec!["customers".into(), "impostor".into()],
        }),
        "{texts:#?}"
    );
    assert!(problems.iter().any(
        |p| matches!(p, GraphError::DuplicateExtension { extension, .. } if extension == "pay")
    ));
    assert!(problems.iter().any(|p| matches!(p,
        GraphError::UnknownRequiredState { generator, requirement, .. } if generator == "impostor" && requirement.state == "cancelled")));
    assert!(problems.iter().any(|p| matches!(p,
        GraphError::UnknownExtensionSource { extension, state, .. } if extension == "refund" && state == "returned")));
    assert_eq!(problems.len(), 4, "{texts:#?}");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("requires \"order\" = order/cancelled, which is unknown")),
        "{texts:#?}"
    );
    // The first claim wins; the invoice state is known but cannot be made.
    assert_eq!(graph.producer("customer", "new"), Some("customers"));
    assert_eq!(graph.extension("order", "pay").unwrap().generator, "orders");
    assert!(graph.routes("invoice", "open").is_empty());
    assert!(graph.state("order", "refunded").is_none());
    assert_eq!(CatalogGraph::build(all).unwrap_err().len(), 4);
}

#[test]
fn cycles_through_requires_and_extensions_are_named() {
    let looped = vec![
        (
            "a".to_string(),
            caps(json!({"produces": [state("x", "one", json!([req("two", "x", "two")]))]})),
        ),
        (
            "b".to_string(),
            caps(json!({"produces": [state("x", "three", json!([]))],
                        "extensions": [ext("up", "x", "three", "two"), ext("back", "x", "one", "three")]})),
        ),
    ];
    // x/one requires x/two, which extends x/three, which extends x/one.
    let problems = CatalogGraph::build(looped.clone()).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let GraphError::Cycle { path, .. } = &problems[0] else {
        panic!("{problems:?}")
    };
    assert_eq!(path.first(), path.last());
    assert_eq!(path.len(), 4, "{path:?}");
    for s in ["x/one", "x/two", "x/three"] {
        assert!(path.contains(&s.to_string()), "{path:?}");
    }
    let text = problems[0].to_string();
    assert!(
        text.contains("x/one is made from x/two is made from x/three is made from x/one"),
        "{text}"
    );
    // The lenient graph lost the closing route and has no cycle left.
    let (graph, _) = CatalogGraph::build_lenient(looped);
    let remaining: usize = graph.states().map(|s| s.routes.len()).sum();
    assert_eq!(remaining, 3);

    let self_loop = vec![(
        "c".to_string(),
        caps(
            json!({"produces": [state("y", "s", json!([]))], "extensions": [ext("again", "y", "s", "s")]}),
        ),
    )];
    let problems = CatalogGraph::build(self_loop).unwrap_err();
    assert!(
        matches!(&problems[0], GraphError::Cycle { path, .. } if path == &vec!["y/s".to_string(), "y/s".to_string()])
    );
}

struct World {
    ready: BTreeMap<(&'static str, &'static str), u64>,
    latency: BTreeMap<(&'static str, Operation), u64>,
    down: Vec<&'static str>,
}

impl World {
    fn plan(&self, g: &CatalogGraph, t: &str, s: &str, goal: Goal) -> Result<PlanStep, PlanError> {
        let ready = |t: &str, s: &str| {
            self.ready
                .iter()
                .find(|((a, b), _)| *a == t && *b == s)
                .map_or(0, |(_, n)| *n)
        };
        let latency = |g: &str, op: Operation| {
            self.latency
                .iter()
                .find(|((n, o), _)| *n == g && *o == op)
                .map(|(_, ms)| Duration::from_millis(*ms))
        };
        let available = |g: &str| !self.down.contains(&g);
        let ctx = PlanContext {
            ready: &ready,
            latency: &latency,
            available: &available,
            unknown_latency: Duration::from_secs(1),
        };
        plan(g, t, s, goal, &ctx)
    }
}

fn kinds(step: &PlanStep) -> String {
    match step {
        PlanStep::TakeReady { type_name, state } => format!("ready {type_name}/{state}"),
        PlanStep::Generate {
            generator,
            state,
            inputs,
            ..
        } => {
            let ins: Vec<String> = inputs
                .iter()
                .map(|(n, s)| format!("{n}={}", kinds(s)))
                .collect();
            format!("generate {state} by {generator}[{}]", ins.join(", "))
        }
        PlanStep::Extend {
            extension, source, ..
        } => format!("{extension}({})", kinds(source)),
    }
}

#[test]
fn the_planner_extends_when_that_is_cheaper_and_generates_when_it_is_not() {
    let g = CatalogGraph::build(shop()).unwrap();
    let mut world = World {
        ready: [(("customer", "new"), 1)].into(),
        latency: [
            (("customers", Operation::Generate), 900),
            (("customers", Operation::Extend), 100),
        ]
        .into(),
        down: vec![],
    };
    let p = world.plan(&g, "customer", "active", Goal::Produce).unwrap();
    assert_eq!(kinds(&p), "verify-email(ready customer/new)");
    assert_eq!(p.cost(), Duration::from_millis(100));

    // Extending got slow: generating directly is cheaper.
    world.latency.insert(("customers", Operation::Extend), 2000);
    let p = world.plan(&g, "customer", "active", Goal::Produce).unwrap();
    assert_eq!(kinds(&p), "generate active by customers[]");
    assert_eq!(p.cost(), Duration::from_millis(900));

    // Nothing ready to extend: generate new then extend costs 900 + 100 > 900.
    world.latency.insert(("customers", Operation::Extend), 100);
    world.ready.clear();
    assert_eq!(
        kinds(&world.plan(&g, "customer", "active", Goal::Produce).unwrap()),
        "generate active by customers[]"
    );

    // Equal costs: extension beats generation.
    world.ready.insert(("customer", "new"), 1);
    world.latency.insert(("customers", Operation::Extend), 900);
    assert_eq!(
        kinds(&world.plan(&g, "customer", "active", Goal::Produce).unwrap()),
        "verify-email(ready customer/new)"
    );
}

#[test]
fn the_planner_takes_stock_first_and_builds_requirements_recursively() {
    let g = CatalogGraph::build(shop()).unwrap();
    let mut world = World {
        ready: [(("order", "placed"), 2)].into(),
        latency: [
            (("customers", Operation::Generate), 300),
            (("customers", Operation::Extend), 100),
            (("payments", Operation::Extend), 200),
            (("orders", Operation::Generate), 400),
            (("orders", Operation::Extend), 50),
        ]
        .into(),
        down: vec![],
    };
    assert_eq!(
        kinds(&world.plan(&g, "order", "placed", Goal::Obtain).unwrap()),
        "ready order/placed"
    );
    let shipped = world.plan(&g, "order", "shipped", Goal::Obtain).unwrap();
    assert_eq!(kinds(&shipped), "ship(pay(ready order/placed))");
    assert_eq!(shipped.cost(), Duration::from_millis(100));

    world.ready.clear();
    let placed = world.plan(&g, "order", "placed", Goal::Produce).unwrap();
    assert_eq!(
        kinds(&placed),
        "generate placed by orders[customer=add-card(generate active by customers[])]"
    );
    assert_eq!(placed.cost(), Duration::from_millis(400 + 200 + 300));
    assert!(placed.to_string().contains("input customer:"), "{placed}");

    // A ready customer/new is used once per plan, and only by the cheapest route.
    world.ready.insert(("customer", "new"), 1);
    let placed = world.plan(&g, "order", "placed", Goal::Produce).unwrap();
    assert_eq!(
        kinds(&placed),
        "generate placed by orders[customer=add-card(verify-email(ready customer/new))]"
    );

    world.down.push("payments");
    assert_eq!(
        world.plan(&g, "order", "placed", Goal::Produce),
        Err(PlanError::NoRoute("order/placed".into()))
    );
    assert_eq!(
        world.plan(&g, "order", "lost", Goal::Produce),
        Err(PlanError::UnknownState("order/lost".into()))
    );
}

#[test]
fn two_inputs_of_one_state_need_two_ready_datasets() {
    let g = CatalogGraph::build(vec![(
        "m".into(),
        caps(json!({"produces": [state("pair", "made", json!([req("left", "item", "ok"), req("right", "item", "ok")])),
                                 state("item", "ok", json!([]))]})),
    )])
    .unwrap();
    let world = World {
        ready: [(("item", "ok"), 1)].into(),
        latency: BTreeMap::new(),
        down: vec![],
    };
    let p = world.plan(&g, "pair", "made", Goal::Produce).unwrap();
    assert_eq!(
        kinds(&p),
        "generate made by m[left=ready item/ok, right=generate ok by m[]]"
    );
    assert_eq!(
        p.cost(),
        Duration::from_secs(2),
        "unknown latencies count one second each"
    );
}
