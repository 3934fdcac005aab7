//! The catalog (`GET /api/v1/catalog`): every known type and state with stock counts.
//!
//! States are known from three places: datasets in the store (registered by
//! hand), `[[stock]]` entries of the config, and [`CatalogSource`]s. The
//! generator work of a later issue plugs in as a `CatalogSource` (its
//! capabilities become states with `produced_by`, fields and health) through
//! [`CatalogRegistry::add_source`]; nothing else here needs to change.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use stockroom_protocol::api::{
    Catalog, CatalogState, CatalogType, GeneratorHealth, Production, StockCounts,
};

use crate::store::StockTable;

/// A producer of catalog entries, such as the generators of a later issue.
pub trait CatalogSource: Send + Sync + 'static {
    /// The states this source produces; `stock` of each entry is filled in by the registry.
    fn states(&self) -> Vec<(String, CatalogState)>;
    /// Health of the generators behind this source.
    fn generators(&self) -> Vec<GeneratorHealth> {
        Vec::new()
    }
}

/// All catalog sources of the running pool.
#[derive(Default, Clone)]
pub struct CatalogRegistry {
    sources: Arc<RwLock<Vec<Arc<dyn CatalogSource>>>>,
}

impl CatalogRegistry {
    pub fn add_source(&self, source: Arc<dyn CatalogSource>) {
        if let Ok(mut s) = self.sources.write() {
            s.push(source);
        }
    }

    /// Builds the catalog from the sources and the store's counts (which
    /// include `[[stock]]` settings, written to the store at start).
    pub fn build(&self, stock: &StockTable) -> Catalog {
        let mut states: BTreeMap<(String, String), CatalogState> = BTreeMap::new();
        let mut generators = Vec::new();
        if let Ok(sources) = self.sources.read() {
            for source in sources.iter() {
                for (type_name, st) in source.states() {
                    let key = (type_name, st.state.clone());
                    states.entry(key).or_insert(st);
                }
                generators.extend(source.generators());
            }
        }
        for ((type_name, state), counts) in stock {
            let entry = states
                .entry((type_name.clone(), state.clone()))
                .or_insert_with(|| CatalogState {
                    state: state.clone(),
                    description: None,
                    attributes: BTreeMap::new(),
                    fields: Vec::new(),
                    secret_fields: Vec::new(),
                    reusable: false,
                    produced_by: vec![Production::Registered],
                    lifecycle: Vec::new(),
                    available: true,
                    stock: StockCounts::default(),
                });
            entry.stock = counts.clone();
        }
        let mut types: BTreeMap<String, Vec<CatalogState>> = BTreeMap::new();
        for ((type_name, _), st) in states {
            types.entry(type_name).or_default().push(st);
        }
        Catalog {
            types: types
                .into_iter()
                .map(|(type_name, states)| CatalogType { type_name, states })
                .collect(),
            generators,
            problems: Vec::new(),
        }
    }
}
