//! The pool's configuration, `stockroom-pool.toml` (CONTRACT §8).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::duration::HumanDuration;
use crate::position::SourceError;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
pub const DEFAULT_STORE: &str = "sqlite://stockroom.db";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Catalog and leases.
    Ci,
    /// Also stock settings, registering, discarding and recycling datasets.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ci => "ci",
            Role::Admin => "admin",
        }
    }
}

/// A bearer token, stored only as the hex SHA-256 of its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub name: String,
    pub role: Role,
    pub sha256: String,
}

/// How the pool reaches one generator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum GeneratorEndpoint {
    Http(String),
    Command(Vec<String>),
}

/// One `[[generators]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GeneratorConfig {
    pub name: String,
    pub endpoint: GeneratorEndpoint,
    /// Longest one call may take; a command is killed (its whole process group) after it.
    pub timeout: HumanDuration,
    /// Most calls in flight at once.
    pub concurrency: u32,
    /// Variables set for a command generator on top of the pool's own
    /// environment (docs/generators.md, "Environment and working directory").
    pub env: BTreeMap<String, String>,
    /// Working directory of a command generator; a relative path in the file
    /// is taken from the config file's directory. `None`: the pool's own.
    pub cwd: Option<PathBuf>,
}

impl GeneratorConfig {
    /// A generator with the default timeout (30 s) and concurrency (4).
    pub fn new(name: impl Into<String>, endpoint: GeneratorEndpoint) -> GeneratorConfig {
        GeneratorConfig {
            name: name.into(),
            endpoint,
            timeout: HumanDuration::from_secs(30),
            concurrency: 4,
            env: BTreeMap::new(),
            cwd: None,
        }
    }
}

/// One `[[stock]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockConfig {
    #[serde(rename = "type")]
    pub type_name: String,
    pub state: String,
    pub min_ready: u32,
    pub max_ready: u32,
    /// Ready stock older than this is verified (when the generator offers
    /// `verify`) before it is leased. `None`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_after: Option<HumanDuration>,
}

impl StockConfig {
    pub fn new(type_name: &str, state: &str, min_ready: u32, max_ready: u32) -> StockConfig {
        StockConfig {
            type_name: type_name.to_string(),
            state: state.to_string(),
            min_ready,
            max_ready,
            verify_after: None,
        }
    }
}

/// How pre-generation decides how much stock to keep (docs/pool.md, "Stock").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StockPolicy {
    /// Keep `ready + generating` at a target between `min_ready` and
    /// `max_ready` that follows the leases seen per state.
    #[default]
    Demand,
    /// The policy before demand-following: a state that falls below
    /// `min_ready` is filled to `max_ready`, then left alone until it falls
    /// below `min_ready` again. Kept for comparison (`pool-bench simulate`).
    Static,
}

impl StockPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            StockPolicy::Demand => "demand",
            StockPolicy::Static => "static",
        }
    }
}

/// The whole validated pool configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolConfig {
    pub listen: String,
    pub store: StoreUrl,
    pub default_lease_ttl: HumanDuration,
    /// The longest TTL a client may ask for.
    pub max_lease_ttl: HumanDuration,
    /// The longest `wait_seconds` a client may ask for.
    pub max_wait: HumanDuration,
    /// How often expired leases are looked for.
    pub reaper_interval: HumanDuration,
    /// How long consumed datasets are kept; `None`: forever.
    pub consumed_retention: Option<HumanDuration>,
    /// How long in-flight requests get to finish on SIGTERM.
    pub shutdown_grace: HumanDuration,
    pub tokens: Vec<TokenConfig>,
    pub generators: Vec<GeneratorConfig>,
    pub stock: Vec<StockConfig>,
    /// The URL clients reach the pool at when not on loopback (behind a
    /// proxy): its host is accepted in `Host` and `Origin` (docs/pool.md,
    /// "Cross-site protection").
    pub public_url: Option<String>,
    /// `GET /metrics` without a token even when tokens are configured.
    pub metrics_public: bool,
    /// How much stock pre-generation keeps between `min_ready` and `max_ready`.
    pub stock_policy: StockPolicy,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            listen: DEFAULT_LISTEN.to_string(),
            store: StoreUrl::default(),
            default_lease_ttl: HumanDuration::from_secs(120),
            max_lease_ttl: HumanDuration::from_secs(24 * 3600),
            max_wait: HumanDuration::from_secs(600),
            reaper_interval: HumanDuration::from_secs(2),
            consumed_retention: None,
            shutdown_grace: HumanDuration::from_secs(10),
            tokens: Vec::new(),
            generators: Vec::new(),
            stock: Vec::new(),
            public_url: None,
            metrics_public: false,
            stock_policy: StockPolicy::Demand,
        }
    }
}

