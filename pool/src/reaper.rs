//! The reaper: expires leases whose holder stopped heartbeating (their
//! datasets become `quarantined`), and erases the data of consumed datasets
//! older than `consumed_retention` when one is configured. A thin loop over
//! the pool service, which fires each operation's side effects.

use std::time::Duration;

use crate::service::PoolService;

const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// Runs forever; the caller aborts the task at shutdown.
pub async fn run(service: PoolService, interval: Duration, retention: Option<Duration>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_retention = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        if let Err(e) = service.expire_due().await {
            tracing::error!(error = %e, "reaper cannot expire leases");
        }
        if let Some(keep) = retention
            && last_retention.elapsed() >= RETENTION_EVERY.min(keep)
        {
            last_retention = tokio::time::Instant::now();
            if let Err(e) = service.purge_consumed(keep).await {
                tracing::error!(error = %e, "reaper cannot apply consumed_retention");
            }
        }
    }
}
