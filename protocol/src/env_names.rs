//! The variables a test sees (docs/sidecar.md, "What the tests see"),
//! computed from leased datasets.
//!
//! For dataset `buyer` with data `{"customer_id": "C1042"}` and prefix
//! `STOCKROOM_`: `STOCKROOM_BUYER_ID` (the dataset id) and
//! `STOCKROOM_BUYER_CUSTOMER_ID=C1042`. With `count > 1` an index follows the
//! name: `STOCKROOM_BUYER_0_CUSTOMER_ID`. Nested objects flatten with `_`,
//! arrays are JSON text, names are upper-cased and every other character
//! becomes `_`. Two sources that land on one name are an error: a test must
//! never read a value it did not expect.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::dataset::{Dataset, is_secret_path};
use crate::datasets_file::{DatasetsEntry, DatasetsFile};

/// One variable to inject.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
    /// From a secret field: never printed, masked on GitHub.
    pub secret: bool,
    /// Where the value comes from, such as `buyer.data.card.number`, for messages.
    pub source: String,
}

impl fmt::Debug for EnvVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if self.secret {
            crate::dataset::REDACTED
        } else {
            &self.value
        };
        f.debug_struct("EnvVar")
            .field("name", &self.name)
            .field("value", &value)
            .field("secret", &self.secret)
            .field("source", &self.source)
            .finish()
    }
}

/// Two sources that would set the same variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{first} and {second} both map to the variable {name}; rename one of the fields or the manifest entry"
)]
pub struct EnvCollision {
    pub name: String,
    pub first: String,
    pub second: String,
}

/// Upper-cases `part` and turns every character outside `[A-Z0-9_]` into `_`.
pub fn env_name_part(part: &str) -> String {
    part.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The text of a JSON value as a variable: strings as themselves, arrays and
/// other values as JSON text, null as the empty string.
pub fn env_value(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Collects variables, refusing two with the same name.
#[derive(Debug, Default)]
pub struct EnvSet {
    vars: BTreeMap<String, EnvVar>,
    collisions: Vec<EnvCollision>,
}

impl EnvSet {
    pub fn new() -> Self {
        EnvSet::default()
    }

    pub fn push(&mut self, var: EnvVar) {
        if let Some(existing) = self.vars.get(&var.name) {
            self.collisions.push(EnvCollision {
                name: var.name.clone(),
                first: existing.source.clone(),
                second: var.source,
            });
        } else {
            self.vars.insert(var.name.clone(), var);
        }
    }

    /// The variables in name order, or every collision found.
    pub fn finish(self) -> Result<Vec<EnvVar>, Vec<EnvCollision>> {
        if self.collisions.is_empty() {
            Ok(self.vars.into_values().collect())
        } else {
            Err(self.collisions)
        }
    }
}

/// Adds the variables of the datasets leased for manifest entry `name`.
/// `indexed` (the entry asked for `count > 1`) puts `_0`, `_1`… after the name.
pub fn push_dataset_vars(
    set: &mut EnvSet,
    prefix: &str,
    name: &str,
    datasets: &[&Dataset],
    indexed: bool,
) {
    for (i, dataset) in datasets.iter().enumerate() {
        let (base, source_base) = if indexed {
            (
                format!("{prefix}{}_{i}", env_name_part(name)),
                format!("{name}[{i}]"),
            )
        } else {
            (format!("{prefix}{}", env_name_part(name)), name.to_string())
        };
        set.push(EnvVar {
            name: format!("{base}_ID"),
            value: dataset.id.clone(),
            secret: false,
            source: format!("{source_base}.id (the dataset id)"),
        });
        match &dataset.data {
            Value::Object(map) => {
                for (key, value) in map {
                    flatten(set, &base, &source_base, key, value, &dataset.secret_fields);
                }
            }
            Value::Null => {}
            other => set.push(EnvVar {
                name: format!("{base}_DATA"),
                value: env_value(other),
                secret: !dataset.secret_fields.is_empty(),
                source: format!("{source_base}.data"),
            }),
        }
    }
}

fn flatten(
    set: &mut EnvSet,
    base: &str,
    source_base: &str,
    path: &str,
    value: &Value,
    secret_fields: &[String],
) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, inner) in map {
                flatten(
                    set,
                    base,
                    source_base,
                    &format!("{path}.{key}"),
                    inner,
                    secret_fields,
                );
            }
        }
        _ => set.push(EnvVar {
            name: format!("{base}_{}", env_name_part(path)),
            value: env_value(value),
            secret: is_secret_path(secret_fields, path),
            source: format!("{source_base}.data.{path}"),
        }),
    }
}