/// The `host[:port]` of an `http://` or `https://` URL, lower-cased; `None`
/// when it is not one.
pub fn url_authority(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let valid = !authority.is_empty()
        && !authority.contains('@')
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
    valid.then(|| authority.to_ascii_lowercase())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    store: Option<Spanned<String>>,
    store_password_file: Option<Spanned<PathBuf>>,
    default_lease_ttl: Option<Spanned<HumanDuration>>,
    max_lease_ttl: Option<Spanned<HumanDuration>>,
    max_wait: Option<Spanned<HumanDuration>>,
    reaper_interval: Option<Spanned<HumanDuration>>,
    consumed_retention: Option<Spanned<HumanDuration>>,
    shutdown_grace: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    tokens: Vec<Spanned<RawToken>>,
    #[serde(default)]
    generators: Vec<Spanned<RawGenerator>>,
    #[serde(default)]
    stock: Vec<Spanned<RawStock>>,
    public_url: Option<Spanned<String>>,
    metrics_public: Option<bool>,
    stock_policy: Option<StockPolicy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: Spanned<String>,
    role: Role,
    sha256: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGenerator {
    name: Spanned<String>,
    url: Option<Spanned<String>>,
    command: Option<Spanned<Vec<String>>>,
    timeout: Option<Spanned<HumanDuration>>,
    concurrency: Option<Spanned<i64>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStock {
    #[serde(rename = "type")]
    type_name: String,
    state: String,
    min_ready: Spanned<i64>,
    max_ready: Spanned<i64>,
    verify_after: Option<Spanned<HumanDuration>>,
}

/// Why a pool configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum PoolConfigError {
    #[error("cannot read pool config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<SourceError>),
}

fn non_negative(
    v: &Spanned<i64>,
    what: &str,
    errors: &mut Vec<(std::ops::Range<usize>, String)>,
) -> u32 {
    match u32::try_from(*v.get_ref()) {
        Ok(n) => n,
        Err(_) => {
            errors.push((
                v.span(),
                format!(
                    "{what} must be a whole number from 0 to {}, found {}",
                    u32::MAX,
                    v.get_ref()
                ),
            ));
            0
        }
    }
}

impl PoolConfig {
    pub fn load(path: &Path) -> Result<PoolConfig, PoolConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| PoolConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        PoolConfig::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<PoolConfig, PoolConfigError> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| PoolConfigError::Invalid(vec![SourceError::from_toml(path, text, &e)]))?;
        let mut errors: Vec<(std::ops::Range<usize>, String)> = Vec::new();
        let mut cfg = PoolConfig::default();

        if let Some(l) = raw.listen {
            if l.get_ref().parse::<std::net::SocketAddr>().is_err() {
                errors.push((
                    l.span(),
                    format!(
                        "listen must be an address and port such as \"127.0.0.1:7878\", found {:?}",
                        l.get_ref()
                    ),
                ));
            }
            cfg.listen = l.into_inner();
        }
        if let Some(s) = raw.store {
            match StoreUrl::parse(s.get_ref()) {
                Ok(url) => cfg.store = url,
                Err(msg) => errors.push((s.span(), msg)),
            }
        }
        if let Some(file) = raw.store_password_file {
            // Relative to the config file, like a path a person writes next to it.
            let full = path.parent().unwrap_or(Path::new("")).join(file.get_ref());
            if !cfg.store.is_postgres() {
                errors.push((
                    file.span(),
                    "store_password_file applies to a postgres:// store only".to_string(),
                ));
            } else {
                match std::fs::read_to_string(&full) {
                    Ok(text) => {
                        let password = text.trim_end_matches(['\n', '\r']).to_string();
                        if password.is_empty() {
                            errors.push((
                                file.span(),
                                format!("store_password_file {} is empty", full.display()),
                            ));
                        }
                        cfg.store = cfg.store.clone().with_password(password);
                    }
                    Err(e) => errors.push((
                        file.span(),
                        format!("cannot read store_password_file {}: {e}", full.display()),
                    )),
                }
            }
        }
        let mut duration = |d: Option<Spanned<HumanDuration>>,
                            what: &str,
                            min_ms: u128,
                            target: &mut HumanDuration| {
            if let Some(d) = d {
                if d.get_ref().0.as_millis() < min_ms {
                    errors.push((
                        d.span(),
                        format!(
                            "{what} must be at least {}ms, found \"{}\"",
                            min_ms,
                            d.get_ref()
                        ),
                    ));
                }
                *target = *d.get_ref();
            }
        };
        duration(
            raw.default_lease_ttl,
            "default_lease_ttl",
            1000,
            &mut cfg.default_lease_ttl,
        );
        duration(
            raw.max_lease_ttl,
            "max_lease_ttl",
            1000,
            &mut cfg.max_lease_ttl,
        );
        duration(raw.max_wait, "max_wait", 0, &mut cfg.max_wait);
        duration(
            raw.reaper_interval,
            "reaper_interval",
            10,
            &mut cfg.reaper_interval,
        );
        duration(
            raw.shutdown_grace,
            "shutdown_grace",
            0,
            &mut cfg.shutdown_grace,
        );
        cfg.consumed_retention = raw.consumed_retention.map(|d| *d.get_ref());
        if let Some(u) = raw.public_url {
            if url_authority(u.get_ref()).is_none() {
                errors.push((
                    u.span(),
                    format!(
                        "public_url must be an http:// or https:// URL such as \"https://stockroom.example.com\", found {:?}",
                        u.get_ref()
                    ),
                ));
            }
            cfg.public_url = Some(u.into_inner());
        }
        cfg.metrics_public = raw.metrics_public.unwrap_or(false);
        cfg.stock_policy = raw.stock_policy.unwrap_or_default();
        if cfg.default_lease_ttl > cfg.max_lease_ttl {
            errors.push((
                0..0,
                format!(
                    "default_lease_ttl ({}) is longer than max_lease_ttl ({})",
                    cfg.default_lease_ttl, cfg.max_lease_ttl
                ),
            ));
        }

        let mut names = BTreeSet::new();
        for t in raw.tokens {
            let t = t.into_inner();
            if !names.insert(t.name.get_ref().clone()) {
                errors.push((
                    t.name.span(),
                    format!("token name {:?} is used twice", t.name.get_ref()),
                ));
            }
            let hex = t.sha256.get_ref();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                errors.push((
                    t.sha256.span(),
                    "sha256 must be the 64-character hex SHA-256 of the token, e.g. from `printf %s \"$TOKEN\" | sha256sum`".to_string(),
                ));
            }
            cfg.tokens.push(TokenConfig {
                name: t.name.into_inner(),
                role: t.role,
                sha256: hex.to_ascii_lowercase(),
            });
        }

        let mut gen_names = BTreeSet::new();
        for g in raw.generators {
            let span = g.span();
            let g = g.into_inner();
            if !gen_names.insert(g.name.get_ref().clone()) {
                errors.push((
                    g.name.span(),
                    format!("generator name {:?} is used twice", g.name.get_ref()),
                ));
            }
            let endpoint = match (g.url, g.command) {
                (Some(u), None) => {
                    let url = u.get_ref().trim_end_matches('/').to_string();
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        errors.push((
                            u.span(),
                            format!(
                                "url must start with http:// or https://, found {:?}",
                                u.get_ref()
                            ),
                        ));
                    }
                    GeneratorEndpoint::Http(url)
                }
                (None, Some(c)) => {
                    if c.get_ref().is_empty() || c.get_ref()[0].is_empty() {
                        errors.push((
                            c.span(),
                            "command must name a program, such as [\"python3\", \"gen.py\"]"
                                .to_string(),
                        ));
                    }
                    GeneratorEndpoint::Command(c.into_inner())
                }
                (Some(u), Some(_)) => {
                    errors.push((
                        u.span(),
                        "a generator has either `url` or `command`, not both".to_string(),
                    ));
                    GeneratorEndpoint::Http(u.into_inner())
                }
                (None, None) => {
                    errors.push((span.clone(), format!("generator {:?} needs `url = \"http://…\"` or `command = [\"prog\", \"arg\"]`", g.name.get_ref())));
                    GeneratorEndpoint::Command(Vec::new())
                }
            };
            let timeout = g.timeout.map_or(HumanDuration::from_secs(30), |t| {
                if t.get_ref().0.is_zero() {
                    errors.push((t.span(), "timeout must be more than 0s".to_string()));
                }
                *t.get_ref()
            });
            let concurrency = g.concurrency.map_or(4, |c| {
                let n = non_negative(&c, "concurrency", &mut errors);
                if n == 0 {
                    errors.push((c.span(), "concurrency must be at least 1".to_string()));
                }
                n
            });
            let is_command = matches!(endpoint, GeneratorEndpoint::Command(_));
            if !is_command && (!g.env.is_empty() || g.cwd.is_some()) {
                errors.push((
                    span.clone(),
                    format!(
                        "generator {:?}: `env` and `cwd` apply to a command generator only",
                        g.name.get_ref()
                    ),
                ));
            }
            for key in g.env.keys() {
                if key.is_empty() || key.contains('=') || key.contains('\0') {
                    errors.push((
                        span.clone(),
                        format!("env name {key:?} must be non-empty, without '=' or NUL"),
                    ));
                }
            }
            let cwd = g.cwd.map(|c| {
                let dir = path.parent().unwrap_or(Path::new("")).join(c.get_ref());
                if !dir.is_dir() {
                    errors.push((
                        c.span(),
                        format!("cwd {} is not a directory", dir.display()),
                    ));
                }
                dir
            });
            cfg.generators.push(GeneratorConfig {
                name: g.name.into_inner(),
                endpoint,
                timeout,
                concurrency,
                env: g.env,
                cwd,
            });
        }

        let mut stock_keys = BTreeSet::new();
        for s in raw.stock {
            let span = s.span();
            let s = s.into_inner();
            let min = non_negative(&s.min_ready, "min_ready", &mut errors);
            let max = non_negative(&s.max_ready, "max_ready", &mut errors);
            if min > max {
                errors.push((
                    s.max_ready.span(),
                    format!("max_ready ({max}) is below min_ready ({min})"),
                ));
            }
            if !stock_keys.insert((s.type_name.clone(), s.state.clone())) {
                errors.push((
                    span,
                    format!("stock for {}/{} is configured twice", s.type_name, s.state),
                ));
            }
            let verify_after = s.verify_after.map(|d| {
                if d.get_ref().0.is_zero() {
                    errors.push((d.span(), "verify_after must be more than 0s".to_string()));
                }
                *d.get_ref()
            });
            cfg.stock.push(StockConfig {
                type_name: s.type_name,
                state: s.state,
                min_ready: min,
                max_ready: max,
                verify_after,
            });
        }

        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(PoolConfigError::Invalid(
                errors
                    .into_iter()
                    .map(|(span, msg)| SourceError::at(path, text, span, msg))
                    .collect(),
            ))
        }
    }

    /// Whether `listen` is a loopback address (the only kind allowed without tokens).
    pub fn listens_on_loopback(&self) -> bool {
        self.listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback())
    }
}

