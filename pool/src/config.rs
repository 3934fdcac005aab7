//! Start-up settings: `stockroom-pool.toml` (docs/pool.md) with flag overrides,
//! fully validated before anything binds.

use std::path::PathBuf;

use stockroom_protocol::pool_config::{PoolConfig, StoreUrl};

/// Command-line flags of `stockroom-pool`.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "stockroom-pool",
    version = env!("STOCKROOM_VERSION"),
    about = "Stockroom pool server: keeps test datasets in stock and leases them exclusively"
)]
pub struct Flags {
    /// The pool configuration file (stockroom-pool.toml).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address to listen on, overriding `listen`; port 0 picks a free port.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Store URL, overriding `store`: sqlite://PATH or
    /// postgres://USER@HOST:PORT/DATABASE[?pool_size=N] (see docs/operations.md).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Once listening, write the bound address (`127.0.0.1:PORT`) to this file.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands; without one the pool serves its configuration.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Run the built-in example shop: three HTTP generator services on
    /// loopback and a pool that keeps their states in stock.
    Demo(DemoFlags),
    /// Check generators against the protocol (docs/generators.md): calls
    /// capabilities, generates every state, runs every extension and
    /// lifecycle call, and reports each violation with what to fix. Exits 0
    /// only when clean.
    GeneratorCheck(GeneratorCheckFlags),
}

/// Flags of `stockroom-pool generator-check`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Examples:\n  stockroom-pool generator-check --command \"python3 gen.py\"\n  stockroom-pool generator-check --url http://127.0.0.1:9001\n  stockroom-pool generator-check --command \"python3 customers.py\" --command \"node orders.mjs\""
)]
pub struct GeneratorCheckFlags {
    /// A command generator, as you would type it ("python3 gen.py"); repeat
    /// for several (checked together: one may make the inputs of another).
    #[arg(long = "command", value_name = "CMD")]
    pub commands: Vec<String>,
    /// The base URL of an HTTP generator; may be repeated.
    #[arg(long = "url", value_name = "URL")]
    pub urls: Vec<String>,
    /// Longest one call may take (the call is stopped then).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
    /// A call slower than this is reported as a violation.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub slow: std::time::Duration,
}

/// Flags of `stockroom-pool demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoFlags {
    /// Address for the pool's API; port 0 picks a free port.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:7878")]
    pub listen: String,
    /// Store URL (sqlite://PATH); default: a fresh database in a temporary directory.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// How long each demo generator call takes (e.g. 150ms, 1s).
    #[arg(long, value_name = "DURATION", default_value = "150ms", value_parser = humantime::parse_duration)]
    pub latency: std::time::Duration,
    /// Once listening, write the bound address (`127.0.0.1:PORT`) to this file.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Address for the demo shop's own API (the system under test, routes
    /// under /shop); port 0 picks a free port.
    #[arg(long, value_name = "ADDR:PORT", default_value = stockroom_generators::DEFAULT_SHOP_LISTEN)]
    pub shop_listen: String,
    /// Once the shop's API listens, write its URL (`http://127.0.0.1:PORT`,
    /// no newline) to this file.
    #[arg(long, value_name = "PATH")]
    pub shop_url_file: Option<PathBuf>,
}

/// Stock targets of the demo: leasing the example manifest is instant once warm.
pub const DEMO_STOCK: &[(&str, &str, u32, u32)] = &[
    ("customer", "new", 2, 5),
    ("customer", "active", 3, 10),
    ("customer", "returning", 2, 5),
    ("customer", "active-with-payment", 5, 20),
    ("order", "placed", 5, 20),
];

/// The demo's configuration around the running demo shop.
pub fn demo_settings(
    flags: &DemoFlags,
    generators: Vec<stockroom_protocol::pool_config::GeneratorConfig>,
    default_store: String,
) -> Result<PoolConfig, ConfigError> {
    let cfg = PoolConfig {
        listen: flags.listen.clone(),
        store: StoreUrl::parse(&flags.store.clone().unwrap_or(default_store))
            .map_err(ConfigError)?,
        generators,
        stock: DEMO_STOCK
            .iter()
            .map(
                |(t, s, min, max)| stockroom_protocol::pool_config::StockConfig {
                    type_name: (*t).to_string(),
                    state: (*s).to_string(),
                    min_ready: *min,
                    max_ready: *max,
                    verify_after: None,
                },
            )
            .collect(),
        ..PoolConfig::default()
    };
    validate(&cfg)?;
    Ok(cfg)
}

/// A configuration the pool refuses to start with (exit 78).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Reads the file (if any), applies the flags and checks the result.
pub fn settings(flags: &Flags) -> Result<PoolConfig, ConfigError> {
    let mut cfg = match &flags.config {
        Some(path) => PoolConfig::load(path).map_err(|e| ConfigError(e.to_string()))?,
        None => PoolConfig::default(),
    };
    if let Some(listen) = &flags.listen {
        cfg.listen = listen.clone();
    }
    if let Some(store) = &flags.store {
        cfg.store = StoreUrl::parse(store).map_err(ConfigError)?;
    }
    // The password may also come from PGPASSWORD (one in the URL wins).
    cfg.store = cfg.store.with_env_password(&|k| std::env::var(k).ok());
    validate(&cfg)?;
    Ok(cfg)
}

/// The checks that also apply after flags override the file.
pub fn validate(cfg: &PoolConfig) -> Result<(), ConfigError> {
    if cfg.listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(ConfigError(format!(
            "--listen/listen must be an address and port such as \"127.0.0.1:7878\", found {:?}",
            cfg.listen
        )));
    }
    if cfg.tokens.is_empty() && !cfg.listens_on_loopback() {
        return Err(ConfigError(format!(
            "refusing to listen on non-loopback address {} without tokens: add [[tokens]] entries (name, role, sha256) \
             to the config, or listen on 127.0.0.1",
            cfg.listen
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_and_non_loopback_needs_tokens() {
        let flags = Flags {
            listen: Some("0.0.0.0:7878".into()),
            ..Flags::default()
        };
        assert!(settings(&flags).unwrap_err().0.contains("without tokens"));
        let flags = Flags {
            listen: Some("127.0.0.1:0".into()),
            store: Some("sqlite://x.db".into()),
            ..Flags::default()
        };
        let cfg = settings(&flags).unwrap();
        assert_eq!(cfg.store.expose_url(), "sqlite://x.db");
        let flags = Flags {
            store: Some("postgres://h/db".into()),
            ..Flags::default()
        };
        assert_eq!(
            settings(&flags).unwrap().store.expose_url(),
            "postgres://h/db"
        );
        let flags = Flags {
            store: Some("mysql://h/db".into()),
            ..Flags::default()
        };
        assert!(settings(&flags).unwrap_err().0.contains("postgres://"));
    }
}
