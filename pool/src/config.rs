//! Start-up settings: `stockroom-pool.toml` (CONTRACT §8) with flag overrides,
//! fully validated before anything binds.

use std::path::PathBuf;

use stockroom_protocol::pool_config::{PoolConfig, check_store_url};

/// Command-line flags of `stockroom-pool`.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "stockroom-pool",
    version,
    about = "Stockroom pool server: keeps test datasets in stock and leases them exclusively"
)]
pub struct Flags {
    /// The pool configuration file (stockroom-pool.toml).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address to listen on, overriding `listen`; port 0 picks a free port.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Store URL, overriding `store`: sqlite://PATH.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Once listening, write the bound address (`127.0.0.1:PORT`) to this file.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
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
        cfg.store = store.clone();
    }
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
    check_store_url(&cfg.store).map_err(ConfigError)?;
    if !cfg.store.starts_with("sqlite://") {
        return Err(ConfigError(format!(
            "store {:?}: this build supports only sqlite://PATH stores; PostgreSQL arrives in a later release",
            cfg.store
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
        assert_eq!(cfg.store, "sqlite://x.db");
        let flags = Flags {
            store: Some("postgres://h/db".into()),
            ..Flags::default()
        };
        assert!(settings(&flags).unwrap_err().0.contains("PostgreSQL"));
    }
}
