//! `stockroom check`: the manifest alone (offline), or against the pool's
//! live catalog (unknown states, impossible `where` values, states nothing
//! can produce). Positioned problems exit 65.

use stockroom_protocol::api::Catalog;
use stockroom_protocol::manifest::{Manifest, Shards};
use stockroom_protocol::position::SourceError;

use crate::ci::{EnvSource, Shard, ShardSource};
use crate::cli::{CheckArgs, Common};
use crate::config;
use crate::errors::Error;
use crate::exit::Exit;

/// Runs the check; offline when no pool is configured or `--offline` is given.
pub fn check(common: &Common, args: &CheckArgs, env: &impl EnvSource) -> Result<Exit, Error> {
    let manifest = config::load_manifest(common, env)?;
    let shard_warning = check_shards(common, env, &manifest)?;
    let pool = if args.offline {
        None
    } else {
        config::pool_url(common, env, Some(&manifest))?
    };
    let Some(pool) = pool else {
        report_ok(common, &manifest, "offline", &shard_warning);
        return Ok(Exit::Success);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("failed to start the async runtime: {e}")))?;
    let token = config::token(common, env)?;
    let catalog = runtime.block_on(async {
        let tls = config::tls(common, env, None);
        let client = crate::client::PoolClient::new(&pool, token, &tls)?;
        client.catalog().await.map_err(|e| e.into_error(&pool))
    });
    let catalog = match catalog {
        Ok(c) => c,
        Err(Error::PoolUnreachable { last, .. }) => {
            tracing::warn!(
                "failed to reach the pool at {pool} ({last}); checked the manifest offline only"
            );
            report_ok(
                common,
                &manifest,
                "offline (pool unreachable)",
                &shard_warning,
            );
            return Ok(Exit::Success);
        }
        Err(e) => return Err(e),
    };
    let (errors, mut warnings) = against_catalog(&manifest, &catalog);
    warnings.extend(shard_warning);
    if !errors.is_empty() {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(Error::BadManifest(text.join("\n")));
    }
    report_ok(
        common,
        &manifest,
        &format!("against the catalog of {pool}"),
        &warnings,
    );
    Ok(Exit::Success)
}

/// The shard lists against the shard total `run` would use: an error when the
/// total comes from `--shard-total`, `STOCKROOM_SHARD_TOTAL` or the CI and a
/// list names a shard at or past it (as `run` exits 65 then); a warning when no
/// total is given and the lists need more than the default single shard.
fn check_shards(
    common: &Common,
    env: &impl EnvSource,
    manifest: &Manifest,
) -> Result<Vec<String>, Error> {
    let total = match (common.shard_index, common.shard_total) {
        (Some(index), Some(total)) if index >= total => {
            return Err(Error::Usage(format!(
                "--shard-index {index} must be below --shard-total {total}"
            )));
        }
        // The total alone is enough here: check covers every shard.
        (_, Some(total)) => Some(total),
        _ => {
            let resolved = crate::ci::resolved_shard(common, env)?;
            (resolved.source != ShardSource::Default).then_some(resolved.shard.total)
        }
    };
    if let Some(total) = total {
        manifest.check_shard_total(total)?;
        return Ok(Vec::new());
    }
    Ok(shards_needed(manifest)
        .filter(|(needed, _)| *needed > Shard::SINGLE.total)
        .map(|(needed, dataset)| {
            format!(
                "{}: dataset {dataset:?} lists shard {}, but no shard total is given \
                 (--shard-total, STOCKROOM_SHARD_TOTAL or the CI's shard variables), so \
                 `stockroom run` would use {} shard and exit 65; pass --shard-total {needed} \
                 or more to check for a split job",
                manifest.path.display(),
                needed - 1,
                Shard::SINGLE.total
            )
        })
        .into_iter()
        .collect())
}

