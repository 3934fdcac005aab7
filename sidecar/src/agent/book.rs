//! What the agent holds, in memory: the leases it has at the pool, the
//! reserved datasets not taken yet, and every take with its outcome. No I/O
//! here: the agent (`agent/core.rs`) calls the pool outside the book's lock.

use std::collections::{BTreeMap, HashMap, HashSet};

use stockroom_protocol::api::{DatasetOutcome, LeasedDataset};
use stockroom_protocol::{Dataset, DatasetStatus, Outcome};

use crate::lease::LeaseToken;

use super::wire::{HeldView, ReservedCount, TakeItem, TakeView, TakenView};

/// Why the agent holds a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// Leased ahead by a reserve; its datasets serve takes locally.
    Reserve,
    /// Leased for one take (the take's id).
    Take(String),
}

/// A lease the agent holds at the pool.
#[derive(Debug, Clone)]
pub struct Held {
    pub lease_id: String,
    pub lease_token: Option<LeaseToken>,
    pub purpose: Purpose,
    pub heartbeat_interval_seconds: u64,
    /// Every dataset of the lease, in lease order.
    pub dataset_ids: Vec<String>,
    /// Outcomes decided but not yet sent (settled with the lease's release).
    pub pending: BTreeMap<String, DatasetOutcome>,
    /// Datasets the pool has settled already (early per-dataset release).
    pub settled: HashSet<String>,
    /// Set when the pool says the lease is gone.
    pub lost: Option<String>,
}

impl Held {
    pub fn view(&self) -> HeldView {
        HeldView {
            lease_id: self.lease_id.clone(),
            for_: match &self.purpose {
                Purpose::Reserve => "reserve".into(),
                Purpose::Take(id) => id.clone(),
            },
            datasets: self.dataset_ids.len(),
            lost: self.lost.clone(),
        }
    }
}

/// A dataset handed out by a take.
#[derive(Debug, Clone)]
pub struct Taken {
    pub lease_id: String,
    pub leased: LeasedDataset,
}

/// What `done` recorded.
#[derive(Debug, Clone)]
pub struct Done {
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub statuses: Vec<(String, String, DatasetStatus)>,
}

/// One take.
#[derive(Debug, Clone)]
pub struct Take {
    pub id: String,
    pub test: Option<String>,
    pub worker: Option<String>,
    /// `None`: served from the reserve; `Some(lease)`: leased for this take.
    pub own_lease: Option<String>,
    pub datasets: Vec<Taken>,
    pub done: Option<Done>,
}

impl Take {
    pub fn view(&self) -> TakeView {
        TakeView {
            take_id: self.id.clone(),
            test: self.test.clone(),
            worker: self.worker.clone(),
            source: if self.own_lease.is_some() {
                "pool"
            } else {
                "reserve"
            }
            .into(),
            outcome: self.done.as_ref().map(|d| d.outcome),
            reason: self.done.as_ref().and_then(|d| d.reason.clone()),
            datasets: self
                .datasets
                .iter()
                .map(|t| TakenView {
                    name: t.leased.name.clone(),
                    index: t.leased.index,
                    id: t.leased.dataset.id.clone(),
                    type_name: t.leased.dataset.type_name.clone(),
                    state: t.leased.dataset.state.clone(),
                    lease_id: t.lease_id.clone(),
                })
                .collect(),
        }
    }
}

/// A reserved dataset not taken (or given back as `unused`).
#[derive(Debug, Clone)]
pub struct Reserved {
    pub lease_id: String,
    pub dataset: Dataset,
}

/// The agent's whole memory. See the module docs.
#[derive(Debug, Default)]
pub struct Book {
    pub leases: BTreeMap<String, Held>,
    /// Oldest first: takes get the longest-held datasets.
    pub reserve: Vec<Reserved>,
    pub takes: HashMap<String, Take>,
    /// `(type, state)` whose datasets go back to `ready` after `passed`.
    pub reusable: HashSet<(String, String)>,
    /// Set when the run ends: no new reserve or take.
    pub closed: bool,
    /// Takes waiting on the pool right now.
    pub in_flight: usize,
}

