//! Keeping a lease alive: a heartbeat at the pool's interval; failures are
//! retried with backoff and logged, never fatal; only "lease gone" ends it.

use std::time::Duration;

use stockroom_protocol::api::ProblemKind;
use tokio::time::Instant;

use crate::client::{PoolClient, retry_backoff};

/// How often an ongoing outage is logged again.
const OUTAGE_LOG_EVERY: Duration = Duration::from_secs(30);

/// The pool no longer holds the lease for us.
#[derive(Debug, Clone)]
pub struct LeaseLost {
    pub lease_id: String,
    pub detail: String,
}

/// The interval the pool asked for, at least one second.
pub fn interval_from(seconds: u64) -> Duration {
    Duration::from_secs(seconds.max(1))
}

/// Heartbeats `lease_id` forever; returns only when the lease is lost.
pub async fn keep_alive(client: &PoolClient, lease_id: &str, interval: Duration) -> LeaseLost {
    let mut interval = interval;
    let mut next = interval;
    let mut failing_since: Option<Instant> = None;
    let mut last_warned: Option<Instant> = None;
    let mut backoff = retry_backoff(interval);
    loop {
        tokio::time::sleep(next).await;
        match client.heartbeat(lease_id).await {
            Ok(answer) => {
                if let Some(since) = failing_since.take() {
                    tracing::info!(
                        "the pool answers again after {}s; lease {lease_id} is kept alive until {}",
                        since.elapsed().as_secs(),
                        answer.expires_at
                    );
                }
                tracing::debug!(
                    "heartbeat: lease {lease_id} expires at {}",
                    answer.expires_at
                );
                interval = interval_from(answer.heartbeat_interval_seconds);
                next = interval;
                backoff = retry_backoff(interval);
                last_warned = None;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    Some(ProblemKind::LeaseGone | ProblemKind::NotFound | ProblemKind::NotHolder)
                ) =>
            {
                return LeaseLost {
                    lease_id: lease_id.to_string(),
                    detail: e.to_string(),
                };
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if last_warned.is_none_or(|t| t.elapsed() >= OUTAGE_LOG_EVERY) {
                    tracing::warn!(
                        "failed to heartbeat lease {lease_id} for {}s: {e}; the command keeps running and the heartbeat is retried",
                        since.elapsed().as_secs()
                    );
                    last_warned = Some(Instant::now());
                }
                next = backoff.next_delay();
            }
        }
    }
}

/// The loud message for a lost lease.
pub fn lost_message(lost: &LeaseLost) -> String {
    format!(
        "LEASE LOST: the pool no longer holds lease {} for this job ({}). Its datasets may already be handed to another job; results from here on may be wrong. Usual causes: the pool was unreachable for longer than the lease TTL, or someone released the lease.",
        lost.lease_id, lost.detail
    )
}
