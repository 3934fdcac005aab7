//! Waiting on a condition with a deadline.

use std::time::{Duration, Instant};

/// How often [`poll_until`] looks again: short, because it only bounds how
/// late a condition that already holds is noticed.
pub const POLL: Duration = Duration::from_millis(10);

/// Calls `check` every [`POLL`] until it gives `Some`, or `timeout` has
/// passed (`None` then; `check` is always called once more at the deadline,
/// so a slow machine never loses a condition that came true in time).
pub fn poll_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return check();
        }
        // The poll interval of a wait with a deadline, not a bet on timing.
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_what_the_check_found_or_none_at_the_deadline() {
        let mut calls = 0;
        let found = poll_until(Duration::from_secs(30), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(found, Some(3));
        let started = Instant::now();
        assert_eq!(poll_until(Duration::from_millis(50), || None::<()>), None);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
