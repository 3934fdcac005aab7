//! `stockroom run -- COMMAND`: lease, inject, run the command in its own
//! process group with signals forwarded, heartbeat meanwhile, release with
//! the outcome, and end as the command ended.
//!
//! Signal design (as nextest and uv, docs/sidecar.md "Signals"): the command
//! runs in its own process group so a terminal's Ctrl-C reaches only the
//! sidecar, which forwards SIGINT, SIGTERM and SIGHUP to the whole group,
//! waits `--grace`, then SIGKILLs the group. How the run ended is an
//! [`Exit`]; its code is decided in `exit.rs`.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use stockroom_protocol::Outcome;
use stockroom_protocol::api::{
    LeaseGranted, LeaseRequest, ProblemKind, ReleaseAnswer, ReleaseRequest,
};
use stockroom_protocol::datasets_file::ShardInfo;
use stockroom_protocol::manifest::Manifest;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use crate::agent::{self, AgentConfig};
use crate::ci::{self, CiContext, EnvSource, Shard};
use crate::cli::{Common, OnLeaseLost, RunArgs};
use crate::client::{ClientError, PoolClient, Tls, retry_transient};
use crate::config::{self, DEFAULT_ACQUIRE_TIMEOUT};
use crate::errors::Error;
use crate::exit::Exit;
use crate::heartbeat::{self, LeaseLost};
use crate::inject::{self, DatasetsFileHome};
use crate::lease::{self, AcquireBounds, LeaseToken, TokenFile};

/// Everything resolved before the first network call.
pub struct Prepared {
    pub manifest: Manifest,
    pub shard: Shard,
    pub client: PoolClient,
    pub retry_for: Duration,
    pub ci: CiContext,
    /// Extra TLS roots, recorded by `start` for the later steps.
    pub tls: Tls,
}

/// Validates the manifest and resolves pool, token and shard (no network).
pub fn prepare(common: &Common, env: &impl EnvSource) -> Result<Prepared, Error> {
    let manifest = config::load_manifest(common, env)?;
    let shard = ci::shard(common, env)?;
    manifest.check_shard_total(shard.total)?;
    let pool = config::require_pool(common, env, Some(&manifest))?;
    let token = config::token(common, env)?;
    let retry_for = config::retry_for(common, env)?;
    let tls = config::tls(common, env, None);
    let client = PoolClient::new(&pool, token, &tls)?;
    Ok(Prepared {
        manifest,
        shard,
        client,
        retry_for,
        ci: CiContext::read(env),
        tls,
    })
}

/// The one lease request for every dataset of this shard.
pub fn lease_request(p: &Prepared) -> LeaseRequest {
    LeaseRequest {
        holder: stockroom_protocol::api::Holder {
            instance: Some(instance().to_string()),
            ..p.ci.holder(p.shard)
        },
        ttl_seconds: p
            .manifest
            .lease_ttl
            .map(|d| d.as_duration().as_secs().max(1)),
        wait_seconds: None,
        // Without a CI key, one random key per invocation still makes this
        // invocation's own retries safe.
        idempotency_key: Some(
            p.ci.idempotency_key(p.shard)
                .unwrap_or_else(|| local_key(p.shard)),
        ),
        items: p
            .manifest
            .datasets_for_shard(p.shard.index)
            .into_iter()
            .map(|d| d.to_lease_item())
            .collect(),
    }
}

/// This process among others that compute the same idempotency key: the
/// pool binds the key to it, so a second live process is refused (409)
/// instead of sharing the first one's lease (docs/sidecar.md, "Idempotency").
fn instance() -> &'static str {
    static INSTANCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    INSTANCE.get_or_init(random_hex)
}

fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Fall back to something unique enough for one machine.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes[..16].copy_from_slice(&nanos.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn local_key(shard: Shard) -> String {
    format!("local:{}:{}", random_hex(), shard.index)
}

/// Leases with progress and retries.
pub async fn acquire(p: &Prepared) -> Result<LeaseGranted, Error> {
    let request = lease_request(p);
    let bounds = AcquireBounds {
        acquire_timeout: p
            .manifest
            .acquire_timeout
            .map_or(DEFAULT_ACQUIRE_TIMEOUT, |d| d.as_duration()),
        retry_for: p.retry_for,
    };
    tracing::debug!(
        "lease request: {} item(s), key {:?}",
        request.items.len(),
        request.idempotency_key
    );
    let granted = lease::acquire(&p.client, request, &p.manifest, bounds).await?;
    let names: Vec<String> = granted
        .datasets
        .iter()
        .map(|d| format!("{} ({})", d.name, d.dataset.id))
        .collect();
    tracing::info!(
        "leased {} dataset(s) as lease {} until {}: {}",
        granted.datasets.len(),
        granted.lease_id,
        granted.expires_at,
        names.join(", ")
    );
    Ok(granted)
}

pub async fn run(common: &Common, args: RunArgs, env: &impl EnvSource) -> Result<Exit, Error> {
    let mut prepared = prepare(common, env)?;
    let started = Instant::now();
    // Installed before the lease request: a CI cancelling the job while we
    // wait for stock must end the wait cleanly, not kill the sidecar mid-request.
    let mut signals = Signals::new()?;
    let granted = tokio::select! {
        granted = acquire(&prepared) => granted?,
        sig = signals.next() => {
            tracing::warn!(
                "received {sig} while waiting for stock; giving up before the command started. \
                 Nothing is held, unless the pool granted the lease in this very moment: then it \
                 expires after its TTL and its datasets are quarantined"
            );
            return Ok(Exit::Interrupted(sig));
        }
    };
    // From here on every call acts as the lease's holder.
    prepared.client = prepared.client.holding(LeaseToken::of(&granted));
    let shard = ShardInfo {
        index: prepared.shard.index,
        total: prepared.shard.total,
    };
    let file = inject::datasets_file(&granted, shard);
    inject::register_secrets(&file);

    let injected = DatasetsFileHome::for_run(&prepared.manifest).and_then(|home| {
        inject::write_datasets_file(&home.path, &file)?;
        let mut vars = inject::env_vars(&prepared.manifest, &file, &home.path)?;
        // For `stockroom extend` in the command: where the token is, not the token.
        let token_file = LeaseToken::of(&granted)
            .map(|t| TokenFile::write(&t))
            .transpose()?;
        if let Some(t) = &token_file {
            vars.push(stockroom_protocol::env_names::EnvVar {
                name: lease::LEASE_TOKEN_FILE_VAR.to_string(),
                value: t.path.to_string_lossy().into_owned(),
                secret: false,
                source: "the lease token file".into(),
            });
        }
        Ok(((home, token_file), vars))
    });
    let details_url = args
        .details_url
        .clone()
        .or_else(|| prepared.ci.job.url.clone());
    let injected = match injected {
        Ok(v) => agent::start(agent_config(&prepared, details_url.clone()))
            .await
            .map(|agent| (v, agent)),
        Err(e) => Err(e),
    };
    let ((home, vars), agent) = match injected {
        Ok(v) => v,
        Err(e) => {
            release(
                &prepared,
                &granted.lease_id,
                Outcome::Cancelled,
                Some(format!("sidecar failed before the command: {e}")),
                details_url,
            )
            .await;
            return Err(e);
        }
    };

    if prepared.ci.provider == ci::Provider::GitHubActions {
        // GitHub hides a value only after seeing its mask: emit them before the command prints anything.
        let mut stdout = std::io::stdout().lock();
        let exports: Vec<ci::ExportVar> = vars.iter().map(ci::ExportVar::from).collect();
        if let Err(e) = ci::write_masks(&exports, &mut stdout) {
            tracing::warn!("failed to write GitHub masks: {e}");
        }
    }

    let mut command = tokio::process::Command::new(&args.command[0]);
    command
        .args(&args.command[1..])
        .envs(vars.iter().map(|v| (&v.name, &v.value)))
        .envs(agent.env())
        // The pool token never reaches the tests: they use the agent's.
        .env_remove(config::TOKEN_VAR)
        .process_group(0);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            tracing::error!("failed to start {:?}: {e}", args.command[0]);
            let reason = format!("command could not start: {e}");
            agent.finish(Outcome::Failed, &reason).await;
            release(
                &prepared,
                &granted.lease_id,
                Outcome::Failed,
                Some(reason),
                details_url,
            )
            .await;
            drop(home);
            return Ok(Exit::from_spawn_error(&e));
        }
    };
    tracing::debug!(
        "command started {}ms after the sidecar",
        started.elapsed().as_millis()
    );

    let ended = match supervise(child, signals, &prepared.client, &granted, &args).await {
        Ok(ended) => ended,
        Err(e) => {
            agent.finish(Outcome::Cancelled, &e.to_string()).await;
            return Err(e);
        }
    };
    let outcome = match (ended.cancelled_by, ended.status.success()) {
        (Some(_), _) => Outcome::Cancelled,
        (None, true) => Outcome::Passed,
        (None, false) => Outcome::Failed,
    };
    let how = describe_end(&ended);
    let settlement = agent.finish(outcome, &how).await;
    let reason = args
        .reason
        .clone()
        .unwrap_or_else(|| reason_with_tests(&settlement.failed_tests, &how));
    if let Some(lost) = &ended.lease_lost {
        tracing::error!("{}", heartbeat::lost_message(lost));
        tracing::warn!(
            "not releasing lease {}: the pool has already ended it",
            lost.lease_id
        );
    } else {
        release(
            &prepared,
            &granted.lease_id,
            outcome,
            Some(reason),
            details_url,
        )
        .await;
    }
    drop(home);
    Ok(ended.exit(args.on_lease_lost))
}

