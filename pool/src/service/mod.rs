//! The pool service: the one type that owns the store, the wait queue, the
//! generators' supply, the metrics and the clock, and exposes every pool
//! operation (lease, heartbeat, release, extend, register, settle, expire,
//! stock settings, and the reads).
//!
//! Each operation fires its side effects once, inside it: waking waiters when
//! datasets or entities become free ([`PoolService::stock_freed`]), asking
//! the supply for stock when ready stock went down
//! ([`PoolService::stock_taken`]), counting metrics. The HTTP API, the web
//! page and the reaper are thin adapters over it, so they cannot differ in
//! what an operation does.

pub mod clock;
mod datasets;
mod error;
mod leases;
pub mod redact;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use stockroom_protocol::api::{Catalog, RefreshAnswer, StockSettings, VerifyStarted};
use stockroom_protocol::pool_config::PoolConfig;
use tokio::sync::watch;

use crate::catalog::{CatalogRegistry, CatalogSource};
use crate::metrics::Metrics;
use crate::store::{StockTable, Store, StoreError};
use crate::supply::Supply;
use crate::waiting::WaitQueue;
pub use clock::{Clock, ManualClock, SystemClock};
pub use datasets::{Quarantined, Settle};
pub use error::{ServiceError, ServiceResult};
pub use leases::{LeaseAct, Leased, MAX_COUNT, MAX_HEARTBEAT_BATCH, MAX_ITEMS, Proof, Released};

/// Cheap to clone: every clone is the same service.
#[derive(Clone)]
pub struct PoolService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    config: Arc<PoolConfig>,
    queue: WaitQueue,
    supply: Arc<Supply>,
    metrics: Metrics,
    clock: Arc<dyn Clock>,
    catalog: CatalogRegistry,
    /// Becomes true when shutdown starts: waiting leases end.
    shutdown: watch::Receiver<bool>,
    /// `(type, state)` pairs the store has reported. The store never forgets
    /// a state (its status counts and stock settings are never deleted), so
    /// a pair in here is known for good and a lease for it needs no read.
    store_states: RwLock<BTreeSet<(String, String)>>,
    /// Writes failed for lack of space (`StoreError::Full`) and none has
    /// succeeded since: `/readyz` answers 503 until a write works again.
    writes_failing: AtomicBool,
}

/// What [`PoolService::new`] is built from.
pub struct Parts {
    pub store: Arc<dyn Store>,
    pub config: Arc<PoolConfig>,
    pub queue: WaitQueue,
    pub supply: Arc<Supply>,
    pub clock: Arc<dyn Clock>,
    pub shutdown: watch::Receiver<bool>,
}

impl PoolService {
    pub fn new(parts: Parts) -> PoolService {
        let catalog = CatalogRegistry::default();
        catalog.add_source(Arc::clone(&parts.supply) as Arc<dyn CatalogSource>);
        PoolService {
            inner: Arc::new(Inner {
                store: parts.store,
                config: parts.config,
                queue: parts.queue,
                supply: parts.supply,
                metrics: Metrics::default(),
                clock: parts.clock,
                catalog,
                shutdown: parts.shutdown,
                store_states: RwLock::default(),
                writes_failing: AtomicBool::new(false),
            }),
        }
    }

    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn supply(&self) -> &Arc<Supply> {
        &self.inner.supply
    }

    pub fn queue(&self) -> &WaitQueue {
        &self.inner.queue
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// Whether shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.clone()
    }

    /// Plugs another producer of catalog states in.
    pub fn add_catalog_source(&self, source: Arc<dyn CatalogSource>) {
        self.inner.catalog.add_source(source);
    }

    // ------------------------------------------------------------ write health

    /// Records how a write operation went: a full store marks writes as
    /// failing, a success clears that.
    fn observe_write<T>(&self, result: &ServiceResult<T>) {
        match result {
            Err(ServiceError::Store(StoreError::Full(_))) => {
                if !self.inner.writes_failing.swap(true, Ordering::SeqCst) {
                    tracing::error!(
                        "the store is full: writes fail (clients get 507 store-full, /readyz 503) until space is freed"
                    );
                }
            }
            Ok(_) => {
                if self.inner.writes_failing.swap(false, Ordering::SeqCst) {
                    tracing::info!("the store takes writes again");
                }
            }
            Err(_) => {}
        }
    }

    /// Whether the store takes writes: true unless a write failed for lack
    /// of space; then a small probe write (a session row put and deleted)
    /// decides, so readiness comes back once space is freed.
    pub async fn writes_ok(&self) -> bool {
        if !self.inner.writes_failing.load(Ordering::SeqCst) {
            return true;
        }
        let probe = crate::store::SessionRow {
            id_hash: format!("readyz-probe-{}", crate::ids::replica_tag()),
            caller_name: "readyz".into(),
            role: stockroom_protocol::pool_config::Role::Ci,
            csrf: String::new(),
            leases: Vec::new(),
            last_seen_ms: self.now_ms(),
        };
        let id = probe.id_hash.clone();
        let store = self.store();
        let result: ServiceResult<()> = async {
            store.put_session(probe).await?;
            store.delete_session(id).await?;
            Ok(())
        }
        .await;
        self.observe_write(&result);
        result.is_ok()
    }

