//! Stock over time: per-state counts sampled every [`interval`] (10 s, or
//! `STOCKROOM_UI_SAMPLE_SECONDS`) into an in-memory ring buffer holding the
//! last 24 hours. A restart starts the chart afresh.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::store::Store;
use crate::time::now_ms;

/// How far back the chart reaches.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);

/// ready, generating, leased, quarantined.
pub type Counts = [u64; 4];

#[derive(Debug, Clone)]
pub struct Sample {
    pub at_ms: i64,
    pub counts: BTreeMap<(String, String), Counts>,
}

pub struct Samples {
    pub interval: Duration,
    ring: Mutex<VecDeque<Sample>>,
}

/// The sampling interval: `STOCKROOM_UI_SAMPLE_SECONDS` (1..=3600) or 10 s.
pub fn interval() -> Duration {
    let secs = std::env::var("STOCKROOM_UI_SAMPLE_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| (1..=3600).contains(s))
        .unwrap_or(10);
    Duration::from_secs(secs)
}

impl Samples {
    pub fn new(interval: Duration) -> Samples {
        Samples {
            interval,
            ring: Mutex::new(VecDeque::new()),
        }
    }

    fn capacity(&self) -> usize {
        let per = self.interval.as_secs().max(1);
        usize::try_from(KEEP.as_secs() / per).unwrap_or(8640) + 1
    }

    pub fn push(&self, sample: Sample) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = sample.at_ms - i64::try_from(KEEP.as_millis()).unwrap_or(i64::MAX);
        ring.push_back(sample);
        while ring.len() > self.capacity() || ring.front().is_some_and(|s| s.at_ms < oldest) {
            ring.pop_front();
        }
    }

    /// Every sample, oldest first.
    pub fn all(&self) -> Vec<Sample> {
        self.ring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Records one sample from the store.
    pub async fn record(&self, store: &Arc<dyn Store>) {
        match store.stock().await {
            Ok(table) => {
                let counts = table
                    .into_iter()
                    .map(|(k, c)| (k, [c.ready, c.generating, c.leased, c.quarantined]))
                    .collect();
                self.push(Sample {
                    at_ms: now_ms(),
                    counts,
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot sample stock for the web page"),
        }
    }
}

/// Samples until shutdown starts.
pub async fn run(
    samples: Arc<Samples>,
    store: Arc<dyn Store>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        samples.record(&store).await;
        tokio::select! {
            () = tokio::time::sleep(samples.interval) => {}
            r = shutdown.wait_for(|v| *v) => { let _ = r; return; }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_a_bounded_window() {
        let s = Samples::new(Duration::from_secs(3600));
        for i in 0..40 {
            s.push(Sample {
                at_ms: i * 3_600_000,
                counts: BTreeMap::new(),
            });
        }
        let all = s.all();
        assert_eq!(all.len(), 25);
        assert_eq!(all.last().map(|x| x.at_ms), Some(39 * 3_600_000));
    }
}
