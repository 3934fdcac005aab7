//! The job's dataset contract, `stockroom.toml` (docs/manifest.md).
//!
//! Every error names `file:line:column` and what was expected; unknown keys
//! are errors. Parsing happens in two passes: `toml` + serde catch syntax,
//! types and unknown keys (with the span serde reports); then semantic rules
//! are checked against spans kept with [`toml::Spanned`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::api::LeaseItem;
use crate::attributes::{AttrValue, Attributes};
use crate::dataset::OnFailure;
use crate::duration::HumanDuration;
use crate::position::{SourceError, SourcePosition};

/// The file name looked for when neither `--manifest` nor `STOCKROOM_MANIFEST` is given.
pub const DEFAULT_MANIFEST: &str = "stockroom.toml";
/// The prefix of injected variables when `[inject] env_prefix` is not set.
pub const DEFAULT_ENV_PREFIX: &str = "STOCKROOM_";
/// The largest `count` one manifest entry may ask for.
pub const MAX_COUNT: u32 = crate::api::MAX_COUNT;

/// A validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub path: PathBuf,
    pub pool: Option<String>,
    pub lease_ttl: Option<HumanDuration>,
    pub acquire_timeout: Option<HumanDuration>,
    pub inject: Inject,
    pub datasets: Vec<DatasetSpec>,
}

/// How datasets reach the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inject {
    pub env_prefix: String,
    /// Where to write the datasets file; `None`: a 0600 file in a private temp dir.
    pub json_file: Option<PathBuf>,
}

/// Which shards an entry applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shards {
    All,
    Only(BTreeSet<u32>),
}

/// One `[[dataset]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSpec {
    pub name: String,
    pub type_name: String,
    pub state: String,
    pub where_: Attributes,
    pub count: u32,
    pub shards: Shards,
    pub on_failure: OnFailure,
    /// Where the entry's `state` is written, for later errors (unknown state…).
    pub state_position: SourcePosition,
    /// Where each `where` key is written.
    pub where_positions: BTreeMap<String, SourcePosition>,
    /// Where `shards` is written (or the entry's `name` when absent).
    pub shards_position: SourcePosition,
}

impl DatasetSpec {
    pub fn applies_to(&self, shard_index: u32) -> bool {
        match &self.shards {
            Shards::All => true,
            Shards::Only(set) => set.contains(&shard_index),
        }
    }

    pub fn to_lease_item(&self) -> LeaseItem {
        LeaseItem {
            name: self.name.clone(),
            type_name: self.type_name.clone(),
            state: self.state.clone(),
            where_: self.where_.clone(),
            count: self.count,
            on_failure: self.on_failure,
        }
    }
}

/// Why a manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", ErrorList(.0))]
    Invalid(Vec<SourceError>),
}

struct ErrorList<'a>(&'a [SourceError]);

