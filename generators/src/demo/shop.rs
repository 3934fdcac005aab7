//! The demo's system under test: an in-memory shop shared by the three demo
//! generator services, and its HTTP API for tests (docs/pool.md,
//! "The demo shop's API").
//!
//! Generation creates customers and orders here the way production would;
//! the demo's cleanup, reset and verify act on them; and tests exercise them
//! through [`shop_api`] (JSON; errors are problem+json).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::{FromRequest, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Where problem types of the shop API live (`…/open-order`, `…/not-found`).
pub const SHOP_PROBLEM_BASE: &str = "https://stockroom.dev/demo-shop/problems/";

/// A customer of the shop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Customer {
    pub customer_id: String,
    pub email: String,
    #[serde(skip)]
    pub password: String,
    pub country: String,
    /// `new` (email not verified) or `active`.
    pub status: String,
    pub has_card: bool,
    pub orders: Vec<String>,
}

/// An order of the shop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Order {
    pub order_id: String,
    pub customer_id: String,
    /// `placed`, `paid`, `shipped` or `cancelled`.
    pub status: String,
    pub total_cents: u64,
}

/// Why the shop refused something: a problem+json answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopError {
    pub status: StatusCode,
    pub slug: &'static str,
    pub detail: String,
}

impl ShopError {
    fn new(status: StatusCode, slug: &'static str, detail: impl Into<String>) -> ShopError {
        ShopError {
            status,
            slug,
            detail: detail.into(),
        }
    }

    fn not_found(what: &str, id: &str) -> ShopError {
        ShopError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no {what} {id}"),
        )
    }
}

impl std::fmt::Display for ShopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.slug)
    }
}

