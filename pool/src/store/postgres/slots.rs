//! Which `status_counts` slot a transaction writes its count deltas to.
//!
//! Each count key is spread over [`SLOTS`] rows so that concurrent
//! transactions do not queue on one row (see the 0002 migration): the row a
//! transaction upserts stays locked until it commits, so two transactions
//! writing the same slot commit one after the other. Picking the slot from
//! the backend's pid (`pg_backend_pid() % 64`) let two of a replica's
//! connections share a slot more often than not (16 connections over 64
//! slots: about 1.9 colliding pairs on average). Here a replica hands each
//! running transaction a slot of its own from a free list, starting at a
//! random offset so that replicas mostly use different slots; a slot shared
//! across replicas costs a wait, never a wrong count (counts are sums).

use std::sync::Mutex;

/// Slots per count key: the most rows `stock()` sums per key.
pub const SLOTS: i32 = 64;

/// The free slots of one replica.
pub struct CountSlots {
    free: Mutex<Vec<i32>>,
    /// Used when every slot of the list is taken (more transactions at once
    /// than slots): shared, still correct.
    overflow: i32,
}

/// A slot held by one transaction; back on the free list when dropped.
pub struct SlotGuard<'a> {
    slots: &'a CountSlots,
    slot: i32,
    owned: bool,
}

impl CountSlots {
    /// Slots for a replica of `connections` connections.
    pub fn new(connections: usize) -> CountSlots {
        let offset = fastrand::i32(0..SLOTS);
        let n = i32::try_from(connections).unwrap_or(SLOTS).clamp(1, SLOTS);
        // Popped from the end: the offset's slot first.
        let free = (0..n).rev().map(|i| (offset + i) % SLOTS).collect();
        CountSlots {
            free: Mutex::new(free),
            overflow: offset,
        }
    }

    pub fn take(&self) -> SlotGuard<'_> {
        let popped = self.free.lock().map_or(None, |mut f| f.pop());
        SlotGuard {
            slots: self,
            slot: popped.unwrap_or(self.overflow),
            owned: popped.is_some(),
        }
    }
}

impl SlotGuard<'_> {
    pub fn slot(&self) -> i32 {
        self.slot
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        if self.owned
            && let Ok(mut f) = self.slots.free.lock()
        {
            f.push(self.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_transactions_of_a_replica_never_share_a_slot() {
        let slots = CountSlots::new(16);
        let held: Vec<_> = (0..16).map(|_| slots.take()).collect();
        let mut seen: Vec<i32> = held.iter().map(SlotGuard::slot).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 16);
        assert!(seen.iter().all(|s| (0..SLOTS).contains(s)));
        // A 17th at once shares the overflow slot; a dropped one is reused.
        let extra = slots.take();
        assert!(!extra.owned);
        let again = held[3].slot();
        drop(held);
        assert!(slots.free.lock().expect("lock").contains(&again));
        // More connections than slots: every slot, and no more.
        let wide = CountSlots::new(100);
        assert_eq!(wide.free.lock().expect("lock").len(), SLOTS as usize);
    }
}
