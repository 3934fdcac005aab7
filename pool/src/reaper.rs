//! The reaper: expires leases whose holder stopped heartbeating (their
//! datasets become `quarantined`), and erases the data of consumed datasets
//! older than `consumed_retention` when one is configured.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::store::Store;
use crate::time::now_ms;
use crate::waiting::WaitQueue;

const BATCH: u32 = 500;
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// Runs forever; the caller aborts the task at shutdown.
pub async fn run(
    store: Arc<dyn Store>,
    queue: WaitQueue,
    metrics: Arc<Metrics>,
    interval: Duration,
    retention: Option<Duration>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_retention = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        loop {
            match store.expire_due(now_ms(), BATCH).await {
                Ok(expired) => {
                    for e in &expired {
                        tracing::warn!(lease_id = %e.lease_id, datasets = e.dataset_ids.len(),
                            "lease expired without heartbeat; its datasets are quarantined");
                    }
                    metrics
                        .leases_expired
                        .fetch_add(expired.len() as u64, Ordering::Relaxed);
                    if !expired.is_empty() {
                        // Entities became free: waiters may now be served.
                        queue.notify();
                    }
                    if expired.len() < BATCH as usize {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "reaper cannot expire leases");
                    break;
                }
            }
        }
        if let Some(keep) = retention
            && last_retention.elapsed() >= RETENTION_EVERY.min(keep)
        {
            last_retention = tokio::time::Instant::now();
            let now = now_ms();
            match store
                .purge_consumed(now - keep.as_millis() as i64, now)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    datasets = n,
                    "erased data of consumed datasets past consumed_retention"
                ),
                Err(e) => tracing::error!(error = %e, "reaper cannot apply consumed_retention"),
            }
        }
    }
}