impl IntoResponse for ShopError {
    fn into_response(self) -> Response {
        let body = json!({
            "type": format!("{SHOP_PROBLEM_BASE}{}", self.slug),
            "title": self.slug.replace('-', " "),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// The shop's records and business rules.
#[derive(Debug, Default)]
pub struct ShopState {
    customers: BTreeMap<String, Customer>,
    orders: BTreeMap<String, Order>,
    /// Orders placed through the API so far (their ids are `O9…`).
    api_orders: u64,
}

/// The shop, shared by the services and the API.
#[derive(Debug, Clone, Default)]
pub struct Shop(Arc<Mutex<ShopState>>);

impl Shop {
    /// The records, locked (never across an `.await`).
    pub fn lock(&self) -> MutexGuard<'_, ShopState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ShopState {
    pub fn customer(&self, id: &str) -> Result<&Customer, ShopError> {
        self.customers
            .get(id)
            .ok_or_else(|| ShopError::not_found("customer", id))
    }

    fn customer_mut(&mut self, id: &str) -> Result<&mut Customer, ShopError> {
        self.customers
            .get_mut(id)
            .ok_or_else(|| ShopError::not_found("customer", id))
    }

    pub fn order(&self, id: &str) -> Result<&Order, ShopError> {
        self.orders
            .get(id)
            .ok_or_else(|| ShopError::not_found("order", id))
    }

    fn order_mut(&mut self, id: &str) -> Result<&mut Order, ShopError> {
        self.orders
            .get_mut(id)
            .ok_or_else(|| ShopError::not_found("order", id))
    }

    pub fn customer_count(&self) -> usize {
        self.customers.len()
    }

    pub fn order_count(&self) -> usize {
        self.orders.len()
    }

    /// Registers a customer (status `new`). The email must be unused.
    pub fn register(&mut self, customer: Customer) -> Result<(), ShopError> {
        if self.customers.values().any(|c| c.email == customer.email) {
            return Err(ShopError::new(
                StatusCode::CONFLICT,
                "email-taken",
                format!("email {} is already registered", customer.email),
            ));
        }
        self.customers
            .insert(customer.customer_id.clone(), customer);
        Ok(())
    }

    /// Makes sure a customer a dataset describes exists: one registered with
    /// the pool by hand (a fixed test account) is taken into the shop as its
    /// data says, the first time a generator sees it.
    pub fn adopt_customer(&mut self, data: &serde_json::Value, state: &str) {
        let text = |k: &str| data.get(k).and_then(serde_json::Value::as_str);
        let Some(id) = text("customer_id") else {
            return;
        };
        if self.customers.contains_key(id) {
            return;
        }
        let customer = Customer {
            customer_id: id.to_string(),
            email: text("email")
                .map_or_else(|| format!("{}@x.test", id.to_lowercase()), str::to_string),
            password: text("password").unwrap_or_default().to_string(),
            country: text("country").unwrap_or_default().to_string(),
            status: if state == "new" { "new" } else { "active" }.to_string(),
            has_card: state == "active-with-payment",
            orders: Vec::new(),
        };
        self.customers.insert(id.to_string(), customer);
    }

    pub fn verify_email(&mut self, id: &str) -> Result<(), ShopError> {
        self.customer_mut(id)?.status = "active".to_string();
        Ok(())
    }

    pub fn add_card(&mut self, id: &str) -> Result<(), ShopError> {
        self.customer_mut(id)?.has_card = true;
        Ok(())
    }

    pub fn login(&self, email: &str, password: &str) -> Result<String, ShopError> {
        self.customers
            .values()
            .find(|c| c.email == email && c.password == password)
            .map(|c| c.customer_id.clone())
            .ok_or_else(|| {
                ShopError::new(
                    StatusCode::UNAUTHORIZED,
                    "wrong-credentials",
                    "wrong email or password",
                )
            })
    }

    pub fn set_password(&mut self, id: &str, password: &str) -> Result<(), ShopError> {
        self.customer_mut(id)?.password = password.to_string();
        Ok(())
    }

    /// Places an order: one open (`placed`) order per customer.
    pub fn place_order(
        &mut self,
        order_id: &str,
        customer_id: &str,
        total_cents: u64,
    ) -> Result<Order, ShopError> {
        let customer = self.customer(customer_id)?;
        if let Some(open) = customer
            .orders
            .iter()
            .filter_map(|o| self.orders.get(o))
            .find(|o| o.status == "placed")
        {
            return Err(ShopError::new(
                StatusCode::CONFLICT,
                "open-order",
                format!(
                    "customer {customer_id} already has the open order {}",
                    open.order_id
                ),
            ));
        }
        let order = Order {
            order_id: order_id.to_string(),
            customer_id: customer_id.to_string(),
            status: "placed".to_string(),
            total_cents,
        };
        self.customer_mut(customer_id)?
            .orders
            .push(order_id.to_string());
        self.orders.insert(order_id.to_string(), order.clone());
        Ok(order)
    }

    fn placed_order(&mut self, id: &str) -> Result<&mut Order, ShopError> {
        let order = self.order_mut(id)?;
        if order.status != "placed" {
            return Err(ShopError::new(
                StatusCode::CONFLICT,
                "not-placed",
                format!("order {id} is {}, not placed", order.status),
            ));
        }
        Ok(order)
    }

    pub fn pay(&mut self, id: &str) -> Result<Order, ShopError> {
        let customer_id = self.placed_order(id)?.customer_id.clone();
        if !self.customer(&customer_id)?.has_card {
            return Err(ShopError::new(
                StatusCode::PAYMENT_REQUIRED,
                "no-card",
                format!("customer {customer_id} has no card"),
            ));
        }
        let order = self.placed_order(id)?;
        order.status = "paid".to_string();
        Ok(order.clone())
    }

    pub fn ship(&mut self, id: &str) -> Result<Order, ShopError> {
        let order = self.order_mut(id)?;
        if order.status != "paid" {
            return Err(ShopError::new(
                StatusCode::CONFLICT,
                "not-paid",
                format!("order {id} is {}, not paid", order.status),
            ));
        }
        order.status = "shipped".to_string();
        Ok(order.clone())
    }

    pub fn cancel(&mut self, id: &str) -> Result<Order, ShopError> {
        let order = self.placed_order(id)?;
        order.status = "cancelled".to_string();
        Ok(order.clone())
    }

    /// Removes a customer and its orders (cleanup). Removing one that is
    /// gone already is fine: cleanup may be retried.
    pub fn remove_customer(&mut self, id: &str) {
        if let Some(c) = self.customers.remove(id) {
            for o in c.orders {
                self.orders.remove(&o);
            }
        }
    }

    /// Removes an order (cleanup); fine when it is gone already.
    pub fn remove_order(&mut self, id: &str) {
        if let Some(o) = self.orders.remove(id)
            && let Some(c) = self.customers.get_mut(&o.customer_id)
        {
            c.orders.retain(|x| x != id);
        }
    }

    /// Brings a customer back to how it was made: its password, its status
    /// and card, and no open orders of its own (they are cancelled).
    pub fn reset_customer(
        &mut self,
        id: &str,
        password: &str,
        status: &str,
        has_card: bool,
    ) -> Result<(), ShopError> {
        let customer = self.customer_mut(id)?;
        customer.password = password.to_string();
        customer.status = status.to_string();
        customer.has_card = has_card;
        let orders = customer.orders.clone();
        for o in orders {
            if let Some(order) = self.orders.get_mut(&o)
                && order.status == "placed"
            {
                order.status = "cancelled".to_string();
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

#[derive(Deserialize)]
struct PasswordBody {
    password: String,
}

#[derive(Deserialize)]
struct OrderBody {
    customer_id: String,
}

type Answer = Result<Response, ShopError>;

/// A JSON body, refused as problem+json when it does not parse.
struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ShopError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ShopError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(ShopError::new(
                StatusCode::BAD_REQUEST,
                "invalid-request",
                e.body_text(),
            )),
        }
    }
}

fn ok(v: impl Serialize) -> Answer {
    Ok(Json(v).into_response())
}

async fn get_customer(State(shop): State<Shop>, Path(id): Path<String>) -> Answer {
    ok(shop.lock().customer(&id)?.clone())
}

async fn login(State(shop): State<Shop>, Body(body): Body<LoginBody>) -> Answer {
    let customer_id = shop.lock().login(&body.email, &body.password)?;
    ok(json!({ "customer_id": customer_id }))
}

async fn change_password(
    State(shop): State<Shop>,
    Path(id): Path<String>,
    Body(body): Body<PasswordBody>,
) -> Answer {
    shop.lock().set_password(&id, &body.password)?;
    ok(json!({}))
}

async fn place_order(State(shop): State<Shop>, Body(body): Body<OrderBody>) -> Answer {
    let mut state = shop.lock();
    state.api_orders += 1;
    let id = format!("O{}", 900_000 + state.api_orders);
    let order = state.place_order(&id, &body.customer_id, 3980)?;
    Ok((StatusCode::CREATED, Json(order)).into_response())
}

async fn get_order(State(shop): State<Shop>, Path(id): Path<String>) -> Answer {
    ok(shop.lock().order(&id)?.clone())
}

async fn pay(State(shop): State<Shop>, Path(id): Path<String>) -> Answer {
    ok(shop.lock().pay(&id)?)
}

async fn cancel(State(shop): State<Shop>, Path(id): Path<String>) -> Answer {
    ok(shop.lock().cancel(&id)?)
}

/// The shop's API for tests: every route under `/shop` (docs/pool.md).
pub fn shop_api(shop: Shop) -> Router {
    Router::new()
        .route("/shop/customers/{customer_id}", get(get_customer))
        .route("/shop/login", post(login))
        .route(
            "/shop/customers/{customer_id}/password",
            post(change_password),
        )
        .route("/shop/orders", post(place_order))
        .route("/shop/orders/{order_id}", get(get_order))
        .route("/shop/orders/{order_id}/pay", post(pay))
        .route("/shop/orders/{order_id}/cancel", post(cancel))
        .fallback(|| async {
            ShopError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "no such route in the shop API",
            )
        })
        .with_state(shop)
}
