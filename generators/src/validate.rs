//! Contract enforcement: an answer that breaks the generator's own promises is
//! a failed generation, never stock (docs/generators.md).
//!
//! What is checked, for `generate`:
//! - `data` is a JSON object;
//! - every promised field (`fields` of the state) is present and not `null`;
//!   a field may be a dotted path (`card.last4`) into nested objects;
//! - every attribute of the answer is declared by the state, and its value is
//!   one of the declared values (an empty list of values allows any);
//! - every requested attribute (from a `where` filter) is echoed with the same
//!   value: missing or different is a violation;
//! - every `secret_fields` entry names a field present in `data`;
//! - every entity is `kind:id` with both parts non-empty, and none is repeated.
//!
//! For `extend`, `data` replaces the old data, so it must carry the target
//! state's fields as well as the extension's own, with the same checks on
//! `secret_fields` and entities.
//!
//! Reasons name fields and attributes but never their values.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;
use stockroom_protocol::generator::{
    ExtendAnswer, ExtensionSpec, GenerateAnswer, GenerateRequest, ProducedState, ResetAnswer,
};

/// Every way one answer broke the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub problems: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("; "))
    }
}

impl std::error::Error for Violation {}

fn finish(problems: Vec<String>) -> Result<(), Violation> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Violation { problems })
    }
}

/// Looks up `a.b.c` in nested objects.
pub fn lookup_path<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(data, |v, key| v.as_object()?.get(key))
}

