//! Attributes: small, filterable facts about a dataset (`country = "DE"`).
//!
//! Values are scalars. Users may write `vip = true` or `tier = 2` in a
//! manifest; they are kept as their canonical text (`"true"`, `"2"`) so that
//! a `where` filter is an exact string match everywhere (in SQL too).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Attribute name to value, ordered for stable output.
pub type Attributes = BTreeMap<String, AttrValue>;

/// One scalar attribute value, held as its canonical text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = AnyAttrValue))]
pub struct AttrValue(pub String);

impl AttrValue {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> Self {
        AttrValue(s.to_string())
    }
}

impl From<String> for AttrValue {
    fn from(s: String) -> Self {
        AttrValue(s)
    }
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for AttrValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AttrValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = AttrValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, integer or boolean attribute value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AttrValue, E> {
                Ok(AttrValue(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<AttrValue, E> {
                Ok(AttrValue(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<AttrValue, E> {
                Ok(AttrValue(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<AttrValue, E> {
                Ok(AttrValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<AttrValue, E> {
                Ok(AttrValue(v.to_string()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_become_canonical_text_and_others_are_refused() {
        let a: Attributes =
            serde_json::from_str(r#"{"country":"DE","vip":true,"tier":2,"delta":-1}"#).unwrap();
        assert_eq!(a["country"].as_str(), "DE");
        assert_eq!(a["vip"].as_str(), "true");
        assert_eq!(a["tier"].as_str(), "2");
        assert_eq!(a["delta"].as_str(), "-1");
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"country":"DE","delta":"-1","tier":"2","vip":"true"}"#
        );
        let err = serde_json::from_str::<Attributes>(r#"{"x":[1]}"#).unwrap_err();
        assert!(
            err.to_string().contains("a string, integer or boolean"),
            "{err}"
        );
        assert!(serde_json::from_str::<Attributes>(r#"{"x":1.5}"#).is_err());
    }
}

/// An attribute value in the OpenAPI document: a string, a whole number or a
/// boolean (compared as text).
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema, Serialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum AnyAttrValue {
    Text(String),
    Number(i64),
    Flag(bool),
}
