//! The agent (docs/per-test.md): served on loopback while `stockroom run`
//! runs its command, while a `stockroom start` lease is held, and by
//! `stockroom agent`, so that each test or test worker takes its own datasets
//! under the job's identity.
//!
//! `book` is what the agent holds (no I/O), `core` its operations over the
//! book and the pool, `http` the four routes, `command` the `stockroom agent`
//! subcommand, `wire` the bodies.

mod book;
pub mod command;
mod core;
mod http;
pub mod wire;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use stockroom_protocol::Outcome;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use self::core::Agent;
pub use self::core::{AgentConfig, AgentError, Settlement};
use crate::errors::Error;

/// The variable that carries the agent's URL to the tests.
pub const URL_VAR: &str = "STOCKROOM_AGENT_URL";
/// The variable that carries the agent's per-run token to the tests.
pub const TOKEN_VAR: &str = "STOCKROOM_AGENT_TOKEN";

/// A serving agent. [`RunningAgent::finish`] ends it.
pub struct RunningAgent {
    agent: Arc<Agent>,
    url: String,
    server: JoinHandle<()>,
    heartbeat: JoinHandle<()>,
    stop_server: oneshot::Sender<()>,
}

/// Starts the agent on `127.0.0.1` on a free port.
pub async fn start(config: AgentConfig) -> Result<RunningAgent, Error> {
    let agent = Arc::new(Agent::new(config).map_err(|e| Error::Internal(e.to_string()))?);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .map_err(|e| Error::Internal(format!("failed to open the agent's port: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("failed to read the agent's port: {e}")))?;
    let (stop_server, stopped) = oneshot::channel::<()>();
    let app = http::router(Arc::clone(&agent));
    let server = tokio::spawn(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.await;
        })
        .await;
        if let Err(e) = served {
            tracing::error!("agent: the server failed: {e}");
        }
    });
    let beating = Arc::clone(&agent);
    let heartbeat = tokio::spawn(async move { beating.keep_alive().await });
    let url = format!("http://{addr}");
    tracing::info!("agent listening on {url}");
    Ok(RunningAgent {
        agent,
        url,
        server,
        heartbeat,
        stop_server,
    })
}

impl RunningAgent {
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn token(&self) -> &str {
        self.agent.token()
    }

    /// `STOCKROOM_AGENT_URL` and `STOCKROOM_AGENT_TOKEN` for the tests.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            (URL_VAR, self.url.clone()),
            (TOKEN_VAR, self.agent.token().to_string()),
        ]
    }

    /// Ends the agent: settles everything it holds (see `core::Agent::finish`),
    /// then stops the heartbeat and the server.
    pub async fn finish(self, run_outcome: Outcome, run_reason: &str) -> Settlement {
        let settlement = self.agent.finish(run_outcome, run_reason).await;
        self.heartbeat.abort();
        let _ = self.stop_server.send(());
        let mut server = self.server;
        if tokio::time::timeout(Duration::from_secs(2), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
        log_settlement(&settlement);
        settlement
    }
}

/// One line for the whole agent: how many takes, and each dataset by id, once.
fn log_settlement(s: &Settlement) {
    if s.datasets.is_empty() && s.takes == 0 {
        return;
    }
    let mut by_status: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (id, status, test) in &s.datasets {
        let key = status.map_or_else(|| "unknown".to_string(), |st| st.to_string());
        let entry = match (status, test) {
            (Some(stockroom_protocol::DatasetStatus::Quarantined), Some(t)) => {
                format!("{id} ({t})")
            }
            _ => id.clone(),
        };
        by_status.entry(key).or_default().push(entry);
    }
    let parts: Vec<String> = by_status
        .iter()
        .map(|(status, ids)| format!("{status}: {}", ids.join(", ")))
        .collect();
    tracing::info!(
        "agent: {} take(s), {} dataset(s) settled, {} pool request(s); {}",
        s.takes,
        s.datasets.len(),
        s.pool_requests,
        parts.join("; ")
    );
    if !s.failed_tests.is_empty() {
        tracing::info!("agent: failed tests: {}", s.failed_tests.join(", "));
    }
}
