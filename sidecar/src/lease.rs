//! Acquiring the lease: one request for every dataset of this shard, retried
//! with the same idempotency key (so a dropped answer never leases twice),
//! waiting for stock up to `acquire_timeout` while showing progress.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use stockroom_protocol::api::{LeaseGranted, LeaseRequest, ProblemKind, Shortfall};
use stockroom_protocol::manifest::Manifest;
use tokio::time::Instant;

use crate::client::{ClientError, PoolClient, retry_backoff};
use crate::errors::Error;

/// The proof of holding a lease: the `lease_token` of the pool's answer,
/// sent in the `Stockroom-Lease-Token` header of heartbeat, release and
/// extend (docs/sidecar.md, "Lease tokens"). Registered as a secret, so it
/// never reaches a log; its `Debug` is redacted; it is kept only in the
/// private state file of `start`, never in the tests' environment or
/// datasets file.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct LeaseToken(String);

impl LeaseToken {
    pub fn new(token: String) -> LeaseToken {
        crate::redact::register([token.clone()]);
        LeaseToken(token)
    }

    /// The token of a lease answer (a pool older than tokens has none).
    pub fn of(granted: &LeaseGranted) -> Option<LeaseToken> {
        granted.lease_token.clone().map(LeaseToken::new)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for LeaseToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaseToken([redacted])")
    }
}

/// Where `stockroom run` tells its command's `stockroom extend` the lease
/// token is: the path of a 0600 file in a private 0700 temp dir (the token
/// itself is never in the environment or the datasets file).
pub const LEASE_TOKEN_FILE_VAR: &str = "STOCKROOM_LEASE_TOKEN_FILE";

/// The lease token in a private file for the command of `run`; dropping it
/// removes the file and its dir.
pub struct TokenFile {
    pub path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TokenFile {
    pub fn write(token: &LeaseToken) -> Result<TokenFile, Error> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("stockroom-lease-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(|e| {
                Error::Config(format!(
                    "failed to create a private temp dir for the lease token: {e}; set TMPDIR to a writable directory"
                ))
            })?;
        let path = dir.path().join("lease-token");
        crate::inject::write_private_atomically(&path, token.expose().as_bytes())
            .map_err(|e| Error::Config(format!("failed to write {}: {e}", path.display())))?;
        Ok(TokenFile { path, _dir: dir })
    }

    /// Reads the token a `run` left for its command, if the variable is set.
    pub fn read(env: &impl crate::ci::EnvSource) -> Result<Option<LeaseToken>, Error> {
        let Some(path) = env.get(LEASE_TOKEN_FILE_VAR) else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::Config(format!(
                "failed to read the lease token from {path} ({LEASE_TOKEN_FILE_VAR}): {e}; \
                 run `stockroom extend` inside the `stockroom run` that holds the lease"
            ))
        })?;
        Ok(Some(LeaseToken::new(text.trim().to_string())))
    }
}

/// Another live process holds the lease of our idempotency key: never share it.
fn key_conflict(error: &ClientError) -> Error {
    Error::Config(format!(
        "the pool refused the lease: another process holds a lease with the same idempotency key \
         ({error}). Two sidecars computed the same key, as parallel jobs of one CI build without \
         shard variables do. Give each its own shard (--shard-index N --shard-total M, or \
         STOCKROOM_SHARD_INDEX/STOCKROOM_SHARD_TOTAL) or its own key (STOCKROOM_IDEMPOTENCY_KEY)."
    ))
}

/// How long one lease request asks the pool to hold it while stock is short;
/// also how often CI logs get a progress line.
const POLL: Duration = Duration::from_secs(5);

/// Bounds of the acquisition.
#[derive(Debug, Clone, Copy)]
pub struct AcquireBounds {
    /// How long to wait for stock.
    pub acquire_timeout: Duration,
    /// How long to retry an unreachable pool.
    pub retry_for: Duration,
}