fn check_data(
    data: &Value,
    promised: &[&str],
    secret_fields: &[String],
    entities: &[String],
    problems: &mut Vec<String>,
) {
    if !data.is_object() {
        problems.push(format!(
            "data must be a JSON object, found {}",
            json_kind(data)
        ));
        return;
    }
    for field in promised {
        match lookup_path(data, field) {
            None => problems.push(format!("promised field `{field}` is missing from data")),
            Some(Value::Null) => problems.push(format!("promised field `{field}` is null")),
            Some(_) => {}
        }
    }
    for secret in secret_fields {
        if lookup_path(data, secret).is_none() {
            problems.push(format!("secret field `{secret}` is not in data"));
        }
    }
    let mut seen = BTreeSet::new();
    for entity in entities {
        match entity.split_once(':') {
            Some((kind, id)) if !kind.is_empty() && !id.is_empty() => {}
            _ => problems.push(format!(
                "entity {} must look like `kind:id`, e.g. `customer:C1042`",
                seen.len() + 1
            )),
        }
        if !seen.insert(entity.as_str()) {
            problems.push("an entity is listed twice".to_string());
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Checks a `reset` answer: the dataset's state still promises `fields`.
pub fn validate_reset_answer(fields: &[String], answer: &ResetAnswer) -> Result<(), Violation> {
    let mut problems = Vec::new();
    let promised: Vec<&str> = fields.iter().map(String::as_str).collect();
    check_data(
        &answer.data,
        &promised,
        &answer.secret_fields,
        &answer.entities,
        &mut problems,
    );
    finish(problems)
}

/// Checks a dataset's own parts the way every answer's are checked: `data`
/// an object, `secret_fields` naming fields of it, entities `kind:id` and
/// none repeated. The pool applies it to datasets registered by hand
/// (`POST /datasets`), so both ways into stock keep one rule.
pub fn validate_dataset_parts(
    data: &Value,
    secret_fields: &[String],
    entities: &[String],
) -> Result<(), Violation> {
    let mut problems = Vec::new();
    check_data(data, &[], secret_fields, entities, &mut problems);
    finish(problems)
}

/// Checks a `generate` answer against the state it was asked for.
pub fn validate_generate_answer(
    spec: &ProducedState,
    request: &GenerateRequest,
    answer: &GenerateAnswer,
) -> Result<(), Violation> {
    let mut problems = Vec::new();
    let promised: Vec<&str> = spec.fields.iter().map(String::as_str).collect();
    check_data(
        &answer.data,
        &promised,
        &answer.secret_fields,
        &answer.entities,
        &mut problems,
    );
    for (name, value) in &answer.attributes {
        match spec.attributes.get(name) {
            None => problems.push(format!(
                "attribute `{name}` is not declared by {}/{}",
                spec.type_name, spec.state
            )),
            Some(allowed) if !allowed.is_empty() && !allowed.contains(value) => {
                problems.push(format!(
                    "attribute `{name}` has a value outside the declared ones ({})",
                    allowed
                        .iter()
                        .map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
            Some(_) => {}
        }
    }
    for (name, wanted) in &request.attributes {
        match answer.attributes.get(name) {
            None => problems.push(format!(
                "requested attribute `{name}` is not echoed in the answer's attributes"
            )),
            Some(got) if got != wanted => problems.push(format!(
                "attribute `{name}` differs from the requested `{name} = {wanted}`"
            )),
            Some(_) => {}
        }
    }
    finish(problems)
}

/// Checks an `extend` answer: the new data must hold the target state's
/// fields and the extension's own.
pub fn validate_extend_answer(
    extension: &ExtensionSpec,
    target_fields: &[String],
    answer: &ExtendAnswer,
) -> Result<(), Violation> {
    let mut problems = Vec::new();
    let mut promised: Vec<&str> = target_fields.iter().map(String::as_str).collect();
    for f in &extension.fields {
        if !promised.contains(&f.as_str()) {
            promised.push(f);
        }
    }
    check_data(
        &answer.data,
        &promised,
        &answer.secret_fields,
        &answer.entities,
        &mut problems,
    );
    finish(problems)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> ProducedState {
        serde_json::from_value(json!({
            "type": "customer", "state": "active",
            "attributes": {"country": ["DE", "US"], "tier": []},
            "fields": ["customer_id", "email", "address.city"], "secret_fields": ["password"]
        }))
        .unwrap()
    }

    fn request(attrs: Value) -> GenerateRequest {
        serde_json::from_value(json!({"type": "customer", "state": "active", "attributes": attrs}))
            .unwrap()
    }

    fn answer(v: Value) -> GenerateAnswer {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_faithful_answer_passes() {
        let a = answer(json!({
            "attributes": {"country": "DE", "tier": "gold"},
            "data": {"customer_id": "C1", "email": "a@x.test", "password": "pw", "address": {"city": "Berlin"}},
            "secret_fields": ["password"], "entities": ["customer:C1"]
        }));
        assert_eq!(
            validate_generate_answer(&spec(), &request(json!({"country": "DE"})), &a),
            Ok(())
        );
    }

    #[test]
    fn every_broken_promise_is_named_without_values() {
        let a = answer(json!({
            "attributes": {"country": "FR", "colour": "mauve"},
            "data": {"customer_id": "C1", "email": null, "address": {}},
            "secret_fields": ["password"], "entities": ["Z9", "customer:Z9", "customer:Z9"]
        }));
        let v = validate_generate_answer(
            &spec(),
            &request(json!({"country": "DE", "vip": "true"})),
            &a,
        )
        .unwrap_err();
        let text = v.to_string();
        for expected in [
            "promised field `email` is null",
            "promised field `address.city` is missing",
            "secret field `password` is not in data",
            "entity 1 must look like `kind:id`",
            "an entity is listed twice",
            "attribute `colour` is not declared",
            "attribute `country` has a value outside the declared ones (DE, US)",
            "attribute `country` differs from the requested `country = DE`",
            "requested attribute `vip` is not echoed",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in {text}");
        }
        assert!(
            !text.contains("FR") && !text.contains("mauve") && !text.contains("Z9"),
            "{text}"
        );
    }

    #[test]
    fn data_must_be_an_object() {
        let a = answer(json!({"data": ["customer_id"]}));
        let v = validate_generate_answer(&spec(), &request(json!({})), &a).unwrap_err();
        assert_eq!(
            v.problems,
            vec!["data must be a JSON object, found an array".to_string()]
        );
    }

    #[test]
    fn extend_needs_the_target_fields_and_its_own() {
        let ext: ExtensionSpec = serde_json::from_value(json!({
            "name": "add-card", "type": "customer", "from": "active", "to": "active-with-payment",
            "fields": ["payment_method_id"]
        }))
        .unwrap();
        let target = vec!["customer_id".to_string(), "payment_method_id".to_string()];
        let ok: ExtendAnswer = serde_json::from_value(
            json!({"data": {"customer_id": "C1", "payment_method_id": "pm_1"}}),
        )
        .unwrap();
        assert_eq!(validate_extend_answer(&ext, &target, &ok), Ok(()));
        let lost: ExtendAnswer =
            serde_json::from_value(json!({"data": {"payment_method_id": "pm_1"}})).unwrap();
        let v = validate_extend_answer(&ext, &target, &lost).unwrap_err();
        assert_eq!(
            v.problems,
            vec!["promised field `customer_id` is missing from data".to_string()]
        );
    }
}
