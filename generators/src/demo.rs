//! The demo shop: three real HTTP generator services on loopback, used by
//! `stockroom-pool demo` and by tests.
//!
//! - `customers` produces `customer/new` and `customer/active`, and offers the
//!   extension `verify-email` (new → active);
//! - `payments` offers `add-card` (customer active → active-with-payment, a
//!   state derived from the extension);
//! - `orders` produces `order/placed` from a `customer/active-with-payment`
//!   and offers `pay` (placed → paid) and `ship` (paid → shipped).
//!
//! `generate` and `extend` answer after the given latency; `capabilities`
//! answers at once.

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
use stockroom_protocol::HumanDuration;
use stockroom_protocol::attributes::AttrValue;
use stockroom_protocol::generator::{
    Capabilities, ExtendAnswer, ExtendRequest, ExtensionSpec, GenerateAnswer, GenerateRequest,
    ProducedState, Requirement,
};
use stockroom_protocol::pool_config::{GeneratorConfig, GeneratorEndpoint};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long the demo services take per `generate` or `extend` by default.
pub const DEFAULT_DEMO_LATENCY: Duration = Duration::from_millis(150);

const COUNTRIES: [&str; 3] = ["DE", "US", "FR"];

/// The running demo services; they stop when this is dropped.
#[derive(Debug)]
pub struct DemoShop {
    pub customers_url: String,
    pub payments_url: String,
    pub orders_url: String,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl DemoShop {
    /// `(name, url)` of each service, in the order a pool config lists them.
    pub fn generators(&self) -> Vec<(String, String)> {
        vec![
            ("customers".to_string(), self.customers_url.clone()),
            ("payments".to_string(), self.payments_url.clone()),
            ("orders".to_string(), self.orders_url.clone()),
        ]
    }

    /// `[[generators]]` entries for the services.
    pub fn generator_configs(&self) -> Vec<GeneratorConfig> {
        self.generators()
            .into_iter()
            .map(|(name, url)| GeneratorConfig {
                name,
                endpoint: GeneratorEndpoint::Http(url),
                timeout: HumanDuration::from_secs(30),
                concurrency: 4,
                env: Default::default(),
                cwd: None,
            })
            .collect()
    }

    /// Stops the services and waits until they are gone.
    pub async fn shutdown(mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for DemoShop {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts the three services on `127.0.0.1`, each on a free port.
pub async fn start_demo_shop(latency: Duration) -> std::io::Result<DemoShop> {
    let mut shop = DemoShop {
        customers_url: String::new(),
        payments_url: String::new(),
        orders_url: String::new(),
        stops: Vec::new(),
        tasks: Vec::new(),
    };
    let services = [
        (Service::Customers, 1042),
        (Service::Payments, 7001),
        (Service::Orders, 5001),
    ];
    for (service, first_id) in services {
        let state = Arc::new(Shop {
            service,
            latency,
            next_id: AtomicU64::new(first_id),
        });
        let app = Router::new()
            .route("/capabilities", get(capabilities))
            .route("/generate", post(generate))
            .route("/extend", post(extend))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = served.await {
                tracing::error!(error = %e, "demo generator stopped");
            }
        });
        match service {
            Service::Customers => shop.customers_url = url,
            Service::Payments => shop.payments_url = url,
            Service::Orders => shop.orders_url = url,
        }
        shop.stops.push(stop);
        shop.tasks.push(task);
    }
    Ok(shop)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Customers,
    Payments,
    Orders,
}

struct Shop {
    service: Service,
    latency: Duration,
    next_id: AtomicU64,
}

impl Shop {
    fn next(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
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

fn customer_state(state: &str, description: &str, fields: &[&str]) -> ProducedState {
    ProducedState {
        type_name: "customer".to_string(),
        state: state.to_string(),
        description: Some(description.to_string()),
        attributes: countries(),
        fields: strings(fields),
        secret_fields: strings(&["password"]),
        requires: Vec::new(),
        reusable: false,
        lifecycle: Vec::new(),
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
fn capabilities_of(service: Service) -> Capabilities {
    const CUSTOMER: [&str; 4] = ["customer_id", "email", "password", "country"];
    match service {
        Service::Customers => Capabilities {
            produces: vec![
                customer_state(
                    "new",
                    "registered customer, email not verified yet",
                    &CUSTOMER,
                ),
                customer_state(
                    "active",
                    "verified customer",
                    &[
                        "customer_id",
                        "email",
                        "password",
                        "country",
                        "email_verified_at",
                    ],
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
                lifecycle: Vec::new(),
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

async fn capabilities(State(shop): State<Arc<Shop>>) -> Json<Capabilities> {
    Json(capabilities_of(shop.service))
}

fn refuse(message: String) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, message).into_response()
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

async fn generate(State(shop): State<Arc<Shop>>, Json(request): Json<GenerateRequest>) -> Response {
    tokio::time::sleep(shop.latency).await;
    let n = shop.next();
    let country = country_for(&request, n);
    if !COUNTRIES.contains(&country.as_str()) {
        return refuse(format!("country must be one of {}", COUNTRIES.join(", ")));
    }
    let attributes = [("country".to_string(), AttrValue::from(country.clone()))].into();
    let answer = match (
        shop.service,
        request.type_name.as_str(),
        request.state.as_str(),
    ) {
        (Service::Customers, "customer", state @ ("new" | "active")) => {
            let id = format!("C{n}");
            let mut data = json!({
                "customer_id": id,
                "email": format!("{}@x.test", id.to_lowercase()),
                "password": format!("pw-{}", random_text()),
                "country": country,
            });
            if state == "active" {
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
            let Some(customer_id) = customer.data.get("customer_id").and_then(Value::as_str) else {
                return refuse("input `customer` has no customer_id".to_string());
            };
            let id = format!("O{n}");
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

async fn extend(State(shop): State<Arc<Shop>>, Json(request): Json<ExtendRequest>) -> Response {
    tokio::time::sleep(shop.latency).await;
    let n = shop.next();
    let dataset = request.dataset;
    let Value::Object(old) = dataset.data else {
        return refuse("dataset data must be an object".to_string());
    };
    let mut data: Map<String, Value> = old;
    let mut secret_fields = dataset.secret_fields;
    let mut entities = dataset.entities;
    let wanted = (
        shop.service,
        dataset.type_name.as_str(),
        request.extension.as_str(),
        dataset.state.as_str(),
    );
    match wanted {
        (Service::Customers, "customer", "verify-email", "new") => {
            data.insert(
                "email_verified_at".to_string(),
                json!("2025-01-01T00:00:00Z"),
            );
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
        }
        (Service::Orders, "order", "pay", "placed") => {
            data.insert("payment_id".to_string(), json!(format!("PAY{n}")));
        }
        (Service::Orders, "order", "ship", "paid") => {
            data.insert("tracking_number".to_string(), json!(format!("TRK{n}")));
        }
        (_, t, e, s) => return refuse(format!("this service has no extension {e:?} from {t}/{s}")),
    }
    Json(ExtendAnswer {
        data: Value::Object(data),
        secret_fields,
        entities,
    })
    .into_response()
}
