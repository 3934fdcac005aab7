//! `stockroom-pool`: keeps test datasets in stock and leases them exclusively
//! to CI jobs (docs/pool.md). The binary (`main.rs`) only parses flags and
//! picks the exit code; everything else is here.
//!
//! Start-up order: configuration fully validated ([`config`]), store opened
//! and migrated, `[[stock]]` settings written to the store, then the
//! listener is served ([`Pool::serve`]) until the shutdown future resolves;
//! in-flight requests then get `shutdown_grace` to finish.

pub mod auth;
pub mod catalog;
pub mod config;
pub mod generator_check;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod openapi;
pub mod reaper;
pub mod service;
pub mod stock_policy;
pub mod store;
pub mod supply;
pub mod time;
pub mod ui;
pub mod waiting;

use std::future::Future;
use std::sync::Arc;

use stockroom_protocol::api::StockSettings;
use stockroom_protocol::exit_codes;
use stockroom_protocol::pool_config::PoolConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::catalog::CatalogSource;
use crate::http::AppState;
use crate::service::{Clock, PoolService, SystemClock};
use crate::store::StoreError;

/// Why the pool did not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("invalid configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

impl PoolError {
    /// The process exit code (`exit_codes::pool`, documented in docs/pool.md):
    /// the one place that decides it.
    pub fn exit_code(&self) -> i32 {
        use exit_codes::pool;
        match self {
            PoolError::Config(_) | PoolError::Store(StoreError::Config(_)) => pool::CONFIG,
            PoolError::Store(e) if e.is_unavailable() => pool::STORE_UNAVAILABLE,
            PoolError::Store(_) => pool::STORE_FAILED,
            PoolError::Bind { .. } | PoolError::Serve(_) => pool::IO,
        }
    }
}

/// How long start-up waits for the generators' first capabilities.
pub const INITIAL_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// A started pool: store open, not yet serving.
pub struct Pool {
    state: AppState,
    shutdown_tx: watch::Sender<bool>,
}

impl Pool {
    /// Opens the store and applies the `[[stock]]` settings of the config.
    pub async fn start(config: PoolConfig) -> Result<Pool, PoolError> {
        Pool::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Pool::start`] with another clock (tests move a [`service::ManualClock`]).
    pub async fn start_with_clock(
        config: PoolConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Pool, PoolError> {
        let store = store::open(&config.store).await?;
        for s in &config.stock {
            store
                .set_stock(
                    s.type_name.clone(),
                    s.state.clone(),
                    StockSettings {
                        min_ready: s.min_ready,
                        max_ready: s.max_ready,
                    },
                )
                .await?;
        }
        let failed = store
            .fail_all_generating(supply::RESTART_REASON.to_string(), clock.now_ms())
            .await?;
        if failed > 0 {
            tracing::warn!(
                datasets = failed,
                "generations interrupted by a restart are marked failed"
            );
        }
        let queue = waiting::WaitQueue::default();
        let supply = Arc::new(supply::Supply::new(
            Arc::clone(&store),
            queue.clone(),
            Arc::clone(&clock),
            &config.generators,
            &config.stock,
            config.stock_policy,
        ));
        if !supply.is_empty() {
            // A generator that is slow or down does not hold the start up: the
            // refresh loop keeps asking it.
            let first = tokio::time::timeout(INITIAL_REFRESH, supply.refresh()).await;
            if first.is_err() {
                tracing::warn!(
                    "generators did not all answer their capabilities within {INITIAL_REFRESH:?}; starting anyway"
                );
            }
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let tokens = Arc::new(auth::Tokens::new(&config.tokens));
        let service = PoolService::new(service::Parts {
            store,
            config: Arc::new(config),
            queue,
            supply,
            clock,
            shutdown: shutdown_rx,
        });
        Ok(Pool {
            state: AppState { service, tokens },
            shutdown_tx,
        })
    }

    /// The pool service every adapter (API, page, reaper) calls.
    pub fn service(&self) -> &PoolService {
        &self.state.service
    }

    /// The pool's generators.
    pub fn supply(&self) -> &Arc<supply::Supply> {
        self.state.service.supply()
    }

    /// Plugs another producer of catalog states in.
    pub fn add_catalog_source(&self, source: Arc<dyn CatalogSource>) {
        self.state.service.add_catalog_source(source);
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish
    /// for at most `shutdown_grace`.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), PoolError> {
        let Pool { state, shutdown_tx } = self;
        let service = state.service.clone();
        let cfg = service.config();
        let grace = cfg.shutdown_grace.0;
        let reaper = tokio::spawn(reaper::run(
            service.clone(),
            cfg.reaper_interval.0,
            cfg.consumed_retention.map(|d| d.0),
        ));
        let supply_task = tokio::spawn(Arc::clone(service.supply()).run());
        // Stock can also grow through other replicas sharing the database:
        // while anyone waits, wake the waiters at the store's interval.
        let waker = service.store().wake_interval().map(|every| {
            let queue = service.queue().clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    if !queue.is_empty() {
                        queue.notify();
                    }
                }
            })
        });
        let mut stopping = service.shutdown_signal();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutdown requested; finishing in-flight requests");
            let _ = shutdown_tx.send(true);
            // Keep the sender alive so receivers see `true`, not a closed channel.
            std::future::pending::<()>().await;
        });
        let app = http::router(state);
        let server = axum::serve(http::wire::ProblemListener(listener), app)
            .with_graceful_shutdown({
                let mut s = stopping.clone();
                async move {
                    let _ = s.wait_for(|v| *v).await;
                }
            });
        let result = tokio::select! {
            r = server => r.map_err(PoolError::Serve),
            () = async {
                let _ = stopping.wait_for(|v| *v).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(grace = ?grace, "shutdown_grace elapsed; closing the remaining connections");
                Ok(())
            }
        };
        reaper.abort();
        supply_task.abort();
        if let Some(waker) = waker {
            waker.abort();
        }
        result
    }
}

/// Starts a pool on `listener` and serves until `shutdown` resolves.
pub async fn serve(
    config: PoolConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), PoolError> {
    Pool::start(config).await?.serve(listener, shutdown).await
}
