//! The demo shop's three generator services (real HTTP on loopback), acting
//! on the shared in-memory [`Shop`]:
//!
//! - `customers` produces `customer/new` and `customer/active` (registering
//!   the customer in the shop), and offers the extension `verify-email`
//!   (new → active); it answers cleanup (the customer is removed), reset (its
//!   password, status and card are as made, open orders cancelled) and verify
//!   (it still exists with the stored password) for every customer state.
//!   It also produces `customer/returning`, a verified customer that is
//!   reusable: a login account tests may change (a new password), reset and
//!   back in stock after a passed run;
//! - `payments` offers `add-card` (customer active → active-with-payment, a
//!   state derived from the extension);
//! - `orders` produces `order/placed` from a `customer/active-with-payment`
//!   (one open order per customer) and offers `pay` (placed → paid) and
//!   `ship` (paid → shipped); it answers cleanup and verify for orders.
//!
//! `generate`, `extend` and the lifecycle calls answer after the given
//! latency; `capabilities` answers at once.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use stockroom_protocol::attributes::AttrValue;
use stockroom_protocol::generator::{
    Capabilities, ExtendAnswer, ExtendRequest, ExtensionSpec, GenerateAnswer, GenerateRequest,
    LifecycleCall, LifecycleRequest, ProducedState, Requirement, ResetAnswer, VerifyAnswer,
};

use super::shop::{Customer, Shop, ShopError};

const COUNTRIES: [&str; 3] = ["DE", "US", "FR"];

/// One of the three demo services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Customers,
    Payments,
    Orders,
}

/// What a service's handlers share.
pub(crate) struct ServiceState {
    pub service: Service,
    pub latency: Duration,
    pub next_id: AtomicU64,
    pub shop: Shop,
}

impl ServiceState {
    fn next(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// The routes of one service.
pub(crate) fn router(state: Arc<ServiceState>) -> Router {
    Router::new()
        .route("/capabilities", get(capabilities))
        .route("/generate", post(generate))
        .route("/extend", post(extend))
        .route("/cleanup", post(cleanup))
        .route("/reset", post(reset))
        .route("/verify", post(verify))
        .with_state(state)
}

fn countries() -> std::collections::BTreeMap<String, Vec<AttrValue>> {
    [(
        "country".to_string(),
        COUNTRIES.iter().map(|c| AttrValue::from(*c)).collect(),
    )]
    .into()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn customer_state(
    state: &str,
    description: &str,
    fields: &[&str],
    reusable: bool,
) -> ProducedState {
    ProducedState {
        type_name: "customer".to_string(),
        state: state.to_string(),
        description: Some(description.to_string()),
        attributes: countries(),
        fields: strings(fields),
        secret_fields: strings(&["password"]),
        requires: Vec::new(),
        reusable,
        lifecycle: LifecycleCall::ALL.to_vec(),
    }
}

fn extension(
    name: &str,
    type_name: &str,
    from: &str,
    to: &str,
    fields: &[&str],
    description: &str,
) -> ExtensionSpec {
    ExtensionSpec {
        name: name.to_string(),
        type_name: type_name.to_string(),
        from: from.to_string(),
        to: to.to_string(),
        fields: strings(fields),
        description: Some(description.to_string()),
    }
}

/// The capabilities of one demo service.
pub(crate) fn capabilities_of(service: Service) -> Capabilities {
    const CUSTOMER: [&str; 4] = ["customer_id", "email", "password", "country"];
    const VERIFIED: [&str; 5] = [
        "customer_id",
        "email",
        "password",
        "country",
        "email_verified_at",
    ];
    match service {
        Service::Customers => Capabilities {
            produces: vec![
                customer_state(
                    "new",
                    "registered customer, email not verified yet",
                    &CUSTOMER,
                    false,
                ),
                customer_state("active", "verified customer", &VERIFIED, false),
                customer_state(
                    "returning",
                    "verified customer that suites share, one job at a time: reset after a passed run",
                    &VERIFIED,
                    true,
                ),
            ],
            extensions: vec![extension(
                "verify-email",
                "customer",
                "new",
                "active",
                &["email_verified_at"],
                "verified customer",
            )],
        },
        Service::Payments => Capabilities {
            produces: Vec::new(),
            extensions: vec![extension(
                "add-card",
                "customer",
                "active",
                "active-with-payment",
                &["payment_method_id", "card.brand", "card.last4"],
                "verified customer with a saved card",
            )],
        },
        Service::Orders => Capabilities {
            produces: vec![ProducedState {
                type_name: "order".to_string(),
                state: "placed".to_string(),
                description: Some("order placed by a paying customer, not paid yet".to_string()),
                attributes: countries(),
                fields: strings(&[
                    "order_id",
                    "customer_id",
                    "items",
                    "total.amount",
                    "total.currency",
                ]),
                secret_fields: Vec::new(),
                requires: vec![Requirement {
                    name: "customer".to_string(),
                    type_name: "customer".to_string(),
                    state: "active-with-payment".to_string(),
                }],
                reusable: false,
                lifecycle: vec![LifecycleCall::Cleanup, LifecycleCall::Verify],
            }],
            extensions: vec![
                extension(
                    "pay",
                    "order",
                    "placed",
                    "paid",
                    &["payment_id"],
                    "order paid",
                ),
                extension(
                    "ship",
                    "order",
                    "paid",
                    "shipped",
                    &["tracking_number"],
                    "order paid and shipped",
                ),
            ],
        },
    }
}

async fn capabilities(State(svc): State<Arc<ServiceState>>) -> Json<Capabilities> {
    Json(capabilities_of(svc.service))
}

fn refuse(message: String) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, message).into_response()
}

fn refused_by_shop(e: ShopError) -> Response {
    (StatusCode::CONFLICT, format!("the shop refused: {e}")).into_response()
}

fn random_text() -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0);
    format!("{:016x}", h.finish())
}

