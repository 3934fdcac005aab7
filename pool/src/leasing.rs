//! The leasing service: request validation, caps, waiting, and the events
//! (metrics, wake-ups) around the store's atomic operations.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stockroom_protocol::api::{LeaseGranted, LeaseRequest, Shortfall};
use stockroom_protocol::pool_config::PoolConfig;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::store::{ItemShortfall, LeaseAttempt, LeaseResult, Store, StoreError};
use crate::supply::Supply;
use crate::time::now_ms;
use crate::waiting::{Need, WaitQueue};

/// Largest `count` of one item.
pub const MAX_COUNT: u32 = 10_000;
/// Most items in one lease request.
pub const MAX_ITEMS: usize = 100;

/// How a lease request ended.
#[derive(Debug)]
pub enum Acquired {
    New(LeaseGranted),
    Existing(LeaseGranted),
    NoStock {
        shortfall: Vec<Shortfall>,
        queued_behind: bool,
    },
    ShuttingDown,
}

/// Checks a lease request; the error is the reason, for a 422.
pub fn validate(req: &LeaseRequest) -> Result<(), String> {
    if req.items.is_empty() {
        return Err("items must list at least one dataset".into());
    }
    if req.items.len() > MAX_ITEMS {
        return Err(format!(
            "at most {MAX_ITEMS} items per lease, found {}",
            req.items.len()
        ));
    }
    let mut names = HashSet::new();
    for item in &req.items {
        if item.name.is_empty() || item.type_name.is_empty() || item.state.is_empty() {
            return Err("every item needs a non-empty name, type and state".into());
        }
        if !names.insert(item.name.as_str()) {
            return Err(format!("item name {:?} is used twice", item.name));
        }
        if item.count == 0 || item.count > MAX_COUNT {
            return Err(format!(
                "item {:?}: count must be from 1 to {MAX_COUNT}, found {}",
                item.name, item.count
            ));
        }
    }
    if req.ttl_seconds == Some(0) {
        return Err("ttl_seconds must be at least 1".into());
    }
    if req
        .idempotency_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 512)
    {
        return Err("idempotency_key must be 1 to 512 characters".into());
    }
    Ok(())
}

/// TTL in milliseconds: asked (or the default), capped by `max_lease_ttl`.
pub fn ttl_ms(cfg: &PoolConfig, asked_seconds: Option<u64>) -> i64 {
    let asked = asked_seconds.map_or(cfg.default_lease_ttl.0, Duration::from_secs);
    asked
        .min(cfg.max_lease_ttl.0)
        .as_millis()
        .min(i64::MAX as u128) as i64
}

fn public_shortfall(s: &[ItemShortfall]) -> Vec<Shortfall> {
    s.iter()
        .map(|s| Shortfall {
            name: s.name.clone(),
            wanted: s.wanted,
            ready: s.ready,
            generating: s.generating,
        })
        .collect()
}

/// Leases, waiting up to `wait` for stock, first come first served (see
/// `waiting`). A request that finds no stock asks `supply` to make its
/// shortfall just in time.
#[allow(clippy::too_many_arguments)]
pub async fn acquire(
    store: &Arc<dyn Store>,
    queue: &WaitQueue,
    metrics: &Metrics,
    mut shutdown: watch::Receiver<bool>,
    req: LeaseRequest,
    ttl_ms: i64,
    wait: Duration,
    supply: Option<&Arc<Supply>>,
) -> Result<Acquired, StoreError> {
    let deadline = tokio::time::Instant::now() + wait;
    let started = Instant::now();
    let needs = req
        .items
        .iter()
        .map(|i| Need {
            type_name: i.type_name.clone(),
            state: i.state.clone(),
            where_: i.where_.clone(),
        })
        .collect();
    let mut changed = queue.subscribe();
    let ticket = queue.join(needs);
    let mut last_short: Option<Vec<ItemShortfall>> = None;
    let mut queued_behind: bool;
    loop {
        changed.borrow_and_update();
        let eligible = ticket.may_try();
        let answer = if eligible {
            let attempt = LeaseAttempt {
                holder: req.holder.clone(),
                items: req.items.clone(),
                ttl_ms,
                idempotency_key: req.idempotency_key.clone(),
                now_ms: now_ms(),
            };
            Some(store.lease(attempt).await?)
        } else if let Some(key) = &req.idempotency_key {
            // Not our turn: only look the idempotency key up.
            Some(
                match store.find_by_idempotency_key(key.clone(), now_ms()).await? {
                    Some(g) => LeaseResult::Existing(g),
                    None => LeaseResult::NoStock(Vec::new()),
                },
            )
        } else {
            None
        };
        if let Some(answer) = answer {
            match answer {
                LeaseResult::Granted(g) => {
                    if let Some(supply) = supply {
                        // Stock went down: pre-generation may need to refill it.
                        supply.poke();
                    }
                    Metrics::inc(&metrics.leases_granted, 1);
                    metrics.observe_acquire(started.elapsed());
                    return Ok(Acquired::New(g));
                }
                LeaseResult::Existing(g) => return Ok(Acquired::Existing(g)),
                LeaseResult::NoStock(short) if eligible => {
                    let satisfiable = short.iter().all(|s| s.potential >= u64::from(s.wanted));
                    ticket.set_blocking(satisfiable);
                    if let Some(supply) = supply {
                        supply.on_shortfall(&req.items, &short);
                    }
                    last_short = Some(short);
                    queued_behind = false;
                }
                LeaseResult::NoStock(_) => queued_behind = true,
            }
        } else {
            queued_behind = true;
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.wait_for(|s| *s) => return Ok(Acquired::ShuttingDown),
        }
    }
    drop(ticket);
    Metrics::inc(&metrics.acquire_no_stock, 1);
    let shortfall = match last_short {
        Some(s) => public_shortfall(&s),
        None => {
            // Never tried (queued behind earlier waiters): report the state's counts.
            let stock = store.stock().await?;
            req.items
                .iter()
                .map(|i| {
                    let c = stock
                        .get(&(i.type_name.clone(), i.state.clone()))
                        .cloned()
                        .unwrap_or_default();
                    Shortfall {
                        name: i.name.clone(),
                        wanted: i.count,
                        ready: c.ready,
                        generating: c.generating,
                    }
                })
                .collect()
        }
    };
    Ok(Acquired::NoStock {
        shortfall,
        queued_behind,
    })
}
