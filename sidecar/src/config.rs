//! Where each setting comes from: flags, then environment, then the CI
//! adapter, then the manifest. The manifest is always validated before any
//! network call.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stockroom_protocol::manifest::{DEFAULT_MANIFEST, Manifest};

use crate::ci::EnvSource;
use crate::cli::Common;
use crate::client::Tls;
use crate::errors::Error;

pub const MANIFEST_VAR: &str = "STOCKROOM_MANIFEST";
pub const POOL_VAR: &str = "STOCKROOM_POOL";
pub const TOKEN_VAR: &str = "STOCKROOM_TOKEN";
pub const STATE_DIR_VAR: &str = "STOCKROOM_STATE_DIR";
pub const RETRY_FOR_VAR: &str = "STOCKROOM_RETRY_FOR";
pub const CA_FILE_VAR: &str = "STOCKROOM_CA_FILE";
/// How long an unreachable pool is retried when nothing else says.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(30);
/// How long to wait for stock when the manifest does not say.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(300);

/// The manifest's path: `--manifest`, `STOCKROOM_MANIFEST`, `./stockroom.toml`.
pub fn manifest_path(common: &Common, env: &impl EnvSource) -> PathBuf {
    common
        .manifest
        .clone()
        .or_else(|| env.get(MANIFEST_VAR).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MANIFEST))
}

/// Reads and validates the manifest (no network).
pub fn load_manifest(common: &Common, env: &impl EnvSource) -> Result<Manifest, Error> {
    Ok(Manifest::load(&manifest_path(common, env))?)
}

/// The pool's base URL without a trailing `/`, if one is configured.
pub fn pool_url(
    common: &Common,
    env: &impl EnvSource,
    manifest: Option<&Manifest>,
) -> Result<Option<String>, Error> {
    let (url, from) = match (
        &common.pool,
        env.get(POOL_VAR),
        manifest.and_then(|m| m.pool.clone()),
    ) {
        (Some(flag), _, _) => (flag.clone(), "--pool"),
        (None, Some(var), _) => (var, POOL_VAR),
        (None, None, Some(m)) => (m, "`pool` in the manifest"),
        (None, None, None) => return Ok(None),
    };
    match stockroom_protocol::manifest::check_pool_url(&url) {
        Ok(url) => Ok(Some(url)),
        Err(why) => Err(Error::Config(format!(
            "{from} is {url:?}, which is not a pool URL ({why}): expected one such as http://127.0.0.1:7878"
        ))),
    }
}

/// Like [`pool_url`], but a pool is required.
pub fn require_pool(
    common: &Common,
    env: &impl EnvSource,
    manifest: Option<&Manifest>,
) -> Result<String, Error> {
    pool_url(common, env, manifest)?.ok_or_else(|| {
        Error::Config(
            "no pool configured: pass --pool URL, set STOCKROOM_POOL, or set `pool = \"http://…\"` in the manifest".into(),
        )
    })
}

/// The pool token. Never printed: `Debug` shows `[redacted]`.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// The token: `--token-file`, else `STOCKROOM_TOKEN`, else none (auth off on the pool).
pub fn token(common: &Common, env: &impl EnvSource) -> Result<Option<Token>, Error> {
    let value = match &common.token_file {
        Some(path) => Some(read_token_file(path)?),
        None => env.get(TOKEN_VAR).map(|t| t.trim().to_string()),
    };
    Ok(value.filter(|t| !t.is_empty()).map(|t| {
        crate::redact::register([t.clone()]);
        Token(t)
    }))
}

fn read_token_file(path: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Config(format!(
            "failed to read the token file {} (--token-file): {e}",
            path.display()
        ))
    })?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(Error::Config(format!(
            "the token file {} (--token-file) is empty",
            path.display()
        )));
    }
    Ok(token)
}