fn country_for(request: &GenerateRequest, n: u64) -> String {
    request
        .attributes
        .get("country")
        .map(|c| c.as_str().to_string())
        .or_else(|| {
            request
                .inputs
                .values()
                .find_map(|d| d.attributes.get("country").map(|c| c.as_str().to_string()))
        })
        .unwrap_or_else(|| COUNTRIES[(n % 3) as usize].to_string())
}

fn text<'a>(data: &'a Value, key: &str) -> Option<&'a str> {
    data.get(key).and_then(Value::as_str)
}

async fn generate(
    State(svc): State<Arc<ServiceState>>,
    Json(request): Json<GenerateRequest>,
) -> Response {
    tokio::time::sleep(svc.latency).await;
    let n = svc.next();
    let country = country_for(&request, n);
    if !COUNTRIES.contains(&country.as_str()) {
        return refuse(format!("country must be one of {}", COUNTRIES.join(", ")));
    }
    let attributes = [("country".to_string(), AttrValue::from(country.clone()))].into();
    let answer = match (
        svc.service,
        request.type_name.as_str(),
        request.state.as_str(),
    ) {
        (Service::Customers, "customer", state @ ("new" | "active" | "returning")) => {
            let id = format!("C{n}");
            let email = format!("{}@x.test", id.to_lowercase());
            let password = format!("pw-{}", random_text());
            let mut data = json!({
                "customer_id": id,
                "email": email,
                "password": password,
                "country": country,
            });
            let registered = svc.shop.lock().register(Customer {
                customer_id: id.clone(),
                email,
                password,
                country,
                status: "new".to_string(),
                has_card: false,
                orders: Vec::new(),
            });
            if let Err(e) = registered {
                return refused_by_shop(e);
            }
            if state != "new" {
                if let Err(e) = svc.shop.lock().verify_email(&id) {
                    return refused_by_shop(e);
                }
                data["email_verified_at"] = json!("2025-01-01T00:00:00Z");
            }
            GenerateAnswer {
                attributes,
                data,
                secret_fields: strings(&["password"]),
                entities: vec![format!("customer:{id}")],
            }
        }
        (Service::Orders, "order", "placed") => {
            let Some(customer) = request.inputs.get("customer") else {
                return refuse(
                    "input `customer` (a customer/active-with-payment) is required".to_string(),
                );
            };
            let Some(customer_id) = text(&customer.data, "customer_id") else {
                return refuse("input `customer` has no customer_id".to_string());
            };
            let id = format!("O{n}");
            let placed = {
                let mut shop = svc.shop.lock();
                shop.adopt_customer(&customer.data, &customer.state);
                shop.place_order(&id, customer_id, 3980)
            };
            if let Err(e) = placed {
                return refused_by_shop(e);
            }
            GenerateAnswer {
                attributes,
                data: json!({
                    "order_id": id,
                    "customer_id": customer_id,
                    "items": [{"sku": "SKU-1", "quantity": 2, "price": "19.90"}],
                    "total": {"amount": "39.80", "currency": "EUR"},
                }),
                secret_fields: Vec::new(),
                entities: vec![format!("order:{id}")],
            }
        }
        (_, t, s) => return refuse(format!("this service does not generate {t}/{s}")),
    };
    Json(answer).into_response()
}

