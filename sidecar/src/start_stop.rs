//! `stockroom start` / `stockroom stop`, for CIs whose setup and teardown are
//! separate steps, and the hidden `heartbeat` process that keeps a started
//! lease alive in between.
//!
//! The state directory holds `state.json` (lease, pool, heartbeat pid), the
//! heartbeat's log, the datasets file (unless the manifest names one) and a
//! `lock` file: `start` and `stop` hold an exclusive lock on it
//! (`File::lock`) for their whole work, so two of them never interleave.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use stockroom_protocol::Outcome;
use stockroom_protocol::datasets_file::ShardInfo;
use stockroom_protocol::env_names::EnvVar;
use tokio::signal::unix::{SignalKind, signal};

use crate::agent::{self, AgentConfig};
use crate::ci::{self, CiContext, EnvSource, GithubFile, Provider};
use crate::cli::{Common, ExportFormat, StartArgs, StopArgs};
use crate::client::PoolClient;
use crate::config;
use crate::errors::Error;
use crate::exit::Exit;
use crate::heartbeat;
use crate::inject::{self, DatasetsFileHome};
use crate::lease::LeaseToken;
use crate::run;

pub const STATE_FILE: &str = "state.json";
pub const LOCK_FILE: &str = "lock";
pub const LOG_FILE: &str = "heartbeat.log";
pub const LOST_FILE: &str = "lease-lost";
pub const DATASETS_FILE: &str = "datasets.json";
/// Written by the heartbeat process once its agent listens: `{"url", "token"}` (0600).
pub const AGENT_FILE: &str = "agent.json";
/// Written by `stop` before it ends the heartbeat: the job's outcome, for the agent.
pub const OUTCOME_FILE: &str = "outcome";
/// Written by the heartbeat process after its agent settled: the failing tests.
pub const SETTLED_FILE: &str = "agent-settled.json";
/// How long `start` waits for the heartbeat process's agent to listen.
const AGENT_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `stop` waits for the heartbeat process to settle its agent and exit.
const HEARTBEAT_END_TIMEOUT: Duration = Duration::from_secs(60);

/// What `start` leaves for `stop`, `extend`, `status` and the heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub lease_id: String,
    /// The proof of holding the lease, for `stop`, `extend` and the
    /// heartbeat (this file is 0600 in a 0700 dir; never printed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_token: Option<LeaseToken>,
    pub pool: String,
    pub expires_at: String,
    pub heartbeat_interval_seconds: u64,
    #[serde(default)]
    pub heartbeat_pid: Option<u32>,
    pub datasets_file: PathBuf,
    /// The datasets file lives in the state dir and goes away with `stop`.
    pub datasets_file_owned: bool,
    pub shard: ShardInfo,
    pub env_prefix: String,
    pub datasets: Vec<StateDataset>,
    /// `--ca-file` / `STOCKROOM_CA_FILE` as `start` saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The manifest's `lease_ttl`, for the agent's own leases.
    #[serde(default)]
    pub lease_ttl_seconds: Option<u64>,
}

/// What the heartbeat process's agent tells `start`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AgentFile {
    url: String,
    token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateDataset {
    pub name: String,
    pub id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub state: String,
}

/// The state dir as an absolute path.
pub fn state_dir(common: &Common, env: &impl EnvSource) -> Result<PathBuf, Error> {
    inject::absolute(&config::state_dir(common, env))
}

/// Reads `DIR/state.json`, if any.
pub fn read_state(dir: &Path) -> Result<Option<State>, Error> {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::Config(format!(
                "failed to read {}: {e}; remove it if no lease is held",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Config(format!(
            "failed to read {}: {e}",
            path.display()
        ))),
    }
}

fn write_state(dir: &Path, state: &State) -> Result<(), Error> {
    let bytes = serde_json::to_vec_pretty(state)
        .map_err(|e| Error::Internal(format!("failed to encode the state: {e}")))?;
    inject::write_private_atomically(&dir.join(STATE_FILE), &bytes).map_err(|e| {
        Error::Config(format!(
            "failed to write {}: {e}",
            dir.join(STATE_FILE).display()
        ))
    })
}