/// Leases the request's items, or fails as pool unreachable, no stock, token
/// rejected or configuration.
pub async fn acquire(
    client: &PoolClient,
    mut request: LeaseRequest,
    manifest: &Manifest,
    bounds: AcquireBounds,
) -> Result<LeaseGranted, Error> {
    let started = Instant::now();
    let deadline = started + bounds.acquire_timeout;
    let mut progress = Progress::new(std::io::stderr().is_terminal());
    let mut unreachable_since: Option<Instant> = None;
    let mut attempts = 0u32;
    let mut backoff = retry_backoff(Duration::from_secs(5));
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        request.wait_seconds = Some(remaining.min(POLL).as_secs());
        let asked_at = Instant::now();
        attempts += 1;
        let result = progress
            .while_waiting(started, client.lease(&request))
            .await;
        let error = match result {
            Ok(granted) => {
                progress.finish();
                return Ok(granted);
            }
            Err(e) => e,
        };
        match error.kind() {
            Some(ProblemKind::NoStock) => {
                unreachable_since = None;
                let (shortfall, retry_after) = match &error {
                    ClientError::Problem {
                        problem,
                        retry_after,
                        ..
                    } => (problem.shortfall.clone().unwrap_or_default(), *retry_after),
                    _ => (Vec::new(), None),
                };
                if Instant::now() >= deadline {
                    progress.finish();
                    return Err(Error::NoStock {
                        timeout: humantime::format_duration(bounds.acquire_timeout).to_string(),
                        shortfall: describe_shortfall(&shortfall),
                    });
                }
                progress.update(started, &shortfall);
                // A pool that answers at once (it did not wait) is not hammered.
                if asked_at.elapsed() < Duration::from_millis(500) {
                    let pause = retry_after
                        .unwrap_or(Duration::from_secs(1))
                        .min(Duration::from_secs(1));
                    tokio::time::sleep(
                        pause.min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                }
            }
            Some(ProblemKind::Unauthorized | ProblemKind::Forbidden) => {
                progress.finish();
                return Err(error.into_error(client.base()));
            }
            Some(ProblemKind::UnknownState) => {
                progress.finish();
                return Err(unknown_state(manifest, &error));
            }
            Some(ProblemKind::IdempotencyConflict) => {
                progress.finish();
                return Err(key_conflict(&error));
            }
            _ if error.is_transient() => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                let delay = backoff.next_delay();
                if since.elapsed() + delay > bounds.retry_for {
                    progress.finish();
                    return Err(Error::PoolUnreachable {
                        pool: client.base().to_string(),
                        attempts,
                        waited: humantime::format_duration(round(started.elapsed())).to_string(),
                        last: error.to_string(),
                    });
                }
                tracing::warn!("{error}; retrying in {}", humantime::format_duration(delay));
                tokio::time::sleep(delay).await;
            }
            _ => {
                progress.finish();
                return Err(Error::Config(format!(
                    "failed to lease the datasets: {error}"
                )));
            }
        }
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64 / 100 * 100)
}

/// An unknown type or state, pointed at in the manifest.
fn unknown_state(manifest: &Manifest, error: &ClientError) -> Error {
    let known = match error {
        ClientError::Problem { problem, .. } => problem.known_states.clone().unwrap_or_default(),
        _ => Vec::new(),
    };
    let mut lines: Vec<String> = manifest
        .datasets
        .iter()
        .filter(|d| !known.is_empty() && !known.contains(&format!("{}/{}", d.type_name, d.state)))
        .map(|d| {
            format!(
                "{}: the pool knows no {}/{}",
                d.state_position, d.type_name, d.state
            )
        })
        .collect();
    if lines.is_empty() {
        lines.push(error.to_string());
    }
    Error::Config(format!(
        "failed to lease: unknown type or state\n{}\nknown states: {}",
        lines.join("\n"),
        if known.is_empty() {
            "(not given)".to_string()
        } else {
            known.join(", ")
        }
    ))
}

/// `buyer: 0 of 1 ready, 1 generating; orders: …`.
pub fn describe_shortfall(shortfall: &[Shortfall]) -> String {
    if shortfall.is_empty() {
        return "(the pool did not say which datasets)".into();
    }
    shortfall
        .iter()
        .map(|s| {
            let held = if s.entities_held > 0 {
                format!(
                    " (but {} of them share entities with other active leases and cannot be handed out until those end)",
                    s.entities_held
                )
            } else {
                String::new()
            };
            format!(
                "{}: {} of {} ready{held}, {} generating",
                s.name, s.ready, s.wanted, s.generating
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Progress while waiting for stock: a live line on a terminal, a log line
/// every few seconds elsewhere (CI logs).
struct Progress {
    terminal: bool,
    line: Option<String>,
    last_logged: Option<Instant>,
}

impl Progress {
    fn new(terminal: bool) -> Progress {
        Progress {
            terminal,
            line: None,
            last_logged: None,
        }
    }

    fn text(started: Instant, shortfall: &str) -> String {
        format!(
            "waiting for stock ({}s): {shortfall}",
            started.elapsed().as_secs()
        )
    }

    fn update(&mut self, started: Instant, shortfall: &[Shortfall]) {
        let text = describe_shortfall(shortfall);
        if self.terminal {
            self.draw(&Self::text(started, &text));
            self.line = Some(text);
        } else if self.last_logged.is_none_or(|t| t.elapsed() >= POLL) {
            tracing::info!("{}", Self::text(started, &text));
            self.last_logged = Some(Instant::now());
        }
    }

    fn draw(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{}", crate::redact::redact(text));
        let _ = err.flush();
    }

    /// Awaits `call`, redrawing the live line every second meanwhile.
    async fn while_waiting<T>(
        &self,
        started: Instant,
        call: impl std::future::Future<Output = T>,
    ) -> T {
        let Some(line) = self.line.as_deref().filter(|_| self.terminal) else {
            return call.await;
        };
        tokio::pin!(call);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                out = &mut call => return out,
                _ = tick.tick() => self.draw(&Self::text(started, line)),
            }
        }
    }

    fn finish(&mut self) {
        if self.terminal && self.line.take().is_some() {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortfall_reads_per_dataset() {
        let s = vec![
            Shortfall {
                name: "buyer".into(),
                wanted: 1,
                ready: 0,
                generating: 1,
                generator: None,
                down: None,
                entities_held: 0,
            },
            Shortfall {
                name: "orders".into(),
                wanted: 3,
                ready: 1,
                generating: 0,
                generator: None,
                down: None,
                entities_held: 0,
            },
        ];
        assert_eq!(
            describe_shortfall(&s),
            "buyer: 0 of 1 ready, 1 generating; orders: 1 of 3 ready, 0 generating"
        );
    }
}
