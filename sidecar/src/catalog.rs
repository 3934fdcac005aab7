//! `stockroom catalog`: what the pool can hand out, as a table (or `--json`).

use stockroom_protocol::api::{Catalog, Production};

use crate::ci::EnvSource;
use crate::cli::Common;
use crate::client::PoolClient;
use crate::config;
use crate::errors::Error;
use crate::exit::Exit;

pub async fn catalog(common: &Common, env: &impl EnvSource) -> Result<Exit, Error> {
    let manifest_path = config::manifest_path(common, env);
    let manifest = if manifest_path.exists() {
        config::load_manifest(common, env).ok()
    } else {
        None
    };
    let pool = config::require_pool(common, env, manifest.as_ref())?;
    let tls = config::tls(common, env, None);
    let client = PoolClient::new(&pool, config::token(common, env)?, &tls)?;
    let catalog = client.catalog().await.map_err(|e| e.into_error(&pool))?;
    if common.json {
        let text = serde_json::to_string(&catalog).map_err(|e| Error::Internal(e.to_string()))?;
        crate::redact::print_stdout(&format!("{text}\n"));
    } else {
        crate::redact::print_stdout(&table(&catalog));
    }
    Ok(Exit::Success)
}

fn produced_by(p: &Production) -> String {
    match p {
        Production::Generate {
            generator,
            requires,
        } if requires.is_empty() => format!("generate ({generator})"),
        Production::Generate {
            generator,
            requires,
        } => format!(
            "generate ({generator}) from {}",
            requires
                .iter()
                .map(|r| format!("{}/{}", r.type_name, r.state))
                .collect::<Vec<_>>()
                .join(" + ")
        ),
        Production::Extend {
            generator,
            from,
            extension,
        } => format!("extend {from} by {extension} ({generator})"),
        Production::Registered => "registered by hand".into(),
    }
}

/// A fixed-width table, one row per state.
pub fn table(catalog: &Catalog) -> String {
    let header = [
        "TYPE/STATE",
        "READY",
        "GENERATING",
        "LEASED",
        "QUARANTINED",
        "MIN..MAX",
        "ATTRIBUTES",
        "PRODUCED BY",
    ];
    let mut rows: Vec<[String; 8]> = Vec::new();
    for t in &catalog.types {
        for s in &t.states {
            let range = match (s.stock.min_ready, s.stock.max_ready) {
                (None, None) => "-".to_string(),
                (min, max) => format!(
                    "{}..{}",
                    min.map_or("-".into(), |v| v.to_string()),
                    max.map_or("-".into(), |v| v.to_string())
                ),
            };
            let attributes = s
                .attributes
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() {
                        k.clone()
                    } else {
                        format!(
                            "{k}={}",
                            v.iter().map(|x| x.as_str()).collect::<Vec<_>>().join("|")
                        )
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            let mut how = s
                .produced_by
                .iter()
                .map(produced_by)
                .collect::<Vec<_>>()
                .join("; ");
            if !s.available {
                how.push_str(" [unavailable]");
            }
            rows.push([
                format!("{}/{}", t.type_name, s.state),
                s.stock.ready.to_string(),
                s.stock.generating.to_string(),
                s.stock.leased.to_string(),
                s.stock.quarantined.to_string(),
                range,
                if attributes.is_empty() {
                    "-".into()
                } else {
                    attributes
                },
                if how.is_empty() { "-".into() } else { how },
            ]);
        }
    }
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let numeric = (1..=4).contains(&i);
            let pad = w.saturating_sub(cell.chars().count());
            if numeric {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if i + 1 < cells.len() {
                    out.push_str(&" ".repeat(pad));
                }
            }
            if i + 1 < cells.len() {
                out.push_str("  ");
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    if rows.is_empty() {
        out.push_str("(the pool knows no types yet)\n");
    }
    for g in catalog.generators.iter().filter(|g| !g.available) {
        out.push_str(&format!(
            "generator {} is down{}\n",
            g.name,
            g.last_error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
    }
    out
}
