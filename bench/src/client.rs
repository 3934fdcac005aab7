//! One simulated CI job: the HTTP lease cycle (acquire, heartbeat, release
//! `passed`) in a loop, timed, with every unexpected answer counted and
//! double leases caught across clients.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::http::Http;
use crate::pool;

/// What one simulated CI job measured.
#[derive(Default)]
pub(crate) struct ClientResult {
    pub(crate) acquire_us: Vec<u32>,
    pub(crate) heartbeat_us: Vec<u32>,
    pub(crate) release_us: Vec<u32>,
    pub(crate) cycles: u64,
    pub(crate) errors: BTreeMap<String, u64>,
}

impl ClientResult {
    pub(crate) fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }
}

/// Shared by the clients of one configuration: who holds which dataset.
#[derive(Default)]
pub(crate) struct Holders {
    pub(crate) held: Mutex<HashMap<String, usize>>,
    pub(crate) double_leases: AtomicU64,
}

impl Holders {
    /// Client `index` was just handed `dataset_id`: a double lease if
    /// another client still holds it (counted and recorded in `r`).
    pub(crate) fn take(&self, dataset_id: &str, index: usize, r: &mut ClientResult) {
        if let Ok(mut held) = self.held.lock()
            && let Some(other) = held.insert(dataset_id.to_string(), index)
        {
            self.double_leases.fetch_add(1, Ordering::Relaxed);
            r.error(format!(
                "double lease: {dataset_id} handed to client {index} while client {other} held it"
            ));
        }
    }

    /// Client `index` is about to release `dataset_id`: forget the hold
    /// first, so the next holder never races the removal.
    pub(crate) fn give_back(&self, dataset_id: &str, index: usize) {
        if let Ok(mut held) = self.held.lock()
            && held.get(dataset_id) == Some(&index)
        {
            held.remove(dataset_id);
        }
    }
}

pub(crate) fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// The problem `type` of an error answer (its last path segment), or the status.
pub(crate) fn problem_kind(status: u16, body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("type")
                .and_then(Value::as_str)
                .map(|t| t.rsplit('/').next().unwrap_or(t).to_string())
        })
        .map_or_else(|| format!("{status}"), |k| format!("{status} {k}"))
}

pub(crate) async fn run_client(
    index: usize,
    mut http: Http,
    measure_from: Instant,
    end: Instant,
    holders: Arc<Holders>,
) -> ClientResult {
    let mut r = ClientResult::default();
    let lease_body = serde_json::to_vec(&json!({
        "holder": {"ci": "bench", "repository": "stockroom/pool-bench", "job": "pool-bench",
                   "run_id": index.to_string()},
        "ttl_seconds": 120,
        "items": [{"name": "account", "type": pool::TYPE, "state": pool::STATE, "count": 1}],
    }))
    .unwrap_or_default();
    let release_body = br#"{"outcome":"passed"}"#;
    while Instant::now() < end {
        // Acquire.
        let t0 = Instant::now();
        let answer = http.post("/api/v1/leases", &lease_body, None).await;
        let t1 = Instant::now();
        let (lease_id, lease_token, dataset_id) = match answer {
            Ok((201, body)) => {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let lease = v.get("lease_id").and_then(Value::as_str);
                let token = v.get("lease_token").and_then(Value::as_str);
                let ds = v.pointer("/datasets/0/id").and_then(Value::as_str);
                let count = v
                    .get("datasets")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                // A build older than lease tokens answers without one (the
                // same bench then measures it: docs/benchmarks.md, issue 12).
                match (lease, token, ds, count) {
                    (Some(l), t, Some(d), 1) => {
                        (l.to_string(), t.map(str::to_string), d.to_string())
                    }
                    _ => {
                        r.error("acquire: malformed 201 answer".into());
                        continue;
                    }
                }
            }
            Ok((status, body)) => {
                r.error(format!("acquire: {}", problem_kind(status, &body)));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(e) => {
                r.error(format!("acquire: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if t0 >= measure_from && t1 < end {
            r.acquire_us.push(micros(t1 - t0));
        }
        holders.take(&dataset_id, index, &mut r);
        let mut ok = true;

        // Heartbeat.
        let t2 = Instant::now();
        let answer = http
            .post(
                &format!("/api/v1/leases/{lease_id}/heartbeat"),
                b"{}",
                lease_token.as_deref(),
            )
            .await;
        let t3 = Instant::now();
        match answer {
            Ok((200, _)) => {
                if t2 >= measure_from && t3 < end {
                    r.heartbeat_us.push(micros(t3 - t2));
                }
            }
            Ok((status, body)) => {
                ok = false;
                r.error(format!("heartbeat: {}", problem_kind(status, &body)));
            }
            Err(e) => {
                ok = false;
                r.error(format!("heartbeat: {e}"));
            }
        }

        // Release: forget the hold first (see `Holders::give_back`).
        holders.give_back(&dataset_id, index);
        let t4 = Instant::now();
        let answer = http
            .post(
                &format!("/api/v1/leases/{lease_id}/release"),
                release_body,
                lease_token.as_deref(),
            )
            .await;
        let t5 = Instant::now();
        match answer {
            Ok((200, body)) => {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if v.pointer("/datasets/0/status").and_then(Value::as_str) != Some("ready") {
                    ok = false;
                    r.error("release: dataset not back to ready".into());
                }
                if t4 >= measure_from && t5 < end {
                    r.release_us.push(micros(t5 - t4));
                }
            }
            Ok((status, body)) => {
                ok = false;
                r.error(format!("release: {}", problem_kind(status, &body)));
            }
            Err(e) => {
                ok = false;
                r.error(format!("release: {e}"));
            }
        }
        if ok && t5 >= measure_from && t5 < end {
            r.cycles += 1;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dataset_handed_to_a_second_holder_is_a_double_lease() {
        let holders = Holders::default();
        let mut r = ClientResult::default();
        holders.take("ds_a", 1, &mut r);
        holders.take("ds_b", 2, &mut r);
        assert!(r.errors.is_empty());
        holders.take("ds_a", 3, &mut r);
        assert_eq!(holders.double_leases.load(Ordering::Relaxed), 1);
        assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
        // Client 1 giving back what client 3 now holds does not clear 3's hold.
        holders.give_back("ds_a", 1);
        holders.take("ds_a", 4, &mut r);
        assert_eq!(holders.double_leases.load(Ordering::Relaxed), 2);
        // Given back by its holder, the next holder is fine.
        holders.give_back("ds_b", 2);
        holders.take("ds_b", 5, &mut r);
        assert_eq!(holders.double_leases.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn problem_kind_names_the_type() {
        let body = br#"{"type":"https://stockroom.dev/problems/no-stock","status":503}"#;
        assert_eq!(problem_kind(503, body), "503 no-stock");
        assert_eq!(problem_kind(500, b"oops"), "500");
    }
}