/// The fewest shards the manifest's shard lists fit in, with a dataset that
/// needs that many; `None` when every dataset goes to all shards.
fn shards_needed(manifest: &Manifest) -> Option<(u32, &str)> {
    manifest
        .datasets
        .iter()
        .filter_map(|d| match &d.shards {
            Shards::Only(set) => set.last().map(|last| (last + 1, d.name.as_str())),
            Shards::All => None,
        })
        .max_by_key(|(needed, _)| *needed)
}

fn report_ok(common: &Common, manifest: &Manifest, how: &str, warnings: &[String]) {
    for w in warnings {
        tracing::warn!("{w}");
    }
    if common.json {
        let value = serde_json::json!({
            "manifest": manifest.path.display().to_string(),
            "valid": true,
            "checked": how,
            "datasets": manifest.datasets.iter().map(|d| &d.name).collect::<Vec<_>>(),
            "warnings": warnings,
        });
        crate::redact::print_stdout(&format!("{value}\n"));
    } else {
        eprintln!(
            "stockroom: {} is valid ({} dataset entr{}, checked {how})",
            manifest.path.display(),
            manifest.datasets.len(),
            if manifest.datasets.len() == 1 {
                "y"
            } else {
                "ies"
            }
        );
    }
}

/// Positioned errors and plain warnings of `manifest` against `catalog`.
pub fn against_catalog(manifest: &Manifest, catalog: &Catalog) -> (Vec<SourceError>, Vec<String>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for spec in &manifest.datasets {
        let Some(state) = catalog.find(&spec.type_name, &spec.state) else {
            let same_type: Vec<String> = catalog
                .types
                .iter()
                .filter(|t| t.type_name == spec.type_name)
                .flat_map(|t| t.states.iter().map(|s| s.state.clone()))
                .collect();
            let message = if same_type.is_empty() {
                format!(
                    "unknown type {:?}; the pool knows: {}",
                    spec.type_name,
                    list_or_none(&catalog.known_states())
                )
            } else {
                format!(
                    "unknown state {:?} of type {:?}; its states are: {}",
                    spec.state,
                    spec.type_name,
                    same_type.join(", ")
                )
            };
            errors.push(SourceError {
                position: spec.state_position.clone(),
                message,
            });
            continue;
        };
        for (key, value) in &spec.where_ {
            let position = spec
                .where_positions
                .get(key)
                .cloned()
                .unwrap_or_else(|| spec.state_position.clone());
            match state.attributes.get(key) {
                None => errors.push(SourceError {
                    position,
                    message: format!(
                        "{}/{} has no attribute {key:?}; its attributes are: {}",
                        spec.type_name,
                        spec.state,
                        list_or_none(&state.attributes.keys().cloned().collect::<Vec<_>>())
                    ),
                }),
                Some(allowed) if !allowed.is_empty() && !allowed.contains(value) => errors.push(SourceError {
                    position,
                    message: format!(
                        "impossible: {}/{} is never produced with {key} = {:?}; possible values: {}",
                        spec.type_name,
                        spec.state,
                        value.as_str(),
                        allowed.iter().map(|v| v.as_str().to_string()).collect::<Vec<_>>().join(", ")
                    ),
                }),
                Some(_) => {}
            }
        }
        let registered_only = state.produced_by.is_empty()
            || state
                .produced_by
                .iter()
                .all(|p| matches!(p, stockroom_protocol::api::Production::Registered));
        if registered_only && state.stock.ready < u64::from(spec.count) {
            warnings.push(format!(
                "{}: {}/{} is only registered by hand and has {} ready for count = {}; a run would wait for stock",
                spec.state_position, spec.type_name, spec.state, state.stock.ready, spec.count
            ));
        } else if !state.available {
            warnings.push(format!(
                "{}: every generator producing {}/{} is down right now",
                spec.state_position, spec.type_name, spec.state
            ));
        }
        if state.fields.is_empty() && !registered_only {
            warnings.push(format!(
                "{}: the catalog lists no fields for {}/{}; the tests will get only its id",
                spec.state_position, spec.type_name, spec.state
            ));
        }
    }
    (errors, warnings)
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn example() -> Manifest {
        Manifest::parse(
            Path::new("m.toml"),
            "version = 1\n[[dataset]]\nname = \"buyer\"\ntype = \"customer\"\nstate = \"active\"\n\n[[dataset]]\nname = \"orders\"\ntype = \"order\"\nstate = \"placed\"\nshards = [0, 2]\n",
        )
        .expect("valid")
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn totals(index: Option<u32>, total: Option<u32>) -> Common {
        Common {
            shard_index: index,
            shard_total: total,
            ..Common::default()
        }
    }

    #[test]
    fn a_shard_total_from_flags_env_or_ci_is_checked_like_run_does() {
        let manifest = example();
        let too_few = [
            (totals(None, Some(2)), env(&[])),
            (totals(Some(0), Some(2)), env(&[])),
            (
                totals(None, None),
                env(&[
                    ("STOCKROOM_SHARD_INDEX", "1"),
                    ("STOCKROOM_SHARD_TOTAL", "2"),
                ]),
            ),
            (
                totals(None, None),
                env(&[
                    ("GITLAB_CI", "true"),
                    ("CI_NODE_INDEX", "1"),
                    ("CI_NODE_TOTAL", "2"),
                ]),
            ),
        ];
        for (common, env) in &too_few {
            let err = check_shards(common, env, &manifest).expect_err("shard 2 of 2");
            assert!(matches!(err, Error::BadManifest(_)), "{err:?}");
            assert!(
                err.to_string()
                    .contains("dataset \"orders\" lists shard 2, but this job has 2 shard(s)"),
                "{err}"
            );
        }
        let enough = check_shards(&totals(None, Some(3)), &env(&[]), &manifest).expect("3 fit");
        assert!(enough.is_empty(), "{enough:?}");
    }

    #[test]
    fn without_a_shard_total_lists_past_the_single_default_shard_warn() {
        let warnings = check_shards(&totals(None, None), &env(&[]), &example()).expect("a warning");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("m.toml: dataset \"orders\" lists shard 2")
                && warnings[0].contains("pass --shard-total 3"),
            "{}",
            warnings[0]
        );
        let all_shards = Manifest::parse(
            Path::new("m.toml"),
            "version = 1\n[[dataset]]\nname = \"buyer\"\ntype = \"customer\"\nstate = \"active\"\nshards = [0]\n",
        )
        .expect("valid");
        let none = check_shards(&totals(None, None), &env(&[]), &all_shards).expect("fits");
        assert!(none.is_empty(), "{none:?}");
    }

    #[test]
    fn an_index_past_the_total_is_a_usage_error() {
        let err = check_shards(&totals(Some(3), Some(3)), &env(&[]), &example()).expect_err("3/3");
        assert!(matches!(err, Error::Usage(_)), "{err:?}");
    }

    #[test]
    fn unknown_states_and_impossible_where_values_are_positioned() {
        let manifest = Manifest::parse(
            Path::new("m.toml"),
            "version = 1\n[[dataset]]\nname = \"a\"\ntype = \"customer\"\nstate = \"gone\"\n\n[[dataset]]\nname = \"b\"\ntype = \"customer\"\nstate = \"active\"\nwhere = { country = \"FR\", tier = \"x\" }\n",
        )
        .expect("valid");
        let catalog: Catalog = serde_json::from_value(json!({"types": [{"type": "customer", "states": [
            {"state": "active", "attributes": {"country": ["DE", "US"]}, "fields": ["email"],
             "produced_by": [{"kind": "generate", "generator": "g"}], "available": true,
             "stock": {"ready": 1, "generating": 0, "leased": 0, "quarantined": 0, "consumed": 0, "failed": 0, "discarded": 0}}
        ]}]}))
        .expect("catalog");
        let (errors, _) = against_catalog(&manifest, &catalog);
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(
            text[0].starts_with("m.toml:5:9: unknown state \"gone\""),
            "{}",
            text[0]
        );
        assert!(
            text[1].contains("m.toml:11:11") && text[1].contains("possible values: DE, US"),
            "{}",
            text[1]
        );
        assert!(text[2].contains("no attribute \"tier\""), "{}", text[2]);
    }
}