/// The agent of this run: the job's identity, its TTL and retry bound.
pub fn agent_config(p: &Prepared, details_url: Option<String>) -> AgentConfig {
    AgentConfig {
        client: p.client.clone(),
        holder: p.ci.holder(p.shard),
        ttl_seconds: p
            .manifest
            .lease_ttl
            .map(|d| d.as_duration().as_secs().max(1)),
        retry_for: p.retry_for,
        details_url,
    }
}

/// The quarantine reason: the failing tests the agent heard of, then how
/// the command ended.
pub fn reason_with_tests(failed_tests: &[String], how: &str) -> String {
    const SHOWN: usize = 10;
    match failed_tests.len() {
        0 => how.to_string(),
        n => {
            let mut shown = failed_tests[..n.min(SHOWN)].join(", ");
            if n > SHOWN {
                shown.push_str(&format!(" and {} more", n - SHOWN));
            }
            format!("failed tests: {shown}; {how}")
        }
    }
}

struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// The next of SIGINT, SIGTERM or SIGHUP.
    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::SIGINT,
            _ = self.term.recv() => Signal::SIGTERM,
            _ = self.hup.recv() => Signal::SIGHUP,
        }
    }

    fn new() -> Result<Signals, Error> {
        let make = |kind: SignalKind| {
            signal(kind)
                .map_err(|e| Error::Internal(format!("failed to install a signal handler: {e}")))
        };
        Ok(Signals {
            int: make(SignalKind::interrupt())?,
            term: make(SignalKind::terminate())?,
            hup: make(SignalKind::hangup())?,
        })
    }
}

/// How the command ended.
#[derive(Debug)]
pub struct Ended {
    pub status: ExitStatus,
    pub cancelled_by: Option<Signal>,
    pub lease_lost: Option<LeaseLost>,
}

impl Ended {
    /// How `run` ends: as the command ended, unless `--on-lease-lost=fail`
    /// stopped it because the lease was lost. Then its own code only says how
    /// it took our SIGTERM, so the lost lease is what is reported (a cancel
    /// of the sidecar itself still wins: the job was being cancelled anyway).
    pub fn exit(&self, on_lease_lost: OnLeaseLost) -> Exit {
        if self.lease_lost.is_some()
            && on_lease_lost == OnLeaseLost::Fail
            && self.cancelled_by.is_none()
        {
            Exit::LeaseLost
        } else {
            Exit::from_status(self.status)
        }
    }
}

fn describe_end(ended: &Ended) -> String {
    let how = match (ended.status.code(), ended.status.signal()) {
        (Some(code), _) => format!("command exited with code {code}"),
        (None, Some(sig)) => format!("command killed by signal {}", signal_name(sig)),
        (None, None) => "command ended".into(),
    };
    match ended.cancelled_by {
        Some(sig) => format!("{how} after the sidecar received {sig}"),
        None => how,
    }
}

fn signal_name(sig: i32) -> String {
    Signal::try_from(sig).map_or_else(|_| sig.to_string(), |s| s.as_str().to_string())
}

