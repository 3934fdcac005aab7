//! Ignores SIGTERM (counting each in DIR/term-count) and runs until killed.
//! Writes DIR/ready once its handler is installed.
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        std::process::exit(2)
    };
    let _ = std::fs::write(dir.join("ready"), std::process::id().to_string());
    let mut count = 0;
    loop {
        term.recv().await;
        count += 1;
        let _ = std::fs::write(dir.join("term-count"), count.to_string());
    }
}
