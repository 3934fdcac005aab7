//! Command generators: real scripts that hang, crash, lie and take their time.
#![allow(clippy::unwrap_used)] // a test that cannot unwrap should fail loudly

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{PATIENCE, eventually, gone, read_pid, sh_script};
use serde_json::json;
use stockroom_generators::{
    CatalogGraph, CommandGenerator, ErrorKind, ExitOutcome, GeneratorClient, HealthPolicy,
    Operation, TrackedGenerator,
};
use stockroom_protocol::generator::GenerateRequest;

fn request(state: &str) -> GenerateRequest {
    serde_json::from_value(
        json!({"type": "customer", "state": state, "attributes": {"country": "DE"}}),
    )
    .unwrap()
}

const CAPS: &str = r#"{"produces": [{"type": "customer", "state": "active", "attributes": {"country": ["DE", "US"]},
  "fields": ["customer_id", "email"], "secret_fields": ["password"]}]}"#;

#[tokio::test]
async fn a_hanging_command_is_killed_with_its_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let argv = sh_script(
        dir.path(),
        "hang.sh",
        &format!(
            "echo $$ > {d}/child.pid\nsleep 300 &\necho $! > {d}/grandchild.pid\necho 'still working' >&2\nwait"
        ),
    );
    let g = CommandGenerator::new("hangs", argv, Duration::from_secs(3), 1);
    let err = g.generate(&request("active")).await.unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::Timeout(Duration::from_secs(3)),
        "{err}"
    );
    assert_eq!(err.operation, Operation::Generate);
    let child = read_pid(&dir.path().join("child.pid"));
    let grandchild = read_pid(&dir.path().join("grandchild.pid"));
    assert!(gone(child), "the command itself was reaped");
    assert!(
        eventually(|| gone(grandchild)).await,
        "grandchild {grandchild} survived the timeout"
    );
}

#[tokio::test]
async fn a_crash_keeps_the_exit_code_and_the_tail_of_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let argv = sh_script(
        dir.path(),
        "crash.sh",
        "cat > /dev/null\nhead -c 100000 /dev/zero | tr '\\0' x >&2\necho >&2\necho 'boom: customer service refused' >&2\nexit 3",
    );
    let g = CommandGenerator::new("crashes", argv, PATIENCE, 1);
    let err = g.generate(&request("active")).await.unwrap_err();
    let ErrorKind::ExitStatus { outcome, stderr } = &err.kind else {
        panic!("unexpected {err}")
    };
    assert_eq!(*outcome, ExitOutcome::Code(3));
    assert!(
        stderr
            .trim_end()
            .ends_with("boom: customer service refused")
    );
    assert_eq!(
        stderr.len(),
        stockroom_generators::command::STDERR_TAIL_BYTES
    );
    assert!(
        err.to_string().ends_with("boom: customer service refused"),
        "{err}"
    );
}

#[tokio::test]
async fn death_by_signal_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let argv = sh_script(dir.path(), "killed.sh", "kill -TERM $$");
    let err = CommandGenerator::new("killed", argv, PATIENCE, 1)
        .capabilities()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.kind,
            ErrorKind::ExitStatus {
                outcome: ExitOutcome::Signal(15),
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn garbage_on_stdout_is_malformed_and_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let argv = sh_script(dir.path(), "garbage.sh", "echo 'hunter2 is not json'");
    let err = CommandGenerator::new("garbage", argv, PATIENCE, 1)
        .generate(&request("active"))
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Malformed(_)), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");

    let argv = sh_script(dir.path(), "empty.sh", "exit 0");
    let err = CommandGenerator::new("empty", argv, PATIENCE, 1)
        .capabilities()
        .await
        .unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::Malformed("answer is empty".to_string())
    );
}

#[tokio::test]
async fn a_missing_program_fails_to_start() {
    let g = CommandGenerator::new(
        "nowhere",
        vec!["/nonexistent/generator".to_string()],
        PATIENCE,
        1,
    );
    let err = g.capabilities().await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Spawn(_)), "{err}");
}

#[tokio::test]
async fn a_slow_answer_within_the_timeout_is_taken_and_the_request_arrives_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    // Echoes the requested state back as the customer id, proving the request came on stdin.
    let argv = sh_script(
        dir.path(),
        "slow.sh",
        r#"[ "$1" = generate ] || exit 9
req=$(cat)
state=$(printf '%s' "$req" | sed 's/.*"state":"\([a-z-]*\)".*/\1/')
sleep 1
printf '{"attributes": {"country": "DE"}, "data": {"customer_id": "%s", "email": "a@x.test"}, "entities": ["customer:C1"]}' "$state""#,
    );
    let g = CommandGenerator::new("slow", argv, PATIENCE, 1);
    let answer = g.generate(&request("active")).await.unwrap();
    assert_eq!(answer.data["customer_id"], "active");
    assert_eq!(answer.entities, vec!["customer:C1".to_string()]);
}

