//! `stockroom-pool`: flags, logging, exit code. The work is in the library.

use std::process::ExitCode;

use std::net::SocketAddr;
use std::path::Path;

use clap::Parser;
use stockroom_pool::config::{self, Command, DemoFlags, Flags, GeneratorCheckFlags};
use stockroom_pool::{Pool, PoolError};
use stockroom_protocol::exit_codes;
use stockroom_protocol::pool_config::PoolConfig;

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STOCKROOM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if std::env::var("STOCKROOM_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the pool with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Binds, announces the address (log, `--ready-file`, `announce`) and serves.
async fn serve(
    cfg: PoolConfig,
    pool: Pool,
    ready_file: Option<&Path>,
    announce: impl FnOnce(SocketAddr),
) -> Result<(), PoolError> {
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|source| PoolError::Bind {
            addr: cfg.listen.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| PoolError::Bind {
        addr: cfg.listen.clone(),
        source,
    })?;
    tracing::info!(store = %cfg.store, "listening on http://{addr}");
    if let Some(path) = ready_file {
        write_ready_file(path, &addr.to_string())?;
    }
    announce(addr);
    pool.serve(listener, shutdown_signal()).await
}

async fn run(flags: Flags) -> Result<(), PoolError> {
    if let Some(Command::Demo(demo)) = &flags.command {
        return run_demo(demo).await;
    }
    // Everything is validated before anything binds.
    let cfg = config::settings(&flags)?;
    let pool = Pool::start(cfg.clone()).await?;
    serve(cfg, pool, flags.ready_file.as_deref(), |_| {}).await
}

async fn run_demo(flags: &DemoFlags) -> Result<(), PoolError> {
    let mut shop = stockroom_generators::start_demo_shop(flags.latency)
        .await
        .map_err(|source| PoolError::Bind {
            addr: "the demo generators on 127.0.0.1".to_string(),
            source,
        })?;
    let shop_url = shop
        .serve_shop_api(&flags.shop_listen)
        .await
        .map_err(|source| PoolError::Bind {
            addr: format!("the demo shop's API on {}", flags.shop_listen),
            source,
        })?;
    tracing::info!("shop API listening on {shop_url}");
    if let Some(path) = &flags.shop_url_file {
        write_ready_file(path, &shop_url)?;
    }
    // Kept until the pool stops: the embedded store lives in it.
    let tmp = tempfile::tempdir().map_err(|e| {
        PoolError::Config(config::ConfigError(format!(
            "cannot create a temporary directory for the demo store: {e}"
        )))
    })?;
    let cfg = config::demo_settings(
        flags,
        shop.generator_configs(),
        format!("sqlite://{}", tmp.path().join("demo.db").display()),
    )?;
    let pool = Pool::start(cfg.clone()).await?;
    let result = serve(cfg, pool, flags.ready_file.as_deref(), |addr| {
        println!("Stockroom demo pool: http://{addr}  (catalog: http://{addr}/api/v1/catalog)");
        println!(
            "Generators: customers {}, payments {}, orders {}",
            shop.customers_url, shop.payments_url, shop.orders_url
        );
        println!("Shop API (the system under test): {shop_url}/shop");
        println!("Try it:");
        println!(
            "  STOCKROOM_POOL=http://{addr} stockroom run --manifest examples/stockroom.toml -- env"
        );
    })
    .await;
    shop.shutdown().await;
    drop(tmp);
    result
}

/// `stockroom-pool generator-check`: the report on stdout, its exit code.
fn generator_check(flags: &GeneratorCheckFlags) -> ExitCode {
    use stockroom_pool::generator_check::{self, CheckOptions, Target};
    let mut targets = Vec::new();
    for line in &flags.commands {
        match Target::command(line) {
            Ok(t) => targets.push(t),
            Err(e) => {
                eprintln!("stockroom-pool generator-check: {e}");
                return ExitCode::from(exit_codes::pool::USAGE as u8);
            }
        }
    }
    targets.extend(flags.urls.iter().cloned().map(Target::Url));
    if targets.is_empty() {
        eprintln!(
            "stockroom-pool generator-check: name a generator with --command \"python3 gen.py\" or --url http://127.0.0.1:9001"
        );
        return ExitCode::from(exit_codes::pool::USAGE as u8);
    }
    let options = CheckOptions {
        targets,
        timeout: flags.timeout,
        slow: flags.slow,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return exit_code(Err(PoolError::Serve(e))),
    };
    let report = runtime.block_on(generator_check::run(&options));
    print!("{}", report.render());
    ExitCode::from(u8::try_from(generator_check::exit_code(&report)).unwrap_or(1))
}

/// Writes `text` (no newline) to `path` in one step (a ready file for tests).
fn write_ready_file(path: &Path, text: &str) -> Result<(), PoolError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| PoolError::Bind {
            addr: format!("ready file {}", path.display()),
            source,
        })
}

/// The one place that decides the exit code.
fn exit_code(result: Result<(), PoolError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stockroom-pool: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}

fn main() -> ExitCode {
    let flags = match Flags::try_parse() {
        Ok(flags) => flags,
        Err(e) => {
            // `--help`/`--version` print and succeed; a bad flag is a usage error (64).
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(exit_codes::pool::USAGE as u8)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging();
    if let Some(Command::GeneratorCheck(check)) = &flags.command {
        return generator_check(check);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return exit_code(Err(PoolError::Serve(e))),
    };
    exit_code(runtime.block_on(run(flags)))
}
