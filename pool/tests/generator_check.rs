//! `stockroom-pool generator-check` (docs/generators.md), run as a user runs
//! it: the real binary against real generators, as commands and over HTTP.
//! The SDKs' example generators (examples/generators/) pass; a hand-written
//! generator with the usual mistakes fails with readable violations.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use stockroom_protocol::exit_codes::pool;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

/// Bound on every process the tests wait for: a hang fails instead of blocking.
const PATIENCE: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn customers() -> String {
    format!(
        "python3 {}",
        repo().join("examples/generators/customers.py").display()
    )
}

fn orders() -> String {
    format!(
        "node {}",
        repo().join("examples/generators/orders.mjs").display()
    )
}

fn slow(seconds: &str) -> String {
    format!(
        "python3 {} {seconds}",
        repo()
            .join("pool/tests/fixtures/slow_generator.py")
            .display()
    )
}

fn broken() -> String {
    format!(
        "python3 {}",
        repo()
            .join("pool/tests/fixtures/broken_generator.py")
            .display()
    )
}

struct Checked {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

async fn check(args: &[&str]) -> Checked {
    let started = Instant::now();
    let out = tokio::time::timeout(
        PATIENCE,
        Command::new(env!("CARGO_BIN_EXE_stockroom-pool"))
            .arg("generator-check")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("generator-check must never hang")
    .unwrap();
    Checked {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// Starts `CMD serve --port 0` and returns it with the URL it announced.
async fn serve(command: &str) -> (Child, String) {
    let argv = shlex::split(command).unwrap();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .args(["serve", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("the generator announces its address")
        .unwrap()
        .unwrap();
    let url = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    (child, url)
}

/// The report's lines for the call `what`: its `  ok    what …` line and the
/// findings under it.
fn entry<'a>(stdout: &'a str, what: &str) -> Vec<&'a str> {
    let mut lines = stdout.lines().skip_while(|l| {
        !(l.starts_with("  ") && l.get(8..).is_some_and(|rest| rest.starts_with(what)))
    });
    let Some(head) = lines.next() else {
        panic!("no call {what:?} in\n{stdout}");
    };
    std::iter::once(head)
        .chain(lines.take_while(|l| l.starts_with("        ")))
        .collect()
}

fn assert_clean(c: &Checked) {
    assert_eq!(c.code, Some(pool::OK), "{}\n{}", c.stdout, c.stderr);
    let last = c.stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("clean: 2 generators"), "{}", c.stdout);
    assert!(last.contains(" 0 violations"), "{}", c.stdout);
    for expected in [
        "capabilities: 2 states, 1 extension, lifecycle calls on 2",
        "generate customer/new",
        "generate customer/active where country = DE",
        "extend customer/new with \"verify-email\" (to active)",
        "extend customer/active with \"add-card\" (to active-with-payment)",
        "generate order/placed",
        "generate stockroom-check/not-declared (undeclared: must be refused)",
        "ok    cleanup customer/new",
        "ok    verify customer/active",
        "ok    reset customer/active",
        "ok    cleanup customer/active",
        "ok    cleanup order/placed",
    ] {
        assert!(
            c.stdout.contains(expected),
            "missing {expected:?} in\n{}",
            c.stdout
        );
    }
    assert!(!c.stdout.contains("FAIL"), "{}", c.stdout);
    // customer/active's lifecycle calls, in the documented order.
    let at = |call: &str| c.stdout.find(&format!("{call} customer/active (")).unwrap();
    assert!(
        at("verify") < at("reset") && at("reset") < at("cleanup"),
        "{}",
        c.stdout
    );
}

#[tokio::test]
async fn the_sdk_examples_pass_as_commands() {
    let c = check(&["--command", &customers(), "--command", &orders()]).await;
    assert_clean(&c);
}

#[tokio::test]
async fn the_sdk_examples_pass_over_http() {
    let (_customers, customers_url) = serve(&customers()).await;
    let (_orders, orders_url) = serve(&orders()).await;
    let c = check(&["--url", &customers_url, "--url", &orders_url]).await;
    assert_clean(&c);
    assert!(
        c.stdout.contains(&format!("HTTP {customers_url}")),
        "{}",
        c.stdout
    );
}

#[tokio::test]
async fn a_generator_checked_alone_says_what_it_could_not_check() {
    let c = check(&["--command", &orders()]).await;
    assert_eq!(c.code, Some(pool::OK), "{}", c.stdout);
    assert!(
        c.stdout
            .contains("requires \"customer\" = customer/active-with-payment, which is unknown"),
        "{}",
        c.stdout
    );
    assert!(
        c.stdout.contains("pass the generator that makes it too"),
        "{}",
        c.stdout
    );
}

fn assert_broken(c: &Checked, command_mode: bool) {
    assert_eq!(
        c.code,
        Some(pool::CHECK_FAILED),
        "{}\n{}",
        c.stdout,
        c.stderr
    );
    let mut expected = vec![
        "FAIL  generate customer/active",
        "violation: promised field `email` is missing from data",
        "fix: put every field the state promises",
        "violation: secret field `token` is not declared in the state's secret_fields",
        "violation: declared secret field `password` is in data but not in the answer's secret_fields",
        "violation: entity 1 must look like `kind:id`",
        "violation: requested attribute `country` is not echoed in the answer's attributes",
        "FAIL  extend customer/active with \"add-card\"",
        "violation: promised field `customer_id` is missing from data",
        "FAIL  generate stockroom-check/not-declared (undeclared: must be refused)",
        "violation: answered with success for a state it does not declare",
        "FAIL  generate customer/slow",
        "violation: timed out after 3000ms",
        "FAIL  verify customer/active",
        "violation: says a dataset made just now no longer holds (looked in the wrong database)",
        "FAIL  cleanup customer/active",
        "FAILED: 1 generator,",
    ];
    // The reset was made, and its answer checked against the state's promises.
    let reset = entry(&c.stdout, "reset customer/active").join("\n");
    for e in [
        "  FAIL  reset customer/active (",
        "violation: promised field `customer_id` is missing from data",
        "violation: promised field `email` is missing from data",
    ] {
        assert!(reset.contains(e), "missing {e:?} in\n{reset}");
    }
    if command_mode {
        expected.extend([
            "violation: command ended with exit code 3",
            "fix: it wrote nothing to stderr",
            "FAIL  generate customer/chatty",
            "log output on stdout? Keep stdout for the answer alone and log to stderr",
            "fix: print log lines to stderr",
        ]);
    } else {
        expected.push("violation: got HTTP status 500");
    }
    for e in expected {
        assert!(c.stdout.contains(e), "missing {e:?} in\n{}", c.stdout);
    }
    // Values never appear in the report: data may hold secrets.
    assert!(!c.stdout.contains("shop.internal"), "{}", c.stdout);
    // The slow call was stopped at --timeout, not waited for.
    assert!(c.took < Duration::from_secs(60), "took {:?}", c.took);
}

#[tokio::test]
async fn a_broken_command_generator_fails_with_readable_violations() {
    let c = check(&["--command", &broken(), "--timeout", "3s", "--slow", "2s"]).await;
    // What a user sees, kept in the test log for the issue note.
    println!("{}", c.stdout);
    assert_broken(&c, true);
}

#[tokio::test]
async fn a_broken_http_generator_fails_with_readable_violations() {
    let (_child, url) = serve(&broken()).await;
    let c = check(&["--url", &url, "--timeout", "3s", "--slow", "2s"]).await;
    assert_broken(&c, false);
}

#[tokio::test]
async fn a_call_slower_than_slow_but_within_timeout_is_reported_as_slow() {
    // generate takes 2.5 s: past --slow 1s, far within --timeout.
    let c = check(&[
        "--command",
        &slow("2.5"),
        "--slow",
        "1s",
        "--timeout",
        "60s",
    ])
    .await;
    assert_eq!(
        c.code,
        Some(pool::CHECK_FAILED),
        "{}\n{}",
        c.stdout,
        c.stderr
    );
    let sluggish = entry(&c.stdout, "generate customer/sluggish");
    assert!(
        sluggish[0].starts_with("  FAIL  generate customer/sluggish ("),
        "{}",
        c.stdout
    );
    // Its one finding is the slow answer (it was answered, not stopped).
    let findings: Vec<&str> = sluggish[1..]
        .iter()
        .filter(|l| {
            l.trim_start().starts_with("violation:") || l.trim_start().starts_with("warning:")
        })
        .copied()
        .collect();
    assert_eq!(findings.len(), 1, "{}", c.stdout);
    let took = findings[0]
        .trim_start()
        .strip_prefix("violation: took ")
        .and_then(|rest| rest.strip_suffix(" s, more than --slow 1.0 s"))
        .unwrap_or_else(|| panic!("not a slow violation: {:?}", findings[0]));
    let took: f64 = took.parse().unwrap();
    assert!((2.5..60.0).contains(&took), "took {took} s");
    assert!(
        sluggish
            .iter()
            .any(|l| l.contains("fix: slow calls refill stock slowly")),
        "{}",
        c.stdout
    );
    assert!(!c.stdout.contains("timed out"), "{}", c.stdout);
}

#[tokio::test]
async fn usage_errors_exit_64() {
    let c = check(&[]).await;
    assert_eq!(c.code, Some(pool::USAGE));
    assert!(
        c.stderr.contains("name a generator with --command"),
        "{}",
        c.stderr
    );
    let c = check(&["--command", "python3 'unbalanced"]).await;
    assert_eq!(c.code, Some(pool::USAGE));
    assert!(c.stderr.contains("unbalanced quote"), "{}", c.stderr);
}

#[tokio::test]
async fn an_unreachable_or_missing_generator_is_a_violation_not_a_hang() {
    let c = check(&[
        "--url",
        "http://127.0.0.1:1",
        "--command",
        "/nonexistent/generator",
    ])
    .await;
    assert_eq!(c.code, Some(pool::CHECK_FAILED), "{}", c.stdout);
    assert!(c.stdout.contains("could not connect"), "{}", c.stdout);
    assert!(
        c.stdout.contains("could not start the command"),
        "{}",
        c.stdout
    );
    assert!(
        c.stdout.contains("fix: start the generator first"),
        "{}",
        c.stdout
    );
}
