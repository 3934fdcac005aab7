//! Kills itself with the signal number given as its only argument.
use nix::sys::signal::{Signal, raise};

fn main() {
    let number: i32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(9);
    if let Ok(sig) = Signal::try_from(number) {
        let _ = raise(sig);
    }
    // Reached only if the signal did not end the process (ignored or
    // blocked): exit 1, a code the tests never expect. The pause lets a
    // signal still pending land first; no assertion waits on it.
    std::thread::sleep(std::time::Duration::from_secs(5));
    std::process::exit(1);
}