async fn extend(
    State(svc): State<Arc<ServiceState>>,
    Json(request): Json<ExtendRequest>,
) -> Response {
    tokio::time::sleep(svc.latency).await;
    let n = svc.next();
    let dataset = request.dataset;
    let Value::Object(old) = dataset.data else {
        return refuse("dataset data must be an object".to_string());
    };
    let mut data: Map<String, Value> = old;
    let mut secret_fields = dataset.secret_fields;
    let mut entities = dataset.entities;
    let wanted = (
        svc.service,
        dataset.type_name.as_str(),
        request.extension.as_str(),
        dataset.state.as_str(),
    );
    if dataset.type_name == "customer" {
        svc.shop
            .lock()
            .adopt_customer(&Value::Object(data.clone()), &dataset.state);
    }
    let id_of = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_string);
    let customer_id = id_of("customer_id").unwrap_or_default();
    let order_id = id_of("order_id").unwrap_or_default();
    let done = match wanted {
        (Service::Customers, "customer", "verify-email", "new") => {
            data.insert(
                "email_verified_at".to_string(),
                json!("2025-01-01T00:00:00Z"),
            );
            svc.shop.lock().verify_email(&customer_id)
        }
        (Service::Payments, "customer", "add-card", "active") => {
            let pm = format!("pm_{n}");
            data.insert("payment_method_id".to_string(), json!(pm));
            data.insert(
                "card".to_string(),
                json!({"brand": "visa", "last4": "4242", "number": "4242424242424242"}),
            );
            secret_fields.push("card.number".to_string());
            entities.push(format!("payment_method:{pm}"));
            svc.shop.lock().add_card(&customer_id)
        }
        (Service::Orders, "order", "pay", "placed") => {
            data.insert("payment_id".to_string(), json!(format!("PAY{n}")));
            svc.shop.lock().pay(&order_id).map(drop)
        }
        (Service::Orders, "order", "ship", "paid") => {
            data.insert("tracking_number".to_string(), json!(format!("TRK{n}")));
            svc.shop.lock().ship(&order_id).map(drop)
        }
        (_, t, e, s) => return refuse(format!("this service has no extension {e:?} from {t}/{s}")),
    };
    if let Err(e) = done {
        return refused_by_shop(e);
    }
    Json(ExtendAnswer {
        data: Value::Object(data),
        secret_fields,
        entities,
    })
    .into_response()
}

/// Cleanup: the dataset was consumed or discarded; remove it from the shop.
async fn cleanup(
    State(svc): State<Arc<ServiceState>>,
    Json(request): Json<LifecycleRequest>,
) -> Response {
    tokio::time::sleep(svc.latency).await;
    let d = &request.dataset;
    let mut shop = svc.shop.lock();
    match (svc.service, d.type_name.as_str()) {
        (Service::Customers, "customer") => {
            shop.remove_customer(text(&d.data, "customer_id").unwrap_or_default());
        }
        (Service::Orders, "order") => {
            shop.remove_order(text(&d.data, "order_id").unwrap_or_default());
        }
        (_, t) => return refuse(format!("this service does not clean up {t} datasets")),
    }
    Json(json!({})).into_response()
}

/// Reset: the customer as it was made (password, status, card), no open orders.
async fn reset(
    State(svc): State<Arc<ServiceState>>,
    Json(request): Json<LifecycleRequest>,
) -> Response {
    tokio::time::sleep(svc.latency).await;
    let d = request.dataset;
    if (svc.service, d.type_name.as_str()) != (Service::Customers, "customer") {
        return refuse(format!(
            "this service does not reset {} datasets",
            d.type_name
        ));
    }
    let (Some(id), Some(password)) = (text(&d.data, "customer_id"), text(&d.data, "password"))
    else {
        return refuse("a customer dataset needs customer_id and password".to_string());
    };
    let status = if d.state == "new" { "new" } else { "active" };
    let has_card = d.state == "active-with-payment";
    if let Err(e) = svc
        .shop
        .lock()
        .reset_customer(id, password, status, has_card)
    {
        return refused_by_shop(e);
    }
    Json(ResetAnswer {
        data: d.data,
        secret_fields: d.secret_fields,
        entities: d.entities,
    })
    .into_response()
}

/// Verify: does the dataset still hold in the shop?
async fn verify(
    State(svc): State<Arc<ServiceState>>,
    Json(request): Json<LifecycleRequest>,
) -> Response {
    tokio::time::sleep(svc.latency).await;
    let d = &request.dataset;
    let shop = svc.shop.lock();
    let problem: Option<String> = match (svc.service, d.type_name.as_str()) {
        (Service::Customers, "customer") => {
            let id = text(&d.data, "customer_id").unwrap_or_default();
            match shop.customer(id) {
                Err(e) => Some(e.detail),
                Ok(c) if Some(c.password.as_str()) != text(&d.data, "password") => {
                    Some(format!("customer {id}'s password was changed"))
                }
                Ok(c) if (c.status == "new") != (d.state == "new") => {
                    Some(format!("customer {id} is {}", c.status))
                }
                Ok(c) if !c.has_card && d.state == "active-with-payment" => {
                    Some(format!("customer {id} has no card"))
                }
                Ok(_) => None,
            }
        }
        (Service::Orders, "order") => {
            let id = text(&d.data, "order_id").unwrap_or_default();
            match shop.order(id) {
                Err(e) => Some(e.detail),
                Ok(o) if o.status != d.state => Some(format!("order {id} is {}", o.status)),
                Ok(_) => None,
            }
        }
        (_, t) => return refuse(format!("this service does not verify {t} datasets")),
    };
    Json(VerifyAnswer {
        valid: problem.is_none(),
        reason: problem,
    })
    .into_response()
}
