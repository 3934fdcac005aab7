//! Waiting for stock: the queue of lease requests that asked for `wait_seconds`.
//!
//! Policy (first come, first served per state, without head-of-line deadlock):
//! 1. Every request that may wait takes a ticket in arrival order.
//! 2. A request may try the store only if no *earlier blocking* waiter
//!    competes with it: one that needs the same type/state with a compatible
//!    `where` (no attribute required with two different values). So stock that
//!    appears goes to the oldest compatible waiter: a large request is not
//!    starved by a stream of small ones, which queue behind it.
//! 3. A waiter blocks others only while it is *satisfiable*: its last attempt
//!    fell short but, per item, ready + generating + leased datasets matching
//!    it reach what it wants. A request for more than could ever come back
//!    waits without blocking anyone.
//! 4. Waiters retry whenever stock may have grown (a release, registration,
//!    recycle, expiry, a waiter leaving) and give up at their deadline with
//!    503 `no-stock`; an attempt is all-or-nothing, so nothing stays held.
//!
//! The queue is process-local: with several pool replicas, fairness holds per replica.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use stockroom_protocol::Attributes;
use tokio::sync::watch;

/// What one item of a waiting request needs.
#[derive(Debug, Clone)]
pub struct Need {
    pub type_name: String,
    pub state: String,
    pub where_: Attributes,
    /// How many datasets the item wants.
    pub count: u32,
}

impl Need {
    /// Whether two needs may compete for the same dataset.
    fn competes(&self, other: &Need) -> bool {
        self.type_name == other.type_name
            && self.state == other.state
            && self
                .where_
                .iter()
                .all(|(k, v)| other.where_.get(k).is_none_or(|o| o == v))
    }
}

#[derive(Debug)]
struct Waiter {
    needs: Vec<Need>,
    blocking: bool,
    /// Its last attempt found too little stock.
    short: bool,
}

#[derive(Debug, Default)]
struct Queue {
    next: u64,
    waiters: BTreeMap<u64, Waiter>,
}

/// The wait queue, shared by every request handler.
#[derive(Debug, Clone)]
pub struct WaitQueue {
    queue: Arc<Mutex<Queue>>,
    changed: Arc<watch::Sender<u64>>,
}

impl Default for WaitQueue {
    fn default() -> Self {
        WaitQueue {
            queue: Arc::default(),
            changed: Arc::new(watch::channel(0).0),
        }
    }
}

/// A place in the queue; leaving the queue happens on drop.
#[derive(Debug)]
pub struct Ticket {
    number: u64,
    queue: WaitQueue,
}

impl WaitQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Says that stock may have grown; waiters retry.
    pub fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that wakes on [`WaitQueue::notify`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn join(&self, needs: Vec<Need>) -> Ticket {
        let mut q = self.lock();
        let number = q.next;
        q.next += 1;
        q.waiters.insert(
            number,
            Waiter {
                needs,
                blocking: false,
                short: false,
            },
        );
        Ticket {
            number,
            queue: self.clone(),
        }
    }

    /// How many requests are waiting now.
    pub fn len(&self) -> usize {
        self.lock().waiters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Datasets wanted per `(type, state)` by the requests whose last
    /// attempt fell short: the stock policy serves these states first.
    pub fn waiting_by_state(&self) -> BTreeMap<(String, String), u64> {
        let mut out: BTreeMap<(String, String), u64> = BTreeMap::new();
        for w in self.lock().waiters.values().filter(|w| w.short) {
            for n in &w.needs {
                *out.entry((n.type_name.clone(), n.state.clone()))
                    .or_default() += u64::from(n.count);
            }
        }
        out
    }
}

impl Ticket {
    /// Whether no earlier blocking waiter competes with this one.
    pub fn may_try(&self) -> bool {
        let q = self.queue.lock();
        let Some(me) = q.waiters.get(&self.number) else {
            return true;
        };
        !q.waiters.range(..self.number).any(|(_, w)| {
            w.blocking
                && w.needs
                    .iter()
                    .any(|n| me.needs.iter().any(|m| n.competes(m)))
        })
    }

    /// After an attempt fell short: marks the waiter as waiting for stock,
    /// and whether it holds back later competing ones.
    pub fn set_blocking(&self, blocking: bool) {
        let was = {
            let mut q = self.queue.lock();
            q.waiters.get_mut(&self.number).map(|w| {
                w.short = true;
                std::mem::replace(&mut w.blocking, blocking)
            })
        };
        if was == Some(true) && !blocking {
            self.queue.notify();
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let removed = self.queue.lock().waiters.remove(&self.number);
        if removed.is_some_and(|w| w.blocking) {
            self.queue.notify();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(state: &str, w: &[(&str, &str)]) -> Need {
        Need {
            type_name: "c".into(),
            state: state.into(),
            where_: w
                .iter()
                .map(|(k, v)| (k.to_string(), (*v).into()))
                .collect(),
            count: 1,
        }
    }

    #[test]
    fn waiting_counts_only_requests_that_fell_short() {
        let q = WaitQueue::default();
        let first = q.join(vec![need("a", &[]), need("b", &[])]);
        let _trying = q.join(vec![need("a", &[])]);
        assert!(q.waiting_by_state().is_empty(), "nobody fell short yet");
        first.set_blocking(false);
        let w = q.waiting_by_state();
        assert_eq!(w.get(&("c".to_string(), "a".to_string())), Some(&1));
        assert_eq!(w.get(&("c".to_string(), "b".to_string())), Some(&1));
        drop(first);
        assert!(q.waiting_by_state().is_empty());
    }

    #[test]
    fn earlier_blocking_waiters_hold_back_competing_ones_only() {
        let q = WaitQueue::default();
        let big = q.join(vec![need("a", &[("country", "DE")])]);
        let small = q.join(vec![need("a", &[])]);
        let other_country = q.join(vec![need("a", &[("country", "US")])]);
        let other_state = q.join(vec![need("b", &[])]);
        assert!(small.may_try());
        big.set_blocking(true);
        assert!(big.may_try());
        assert!(
            !small.may_try(),
            "a later competing request waits behind the blocking one"
        );
        assert!(other_country.may_try(), "disjoint filters never compete");
        assert!(other_state.may_try());
        let mut rx = q.subscribe();
        rx.borrow_and_update();
        drop(big);
        assert!(
            rx.has_changed().unwrap(),
            "leaving the queue wakes the others"
        );
        assert!(small.may_try());
        assert_eq!(q.len(), 3);
    }
}