/// Every variable a test sees, for a datasets file written at `file_path`.
pub fn lease_env_vars(
    prefix: &str,
    file: &DatasetsFile,
    file_path: &str,
) -> Result<Vec<EnvVar>, Vec<EnvCollision>> {
    let mut set = EnvSet::new();
    let fixed = [
        ("LEASE_ID", file.lease_id.clone(), "the lease id"),
        (
            "SHARD_INDEX",
            file.shard.index.to_string(),
            "the shard index",
        ),
        (
            "SHARD_TOTAL",
            file.shard.total.to_string(),
            "the shard total",
        ),
        ("DATASETS_FILE", file_path.to_string(), "the datasets file"),
    ];
    for (name, value, source) in fixed {
        set.push(EnvVar {
            name: format!("{prefix}{name}"),
            value,
            secret: false,
            source: source.to_string(),
        });
    }
    for (name, entry) in &file.datasets {
        let indexed = matches!(entry, DatasetsEntry::Many(_));
        push_dataset_vars(&mut set, prefix, name, &entry.datasets(), indexed);
    }
    set.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets_file::ShardInfo;
    use serde_json::json;

    fn dataset(id: &str, data: Value, secrets: &[&str]) -> Dataset {
        Dataset {
            id: id.into(),
            type_name: "customer".into(),
            state: "active".into(),
            attributes: Default::default(),
            data,
            secret_fields: secrets.iter().map(|s| s.to_string()).collect(),
            entities: vec![],
            inputs: Default::default(),
        }
    }

    fn vars(
        name: &str,
        ds: &[Dataset],
        indexed: bool,
    ) -> Result<BTreeMap<String, (String, bool)>, Vec<EnvCollision>> {
        let mut set = EnvSet::new();
        push_dataset_vars(
            &mut set,
            "STOCKROOM_",
            name,
            &ds.iter().collect::<Vec<_>>(),
            indexed,
        );
        set.finish().map(|v| {
            v.into_iter()
                .map(|v| (v.name, (v.value, v.secret)))
                .collect()
        })
    }

    #[test]
    fn contract_example() {
        let v = vars(
            "buyer",
            &[dataset(
                "ds_1",
                json!({"customer_id": "C1042", "email": "a@x.test"}),
                &[],
            )],
            false,
        )
        .unwrap();
        assert_eq!(v["STOCKROOM_BUYER_ID"].0, "ds_1");
        assert_eq!(v["STOCKROOM_BUYER_CUSTOMER_ID"].0, "C1042");
        assert_eq!(v["STOCKROOM_BUYER_EMAIL"].0, "a@x.test");
        assert_eq!(v.len(), 3);
    }

    #[test]
    fn nesting_arrays_scalars_and_odd_characters() {
        let v = vars(
            "buyer",
            &[dataset(
                "d",
                json!({"address": {"city": "Köln", "geo": {"lat": 50.9}}, "tags": ["a", "b"], "vip": true,
                       "age": 42, "note": null, "e-mail.primary": "x", "empty": {}}),
                &[],
            )],
            false,
        )
        .unwrap();
        assert_eq!(v["STOCKROOM_BUYER_ADDRESS_CITY"].0, "Köln");
        assert_eq!(v["STOCKROOM_BUYER_ADDRESS_GEO_LAT"].0, "50.9");
        assert_eq!(v["STOCKROOM_BUYER_TAGS"].0, r#"["a","b"]"#);
        assert_eq!(v["STOCKROOM_BUYER_VIP"].0, "true");
        assert_eq!(v["STOCKROOM_BUYER_AGE"].0, "42");
        assert_eq!(v["STOCKROOM_BUYER_NOTE"].0, "");
        assert_eq!(v["STOCKROOM_BUYER_E_MAIL_PRIMARY"].0, "x");
        assert_eq!(v["STOCKROOM_BUYER_EMPTY"].0, "{}");
        assert_eq!(env_name_part("order-2.ü"), "ORDER_2__");
    }

    #[test]
    fn count_above_one_indexes_after_the_name() {
        let ds = [
            dataset("o1", json!({"order_id": "A"}), &[]),
            dataset("o2", json!({"order_id": "B"}), &[]),
        ];
        let v = vars("orders", &ds, true).unwrap();
        assert_eq!(v["STOCKROOM_ORDERS_0_ID"].0, "o1");
        assert_eq!(v["STOCKROOM_ORDERS_1_ID"].0, "o2");
        assert_eq!(v["STOCKROOM_ORDERS_0_ORDER_ID"].0, "A");
        assert_eq!(v["STOCKROOM_ORDERS_1_ORDER_ID"].0, "B");
        assert!(!v.contains_key("STOCKROOM_ORDERS_ORDER_ID"));
    }

    #[test]
    fn secret_fields_are_flagged_including_nested_ones() {
        let v = vars(
            "buyer",
            &[dataset(
                "d",
                json!({"password": "p", "card": {"number": "4111", "exp": "1"}, "email": "e"}),
                &["password", "card.number"],
            )],
            false,
        )
        .unwrap();
        assert!(v["STOCKROOM_BUYER_PASSWORD"].1);
        assert!(v["STOCKROOM_BUYER_CARD_NUMBER"].1);
        assert!(!v["STOCKROOM_BUYER_CARD_EXP"].1);
        assert!(!v["STOCKROOM_BUYER_EMAIL"].1);
        let shown = format!(
            "{:?}",
            EnvVar {
                name: "X".into(),
                value: "p".into(),
                secret: true,
                source: "s".into()
            }
        );
        assert!(!shown.contains("\"p\""), "{shown}");
    }

    #[test]
    fn fields_mapping_to_one_name_are_reported_not_overwritten() {
        let err = vars(
            "buyer",
            &[dataset("d", json!({"e-mail": "a", "e_mail": "b"}), &[])],
            false,
        )
        .unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].name, "STOCKROOM_BUYER_E_MAIL");
        assert!(
            err[0]
                .to_string()
                .contains("buyer.data.e-mail and buyer.data.e_mail"),
            "{}",
            err[0]
        );

        let err = vars(
            "buyer",
            &[dataset("d", json!({"a": {"b": 1}, "a_b": 2}), &[])],
            false,
        )
        .unwrap_err();
        assert_eq!(err[0].name, "STOCKROOM_BUYER_A_B");

        // A data field called `id` would shadow the dataset id.
        let err = vars("buyer", &[dataset("d", json!({"id": "x"}), &[])], false).unwrap_err();
        assert_eq!(err[0].name, "STOCKROOM_BUYER_ID");
    }

    #[test]
    fn lease_vars_include_the_fixed_ones_and_catch_cross_entry_collisions() {
        let file = DatasetsFile {
            lease_id: "l1".into(),
            expires_at: "t".into(),
            shard: ShardInfo { index: 1, total: 4 },
            datasets: BTreeMap::from([
                (
                    "buyer".to_string(),
                    DatasetsEntry::One(Box::new(dataset("b", json!({"x": 1}), &[]))),
                ),
                (
                    "orders".to_string(),
                    DatasetsEntry::Many(vec![dataset("o", json!({}), &[])]),
                ),
            ]),
        };
        let v: BTreeMap<String, String> = lease_env_vars("STOCKROOM_", &file, "/tmp/d.json")
            .unwrap()
            .into_iter()
            .map(|v| (v.name, v.value))
            .collect();
        assert_eq!(v["STOCKROOM_LEASE_ID"], "l1");
        assert_eq!(v["STOCKROOM_SHARD_INDEX"], "1");
        assert_eq!(v["STOCKROOM_SHARD_TOTAL"], "4");
        assert_eq!(v["STOCKROOM_DATASETS_FILE"], "/tmp/d.json");
        assert_eq!(v["STOCKROOM_ORDERS_0_ID"], "o");

        // An entry named `lease` would set STOCKROOM_LEASE_ID too.
        let mut clash = file.clone();
        clash.datasets.insert(
            "lease".into(),
            DatasetsEntry::One(Box::new(dataset("z", json!({}), &[]))),
        );
        let err = lease_env_vars("STOCKROOM_", &clash, "/f").unwrap_err();
        assert_eq!(err[0].name, "STOCKROOM_LEASE_ID");
    }
}