/// Checks a store URL: `sqlite://PATH` or `postgres://…`.
pub fn check_store_url(url: &str) -> Result<(), String> {
    StoreUrl::parse(url).map(|_| ())
}

/// The environment variable a PostgreSQL password may come from (as for libpq).
pub const PGPASSWORD: &str = "PGPASSWORD";

/// Where the pool keeps its state: `sqlite://PATH` or `postgres://…`.
///
/// `Display`, `Debug` and `Serialize` hide the password (in the user info
/// or a `password=` parameter), so the URL can be logged and put in errors.
/// A password may also be given apart from the URL ([`StoreUrl::with_password`]:
/// `PGPASSWORD`, `store_password_file`); one inside the URL wins.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    url: String,
    password: Option<String>,
}

impl StoreUrl {
    /// Checks the scheme (and that SQLite names a file).
    pub fn parse(url: &str) -> Result<StoreUrl, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(
                    "store \"sqlite://\" needs a file path, such as \"sqlite://stockroom.db\""
                        .to_string(),
                );
            }
        } else if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(format!(
                "store must be \"sqlite://PATH\" or \"postgres://user@host/db\", found {:?}",
                redact(url)
            ));
        }
        Ok(StoreUrl {
            url: url.to_string(),
            password: None,
        })
    }

    /// The database file of a `sqlite://` URL.
    pub fn sqlite_path(&self) -> Option<&Path> {
        self.url.strip_prefix("sqlite://").map(Path::new)
    }

    pub fn is_postgres(&self) -> bool {
        self.sqlite_path().is_none()
    }

    /// The URL as given, password included: for the database driver only,
    /// never for a log or a message.
    pub fn expose_url(&self) -> &str {
        &self.url
    }

    /// The password given apart from the URL, if any.
    pub fn expose_password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// Sets the password given apart from the URL (for PostgreSQL only).
    pub fn with_password(mut self, password: String) -> StoreUrl {
        if self.is_postgres() {
            self.password = Some(password);
        }
        self
    }

    /// Takes the password from `PGPASSWORD` when none is set yet; `env`
    /// reads a variable (the process environment, or a map in tests).
    pub fn with_env_password(self, env: &dyn Fn(&str) -> Option<String>) -> StoreUrl {
        if self.password.is_some() || !self.is_postgres() {
            return self;
        }
        match env(PGPASSWORD).filter(|p| !p.is_empty()) {
            Some(p) => self.with_password(p),
            None => self,
        }
    }
}