impl fmt::Display for ErrorList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ManifestError {
    /// The positioned errors, empty for a read failure.
    pub fn errors(&self) -> &[SourceError] {
        match self {
            ManifestError::Read { .. } => &[],
            ManifestError::Invalid(v) => v,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    version: Option<Spanned<i64>>,
    pool: Option<Spanned<String>>,
    lease_ttl: Option<Spanned<HumanDuration>>,
    acquire_timeout: Option<Spanned<HumanDuration>>,
    inject: Option<RawInject>,
    dataset: Option<Spanned<Vec<Spanned<RawDataset>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInject {
    env_prefix: Option<Spanned<String>>,
    json_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    name: Spanned<String>,
    #[serde(rename = "type")]
    type_name: Spanned<String>,
    state: Spanned<String>,
    #[serde(rename = "where")]
    where_: Option<BTreeMap<Spanned<String>, AttrValue>>,
    count: Option<Spanned<i64>>,
    shards: Option<Spanned<RawShards>>,
    on_failure: Option<OnFailure>,
}

enum RawShards {
    All,
    List(Vec<i64>),
}

impl<'de> Deserialize<'de> for RawShards {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ShardsVisitor;
        impl<'de> Visitor<'de> for ShardsVisitor {
            type Value = RawShards;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"all\" or a list of 0-based shard indexes such as [0, 2]")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawShards, E> {
                if v == "all" {
                    Ok(RawShards::All)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawShards, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<i64>()? {
                    out.push(v);
                }
                Ok(RawShards::List(out))
            }
        }
        deserializer.deserialize_any(ShardsVisitor)
    }
}

/// Checks a pool base URL (`pool` in the manifest, `--pool`, `STOCKROOM_POOL`)
/// and returns it without a trailing `/`; the error says what is wrong.
pub fn check_pool_url(text: &str) -> Result<String, String> {
    let trimmed = text.trim().trim_end_matches('/');
    if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
        return Err("it must start with http:// or https://".into());
    }
    let url = url::Url::parse(trimmed).map_err(|e| e.to_string())?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("it names no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "it must not carry credentials; the token comes from STOCKROOM_TOKEN or --token-file"
                .into(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("it must not have a query or fragment".into());
    }
    Ok(trimmed.to_string())
}

/// The sidecar's own variables (docs/sidecar.md "What the tests see") after
/// the prefix; those under `STOCKROOM_` only collide with the default prefix.
const OWN_VARIABLES_AFTER_PREFIX: &[&str] =
    &["LEASE_ID", "SHARD_INDEX", "SHARD_TOTAL", "DATASETS_FILE"];
const OWN_STOCKROOM_VARIABLES: &[&str] = &[
    "STOCKROOM_AGENT_URL",
    "STOCKROOM_AGENT_TOKEN",
    "STOCKROOM_STATE_DIR",
    "STOCKROOM_RETRY_FOR",
    "STOCKROOM_CA_FILE",
    "STOCKROOM_IDEMPOTENCY_KEY",
];

/// The sidecar's variable that dataset `name`'s variables (`PREFIX` + `NAME`
/// + `_` + field) could shadow, if any: `lease` → `STOCKROOM_LEASE_ID`.
pub fn reserved_variable(name: &str, env_prefix: &str) -> Option<String> {
    let stem = format!("{env_prefix}{}_", name.to_ascii_uppercase());
    OWN_VARIABLES_AFTER_PREFIX
        .iter()
        .map(|v| format!("{env_prefix}{v}"))
        .chain(OWN_STOCKROOM_VARIABLES.iter().map(|v| v.to_string()))
        .find(|v| v.starts_with(&stem))
}

/// `bytes` as text, or an error at the first byte that is not UTF-8.
fn utf8_text<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str, SourceError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = e.valid_up_to();
        // The prefix up to the bad byte is valid UTF-8 by definition.
        let before = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
        SourceError {
            position: SourcePosition::from_offset(path, before, valid),
            message: format!(
                "the manifest is not UTF-8 text: byte 0x{:02x} at offset {valid} is invalid; save the file as UTF-8",
                bytes[valid]
            ),
        }
    })
}

/// Names of manifest entries: `[a-z][a-z0-9_]*`.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// Types and states: lowercase words joined by `-` or `_` (`active-with-payment`).
pub fn is_valid_type_or_state(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z' | '0'..='9'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-' | '.'))
}

fn is_valid_env_prefix(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('A'..='Z' | 'a'..='z' | '_'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<SourceError>,
    /// `[inject] env_prefix`, known before the entries are checked.
    env_prefix: String,
}

impl Checker<'_> {
    fn pos(&self, span: Range<usize>) -> SourcePosition {
        SourcePosition::from_offset(self.file, self.text, span.start)
    }

    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors
            .push(SourceError::at(self.file, self.text, span, message));
    }
}

