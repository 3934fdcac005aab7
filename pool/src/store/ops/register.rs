//! Registering datasets by hand, `ready` at once.

use stockroom_protocol::api::{DatasetView, HistoryEntry, NewDataset};
use stockroom_protocol::{Dataset, DatasetStatus};

use super::Work;
use crate::ids;
use crate::store::StoreResult;
use crate::store::rules::reasons;
use crate::store::tx::{Attr, NewHistory, NewRow, Tx};
use crate::time::rfc3339;

pub(crate) async fn register<T: Tx>(
    tx: &T,
    datasets: &[NewDataset],
    by: &str,
    now_ms: i64,
) -> StoreResult<Vec<DatasetView>> {
    let mut w = Work::new(tx);
    let mut out = Vec::with_capacity(datasets.len());
    for d in datasets {
        let id = ids::dataset_id();
        let seq = tx
            .insert_dataset(NewRow {
                id: &id,
                type_name: &d.type_name,
                state: &d.state,
                status: DatasetStatus::Ready,
                attributes: serde_json::to_string(&d.attributes)?,
                data: serde_json::to_string(&d.data)?,
                secret_fields: serde_json::to_string(&d.secret_fields)?,
                entities: serde_json::to_string(&d.entities)?,
                reusable: d.reusable,
                now_ms,
                generator: None,
                request: None,
                lifecycle: String::new(),
            })
            .await?;
        for (name, value) in &d.attributes {
            let attr = Attr {
                type_name: &d.type_name,
                state: &d.state,
                name,
                value: value.as_str(),
            };
            tx.insert_attr(attr, seq).await?;
        }
        w.count(&d.type_name, &d.state, DatasetStatus::Ready, 1);
        w.know(&d.type_name, &d.state);
        tx.insert_history(NewHistory {
            dataset_id: &id,
            at: now_ms,
            from: None,
            to: DatasetStatus::Ready,
            lease_id: None,
            holder: Some(by),
            reason: reasons::REGISTERED,
        })
        .await?;
        let created_at = rfc3339(now_ms);
        out.push(DatasetView {
            dataset: Dataset {
                id,
                type_name: d.type_name.clone(),
                state: d.state.clone(),
                attributes: d.attributes.clone(),
                data: d.data.clone(),
                secret_fields: d.secret_fields.clone(),
                entities: d.entities.clone(),
                inputs: Default::default(),
            },
            status: DatasetStatus::Ready,
            created_at: created_at.clone(),
            updated_at: created_at.clone(),
            lease_id: None,
            error: None,
            history: vec![HistoryEntry {
                at: created_at,
                from: None,
                to: DatasetStatus::Ready,
                lease_id: None,
                holder: Some(by.to_string()),
                reason: reasons::REGISTERED.to_string(),
            }],
        });
    }
    w.finish().await?;
    Ok(out)
}