    // ------------------------------------------------------------ side effects

    /// Datasets or entities became free (or stock grew): waiting leases try again.
    fn stock_freed(&self) {
        self.inner.queue.notify();
    }

    /// Ready stock went down: pre-generation may need to refill it.
    fn stock_taken(&self) {
        self.inner.supply.poke();
    }

    // ------------------------------------------------------------ catalog and stock

    /// Counts per status, stock settings and the stock policy's current
    /// target of every state the store knows.
    pub async fn stock(&self) -> ServiceResult<StockTable> {
        let mut stock = self.inner.store.stock().await?;
        if let Ok(mut seen) = self.inner.store_states.write() {
            seen.extend(stock.keys().cloned());
        }
        self.inner.supply.annotate(&mut stock);
        Ok(stock)
    }

    /// Every type and state with stock counts, generators' health and the
    /// problems found in their capabilities.
    pub async fn catalog(&self) -> ServiceResult<Catalog> {
        let stock = self.stock().await?;
        let mut catalog = self.inner.catalog.build(&stock);
        catalog.problems = self.inner.supply.problems();
        Ok(catalog)
    }

    /// What is wrong in the generators' capabilities (the pool still serves what works).
    pub fn problems(&self) -> Vec<String> {
        self.inner.supply.problems()
    }

    /// Every `(type, state)` the pool knows: from the store (datasets and
    /// stock settings, `[[stock]]` included) and from catalog sources.
    async fn known_states(&self) -> ServiceResult<BTreeSet<(String, String)>> {
        let catalog = self.catalog().await?;
        Ok(catalog
            .types
            .iter()
            .flat_map(|t| {
                t.states
                    .iter()
                    .map(move |s| (t.type_name.clone(), s.state.clone()))
            })
            .collect())
    }

    /// Refuses `wanted` states the pool does not know, listing those it knows.
    /// Without a store read when all of `wanted` were seen in the store
    /// before: on the path of every lease, a `stock()` read per request cost a
    /// reader round trip.
    async fn check_known(&self, wanted: &BTreeSet<(String, String)>) -> ServiceResult<()> {
        if let Ok(seen) = self.inner.store_states.read()
            && wanted.is_subset(&seen)
        {
            return Ok(());
        }
        let known = self.known_states().await?;
        let unknown: Vec<String> = wanted
            .difference(&known)
            .map(|(t, s)| format!("{t}/{s}"))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(ServiceError::UnknownState {
            unknown,
            known: known.iter().map(|(t, s)| format!("{t}/{s}")).collect(),
        })
    }

    /// Sets `min_ready`/`max_ready` of one state; pre-generation follows at once.
    pub async fn set_stock(
        &self,
        type_name: String,
        state: String,
        settings: StockSettings,
    ) -> ServiceResult<StockSettings> {
        if settings.min_ready > settings.max_ready {
            return Err(ServiceError::Invalid(format!(
                "max_ready ({}) is below min_ready ({})",
                settings.max_ready, settings.min_ready
            )));
        }
        let result = self
            .inner
            .store
            .set_stock(type_name, state, settings)
            .await
            .map_err(ServiceError::from);
        self.observe_write(&result);
        result?;
        self.stock_taken();
        Ok(settings)
    }

    /// Verifies every ready dataset of a state before it is leased again
    /// (`POST /stock/{type}/{state}/verify`).
    pub async fn verify_stock(
        &self,
        type_name: String,
        state: String,
        by: String,
    ) -> ServiceResult<VerifyStarted> {
        use crate::supply::VerifyAllError;
        match self.inner.supply.verify_all(&type_name, &state, &by).await {
            Ok(verifying) => Ok(VerifyStarted {
                type_name,
                state,
                verifying,
            }),
            Err(VerifyAllError::NotOffered) => Err(ServiceError::Invalid(format!(
                "no generator offers verify for {type_name}/{state}; see `lifecycle` in GET /api/v1/catalog"
            ))),
            Err(VerifyAllError::Store(e)) => Err(e.into()),
        }
    }

    /// Asks every generator for its capabilities now.
    pub async fn refresh_generators(&self) -> RefreshAnswer {
        self.inner.supply.refresh().await
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> Result<String, StoreError> {
        let active = self.inner.store.active_lease_count().await?;
        let stock = self.inner.store.stock().await?;
        Ok(self.inner.metrics.render(
            active,
            self.inner.queue.len(),
            self.inner.supply.replenish_requests(),
            &stock,
        ))
    }
}
