//! `stockroom agent`: the agent on its own, for a test-runner plugin to
//! start when no `stockroom run` serves one (a laptop). It runs until
//! SIGTERM/SIGINT or until its stdin reaches EOF (so a plugin that dies ends
//! it), then settles what it holds and exits 0.

use std::path::Path;

use std::io::Read;
use stockroom_protocol::Outcome;
use stockroom_protocol::manifest::Manifest;
use tokio::signal::unix::{SignalKind, signal};

use super::{AgentConfig, TOKEN_VAR, URL_VAR};
use crate::ci::{self, CiContext, EnvSource};
use crate::cli::{AgentArgs, Common};
use crate::client::PoolClient;
use crate::config;
use crate::errors::Error;
use crate::exit::Exit;
use crate::inject;

/// The manifest, only when one is named or `./stockroom.toml` exists.
fn optional_manifest(common: &Common, env: &impl EnvSource) -> Result<Option<Manifest>, Error> {
    let named = common.manifest.is_some() || env.get(config::MANIFEST_VAR).is_some();
    let path = config::manifest_path(common, env);
    if named || path.exists() {
        config::load_manifest(common, env).map(Some)
    } else {
        Ok(None)
    }
}

/// Writes `{"url", "token"}` to `path`, mode 0600, atomically (rename).
fn write_ready_file(path: &Path, url: &str, token: &str) -> Result<(), Error> {
    let body = serde_json::json!({"url": url, "token": token}).to_string();
    inject::write_private_atomically(path, body.as_bytes()).map_err(|e| {
        Error::Config(format!(
            "failed to write the ready file {} (--ready-file): {e}",
            path.display()
        ))
    })
}

/// Resolves when stdin reaches EOF (or fails to read), read by a plain thread.
async fn stdin_closed() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 256];
            while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
            let _ = tx.send(());
        });
    if spawned.is_err() {
        tracing::warn!("agent: failed to watch stdin; ending only on SIGTERM or SIGINT");
        std::future::pending::<()>().await;
    }
    let _ = rx.await;
}

pub async fn agent(common: &Common, args: &AgentArgs, env: &impl EnvSource) -> Result<Exit, Error> {
    let manifest = optional_manifest(common, env)?;
    let pool = config::require_pool(common, env, manifest.as_ref())?;
    let token = config::token(common, env)?;
    let retry_for = config::retry_for(common, env)?;
    let shard = ci::shard(common, env)?;
    let ctx = CiContext::read(env);
    let holder = ctx.holder(shard);
    let tls = config::tls(common, env, None);
    let client = PoolClient::new(&pool, token, &tls)?;
    let make = |kind| {
        signal(kind)
            .map_err(|e| Error::Internal(format!("failed to install a signal handler: {e}")))
    };
    let (mut term, mut int) = (
        make(SignalKind::terminate())?,
        make(SignalKind::interrupt())?,
    );
    let running = super::start(AgentConfig {
        client,
        details_url: args.details_url.clone().or_else(|| holder.url.clone()),
        holder,
        ttl_seconds: manifest
            .as_ref()
            .and_then(|m| m.lease_ttl)
            .map(|d| d.as_duration().as_secs().max(1)),
        retry_for,
    })
    .await?;
    match &args.ready_file {
        Some(path) => write_ready_file(path, running.url(), running.token())?,
        None => {
            // For a person at a terminal: lines to paste into the test's shell.
            let text = format!(
                "export {URL_VAR}={}\nexport {TOKEN_VAR}={}\n",
                running.url(),
                running.token()
            );
            let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
        }
    }
    let why = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = stdin_closed(), if !args.ignore_stdin => "its stdin closed",
    };
    tracing::info!("agent: ending ({why}); settling what it holds");
    running
        .finish(
            Outcome::Cancelled,
            &format!("stockroom agent ended ({why})"),
        )
        .await;
    if let Some(path) = &args.ready_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(Exit::Success)
}