/// Waits for the command and the signals together (uv's `child.rs`, with a heartbeat).
async fn supervise(
    mut child: tokio::process::Child,
    mut signals: Signals,
    client: &PoolClient,
    granted: &LeaseGranted,
    args: &RunArgs,
) -> Result<Ended, Error> {
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .ok_or_else(|| Error::Internal("the command has no pid".into()))?;
    let group = Pid::from_raw(pid);
    let grace = args.grace.as_duration();
    let heartbeat = heartbeat::keep_alive(
        client,
        &granted.lease_id,
        heartbeat::interval_from(granted.heartbeat_interval_seconds),
    );
    tokio::pin!(heartbeat);
    let mut cancelled_by: Option<Signal> = None;
    let mut lease_lost: Option<LeaseLost> = None;
    let mut kill_at: Option<Instant> = None;

    let forward = |sig: Signal, kill_at: &mut Option<Instant>| {
        tracing::warn!(
            "forwarding {sig} to the command's process group {pid}{}",
            if kill_at.is_none() {
                format!("; SIGKILL in {}", humantime::format_duration(grace))
            } else {
                String::new()
            }
        );
        if let Err(e) = killpg(group, sig) {
            tracing::debug!("failed to send {sig} to process group {pid}: {e}");
        }
        kill_at.get_or_insert(Instant::now() + grace);
    };

    let status = loop {
        tokio::select! {
            status = child.wait() => {
                break status.map_err(|e| Error::Internal(format!("failed to wait for the command: {e}")))?;
            }
            _ = signals.int.recv() => { cancelled_by = Some(Signal::SIGINT); forward(Signal::SIGINT, &mut kill_at); }
            _ = signals.term.recv() => { cancelled_by = Some(Signal::SIGTERM); forward(Signal::SIGTERM, &mut kill_at); }
            _ = signals.hup.recv() => { cancelled_by = Some(Signal::SIGHUP); forward(Signal::SIGHUP, &mut kill_at); }
            lost = &mut heartbeat, if lease_lost.is_none() => {
                tracing::error!("{}", heartbeat::lost_message(&lost));
                if args.on_lease_lost == OnLeaseLost::Fail {
                    tracing::error!("--on-lease-lost=fail: stopping the command");
                    forward(Signal::SIGTERM, &mut kill_at);
                } else {
                    tracing::warn!("--on-lease-lost=warn: the command keeps running");
                }
                lease_lost = Some(lost);
            }
            _ = sleep_until(kill_at) => {
                tracing::warn!("the command's process group {pid} is still running after the grace period; sending SIGKILL");
                let _ = killpg(group, Signal::SIGKILL);
                kill_at = None;
            }
        }
    };

    // After a cancel, what is left of the group gets the rest of the grace
    // period, then SIGKILL: it must not keep using data we are about to hand back.
    if let Some(deadline) = kill_at {
        while group_alive(group) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if group_alive(group) {
            tracing::warn!("killing what is left of the command's process group {pid}");
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
    Ok(Ended {
        status,
        cancelled_by,
        lease_lost,
    })
}

fn group_alive(group: Pid) -> bool {
    killpg(group, None).is_ok()
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Releases the lease with `outcome`, retried for `retry_for`. A failure is
/// logged, never fatal: the command's exit code stands.
pub async fn release(
    p: &Prepared,
    lease_id: &str,
    outcome: Outcome,
    reason: Option<String>,
    details_url: Option<String>,
) -> Option<ReleaseAnswer> {
    release_with(
        &p.client,
        p.retry_for,
        lease_id,
        outcome,
        reason,
        details_url,
    )
    .await
    .ok()
}

/// Releases (retried for `retry_for`), logging what happened either way.
pub async fn release_with(
    client: &PoolClient,
    retry_for: Duration,
    lease_id: &str,
    outcome: Outcome,
    reason: Option<String>,
    details_url: Option<String>,
) -> Result<ReleaseAnswer, (ClientError, u32)> {
    let request = ReleaseRequest {
        outcome,
        reason,
        details_url,
        datasets: Default::default(),
    };
    let result = retry_transient(retry_for, || client.release(lease_id, &request)).await;
    match &result {
        Ok(answer) => {
            let what: Vec<String> = answer
                .datasets
                .iter()
                .map(|d| format!("{} {} {}", d.name, d.id, d.status))
                .collect();
            tracing::info!(
                "released lease {lease_id} as {outcome}: {}",
                what.join(", ")
            );
        }
        Err((e, _)) if e.kind() == Some(ProblemKind::LeaseGone) => {
            tracing::warn!(
                "lease {lease_id} had already ended when releasing it as {outcome}: {e}"
            );
        }
        Err((e, attempts)) => {
            tracing::error!(
                "failed to release lease {lease_id} as {outcome} after {attempts} attempt(s): {e}. The pool will expire the lease and quarantine its datasets; the command's exit code is kept"
            );
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockroom_protocol::exit_codes;

    fn ended(raw_status: i32, cancelled_by: Option<Signal>, lost: bool) -> Ended {
        Ended {
            status: ExitStatus::from_raw(raw_status),
            cancelled_by,
            lease_lost: lost.then(|| LeaseLost {
                lease_id: "lease_1".into(),
                detail: "410 gone".into(),
            }),
        }
    }

    #[test]
    fn a_lost_lease_gives_its_own_code_only_when_it_stopped_the_command() {
        let exited_0 = 0;
        let exited_3 = 3 << 8;
        let sigterm = 15;
        let fail = OnLeaseLost::Fail;
        let warn = OnLeaseLost::Warn;
        for status in [exited_0, exited_3, sigterm] {
            assert_eq!(
                ended(status, None, true).exit(fail).code(),
                exit_codes::LEASE_LOST
            );
        }
        assert_eq!(ended(exited_3, None, true).exit(warn).code(), 3);
        assert_eq!(ended(exited_0, None, true).exit(warn).code(), 0);
        assert_eq!(ended(exited_3, None, false).exit(fail).code(), 3);
        assert_eq!(
            ended(sigterm, Some(Signal::SIGTERM), true)
                .exit(fail)
                .code(),
            143,
            "a cancel of the sidecar is reported as the cancel"
        );
    }
}