/// Creates the state dir (0700) and takes its lock; released when the file closes.
fn lock_dir(dir: &Path) -> Result<File, Error> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            Error::Config(format!(
                "failed to create the state dir {} (--state-dir): {e}",
                dir.display()
            ))
        })?;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| {
            Error::Config(format!(
                "failed to open the lock file {}: {e}",
                path.display()
            ))
        })?;
    file.lock()
        .map_err(|e| Error::Config(format!("failed to lock {}: {e}", path.display())))?;
    Ok(file)
}

pub async fn start(common: &Common, args: &StartArgs, env: &impl EnvSource) -> Result<Exit, Error> {
    let mut prepared = run::prepare(common, env)?;
    let dir = state_dir(common, env)?;
    let _lock = lock_dir(&dir)?;
    if let Some(existing) = read_state(&dir)? {
        return Err(Error::Config(format!(
            "lease {} from an earlier `stockroom start` is still recorded in {}; run `stockroom stop` first (or use another --state-dir)",
            existing.lease_id,
            dir.join(STATE_FILE).display()
        )));
    }
    let granted = run::acquire(&prepared).await?;
    prepared.client = prepared.client.holding(LeaseToken::of(&granted));
    let shard = ShardInfo {
        index: prepared.shard.index,
        total: prepared.shard.total,
    };
    let file = inject::datasets_file(&granted, shard);
    inject::register_secrets(&file);
    let (home, owned) = match &prepared.manifest.inject.json_file {
        Some(path) => (DatasetsFileHome::kept(inject::absolute(path)?), false),
        None => (DatasetsFileHome::kept(dir.join(DATASETS_FILE)), true),
    };
    let state = State {
        lease_id: granted.lease_id.clone(),
        lease_token: LeaseToken::of(&granted),
        pool: prepared.client.base().to_string(),
        expires_at: granted.expires_at.clone(),
        heartbeat_interval_seconds: granted.heartbeat_interval_seconds,
        heartbeat_pid: None,
        datasets_file: home.path.clone(),
        datasets_file_owned: owned,
        shard,
        env_prefix: prepared.manifest.inject.env_prefix.clone(),
        lease_ttl_seconds: prepared
            .manifest
            .lease_ttl
            .map(|d| d.as_duration().as_secs().max(1)),
        datasets: granted
            .datasets
            .iter()
            .map(|d| StateDataset {
                name: if d.count > 1 {
                    format!("{}.{}", d.name, d.index)
                } else {
                    d.name.clone()
                },
                id: d.dataset.id.clone(),
                type_name: d.dataset.type_name.clone(),
                state: d.dataset.state.clone(),
            })
            .collect(),
        ca_file: prepared.tls.ca_file.clone(),
    };
    let started = async {
        inject::write_datasets_file(&home.path, &file)?;
        let mut vars = inject::env_vars(&prepared.manifest, &file, &home.path)?;
        write_state(&dir, &state)?;
        let pid = spawn_heartbeat(common, &dir)?;
        write_state(
            &dir,
            &State {
                heartbeat_pid: Some(pid),
                ..state.clone()
            },
        )?;
        let agent = wait_for_agent(&dir, pid).await?;
        vars.push(EnvVar {
            name: agent::URL_VAR.into(),
            value: agent.url,
            secret: false,
            source: "the agent".into(),
        });
        vars.push(EnvVar {
            name: agent::TOKEN_VAR.into(),
            value: agent.token,
            secret: true,
            source: "the agent".into(),
        });
        Ok::<_, Error>((vars, pid))
    }
    .await;
    let (vars, pid) = match started {
        Ok(v) => v,
        Err(e) => {
            run::release(
                &prepared,
                &granted.lease_id,
                Outcome::Cancelled,
                Some(format!("stockroom start failed: {e}")),
                None,
            )
            .await;
            let _ = std::fs::remove_file(dir.join(STATE_FILE));
            let _ = std::fs::remove_file(dir.join(AGENT_FILE));
            if owned {
                let _ = std::fs::remove_file(&home.path);
            }
            return Err(e);
        }
    };
    tracing::info!(
        "heartbeat runs in the background (pid {pid}, log {})",
        dir.join(LOG_FILE).display()
    );
    export(common, args, env, &prepared.ci, &vars, &state)?;
    Ok(Exit::Success)
}