/// Whether `dataset` answers `item` (same type and state, every `where` attribute equal).
pub fn matches(item: &TakeItem, dataset: &Dataset) -> bool {
    dataset.type_name == item.type_name
        && dataset.state == item.state
        && item
            .where_
            .iter()
            .all(|(k, v)| dataset.attributes.get(k) == Some(v))
}

impl Book {
    /// Takes every item from the reserve, or nothing: the datasets as the
    /// take answers them, each with its lease.
    pub fn take_from_reserve(&mut self, items: &[TakeItem]) -> Option<Vec<Taken>> {
        let mut picked: Vec<usize> = Vec::new();
        let mut out = Vec::new();
        for item in items {
            for index in 0..item.count {
                // A lease the pool says is gone serves nothing more.
                let live = |r: &Reserved| {
                    self.leases
                        .get(&r.lease_id)
                        .is_none_or(|h| h.lost.is_none())
                };
                let pos = self.reserve.iter().enumerate().position(|(i, r)| {
                    !picked.contains(&i) && live(r) && matches(item, &r.dataset)
                })?;
                picked.push(pos);
                let r = &self.reserve[pos];
                out.push(Taken {
                    lease_id: r.lease_id.clone(),
                    leased: LeasedDataset {
                        name: item.name().to_string(),
                        index,
                        count: item.count,
                        dataset: r.dataset.clone(),
                    },
                });
            }
        }
        picked.sort_unstable();
        for pos in picked.into_iter().rev() {
            self.reserve.remove(pos);
        }
        Some(out)
    }

    /// The status a dataset gets for `outcome` (the pool's rule,
    /// docs/pool.md): known before the pool is told.
    pub fn status_for(&self, dataset: &Dataset, outcome: Outcome) -> DatasetStatus {
        match outcome {
            Outcome::Unused => DatasetStatus::Ready,
            Outcome::Passed
                if self
                    .reusable
                    .contains(&(dataset.type_name.clone(), dataset.state.clone())) =>
            {
                DatasetStatus::Ready
            }
            Outcome::Passed => DatasetStatus::Consumed,
            Outcome::Failed | Outcome::Cancelled => DatasetStatus::Quarantined,
        }
    }

    /// Reserved datasets not taken, per kind.
    pub fn reserved_counts(&self) -> Vec<ReservedCount> {
        let mut counts: BTreeMap<(String, String), u32> = BTreeMap::new();
        for r in &self.reserve {
            *counts
                .entry((r.dataset.type_name.clone(), r.dataset.state.clone()))
                .or_insert(0) += 1;
        }
        counts
            .into_iter()
            .map(|((type_name, state), count)| ReservedCount {
                type_name,
                state,
                count,
            })
            .collect()
    }

