//! The demo shop's own API (the system under test of the demo) and the demo
//! generators' lifecycle calls acting on it, over real HTTP on loopback.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap should fail loudly

use std::time::Duration;

use serde_json::{Value, json};
use stockroom_generators::start_demo_shop;

async fn call(
    http: &reqwest::Client,
    method: &str,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let is_shop = url.contains("/shop/");
    let req = match method {
        "GET" => http.get(url),
        _ => http.post(url),
    };
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status >= 400 && is_shop {
        assert_eq!(ctype, "application/problem+json", "{status} {body}");
    }
    (status, body)
}

#[tokio::test]
async fn the_shop_api_follows_its_business_rules_and_the_demo_lifecycle_acts_on_it() {
    let mut demo = start_demo_shop(Duration::ZERO).await.unwrap();
    let shop = demo.serve_shop_api("127.0.0.1:0").await.unwrap();
    let http = reqwest::Client::new();
    let customers = demo.customers_url.clone();
    let payments = demo.payments_url.clone();
    let orders = demo.orders_url.clone();

    // A paying customer, made as the pool makes it.
    let (s, made) = call(&http, "POST", format!("{customers}/generate"),
        Some(json!({"request_id": "r1", "type": "customer", "state": "active", "attributes": {"country": "DE"}}))).await;
    assert_eq!(s, 200, "{made}");
    let mut customer = json!({"id": "ds_1", "type": "customer", "state": "active",
        "attributes": made["attributes"], "data": made["data"], "secret_fields": made["secret_fields"], "entities": made["entities"]});
    let (s, carded) = call(
        &http,
        "POST",
        format!("{payments}/extend"),
        Some(json!({"request_id": "r2", "extension": "add-card", "dataset": customer})),
    )
    .await;
    assert_eq!(s, 200, "{carded}");
    customer["state"] = json!("active-with-payment");
    customer["data"] = carded["data"].clone();
    let id = customer["data"]["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let email = customer["data"]["email"].as_str().unwrap().to_string();
    let password = customer["data"]["password"].as_str().unwrap().to_string();

    let (s, c) = call(&http, "GET", format!("{shop}/shop/customers/{id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(c["status"], "active");
    assert_eq!(c["has_card"], true);
    assert_eq!(c["email"], email.as_str());
    assert!(c.get("password").is_none(), "never shown: {c}");
    let (s, who) = call(
        &http,
        "POST",
        format!("{shop}/shop/login"),
        Some(json!({"email": email, "password": password})),
    )
    .await;
    assert_eq!((s, who["customer_id"].as_str()), (200, Some(id.as_str())));
    let (s, p) = call(
        &http,
        "POST",
        format!("{shop}/shop/login"),
        Some(json!({"email": email, "password": "wrong"})),
    )
    .await;
    assert_eq!(s, 401, "{p}");

    // One open order per customer.
    let (s, order) = call(
        &http,
        "POST",
        format!("{shop}/shop/orders"),
        Some(json!({"customer_id": id})),
    )
    .await;
    assert_eq!(s, 201, "{order}");
    assert_eq!(order["status"], "placed");
    assert!(order["total_cents"].as_u64().unwrap() > 0);
    let (s, p) = call(
        &http,
        "POST",
        format!("{shop}/shop/orders"),
        Some(json!({"customer_id": id})),
    )
    .await;
    assert_eq!(s, 409);
    assert!(p["type"].as_str().unwrap().ends_with("/open-order"), "{p}");
    let oid = order["order_id"].as_str().unwrap();
    let (s, paid) = call(&http, "POST", format!("{shop}/shop/orders/{oid}/pay"), None).await;
    assert_eq!((s, paid["status"].as_str()), (200, Some("paid")));
    let (s, _) = call(
        &http,
        "POST",
        format!("{shop}/shop/orders/{oid}/cancel"),
        None,
    )
    .await;
    assert_eq!(s, 409, "only a placed order can be cancelled");
    let (s, o) = call(&http, "GET", format!("{shop}/shop/orders/{oid}"), None).await;
    assert_eq!((s, o["status"].as_str()), (200, Some("paid")));
    let (s, _) = call(&http, "GET", format!("{shop}/shop/orders/O0"), None).await;
    assert_eq!(s, 404);
    let (s, _) = call(
        &http,
        "POST",
        format!("{shop}/shop/orders"),
        Some(json!({"nope": 1})),
    )
    .await;
    assert_eq!(s, 400);

    // A customer without a card cannot pay.
    let (_, plain) = call(
        &http,
        "POST",
        format!("{customers}/generate"),
        Some(json!({"request_id": "r3", "type": "customer", "state": "new"})),
    )
    .await;
    let plain_id = plain["data"]["customer_id"].as_str().unwrap();
    let (s, o) = call(
        &http,
        "POST",
        format!("{shop}/shop/orders"),
        Some(json!({"customer_id": plain_id})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, p) = call(
        &http,
        "POST",
        format!("{shop}/shop/orders/{}/pay", o["order_id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(s, 402, "{p}");

    // A test changes the password: verify says so, reset brings it back.
    let (s, _) = call(
        &http,
        "POST",
        format!("{shop}/shop/customers/{id}/password"),
        Some(json!({"password": "changed"})),
    )
    .await;
    assert_eq!(s, 200);
    let lifecycle = json!({"request_id": "r4", "dataset": customer});
    let (s, verdict) = call(
        &http,
        "POST",
        format!("{customers}/verify"),
        Some(lifecycle.clone()),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(verdict["valid"], false);
    assert!(
        verdict["reason"].as_str().unwrap().contains("password"),
        "{verdict}"
    );
    let (s, reset) = call(
        &http,
        "POST",
        format!("{customers}/reset"),
        Some(lifecycle.clone()),
    )
    .await;
    assert_eq!(s, 200, "{reset}");
    assert_eq!(reset["data"]["password"], password.as_str());
    let (s, _) = call(
        &http,
        "POST",
        format!("{shop}/shop/login"),
        Some(json!({"email": email, "password": password})),
    )
    .await;
    assert_eq!(s, 200, "the reset restored the password");
    let (_, verdict) = call(
        &http,
        "POST",
        format!("{customers}/verify"),
        Some(lifecycle.clone()),
    )
    .await;
    assert_eq!(verdict["valid"], true, "{verdict}");

    // An order made by the generator is verified and cleaned up by it.
    let (_, placed) = call(
        &http,
        "POST",
        format!("{orders}/generate"),
        Some(json!({"request_id": "r5",
        "type": "order", "state": "placed", "inputs": {"customer": customer}})),
    )
    .await;
    let order_ds =
        json!({"id": "ds_2", "type": "order", "state": "placed", "data": placed["data"]});
    let placed_id = placed["data"]["order_id"].as_str().unwrap();
    let (s, _) = call(
        &http,
        "GET",
        format!("{shop}/shop/orders/{placed_id}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (_, verdict) = call(
        &http,
        "POST",
        format!("{orders}/verify"),
        Some(json!({"request_id": "r6", "dataset": order_ds})),
    )
    .await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    let (s, _) = call(
        &http,
        "POST",
        format!("{orders}/cleanup"),
        Some(json!({"request_id": "r7", "dataset": order_ds})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = call(
        &http,
        "GET",
        format!("{shop}/shop/orders/{placed_id}"),
        None,
    )
    .await;
    assert_eq!(s, 404, "cleaned up");
    let (_, verdict) = call(
        &http,
        "POST",
        format!("{orders}/verify"),
        Some(json!({"request_id": "r8", "dataset": order_ds})),
    )
    .await;
    assert_eq!(verdict["valid"], false);

    // Cleanup removes the customer; a repeated cleanup is fine.
    for _ in 0..2 {
        let (s, _) = call(
            &http,
            "POST",
            format!("{customers}/cleanup"),
            Some(lifecycle.clone()),
        )
        .await;
        assert_eq!(s, 200);
    }
    let (s, _) = call(&http, "GET", format!("{shop}/shop/customers/{id}"), None).await;
    assert_eq!(s, 404);
    let (s, _) = call(&http, "POST", format!("{customers}/reset"), Some(lifecycle)).await;
    assert!(s >= 400, "a customer that is gone cannot be reset");
    assert_eq!(
        demo.shop.lock().customer_count(),
        1,
        "only the plain customer is left"
    );
    demo.shutdown().await;
}