impl Manifest {
    /// Reads and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let bytes = std::fs::read(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Manifest::parse_bytes(path, &bytes)
    }

    /// Validates raw file contents: text that is not UTF-8 is an error at the
    /// first bad byte, not a read failure.
    pub fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let text = utf8_text(path, bytes).map_err(|e| ManifestError::Invalid(vec![e]))?;
        Manifest::parse(path, text)
    }

    /// Validates `text` as the manifest named `path` (used only in messages).
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = toml::from_str(text)
            .map_err(|e| ManifestError::Invalid(vec![SourceError::from_toml(path, text, &e)]))?;
        let mut c = Checker {
            file: path,
            text,
            errors: Vec::new(),
            env_prefix: raw
                .inject
                .as_ref()
                .and_then(|i| i.env_prefix.as_ref())
                .map_or_else(|| DEFAULT_ENV_PREFIX.to_string(), |p| p.get_ref().clone()),
        };

        match &raw.version {
            None => c.error(
                0..0,
                "missing `version = 1` (the manifest format version) at the top of the file",
            ),
            Some(v) if *v.get_ref() != 1 => c.error(
                v.span(),
                format!(
                    "unsupported manifest version {}; expected `version = 1`",
                    v.get_ref()
                ),
            ),
            Some(_) => {}
        }

        let pool = raw.pool.map(|p| match check_pool_url(p.get_ref()) {
            Ok(url) => url,
            Err(why) => {
                c.error(
                    p.span(),
                    format!(
                        "expected the pool's URL such as \"http://127.0.0.1:7878\", found {:?}: {why}",
                        p.get_ref()
                    ),
                );
                p.get_ref().trim().trim_end_matches('/').to_string()
            }
        });

        let lease_ttl = raw.lease_ttl.map(|d| {
            if d.get_ref().0.as_secs() < 1 {
                c.error(
                    d.span(),
                    format!("lease_ttl must be at least 1s, found \"{}\"", d.get_ref()),
                );
            }
            *d.get_ref()
        });
        // acquire_timeout = "0s" is allowed: fail at once when stock is short.
        let acquire_timeout = raw.acquire_timeout.map(|d| *d.get_ref());

        let mut inject = Inject {
            env_prefix: DEFAULT_ENV_PREFIX.to_string(),
            json_file: None,
        };
        if let Some(raw_inject) = raw.inject {
            if let Some(p) = raw_inject.env_prefix {
                if !is_valid_env_prefix(p.get_ref()) {
                    c.error(
                        p.span(),
                        format!(
                            "env_prefix must be letters, digits and `_`, not starting with a digit (such as \"STOCKROOM_\"), found {:?}",
                            p.get_ref()
                        ),
                    );
                }
                inject.env_prefix = p.into_inner();
            }
            if let Some(f) = raw_inject.json_file {
                if f.get_ref().trim().is_empty() {
                    c.error(f.span(), "json_file must be a path such as \"datasets.json\"; leave it out for a private temp file");
                }
                inject.json_file = Some(PathBuf::from(f.into_inner()));
            }
        }

        let mut datasets = Vec::new();
        match raw.dataset {
            None => c.error(
                text.len()..text.len(),
                "no [[dataset]] entries: add at least one, such as\n[[dataset]]\nname = \"buyer\"\ntype = \"customer\"\nstate = \"active\"",
            ),
            Some(list) => {
                let mut seen: BTreeMap<String, SourcePosition> = BTreeMap::new();
                for entry in list.into_inner() {
                    if let Some(spec) = check_dataset(&mut c, entry.into_inner(), &mut seen) {
                        datasets.push(spec);
                    }
                }
            }
        }

        if c.errors.is_empty() {
            Ok(Manifest {
                path: path.to_path_buf(),
                pool,
                lease_ttl,
                acquire_timeout,
                inject,
                datasets,
            })
        } else {
            Err(ManifestError::Invalid(c.errors))
        }
    }

    /// The entries that apply to shard `index`.
    pub fn datasets_for_shard(&self, index: u32) -> Vec<&DatasetSpec> {
        self.datasets
            .iter()
            .filter(|d| d.applies_to(index))
            .collect()
    }

    /// Checks the `shards` lists against the job's shard total, known only at run time.
    pub fn check_shard_total(&self, total: u32) -> Result<(), ManifestError> {
        let errors: Vec<SourceError> = self
            .datasets
            .iter()
            .filter_map(|d| match &d.shards {
                Shards::Only(set) => set.iter().find(|i| **i >= total).map(|i| SourceError {
                    position: d.shards_position.clone(),
                    message: format!(
                        "dataset {:?} lists shard {i}, but this job has {total} shard(s) (indexes 0 to {}); fix `shards` or the shard total",
                        d.name,
                        total.saturating_sub(1)
                    ),
                }),
                Shards::All => None,
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ManifestError::Invalid(errors))
        }
    }
}

