//! The JSON file a test reads (`STOCKROOM_DATASETS_FILE`, docs/sidecar.md).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;

/// This job shard's place among its siblings (0-based index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub index: u32,
    pub total: u32,
}

/// A manifest entry's datasets: one object when `count = 1`, else a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DatasetsEntry {
    One(Box<Dataset>),
    Many(Vec<Dataset>),
}

impl DatasetsEntry {
    pub fn datasets(&self) -> Vec<&Dataset> {
        match self {
            DatasetsEntry::One(d) => vec![d.as_ref()],
            DatasetsEntry::Many(v) => v.iter().collect(),
        }
    }

    pub fn datasets_mut(&mut self) -> Vec<&mut Dataset> {
        match self {
            DatasetsEntry::One(d) => vec![d.as_mut()],
            DatasetsEntry::Many(v) => v.iter_mut().collect(),
        }
    }
}

/// `{"lease_id", "expires_at", "shard", "datasets": {name: DATASET | [DATASET]}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetsFile {
    pub lease_id: String,
    pub expires_at: String,
    pub shard: ShardInfo,
    pub datasets: BTreeMap<String, DatasetsEntry>,
}

impl DatasetsFile {
    /// Groups leased datasets by manifest name; an item that asked for more
    /// than one (each dataset's `count`, from the lease answer) is a list
    /// even if one came back.
    pub fn from_lease(
        lease_id: &str,
        expires_at: &str,
        shard: ShardInfo,
        leased: &[crate::api::LeasedDataset],
    ) -> DatasetsFile {
        let counts: BTreeMap<&str, u32> =
            leased.iter().map(|d| (d.name.as_str(), d.count)).collect();
        let mut grouped: BTreeMap<String, Vec<(u32, Dataset)>> = BTreeMap::new();
        for d in leased {
            grouped
                .entry(d.name.clone())
                .or_default()
                .push((d.index, d.dataset.clone()));
        }
        let datasets = grouped
            .into_iter()
            .map(|(name, mut items)| {
                items.sort_by_key(|(i, _)| *i);
                let many = counts.get(name.as_str()).copied().unwrap_or(1) > 1 || items.len() > 1;
                let mut list: Vec<Dataset> = items.into_iter().map(|(_, d)| d).collect();
                let entry = match (many, list.pop()) {
                    (false, Some(only)) => DatasetsEntry::One(Box::new(only)),
                    (_, last) => {
                        list.extend(last);
                        DatasetsEntry::Many(list)
                    }
                };
                (name, entry)
            })
            .collect();
        DatasetsFile {
            lease_id: lease_id.to_string(),
            expires_at: expires_at.to_string(),
            shard,
            datasets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LeasedDataset;
    use serde_json::json;

    fn leased(name: &str, index: u32, id: &str) -> LeasedDataset {
        LeasedDataset {
            name: name.into(),
            index,
            count: if name == "orders" { 2 } else { 1 },
            dataset: serde_json::from_value(
                json!({"id": id, "type": "t", "state": "s", "data": {}}),
            )
            .unwrap(),
        }
    }

    #[test]
    fn count_one_is_an_object_and_more_is_an_ordered_list() {
        let file = DatasetsFile::from_lease(
            "l1",
            "2026-01-01T00:00:00Z",
            ShardInfo { index: 0, total: 4 },
            &[
                leased("orders", 1, "o2"),
                leased("buyer", 0, "b1"),
                leased("orders", 0, "o1"),
            ],
        );
        let v = serde_json::to_value(&file).unwrap();
        assert_eq!(v["datasets"]["buyer"]["id"], "b1");
        assert_eq!(v["datasets"]["orders"][0]["id"], "o1");
        assert_eq!(v["datasets"]["orders"][1]["id"], "o2");
        assert_eq!(v["shard"], json!({"index": 0, "total": 4}));
        let back: DatasetsFile = serde_json::from_value(v).unwrap();
        assert_eq!(back, file);
    }
}
