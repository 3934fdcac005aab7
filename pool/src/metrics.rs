//! Prometheus text metrics, hand-written: a few counters and one histogram.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::StockTable;

/// Upper bounds of the acquire-latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, Default)]
pub struct Metrics {
    pub leases_granted: AtomicU64,
    pub leases_released: AtomicU64,
    pub leases_expired: AtomicU64,
    pub acquire_no_stock: AtomicU64,
    buckets: [AtomicU64; 15],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    /// Records how long a successful `POST /leases` took (waiting included).
    pub fn observe_acquire(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn render(
        &self,
        active: u64,
        waiting: usize,
        replenish_requests: u64,
        stock: &StockTable,
    ) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        };
        counter(
            &mut out,
            "stockroom_leases_granted_total",
            "Leases granted.",
            &self.leases_granted,
        );
        counter(
            &mut out,
            "stockroom_leases_released_total",
            "Leases released by their holder.",
            &self.leases_released,
        );
        counter(
            &mut out,
            "stockroom_leases_expired_total",
            "Leases expired without heartbeat.",
            &self.leases_expired,
        );
        counter(
            &mut out,
            "stockroom_acquire_no_stock_total",
            "Lease requests answered 503 no-stock.",
            &self.acquire_no_stock,
        );
        let _ = writeln!(
            out,
            "# HELP stockroom_leases_active Leases active now.\n# TYPE stockroom_leases_active gauge\nstockroom_leases_active {active}"
        );
        let _ = writeln!(
            out,
            "# HELP stockroom_acquire_waiting Lease requests waiting for stock now.\n# TYPE stockroom_acquire_waiting gauge\nstockroom_acquire_waiting {waiting}"
        );
        let _ = writeln!(
            out,
            "# HELP stockroom_replenish_requests_total Times pre-generation was asked to refill stock (a lease, a setting or a settle changed it).\n# TYPE stockroom_replenish_requests_total counter\nstockroom_replenish_requests_total {replenish_requests}"
        );
        let _ = writeln!(
            out,
            "# HELP stockroom_acquire_seconds Time to grant a lease, waiting included.\n# TYPE stockroom_acquire_seconds histogram"
        );
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "stockroom_acquire_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "stockroom_acquire_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "stockroom_acquire_seconds_sum {}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "stockroom_acquire_seconds_count {count}");
        let _ = writeln!(
            out,
            "# HELP stockroom_datasets Datasets per type, state and status.\n# TYPE stockroom_datasets gauge"
        );
        for ((t, s), c) in stock {
            for (status, n) in [
                ("ready", c.ready),
                ("generating", c.generating),
                ("leased", c.leased),
                ("quarantined", c.quarantined),
                ("consumed", c.consumed),
                ("failed", c.failed),
                ("discarded", c.discarded),
            ] {
                let _ = writeln!(
                    out,
                    "stockroom_datasets{{type=\"{}\",state=\"{}\",status=\"{status}\"}} {n}",
                    escape(t),
                    escape(s)
                );
            }
        }
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