#[tokio::test]
async fn a_generator_that_lies_about_its_fields_fails_the_generation() {
    let dir = tempfile::tempdir().unwrap();
    let argv = sh_script(
        dir.path(),
        "liar.sh",
        &format!(
            r#"case "$1" in
capabilities) echo '{CAPS}' ;;
generate) echo '{{"attributes": {{"country": "DE"}}, "data": {{"customer_id": "C1", "password": "hunter2"}}, "secret_fields": ["password"]}}' ;;
esac"#
        ),
    );
    let g = TrackedGenerator::new(
        CommandGenerator::new("liar", argv, PATIENCE, 1),
        HealthPolicy::default(),
    );
    let caps = g.capabilities().await.unwrap();
    let graph = CatalogGraph::build(vec![("liar".to_string(), caps)]).unwrap();
    let spec = graph
        .state("customer", "active")
        .unwrap()
        .as_produced_state();
    let err = g.generate(&spec, &request("active")).await.unwrap_err();
    let ErrorKind::ContractViolation(reason) = &err.kind else {
        panic!("unexpected {err}")
    };
    assert!(
        reason.contains("promised field `email` is missing from data"),
        "{reason}"
    );
    assert!(!err.to_string().contains("hunter2"));
    let health = g.health();
    assert_eq!(health.failure_rate, Some(0.5));
    assert!(
        health
            .last_error
            .unwrap()
            .contains("promised field `email`")
    );
}

#[tokio::test]
async fn a_failing_generator_is_held_back_until_its_backoff_passes() {
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls");
    let argv = sh_script(
        dir.path(),
        "down.sh",
        &format!(
            "echo call >> {}\necho 'db down' >&2\nexit 1",
            calls.display()
        ),
    );
    let policy = HealthPolicy {
        window: 10,
        open_after: 2,
        base_backoff: Duration::from_secs(3600),
        max_backoff: Duration::from_secs(3600),
        jitter: 0.0,
    };
    let g = TrackedGenerator::new(CommandGenerator::new("down", argv, PATIENCE, 1), policy);
    for _ in 0..2 {
        assert!(matches!(
            g.capabilities().await.unwrap_err().kind,
            ErrorKind::ExitStatus { .. }
        ));
    }
    assert!(!g.health().available);
    let err = g.capabilities().await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::BackingOff(_)), "{err}");
    let ran = std::fs::read_to_string(&calls).unwrap().lines().count();
    assert_eq!(ran, 2, "the held-back call never started the command");
    assert_eq!(g.health().failure_rate, Some(1.0));
}

#[tokio::test]
async fn command_calls_respect_the_concurrency_limit() {
    let dir = tempfile::tempdir().unwrap();
    let running = dir.path().join("running");
    std::fs::create_dir(&running).unwrap();
    let peaks = dir.path().join("peaks");
    let argv = sh_script(
        dir.path(),
        "count.sh",
        &format!(
            "touch {r}/$$\nls {r} | wc -l >> {p}\nsleep 0.3\nrm {r}/$$\necho '{CAPS}'",
            r = running.display(),
            p = peaks.display()
        ),
    );
    let g = Arc::new(CommandGenerator::new("counted", argv, PATIENCE, 2));
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let g = Arc::clone(&g);
            tokio::spawn(async move { g.capabilities().await })
        })
        .collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    let seen: Vec<usize> = std::fs::read_to_string(&peaks)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(seen.len(), 6);
    assert!(
        seen.iter().all(|n| *n <= 2),
        "more than 2 at once: {seen:?}"
    );
}

#[tokio::test]
async fn a_dropped_call_takes_its_processes_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let argv = sh_script(
        dir.path(),
        "hang.sh",
        &format!(
            "sleep 300 &\necho $! > {d}/grandchild.tmp\nmv {d}/grandchild.tmp {d}/grandchild.pid\nwait"
        ),
    );
    let g = CommandGenerator::new("abandoned", argv, PATIENCE, 1);
    let call = tokio::spawn(async move { g.capabilities().await });
    let pid_file = dir.path().join("grandchild.pid");
    assert!(
        eventually(|| pid_file.exists()).await,
        "the command never started"
    );
    call.abort();
    let _ = call.await;
    let grandchild = read_pid(&pid_file);
    assert!(
        eventually(|| gone(grandchild)).await,
        "grandchild {grandchild} outlived the cancelled call"
    );
}
