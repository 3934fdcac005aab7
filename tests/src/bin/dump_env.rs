//! `dump_env OUT [--wait-for FILE] [--exit N]`: writes its environment and
//! the datasets file ($STOCKROOM_DATASETS_FILE) as JSON to OUT, optionally
//! waits until FILE exists, then exits with N (default 0).
use std::time::{Duration, Instant};

/// Far longer than any test runs.
const ABANDONED_AFTER: Duration = Duration::from_secs(600);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = args.get(1).cloned().unwrap_or_else(|| "env.json".into());
    let mut wait_for = None;
    let mut code = 0;
    let mut i = 2;
    while i < args.len() {
        match args[i].as_str() {
            "--wait-for" => wait_for = args.get(i + 1).cloned(),
            "--exit" => code = args.get(i + 1).and_then(|a| a.parse().ok()).unwrap_or(1),
            _ => {}
        }
        i += 2;
    }
    let env: serde_json::Map<String, serde_json::Value> = std::env::vars()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let file = std::env::var("STOCKROOM_DATASETS_FILE")
        .ok()
        .and_then(|p| std::fs::read_to_string(p).ok());
    let mode = std::env::var("STOCKROOM_DATASETS_FILE").ok().and_then(|p| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
    });
    let dump = serde_json::json!({"env": env, "datasets_file": file, "datasets_file_mode": mode});
    let tmp = format!("{out}.tmp");
    if std::fs::write(&tmp, dump.to_string())
        .and_then(|()| std::fs::rename(&tmp, &out))
        .is_err()
    {
        std::process::exit(3);
    }
    if let Some(f) = wait_for {
        // Bounded, so a helper whose test died without writing FILE ends too.
        let deadline = Instant::now() + ABANDONED_AFTER;
        while !std::path::Path::new(&f).exists() {
            if Instant::now() >= deadline {
                std::process::exit(4);
            }
            // The poll interval of a wait for a file the test writes.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    std::process::exit(code);
}
