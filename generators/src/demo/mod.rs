//! The demo shop: three real HTTP generator services on loopback acting on
//! one in-memory shop (the system under test), and the shop's own API for
//! tests. Used by `stockroom-pool demo` and by tests.
//!
//! - [`services`]: the generator services (docs/generators.md);
//! - [`shop`]: the shop's records, rules and HTTP API (docs/pool.md).

mod services;
pub mod shop;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use stockroom_protocol::pool_config::{GeneratorConfig, GeneratorEndpoint};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use services::{Service, ServiceState};
pub use shop::{Customer, Order, Shop, ShopError, ShopState, shop_api};

/// How long the demo services take per call by default.
pub const DEFAULT_DEMO_LATENCY: Duration = Duration::from_millis(150);

/// Where `stockroom-pool demo` serves the shop's API by default.
pub const DEFAULT_SHOP_LISTEN: &str = "127.0.0.1:7879";

/// The running demo services; they stop when this is dropped.
#[derive(Debug)]
pub struct DemoShop {
    pub customers_url: String,
    pub payments_url: String,
    pub orders_url: String,
    /// The shop the services act on.
    pub shop: Shop,
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
            .map(|(name, url)| GeneratorConfig::new(name, GeneratorEndpoint::Http(url)))
            .collect()
    }

    /// Serves the shop's API (routes under `/shop`) on `addr` (port 0 picks
    /// one) until the demo stops; returns its URL, `http://ADDR`.
    pub async fn serve_shop_api(&mut self, addr: &str) -> std::io::Result<String> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let url = format!("http://{}", listener.local_addr()?);
        self.serve(listener, shop_api(self.shop.clone()));
        Ok(url)
    }

    fn serve(&mut self, listener: tokio::net::TcpListener, app: axum::Router) {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = served.await {
                tracing::error!(error = %e, "demo service stopped");
            }
        });
        self.stops.push(stop);
        self.tasks.push(task);
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

/// Starts the three services on `127.0.0.1`, each on a free port, over one
/// empty shop.
pub async fn start_demo_shop(latency: Duration) -> std::io::Result<DemoShop> {
    let mut demo = DemoShop {
        customers_url: String::new(),
        payments_url: String::new(),
        orders_url: String::new(),
        shop: Shop::default(),
        stops: Vec::new(),
        tasks: Vec::new(),
    };
    let services = [
        (Service::Customers, 1042),
        (Service::Payments, 7001),
        (Service::Orders, 5001),
    ];
    for (service, first_id) in services {
        let state = Arc::new(ServiceState {
            service,
            latency,
            next_id: AtomicU64::new(first_id),
            shop: demo.shop.clone(),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        demo.serve(listener, services::router(state));
        match service {
            Service::Customers => demo.customers_url = url,
            Service::Payments => demo.payments_url = url,
            Service::Orders => demo.orders_url = url,
        }
    }
    Ok(demo)
}
