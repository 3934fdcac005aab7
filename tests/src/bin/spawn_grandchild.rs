//! `spawn_grandchild DIR`: starts a grandchild (itself with `--grandchild`)
//! that records a SIGTERM in DIR/grandchild-got-term, writes DIR/ready when
//! both run, then sleeps; the parent dies by SIGTERM's default action.
use std::path::PathBuf;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--grandchild") {
        grandchild(PathBuf::from(
            args.get(2).cloned().unwrap_or_else(|| ".".into()),
        ));
        return;
    }
    let dir = PathBuf::from(args.get(1).cloned().unwrap_or_else(|| ".".into()));
    let Ok(exe) = std::env::current_exe() else {
        std::process::exit(2)
    };
    let Ok(_child) = std::process::Command::new(exe)
        .arg("--grandchild")
        .arg(&dir)
        .spawn()
    else {
        std::process::exit(2)
    };
    // Bounded, so a grandchild that never starts ends this helper too (the
    // test then fails waiting for DIR/ready).
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while !dir.join("grandchild-ready").exists() {
        if std::time::Instant::now() >= deadline {
            std::process::exit(3);
        }
        // The poll interval of a wait for the grandchild's ready file.
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::write(dir.join("ready"), std::process::id().to_string());
    // Idles until the test's SIGTERM ends it (its default action).
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

#[tokio::main(flavor = "current_thread")]
async fn grandchild(dir: PathBuf) {
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        std::process::exit(2)
    };
    let _ = std::fs::write(dir.join("grandchild-ready"), std::process::id().to_string());
    term.recv().await;
    let _ = std::fs::write(dir.join("grandchild-got-term"), "yes");
}
