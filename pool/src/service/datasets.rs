//! Datasets: registration by hand, settling (discard, recycle), retention,
//! and the reads of datasets.

use std::time::Duration;

use stockroom_protocol::api::{DatasetView, NewDataset};

use super::{PoolService, ServiceError, ServiceResult};
use crate::store::{DatasetFilter, SettleResult};

fn redacted(mut v: DatasetView) -> DatasetView {
    v.dataset = v.dataset.redacted();
    v
}

/// One quarantined dataset with what the quarantine page shows about it.
pub use crate::store::QuarantinedDataset as Quarantined;

/// How a dataset is settled by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// `quarantined`, `ready` or `failed` → `discarded`.
    Discard,
    /// `quarantined` → `ready`.
    Recycle,
}

impl Settle {
    /// The statuses it applies to, for messages.
    fn applies_to(self) -> &'static str {
        match self {
            Settle::Discard => "quarantined, ready or failed",
            Settle::Recycle => "quarantined",
        }
    }
}

/// Checks datasets registered by hand; the error names the first bad one.
fn validate_new(datasets: &[NewDataset]) -> ServiceResult<()> {
    if datasets.is_empty() {
        return Err(ServiceError::Invalid(
            "the list of datasets is empty".into(),
        ));
    }
    for (i, d) in datasets.iter().enumerate() {
        let bad = |m: &str| Err(ServiceError::Invalid(format!("dataset {i}: {m}")));
        if d.type_name.is_empty() || d.state.is_empty() {
            return bad("type and state must not be empty");
        }
        // The checks every generator answer goes through (docs/generators.md).
        if let Err(v) = stockroom_generators::validate::validate_dataset_parts(
            &d.data,
            &d.secret_fields,
            &d.entities,
        ) {
            return bad(&v.to_string());
        }
    }
    Ok(())
}

impl PoolService {
    /// Registers datasets by hand, `ready` at once; answers them redacted.
    pub async fn register(
        &self,
        datasets: Vec<NewDataset>,
        by: String,
    ) -> ServiceResult<Vec<DatasetView>> {
        validate_new(&datasets)?;
        let result = self
            .store()
            .register(datasets, by, self.now_ms())
            .await
            .map_err(ServiceError::from);
        self.observe_write(&result);
        let views = result?;
        self.stock_freed();
        tracing::info!(datasets = views.len(), "datasets registered by hand");
        Ok(views.into_iter().map(redacted).collect())
    }

    /// Discards or recycles a dataset by hand. Either changes what can be
    /// leased, so both wake the waiters and ask the supply for stock.
    pub async fn settle(&self, id: String, how: Settle, by: String) -> ServiceResult<DatasetView> {
        let now = self.now_ms();
        let result = match how {
            Settle::Discard => self.store().discard(id.clone(), by, now).await?,
            Settle::Recycle => self.store().recycle(id.clone(), by, now).await?,
        };
        match result {
            SettleResult::Done(view) => {
                self.stock_freed();
                self.stock_taken();
                tracing::info!(dataset_id = %id, action = ?how, "dataset settled by hand");
                Ok(redacted(*view))
            }
            SettleResult::WrongStatus(status) => Err(ServiceError::WrongStatus {
                status,
                detail: format!(
                    "dataset {id} is {status}; only {} datasets can be settled so",
                    how.applies_to()
                ),
            }),
            SettleResult::NotFound => Err(ServiceError::NotFound(format!("no dataset {id}"))),
        }
    }

    /// One dataset with its history, secrets redacted.
    pub async fn dataset(&self, id: String) -> ServiceResult<DatasetView> {
        match self.store().get_dataset(id.clone()).await? {
            Some(v) => Ok(redacted(v)),
            None => Err(ServiceError::NotFound(format!("no dataset {id}"))),
        }
    }

    /// Datasets in insertion order, without history, secrets redacted.
    pub async fn datasets(&self, filter: DatasetFilter) -> ServiceResult<Vec<DatasetView>> {
        Ok(self
            .store()
            .list_datasets(filter)
            .await?
            .into_iter()
            .map(redacted)
            .collect())
    }

    /// Quarantined datasets, oldest first, at most `limit`, with their
    /// history and failing job, secrets redacted (a constant number of
    /// queries, whatever `limit`).
    pub async fn quarantined(&self, limit: u32) -> ServiceResult<Vec<Quarantined>> {
        let mut rows = self.store().list_quarantined(limit).await?;
        for row in &mut rows {
            row.view.dataset = row.view.dataset.redacted();
        }
        Ok(rows)
    }

    /// Erases the data of datasets consumed longer than `keep` ago.
    pub async fn purge_consumed(&self, keep: Duration) -> ServiceResult<u64> {
        let now = self.now_ms();
        let before = now.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        let n = self.store().purge_consumed(before, now).await?;
        if n > 0 {
            tracing::info!(
                datasets = n,
                "erased data of consumed datasets past consumed_retention"
            );
        }
        Ok(n)
    }
}
