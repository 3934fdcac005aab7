//! The Stockroom sidecar: leases a CI job's datasets from the pool, hands them
//! to the job's command, keeps the lease alive and releases or quarantines it.
//!
//! `main.rs` only calls [`main`]; every command returns how it ended
//! ([`exit::Exit`]) or an [`errors::Error`], and [`exit::Exit::code`] alone
//! picks the exit code.

pub mod agent;
pub mod catalog;
pub mod check;
pub mod ci;
pub mod cli;
pub mod client;
pub mod config;
pub mod errors;
pub mod exit;
pub mod extend;
pub mod heartbeat;
pub mod inject;
pub mod lease;
pub mod logging;
pub mod redact;
pub mod run;
pub mod start_stop;
pub mod status;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::errors::Error;
use crate::exit::Exit;

/// The whole program: parse, set up logging, dispatch, exit.
pub fn main() -> ExitCode {
    redact::install_panic_hook();
    let exit = match cli::parse(std::env::args_os()) {
        Ok(cli) => {
            logging::init(&ci::ProcessEnv);
            dispatch(cli).unwrap_or_else(Exit::Failed)
        }
        Err(e) => Exit::CommandLine(e),
    };
    exit.finish()
}

fn dispatch(cli: Cli) -> Result<Exit, Error> {
    let env = ci::ProcessEnv;
    match cli.command {
        // Offline check needs no runtime at all: keep it instant.
        Command::Check(args) => check::check(&cli.common, &args, &env),
        command => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Internal(format!("failed to start the async runtime: {e}")))?;
            runtime.block_on(async move {
                match command {
                    Command::Run(args) => run::run(&cli.common, args, &env).await,
                    Command::Start(args) => start_stop::start(&cli.common, &args, &env).await,
                    Command::Stop(args) => start_stop::stop(&cli.common, &args, &env).await,
                    Command::Heartbeat => start_stop::heartbeat_process(&cli.common, &env).await,
                    Command::Extend(args) => extend::extend(&cli.common, &args, &env).await,
                    Command::Status => status::status(&cli.common, &env).await,
                    Command::Catalog => catalog::catalog(&cli.common, &env).await,
                    Command::Agent(args) => agent::command::agent(&cli.common, &args, &env).await,
                    Command::Check(_) => Err(Error::Internal("check is dispatched above".into())),
                }
            })
        }
    }
}