    /// What the end of the run sends for each lease not lost: the lease and
    /// every dataset's outcome not settled yet. `run_outcome` is for takes
    /// not done; reserved datasets never taken are `unused`.
    pub fn final_outcomes(
        &self,
        run_outcome: Outcome,
        run_reason: &str,
    ) -> Vec<(Held, BTreeMap<String, DatasetOutcome>)> {
        let mut in_open_take: HashMap<&str, &Take> = HashMap::new();
        for take in self.takes.values().filter(|t| t.done.is_none()) {
            for d in &take.datasets {
                in_open_take.insert(d.leased.dataset.id.as_str(), take);
            }
        }
        let mut out = Vec::new();
        for held in self.leases.values().filter(|h| h.lost.is_none()) {
            let mut outcomes = BTreeMap::new();
            for id in &held.dataset_ids {
                if held.settled.contains(id) {
                    continue;
                }
                let outcome = if let Some(pending) = held.pending.get(id) {
                    pending.clone()
                } else if let Some(take) = in_open_take.get(id.as_str()) {
                    DatasetOutcome {
                        outcome: run_outcome,
                        reason: Some(format!(
                            "the test did not say done before the run ended: {run_reason}"
                        )),
                        test: take.test.clone(),
                    }
                } else {
                    DatasetOutcome {
                        outcome: Outcome::Unused,
                        reason: Some("reserved, never taken".into()),
                        test: None,
                    }
                };
                outcomes.insert(id.clone(), outcome);
            }
            out.push((held.clone(), outcomes));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dataset(id: &str, country: &str) -> Dataset {
        serde_json::from_value(json!({
            "id": id, "type": "customer", "state": "active",
            "attributes": {"country": country}
        }))
        .expect("dataset")
    }

    fn item(count: u32, country: Option<&str>) -> TakeItem {
        serde_json::from_value(json!({
            "type": "customer", "state": "active", "count": count,
            "where": country.map(|c| json!({"country": c})).unwrap_or(json!({}))
        }))
        .expect("item")
    }

    fn book() -> Book {
        let mut book = Book::default();
        for (id, c) in [("d1", "DE"), ("d2", "US"), ("d3", "DE")] {
            book.reserve.push(Reserved {
                lease_id: "l1".into(),
                dataset: dataset(id, c),
            });
        }
        book
    }

    #[test]
    fn a_take_is_served_whole_from_the_reserve_or_not_at_all() {
        let mut book = book();
        let got = book
            .take_from_reserve(&[item(2, Some("DE"))])
            .expect("two DE");
        let ids: Vec<_> = got.iter().map(|t| t.leased.dataset.id.as_str()).collect();
        assert_eq!(ids, ["d1", "d3"]);
        assert_eq!(got[1].leased.index, 1);
        assert_eq!(got[1].leased.count, 2);
        assert_eq!(got[0].leased.name, "customer");
        assert!(book.take_from_reserve(&[item(1, Some("DE"))]).is_none());
        assert_eq!(book.reserve.len(), 1, "a refused take takes nothing");
        assert!(book.take_from_reserve(&[item(2, None)]).is_none());
        assert_eq!(book.reserve.len(), 1);
        assert!(book.take_from_reserve(&[item(1, None)]).is_some());
        assert!(book.reserve.is_empty());
    }

    #[test]
    fn the_end_settles_open_takes_with_the_run_and_the_rest_as_unused() {
        let mut book = book();
        book.leases.insert(
            "l1".into(),
            Held {
                lease_id: "l1".into(),
                lease_token: None,
                purpose: Purpose::Reserve,
                heartbeat_interval_seconds: 1,
                dataset_ids: vec!["d1".into(), "d2".into(), "d3".into()],
                pending: BTreeMap::new(),
                settled: HashSet::new(),
                lost: None,
            },
        );
        let taken = book.take_from_reserve(&[item(1, Some("US"))]).expect("US");
        book.takes.insert(
            "t1".into(),
            Take {
                id: "t1".into(),
                test: Some("test_a".into()),
                worker: None,
                own_lease: None,
                datasets: taken,
                done: None,
            },
        );
        let held = book.leases.get_mut("l1").expect("held");
        held.settled.insert("d3".into());
        held.lost = Some("expired".into());
        assert!(
            book.take_from_reserve(&[item(1, None)]).is_none(),
            "a lost lease serves no take"
        );
        book.leases.get_mut("l1").expect("held").lost = None;
        let out = book.final_outcomes(Outcome::Failed, "command exited with code 1");
        assert_eq!(out.len(), 1);
        let outcomes = &out[0].1;
        assert_eq!(outcomes["d1"].outcome, Outcome::Unused);
        assert_eq!(outcomes["d2"].outcome, Outcome::Failed);
        assert_eq!(outcomes["d2"].test.as_deref(), Some("test_a"));
        assert!(!outcomes.contains_key("d3"), "settled early");
        assert_eq!(
            book.status_for(&dataset("x", "DE"), Outcome::Unused),
            DatasetStatus::Ready
        );
    }
}