/// The URL with any password replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.url))
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreUrl")
            .field("url", &redact(&self.url))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Serialize for StoreUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redact(&self.url))
    }
}

impl Default for StoreUrl {
    fn default() -> Self {
        StoreUrl {
            url: DEFAULT_STORE.to_string(),
            password: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PoolConfig, PoolConfigError> {
        PoolConfig::parse(Path::new("pool.toml"), text)
    }

    fn first_error(text: &str) -> String {
        match parse(text) {
            Err(PoolConfigError::Invalid(e)) => format!(
                "{}:{}: {}",
                e[0].position.line, e[0].position.column, e[0].message
            ),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn stock_policy_defaults_to_demand_and_takes_static() {
        assert_eq!(parse("").unwrap().stock_policy, StockPolicy::Demand);
        assert_eq!(
            parse("stock_policy = \"static\"").unwrap().stock_policy,
            StockPolicy::Static
        );
        assert!(parse("stock_policy = \"greedy\"").is_err());
    }

    #[test]
    fn contract_example_parses() {
        let cfg = parse(&format!(
            r#"listen = "127.0.0.1:7878"
store = "sqlite://stockroom.db"
default_lease_ttl = "120s"

[[tokens]]
name = "ci"
role = "ci"
sha256 = "{SHA}"

[[generators]]
name = "customers"
url = "http://127.0.0.1:9001/"

[[generators]]
name = "local"
command = ["python3", "gen.py"]
concurrency = 2

[[stock]]
type = "customer"
state = "active"
min_ready = 20
max_ready = 100
"#
        ))
        .unwrap();
        assert_eq!(cfg.tokens[0].role, Role::Ci);
        assert_eq!(
            cfg.generators[0].endpoint,
            GeneratorEndpoint::Http("http://127.0.0.1:9001".into())
        );
        assert_eq!(cfg.generators[1].concurrency, 2);
        assert_eq!(cfg.generators[0].timeout.0.as_secs(), 30);
        assert_eq!(cfg.stock[0].max_ready, 100);
        assert!(cfg.listens_on_loopback());
    }

    #[test]
    fn command_generators_take_env_and_cwd_and_stock_takes_verify_after() {
        let dir = std::env::temp_dir();
        let cfg = PoolConfig::parse(
            &dir.join("pool.toml"),
            r#"[[generators]]
name = "local"
command = ["python3", "gen.py"]
env = { SHOP_URL = "http://127.0.0.1:1", EMPTY = "" }
cwd = "."

[[stock]]
type = "customer"
state = "active"
min_ready = 1
max_ready = 2
verify_after = "10m"
"#,
        )
        .unwrap();
        let g = &cfg.generators[0];
        assert_eq!(g.env["SHOP_URL"], "http://127.0.0.1:1");
        assert_eq!(g.env["EMPTY"], "");
        assert_eq!(g.cwd.as_deref(), Some(dir.join(".").as_path()));
        assert_eq!(cfg.stock[0].verify_after.unwrap().0.as_secs(), 600);

        assert!(
            first_error("[[generators]]\nname = \"g\"\nurl = \"http://x\"\nenv = { A = \"1\" }\n")
                .contains("apply to a command generator only")
        );
        assert!(
            first_error(
                "[[generators]]\nname = \"g\"\ncommand = [\"x\"]\ncwd = \"/no/such/dir\"\n"
            )
            .starts_with("4:7: cwd /no/such/dir is not a directory")
        );
        assert!(first_error(
            "[[stock]]\ntype = \"c\"\nstate = \"s\"\nmin_ready = 1\nmax_ready = 2\nverify_after = \"0s\"\n"
        )
        .contains("verify_after must be more than 0s"));
    }

    #[test]
    fn empty_config_is_the_default() {
        assert_eq!(parse("").unwrap(), PoolConfig::default());
    }

    #[test]
    fn errors_are_positioned() {
        assert!(first_error("listn = \"x\"\n").starts_with("1:1: unknown field `listn`"));
        assert_eq!(
            first_error("listen = \"localhost\"\n"),
            "1:10: listen must be an address and port such as \"127.0.0.1:7878\", found \"localhost\""
        );
        assert!(first_error("store = \"mysql://x\"\n").starts_with("1:9: store must be"));
        assert!(
            first_error("[[tokens]]\nname = \"a\"\nrole = \"ci\"\nsha256 = \"abc\"\n")
                .starts_with("4:10: sha256 must be")
        );
        assert!(
            first_error("[[tokens]]\nname = \"a\"\nrole = \"root\"\nsha256 = \"abc\"\n")
                .starts_with("3:8: ")
        );
        assert_eq!(
            first_error("[[stock]]\ntype = \"c\"\nstate = \"s\"\nmin_ready = 5\nmax_ready = 2\n"),
            "5:13: max_ready (2) is below min_ready (5)"
        );
        assert!(first_error("[[generators]]\nname = \"g\"\n").contains("needs `url"));
        assert!(
            first_error("[[generators]]\nname = \"g\"\nurl = \"ftp://x\"\n")
                .starts_with("3:7: url must start")
        );
        assert!(
            first_error("[[generators]]\nname = \"g\"\ncommand = []\n")
                .starts_with("3:11: command must name")
        );
        assert!(
            first_error("default_lease_ttl = \"0s\"\n")
                .starts_with("1:21: default_lease_ttl must be at least")
        );
    }

    #[test]
    fn a_store_url_never_shows_its_password() {
        let url =
            StoreUrl::parse("postgres://bob:hunter2@127.0.0.1:1/db?password=hunter2&pool_size=4")
                .unwrap();
        let url = url.with_password("hunter3".into());
        for shown in [
            url.to_string(),
            format!("{url:?}"),
            serde_json::to_string(&url).unwrap(),
        ] {
            assert!(!shown.contains("hunter"), "{shown}");
        }
        assert_eq!(
            url.to_string(),
            "postgres://bob:***@127.0.0.1:1/db?password=***&pool_size=4"
        );
        assert_eq!(url.expose_password(), Some("hunter3"));
        let plain = StoreUrl::parse("postgres://bob@h/db").unwrap();
        assert_eq!(plain.to_string(), "postgres://bob@h/db");
        let bad = StoreUrl::parse("mysql://bob:hunter2@h/db").unwrap_err();
        assert!(!bad.contains("hunter2"), "{bad}");
    }

    #[test]
    fn the_password_may_come_from_pgpassword() {
        let env = |k: &str| (k == PGPASSWORD).then(|| "from-env".to_string());
        let url = StoreUrl::parse("postgres://bob@h/db")
            .unwrap()
            .with_env_password(&env);
        assert_eq!(url.expose_password(), Some("from-env"));
        let sqlite = StoreUrl::parse("sqlite://x.db")
            .unwrap()
            .with_env_password(&env);
        assert_eq!(sqlite.expose_password(), None);
        let none = |_: &str| None;
        let url = StoreUrl::parse("postgres://bob@h/db")
            .unwrap()
            .with_env_password(&none);
        assert_eq!(url.expose_password(), None);
    }

    #[test]
    fn the_password_may_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pg.pass"), "s3cret\n").unwrap();
        let cfg_path = dir.path().join("pool.toml");
        let cfg = PoolConfig::parse(
            &cfg_path,
            "store = \"postgres://bob@h/db\"\nstore_password_file = \"pg.pass\"\n",
        )
        .unwrap();
        assert_eq!(cfg.store.expose_password(), Some("s3cret"));
        assert!(!format!("{cfg:?}").contains("s3cret"));
        match PoolConfig::parse(
            &cfg_path,
            "store = \"postgres://bob@h/db\"\nstore_password_file = \"missing\"\n",
        ) {
            Err(PoolConfigError::Invalid(e)) => {
                let text = e[0].to_string();
                assert!(text.contains("2:23"), "{text}");
                assert!(text.contains("cannot read store_password_file"), "{text}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }
}
