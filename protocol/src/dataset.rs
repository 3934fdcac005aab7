//! A dataset and the lifecycle words of docs/pool.md.

use std::fmt;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[cfg(feature = "openapi")]
use crate::attributes::AttrValue;
use crate::attributes::Attributes;

/// One concrete, generated instance of a type in a state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Dataset {
    pub id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub state: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, AttrValue>))]
    pub attributes: Attributes,
    #[serde(default = "empty_object")]
    pub data: Value,
    /// Names of fields of `data` (top-level keys, or dotted paths into nested
    /// objects) whose values must never be printed.
    #[serde(default)]
    pub secret_fields: Vec<String>,
    /// Records a test may mutate, such as `customer:C1042`. No entity is ever
    /// held by two active leases.
    #[serde(default)]
    pub entities: Vec<String>,
    /// For a composed dataset (a state that `requires` others): the datasets
    /// it was built from, by requirement name (docs/generators.md).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", schema(no_recursion))]
    pub inputs: BTreeMap<String, Dataset>,
}

impl Default for Dataset {
    fn default() -> Self {
        Dataset {
            id: String::new(),
            type_name: String::new(),
            state: String::new(),
            attributes: Attributes::default(),
            data: empty_object(),
            secret_fields: Vec::new(),
            entities: Vec::new(),
            inputs: BTreeMap::new(),
        }
    }
}

pub fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// The text that replaces a secret value wherever one would be shown.
pub const REDACTED: &str = "[redacted]";

impl Dataset {
    /// Whether the field at `path` (`a` or `a.b.c`) is secret: it, or an
    /// enclosing object, is named in `secret_fields`.
    pub fn is_secret_path(&self, path: &str) -> bool {
        is_secret_path(&self.secret_fields, path)
    }

    /// A copy with every secret value replaced by [`REDACTED`] (its inputs' too).
    pub fn redacted(&self) -> Dataset {
        let mut copy = self.clone();
        redact_value(&mut copy.data, &self.secret_fields);
        for input in copy.inputs.values_mut() {
            *input = input.redacted();
        }
        copy
    }

    /// The secret values of this dataset as text (strings as themselves,
    /// others as JSON), for masking in CI logs.
    pub fn secret_values(&self) -> Vec<String> {
        let mut out = Vec::new();
        for field in &self.secret_fields {
            if let Some(v) = lookup_path(&self.data, field) {
                collect_leaf_texts(v, &mut out);
            }
        }
        for input in self.inputs.values() {
            out.extend(input.secret_values());
        }
        out
    }
}

pub fn is_secret_path(secret_fields: &[String], path: &str) -> bool {
    secret_fields.iter().any(|s| {
        path == s
            || (path.len() > s.len()
                && path.starts_with(s.as_str())
                && path.as_bytes()[s.len()] == b'.')
    })
}

fn lookup_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

fn collect_leaf_texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Null => {}
        Value::String(s) => out.push(s.clone()),
        Value::Object(map) => map.values().for_each(|v| collect_leaf_texts(v, out)),
        Value::Array(items) => {
            out.push(v.to_string());
            items.iter().for_each(|v| collect_leaf_texts(v, out));
        }
        other => out.push(other.to_string()),
    }
}

/// Replaces the values at the given secret paths of `data` with [`REDACTED`].
pub fn redact_value(data: &mut Value, secret_fields: &[String]) {
    for field in secret_fields {
        let mut parts = field.split('.').peekable();
        let mut cur = &mut *data;
        while let Some(key) = parts.next() {
            let Some(next) = cur.get_mut(key) else { break };
            if parts.peek().is_none() {
                *next = Value::String(REDACTED.to_string());
                break;
            }
            cur = next;
        }
    }
}

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "kebab-case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} {other:?}; expected one of: {}",
                        stringify!($name).to_lowercase(),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