/// Waits for the heartbeat process to write its agent's address.
async fn wait_for_agent(dir: &Path, pid: u32) -> Result<AgentFile, Error> {
    let path = dir.join(AGENT_FILE);
    let deadline = tokio::time::Instant::now() + AGENT_START_TIMEOUT;
    loop {
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(file) = serde_json::from_slice::<AgentFile>(&bytes)
        {
            crate::redact::register([file.token.clone()]);
            return Ok(file);
        }
        let alive = i32::try_from(pid).is_ok_and(|p| kill(Pid::from_raw(p), None).is_ok());
        if !alive || tokio::time::Instant::now() >= deadline {
            return Err(Error::Internal(format!(
                "the background heartbeat (pid {pid}) did not start its agent within {}s; see {}",
                AGENT_START_TIMEOUT.as_secs(),
                dir.join(LOG_FILE).display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Re-executes this binary as `stockroom heartbeat`, detached: its own
/// session (it calls setsid), no terminal, stderr to the log in the state dir.
fn spawn_heartbeat(common: &Common, dir: &Path) -> Result<u32, Error> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Internal(format!("failed to find the stockroom binary: {e}")))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(dir.join(LOG_FILE))
        .map_err(|e| {
            Error::Config(format!(
                "failed to open {}: {e}",
                dir.join(LOG_FILE).display()
            ))
        })?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("heartbeat").arg("--state-dir").arg(dir);
    if let Some(token_file) = &common.token_file {
        cmd.arg("--token-file").arg(inject::absolute(token_file)?);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| Error::Internal(format!("failed to start the background heartbeat: {e}")))?;
    Ok(child.id())
}

/// Hands the variables to later steps.
fn export(
    common: &Common,
    args: &StartArgs,
    env: &impl EnvSource,
    ctx: &CiContext,
    vars: &[stockroom_protocol::env_names::EnvVar],
    state: &State,
) -> Result<(), Error> {
    let exports: Vec<ci::ExportVar> = vars.iter().map(ci::ExportVar::from).collect();
    let github = ctx.provider == Provider::GitHubActions;
    let paths = ci::github_paths(env);
    let mut stdout = std::io::stdout().lock();
    let mut targets = Vec::new();
    if github {
        if let Some(env_file) = &paths.env_file {
            // Masks reach stdout before any value is written anywhere.
            GithubFile::env(env_file)
                .write_vars(&exports, &mut stdout)
                .map_err(ci::ci_error)?;
            targets.push("$GITHUB_ENV".to_string());
        }
        if let Some(output) = &paths.output_file {
            let outputs = [
                ci::ExportVar::plain("lease-id", state.lease_id.clone()),
                ci::ExportVar::plain("datasets-file", state.datasets_file.to_string_lossy()),
            ];
            GithubFile::output(output)
                .write_vars(&outputs, &mut stdout)
                .map_err(ci::ci_error)?;
        }
    }
    if let Some(path) = &args.dotenv {
        let written = ci::write_dotenv(path, &exports).map_err(ci::ci_error)?;
        for warning in written.gitlab_limit_warnings() {
            tracing::warn!("{warning}");
        }
        targets.push(path.display().to_string());
    }
    if args.format == Some(ExportFormat::Shell) {
        let mut text = String::new();
        if github {
            // Under `eval`, masks must be commands that print the mask line.
            for v in exports.iter().filter(|v| v.secret) {
                for line in stockroom_ci::add_mask_lines(&v.value) {
                    text.push_str(&format!("echo {}\n", stockroom_ci::shell_quote(&line)));
                }
            }
        }
        text.push_str(&ci::shell_exports(&exports).map_err(ci::ci_error)?);
        // Deliberately not redacted: these lines exist to carry the values.
        let _ = stdout.write_all(text.as_bytes());
        targets.push("stdout (shell)".to_string());
    }
    let _ = stdout.flush();
    drop(stdout);
    if common.json {
        let value = serde_json::json!({
            "lease_id": state.lease_id,
            "expires_at": state.expires_at,
            "datasets_file": state.datasets_file,
            "variables": vars.iter().map(|v| &v.name).collect::<Vec<_>>(),
            "datasets": state.datasets,
        });
        crate::redact::print_stdout(&format!("{value}\n"));
    }
    if targets.is_empty() {
        tracing::info!(
            "lease {} is held; its data is in {} (pass --dotenv PATH or --format shell to export the variables)",
            state.lease_id,
            state.datasets_file.display()
        );
    } else {
        tracing::info!(
            "lease {} is held; {} variable(s) exported to {}",
            state.lease_id,
            vars.len(),
            targets.join(", ")
        );
    }
    Ok(())
}

pub async fn stop(common: &Common, args: &StopArgs, env: &impl EnvSource) -> Result<Exit, Error> {
    let dir = state_dir(common, env)?;
    if !dir.join(STATE_FILE).exists() {
        tracing::info!("no lease recorded in {}; nothing to stop", dir.display());
        return Ok(Exit::Success);
    }
    let _lock = lock_dir(&dir)?;
    let Some(state) = read_state(&dir)? else {
        tracing::info!(
            "no lease recorded in {}; nothing to stop (already stopped)",
            dir.display()
        );
        return Ok(Exit::Success);
    };
    let ctx = CiContext::read(env);
    let outcome = match (args.outcome, ctx.outcome) {
        (Some(o), _) => o,
        (None, Some(o)) => {
            tracing::info!("outcome {o} from the CI's job status");
            o
        }
        (None, None) => {
            tracing::warn!(
                "no --outcome and the CI gives no job status: releasing as failed (the datasets are quarantined)"
            );
            Outcome::Failed
        }
    };
    // The agent in the heartbeat process settles its takes with this outcome.
    let _ = inject::write_private_atomically(&dir.join(OUTCOME_FILE), outcome.as_str().as_bytes());
    if let Some(pid) = state.heartbeat_pid {
        end_heartbeat(pid).await;
    }
    let failed_tests: Vec<String> = std::fs::read(dir.join(SETTLED_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let reason = args
        .reason
        .clone()
        .unwrap_or_else(|| run::reason_with_tests(&failed_tests, "stockroom stop"));
    let details_url = args.details_url.clone().or_else(|| ctx.job.url.clone());
    let lost = std::fs::read_to_string(dir.join(LOST_FILE)).ok();
    let token = config::token(common, env)?;
    let retry_for = config::retry_for(common, env)?;
    let tls = config::tls(common, env, state.ca_file.as_deref());
    let client = PoolClient::new(&state.pool, token, &tls)?.holding(state.lease_token.clone());
    let result = if let Some(lost) = &lost {
        tracing::error!("the lease was lost while the job ran: {}", lost.trim());
        Err(None)
    } else {
        run::release_with(
            &client,
            retry_for,
            &state.lease_id,
            outcome,
            Some(reason),
            details_url,
        )
        .await
        .map_err(Some)
    };

    for name in [
        STATE_FILE,
        LOG_FILE,
        LOST_FILE,
        AGENT_FILE,
        OUTCOME_FILE,
        SETTLED_FILE,
    ] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    if state.datasets_file_owned {
        let _ = std::fs::remove_file(&state.datasets_file);
    }

    let statuses: Vec<(String, String)> = match &result {
        Ok(answer) => answer
            .datasets
            .iter()
            .map(|d| (d.id.clone(), d.status.to_string()))
            .collect(),
        Err(_) => Vec::new(),
    };
    let released = result.is_ok();
    summarize(
        common,
        env,
        &ctx,
        &state,
        outcome,
        &statuses,
        released,
        lost.is_some(),
    )?;
    match result {
        Ok(_) | Err(None) => Ok(Exit::Success),
        Err(Some((e, attempts)))
            if e.kind() == Some(stockroom_protocol::api::ProblemKind::LeaseGone) =>
        {
            let _ = attempts;
            Ok(Exit::Success)
        }
        Err(Some((e, attempts))) => Err(match e.into_error(&state.pool) {
            Error::PoolUnreachable {
                pool, waited, last, ..
            } => Error::PoolUnreachable {
                pool,
                attempts,
                waited,
                last,
            },
            other => other,
        }),
    }
}

/// SIGTERM to our heartbeat process (if the pid still is one), then wait for it.
async fn end_heartbeat(pid: u32) {
    let Ok(raw) = i32::try_from(pid) else { return };
    if !is_our_heartbeat(pid) {
        tracing::debug!("process {pid} is no longer the heartbeat; not signalling it");
        return;
    }
    let pid = Pid::from_raw(raw);
    if kill(pid, Signal::SIGTERM).is_err() {
        return;
    }
    // It settles its agent's takes first (bounded by its own retries).
    let deadline = tokio::time::Instant::now() + HEARTBEAT_END_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        if kill(pid, None).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::warn!("the heartbeat process {pid} did not stop on SIGTERM; killing it");
    let _ = kill(pid, Signal::SIGKILL);
}

/// On Linux, the pid's command line says whether it is still our heartbeat
/// (pids are reused); elsewhere trust the recorded pid.
fn is_our_heartbeat(pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => {
            let text = String::from_utf8_lossy(&cmdline);
            text.split('\0').any(|a| a == "heartbeat")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => !Path::new("/proc/self").exists(),
        Err(_) => true,
    }
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    common: &Common,
    env: &impl EnvSource,
    ctx: &CiContext,
    state: &State,
    outcome: Outcome,
    statuses: &[(String, String)],
    released: bool,
    lost: bool,
) -> Result<(), Error> {
    let status_of = |id: &str| {
        statuses
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| {
                if lost {
                    "lease lost".into()
                } else if released {
                    "released".into()
                } else {
                    "not released".into()
                }
            })
    };
    let ending = if lost {
        "was lost before the end (not released)".to_string()
    } else if released {
        format!("released as **{outcome}**")
    } else {
        format!("could not be released as {outcome}; it will expire and be quarantined")
    };
    let mut md = format!(
        "### Stockroom\n\nLease `{}` {ending}.\n\n| dataset | type/state | id | now |\n|---|---|---|---|\n",
        state.lease_id
    );
    for d in &state.datasets {
        md.push_str(&format!(
            "| {} | {}/{} | `{}` | {} |\n",
            d.name,
            d.type_name,
            d.state,
            d.id,
            status_of(&d.id)
        ));
    }
    if ctx.provider == Provider::GitHubActions
        && let Some(path) = ci::github_paths(env).step_summary
    {
        stockroom_ci::append_step_summary(&path, &crate::redact::redact(&md))
            .map_err(ci::ci_error)?;
    }
    if common.json {
        let value = serde_json::json!({
            "lease_id": state.lease_id,
            "outcome": outcome,
            "released": released,
            "lease_lost": lost,
            "datasets": state.datasets.iter().map(|d| serde_json::json!({
                "name": d.name, "id": d.id, "type": d.type_name, "state": d.state, "status": status_of(&d.id)
            })).collect::<Vec<_>>(),
        });
        crate::redact::print_stdout(&format!("{value}\n"));
    }
    // A successful release was logged where it happened (run::release_with).
    if !released {
        let list: Vec<String> = state
            .datasets
            .iter()
            .map(|d| format!("{} {}", d.name, status_of(&d.id)))
            .collect();
        tracing::info!(
            "lease {} {}: {}",
            state.lease_id,
            ending.replace("**", ""),
            list.join(", ")
        );
    }
    Ok(())
}

/// The hidden `heartbeat` command: keeps the started lease alive until
/// SIGTERM, until the state file goes away, or until the lease is lost.
pub async fn heartbeat_process(common: &Common, env: &impl EnvSource) -> Result<Exit, Error> {
    // Own session: no terminal, and the CI step's process group ending does not end us.
    let _ = nix::unistd::setsid();
    let dir = state_dir(common, env)?;
    let Some(state) = read_state(&dir)? else {
        tracing::warn!("no state in {}; nothing to keep alive", dir.display());
        return Ok(Exit::Success);
    };
    // The agent's own leases each carry their own token; only the job's
    // lease is held with `state.lease_token`.
    let tls = config::tls(common, env, state.ca_file.as_deref());
    let pool_client = PoolClient::new(&state.pool, config::token(common, env)?, &tls)?;
    let client = pool_client.holding(state.lease_token.clone());
    let ctx = CiContext::read(env);
    let shard = ci::Shard {
        index: state.shard.index,
        total: state.shard.total,
    };
    let running = agent::start(AgentConfig {
        client: pool_client,
        holder: ctx.holder(shard),
        ttl_seconds: state.lease_ttl_seconds,
        retry_for: config::retry_for(common, env)?,
        details_url: ctx.job.url.clone(),
    })
    .await?;
    let agent_file = serde_json::to_vec(&AgentFile {
        url: running.url().to_string(),
        token: running.token().to_string(),
    })
    .map_err(|e| Error::Internal(format!("failed to encode the agent file: {e}")))?;
    inject::write_private_atomically(&dir.join(AGENT_FILE), &agent_file).map_err(|e| {
        Error::Config(format!(
            "failed to write {}: {e}",
            dir.join(AGENT_FILE).display()
        ))
    })?;
    let make = |kind| {
        signal(kind)
            .map_err(|e| Error::Internal(format!("failed to install a signal handler: {e}")))
    };
    let (mut term, mut int, mut hup) = (
        make(SignalKind::terminate())?,
        make(SignalKind::interrupt())?,
        make(SignalKind::hangup())?,
    );
    tracing::info!(
        "keeping lease {} alive (pid {})",
        state.lease_id,
        std::process::id()
    );
    let keep = heartbeat::keep_alive(
        &client,
        &state.lease_id,
        heartbeat::interval_from(state.heartbeat_interval_seconds),
    );
    tokio::pin!(keep);
    let mut watch = tokio::time::interval(Duration::from_secs(2));
    let why = loop {
        tokio::select! {
            lost = &mut keep => {
                let message = heartbeat::lost_message(&lost);
                tracing::error!("{message}");
                let _ = std::fs::write(dir.join(LOST_FILE), message);
                break "the job's lease was lost";
            }
            _ = term.recv() => { tracing::info!("stopping on SIGTERM"); break "stockroom stop"; }
            _ = int.recv() => { tracing::info!("stopping on SIGINT"); break "SIGINT"; }
            _ = hup.recv() => { tracing::debug!("ignoring SIGHUP"); }
            _ = watch.tick() => {
                let current = read_state(&dir).ok().flatten();
                if current.is_none_or(|s| s.lease_id != state.lease_id) {
                    tracing::info!("the state file is gone; stopping");
                    break "the state file is gone";
                }
            }
        }
    };
    // `stop` wrote the job's outcome first; anything else ends as cancelled.
    let outcome = std::fs::read_to_string(dir.join(OUTCOME_FILE))
        .ok()
        .and_then(|t| t.trim().parse::<Outcome>().ok())
        .unwrap_or(Outcome::Cancelled);
    let settlement = running.finish(outcome, why).await;
    if let Ok(bytes) = serde_json::to_vec(&settlement.failed_tests) {
        let _ = inject::write_private_atomically(&dir.join(SETTLED_FILE), &bytes);
    }
    Ok(Exit::Success)
}
