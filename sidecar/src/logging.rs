//! Logs go to stderr through the redactor: `STOCKROOM_LOG` is the filter
//! (default `info`), `STOCKROOM_LOG_FORMAT=json` switches to JSON lines.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::ci::EnvSource;
use crate::redact::RedactingStderr;

pub const LOG_VAR: &str = "STOCKROOM_LOG";
pub const LOG_FORMAT_VAR: &str = "STOCKROOM_LOG_FORMAT";

pub fn init(env: &impl EnvSource) {
    let directives = env.get(LOG_VAR).unwrap_or_else(|| "info".to_string());
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = env
        .get(LOG_FORMAT_VAR)
        .is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactingStderr);
    // A second init (tests) is harmless; ignore it.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder
            .with_target(false)
            .without_time()
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
}