text_enum! {
    /// Where a dataset is in its lifecycle; it is in exactly one at a time.
    /// `composed`: became an input of a composed dataset, never leasable on its own again.
    DatasetStatus {
        Generating => "generating",
        Ready => "ready",
        Leased => "leased",
        Consumed => "consumed",
        Quarantined => "quarantined",
        Discarded => "discarded",
        Failed => "failed",
        Composed => "composed",
    }
}

text_enum! {
    /// Where a lease is in its lifecycle.
    LeaseStatus {
        Active => "active",
        Released => "released",
        Expired => "expired",
    }
}

text_enum! {
    /// How a CI run (or one test, for a per-test take) that held a lease
    /// ended. `unused`: no test code saw the dataset; it goes back to `ready`.
    Outcome {
        Passed => "passed",
        Failed => "failed",
        Cancelled => "cancelled",
        Unused => "unused",
    }
}

text_enum! {
    /// What happens to a dataset when its run fails or is cancelled.
    OnFailure {
        Quarantine => "quarantine",
        Release => "release",
    }
}

// `text_enum!` derives the traits, so `#[default]` cannot be attached there.
#[allow(clippy::derivable_impls)]
impl Default for OnFailure {
    fn default() -> Self {
        OnFailure::Quarantine
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Dataset {
        serde_json::from_value(json!({
            "id": "ds_1", "type": "customer", "state": "active",
            "data": {"email": "a@x.test", "password": "hunter2", "card": {"number": "4111", "exp": "12/30"}},
            "secret_fields": ["password", "card.number"],
            "entities": ["customer:C1"]
        }))
        .unwrap()
    }

    #[test]
    fn redaction_replaces_only_secret_values() {
        let r = sample().redacted();
        assert_eq!(r.data["password"], REDACTED);
        assert_eq!(r.data["card"]["number"], REDACTED);
        assert_eq!(r.data["card"]["exp"], "12/30");
        assert_eq!(r.data["email"], "a@x.test");
        assert!(!serde_json::to_string(&r).unwrap().contains("hunter2"));
    }

    #[test]
    fn inputs_are_redacted_and_their_secrets_masked_too() {
        let mut composed = Dataset {
            id: "ds_2".into(),
            type_name: "order".into(),
            state: "placed".into(),
            ..Dataset::default()
        };
        composed.inputs.insert("customer".into(), sample());
        let shown = serde_json::to_value(composed.redacted()).unwrap();
        assert_eq!(shown["inputs"]["customer"]["data"]["password"], REDACTED);
        assert!(composed.secret_values().contains(&"hunter2".to_string()));
        let plain = serde_json::to_value(sample()).unwrap();
        assert!(plain.get("inputs").is_none(), "no inputs: no key");
        let back: Dataset =
            serde_json::from_value(serde_json::to_value(&composed).unwrap()).unwrap();
        assert_eq!(back, composed);
    }

    #[test]
    fn secret_paths_cover_nested_fields_but_not_prefixes_of_names() {
        let d = sample();
        assert!(d.is_secret_path("password"));
        assert!(d.is_secret_path("card.number"));
        assert!(!d.is_secret_path("card"));
        assert!(!d.is_secret_path("password_hint"));
        assert!(is_secret_path(&["card".into()], "card.number"));
        let mut values = d.secret_values();
        values.sort();
        assert_eq!(values, vec!["4111".to_string(), "hunter2".to_string()]);
    }

    #[test]
    fn status_words_parse_and_print_as_in_the_contract() {
        for s in DatasetStatus::ALL {
            assert_eq!(s.as_str().parse::<DatasetStatus>().unwrap(), *s);
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
        assert_eq!("cancelled".parse::<Outcome>(), Ok(Outcome::Cancelled));
        let err = "canceled".parse::<Outcome>().unwrap_err();
        assert!(err.contains("passed, failed, cancelled"), "{err}");
        assert_eq!(OnFailure::default(), OnFailure::Quarantine);
    }
}