/// Extra roots: `--ca-file`, else `STOCKROOM_CA_FILE`, else `recorded` (what
/// `start` saw, for `stop`, `status`, `extend` and the heartbeat).
pub fn tls(common: &Common, env: &impl EnvSource, recorded: Option<&Path>) -> Tls {
    Tls {
        ca_file: common
            .ca_file
            .clone()
            .or_else(|| {
                env.get(CA_FILE_VAR)
                    .filter(|v| !v.trim().is_empty())
                    .map(PathBuf::from)
            })
            .or_else(|| recorded.map(Path::to_path_buf)),
    }
}

/// How long to retry an unreachable pool: `--retry-for`, `STOCKROOM_RETRY_FOR`, 30s.
pub fn retry_for(common: &Common, env: &impl EnvSource) -> Result<Duration, Error> {
    if let Some(d) = common.retry_for {
        return Ok(d.as_duration());
    }
    match env.get(RETRY_FOR_VAR) {
        None => Ok(DEFAULT_RETRY_FOR),
        Some(text) => text
            .parse::<stockroom_protocol::HumanDuration>()
            .map(|d| d.as_duration())
            .map_err(|e| Error::Config(format!("{RETRY_FOR_VAR}: {e}"))),
    }
}

/// Where `start` keeps state: `--state-dir`, `STOCKROOM_STATE_DIR`,
/// `$RUNNER_TEMP/stockroom` (GitHub), `./.stockroom`.
pub fn state_dir(common: &Common, env: &impl EnvSource) -> PathBuf {
    common
        .state_dir
        .clone()
        .or_else(|| env.get(STATE_DIR_VAR).map(PathBuf::from))
        .or_else(|| {
            env.get("RUNNER_TEMP")
                .map(|t| Path::new(&t).join("stockroom"))
        })
        .unwrap_or_else(|| PathBuf::from(".stockroom"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pool_flag_beats_env_beats_manifest() {
        let manifest = Manifest::parse(
            Path::new("m.toml"),
            "version = 1\npool = \"http://m:1\"\n[[dataset]]\nname = \"a\"\ntype = \"t\"\nstate = \"s\"\n",
        )
        .expect("valid");
        let mut common = Common::default();
        assert_eq!(
            pool_url(&common, &env(&[]), Some(&manifest))
                .ok()
                .flatten()
                .as_deref(),
            Some("http://m:1")
        );
        let e = env(&[(POOL_VAR, "http://e:2/")]);
        assert_eq!(
            pool_url(&common, &e, Some(&manifest))
                .ok()
                .flatten()
                .as_deref(),
            Some("http://e:2")
        );
        common.pool = Some("http://f:3".into());
        assert_eq!(
            pool_url(&common, &e, Some(&manifest))
                .ok()
                .flatten()
                .as_deref(),
            Some("http://f:3")
        );
        common.pool = Some("f:3".into());
        assert_eq!(
            pool_url(&common, &e, None)
                .map_err(|e| crate::exit::Exit::from(e).code())
                .err(),
            Some(78)
        );
        assert!(matches!(
            pool_url(&Common::default(), &env(&[]), None),
            Ok(None)
        ));
    }

    #[test]
    fn token_comes_from_the_file_or_the_variable_and_never_shows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("t");
        std::fs::write(&file, "file-token-value\n").expect("write");
        let common = Common {
            token_file: Some(file),
            ..Common::default()
        };
        let t = token(&common, &env(&[(TOKEN_VAR, "env-token")]))
            .expect("ok")
            .expect("some");
        assert_eq!(t.expose(), "file-token-value");
        assert!(!format!("{t:?}").contains("file-token"));
        let t = token(&Common::default(), &env(&[(TOKEN_VAR, "env-token")]))
            .expect("ok")
            .expect("some");
        assert_eq!(t.expose(), "env-token");
        let missing = Common {
            token_file: Some(dir.path().join("nope")),
            ..Common::default()
        };
        assert_eq!(
            token(&missing, &env(&[]))
                .map_err(|e| crate::exit::Exit::from(e).code())
                .err(),
            Some(78)
        );
    }
}