fn check_dataset(
    c: &mut Checker<'_>,
    raw: RawDataset,
    seen: &mut BTreeMap<String, SourcePosition>,
) -> Option<DatasetSpec> {
    let errors_before = c.errors.len();
    let name_span = raw.name.span();
    let name = raw.name.into_inner();
    if !is_valid_name(&name) {
        c.error(
            name_span.clone(),
            format!("dataset name {name:?} is invalid: expected lowercase letters, digits and `_`, starting with a letter (such as \"buyer\")"),
        );
    } else if let Some(taken) = reserved_variable(&name, &c.env_prefix) {
        c.error(
            name_span.clone(),
            format!(
                "dataset name {name:?} is reserved: its variables would collide with the sidecar's own {taken}; choose another name (such as \"{name}_data\")"
            ),
        );
    } else if let Some(first) = seen.get(&name) {
        c.error(
            name_span.clone(),
            format!(
                "dataset name {name:?} is used twice (first at line {}); names must be unique",
                first.line
            ),
        );
    } else {
        seen.insert(name.clone(), c.pos(name_span.clone()));
    }

    for (what, field) in [("type", &raw.type_name), ("state", &raw.state)] {
        if !is_valid_type_or_state(field.get_ref()) {
            c.error(
                field.span(),
                format!("{what} {:?} is invalid: expected lowercase words joined by `-` or `_` (such as \"active-with-payment\")", field.get_ref()),
            );
        }
    }

    let mut where_ = Attributes::new();
    let mut where_positions = BTreeMap::new();
    for (key, value) in raw.where_.unwrap_or_default() {
        if key.get_ref().trim().is_empty() {
            c.error(key.span(), "a `where` key must not be empty");
        }
        where_positions.insert(key.get_ref().clone(), c.pos(key.span()));
        where_.insert(key.into_inner(), value);
    }

    let count = match raw.count {
        None => 1,
        Some(n) => {
            let v = *n.get_ref();
            if v < 1 || v > i64::from(MAX_COUNT) {
                c.error(
                    n.span(),
                    format!("count must be between 1 and {MAX_COUNT}, found {v}"),
                );
                1
            } else {
                v as u32
            }
        }
    };

    let (shards, shards_position) = match raw.shards {
        None => (Shards::All, c.pos(name_span)),
        Some(s) => {
            let position = c.pos(s.span());
            let span = s.span();
            match s.into_inner() {
                RawShards::All => (Shards::All, position),
                RawShards::List(list) => {
                    let mut set = BTreeSet::new();
                    if list.is_empty() {
                        c.error(span.clone(), "shards is an empty list: this dataset would apply to no shard; use \"all\" or list indexes such as [0, 1]");
                    }
                    for i in list {
                        match u32::try_from(i) {
                            Err(_) => c.error(
                                span.clone(),
                                format!(
                                    "shard index {i} is invalid: indexes are 0-based, 0 or more"
                                ),
                            ),
                            Ok(i) if !set.insert(i) => {
                                c.error(span.clone(), format!("shard index {i} is listed twice"))
                            }
                            Ok(_) => {}
                        }
                    }
                    (Shards::Only(set), position)
                }
            }
        }
    };

    if c.errors.len() > errors_before {
        return None;
    }
    Some(DatasetSpec {
        name,
        state_position: c.pos(raw.state.span()),
        type_name: raw.type_name.into_inner(),
        state: raw.state.into_inner(),
        where_,
        count,
        shards,
        on_failure: raw.on_failure.unwrap_or_default(),
        where_positions,
        shards_position,
    })
}

#[cfg(test)]
mod tests;
