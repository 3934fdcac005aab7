//! The agent under `stockroom start` / `stockroom stop`, and what the
//! sidecar's releases carry to the pool (docs/per-test.md, docs/sidecar.md):
//! the CI job's page as `details_url`, the failing tests as the reason, and
//! `--reason` / `--details-url` in their place. Everything is read back from
//! the real pool's API, not from the sidecar's log.
//!
//! Needs the binaries built first: `cargo build -p stockroom -p stockroom-pool`.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use stockroom_e2e::{Pool, http, stockroom};

const GITHUB_RUN_URL: &str = "https://ghe.example.test/shop/web/actions/runs/77/attempts/3";
const GITLAB_JOB_URL: &str = "https://gitlab.example.test/shop/web/-/jobs/901";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn manifest(pool_url: &str) -> String {
    format!(
        "version = 1\npool = \"{pool_url}\"\nacquire_timeout = \"5s\"\n\n[[dataset]]\nname = \"job\"\ntype = \"job\"\nstate = \"slot\"\n"
    )
}

/// The job's own dataset of the manifest, plus `n` customers that are not
/// reusable (half DE, half US).
fn seed(pool: &Pool, n: usize) {
    pool.seed(json!([{"type": "job", "state": "slot", "data": {"slot": 1}, "reusable": true}]));
    let items: Vec<Value> = (0..n)
        .map(|i| {
            json!({"type": "customer", "state": "active",
                   "attributes": {"country": if i % 2 == 0 { "DE" } else { "US" }},
                   "data": {"customer_id": format!("C{i}")},
                   "entities": [format!("customer:C{i}")]})
        })
        .collect();
    pool.seed(Value::Array(items));
}

fn dataset(pool: &Pool, id: &str) -> Value {
    let (status, body) = pool.request("GET", &format!("/api/v1/datasets/{id}"), None, None);
    assert_eq!(status, 200, "{body}");
    body
}

fn last_history(pool: &Pool, id: &str) -> Value {
    let d = dataset(pool, id);
    d["history"]
        .as_array()
        .and_then(|h| h.last())
        .cloned()
        .unwrap_or_else(|| panic!("no history: {d}"))
}

fn lease(pool: &Pool, id: &str) -> Value {
    let (status, body) = pool.request("GET", &format!("/api/v1/leases/{id}"), None, None);
    assert_eq!(status, 200, "{body}");
    body
}

/// Every lease the pool knows, whatever its status.
fn all_leases(pool: &Pool) -> Vec<Value> {
    let (status, body) = pool.request("GET", "/api/v1/leases?limit=1000", None, None);
    assert_eq!(status, 200, "{body}");
    body["leases"].as_array().cloned().unwrap_or_default()
}

fn is_job_lease(lease: &Value) -> bool {
    lease["datasets"]
        .as_array()
        .is_some_and(|ds| ds.iter().any(|d| d["type"] == "job"))
}

/// The job's lease (the one with the manifest's dataset), read back by id.
fn job_lease(pool: &Pool) -> Value {
    let all = all_leases(pool);
    let jobs: Vec<&Value> = all.iter().filter(|l| is_job_lease(l)).collect();
    assert_eq!(jobs.len(), 1, "{all:?}");
    lease(pool, jobs[0]["lease_id"].as_str().expect("lease_id"))
}

/// The lease at the pool that holds (or held) dataset `id`, besides the job's.
fn lease_of(pool: &Pool, dataset_id: &str) -> Value {
    let all = all_leases(pool);
    let found = all
        .iter()
        .find(|l| {
            l["datasets"]
                .as_array()
                .is_some_and(|ds| ds.iter().any(|d| d["id"] == dataset_id))
        })
        .unwrap_or_else(|| panic!("no lease holds {dataset_id}: {all:?}"));
    lease(pool, found["lease_id"].as_str().expect("lease_id"))
}

fn active_leases(pool: &Pool) -> Vec<Value> {
    let (status, body) = pool.request("GET", "/api/v1/leases?status=active", None, None);
    assert_eq!(status, 200, "{body}");
    body["leases"].as_array().cloned().unwrap_or_default()
}

/// GitHub Actions variables that give a job page (attempt 3 of run 77).
fn github(cmd: &mut Command) -> &mut Command {
    cmd.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_SERVER_URL", "https://ghe.example.test")
        .env("GITHUB_REPOSITORY", "shop/web")
        .env("GITHUB_RUN_ID", "77")
        .env("GITHUB_RUN_ATTEMPT", "3")
        .env("GITHUB_JOB", "e2e")
}

/// GitLab CI variables with a job page.
fn gitlab(cmd: &mut Command) -> &mut Command {
    cmd.env("GITLAB_CI", "true")
        .env("CI_PROJECT_PATH", "shop/web")
        .env("CI_PIPELINE_ID", "900")
        .env("CI_JOB_ID", "901")
        .env("CI_JOB_NAME", "e2e")
        .env("CI_JOB_URL", GITLAB_JOB_URL)
}

/// A small client of the agent: `python3` with the agent's variables.
const CLIENT_PY: &str = r#"
import json, os, sys, urllib.request, urllib.error
U, T = os.environ["STOCKROOM_AGENT_URL"], os.environ["STOCKROOM_AGENT_TOKEN"]
def call(method, path, body=None):
    r = urllib.request.Request(U + path, method=method, data=None if body is None else json.dumps(body).encode(),
                               headers={"Authorization": "Bearer " + T})
    try:
        with urllib.request.urlopen(r, timeout=60) as a:
            return a.status, json.load(a)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)
def take(test, **where):
    s, a = call("POST", "/v1/take", {"test": test, "items": [{"type": "customer", "state": "active", "where": where}]})
    assert s == 200, (s, a)
    return a
def done(a, outcome, reason=None):
    s, b = call("POST", "/v1/takes/%s/done" % a["take_id"], {"outcome": outcome, "reason": reason})
    assert s == 200, (s, b)
"#;

/// The command of the `run` tests: one test fails, one passes, then the
/// command exits 1; the datasets' ids go to `out`.
fn failing_suite(dir: &Path, out: &Path) -> Vec<String> {
    let body = format!(
        r#"
bad = take("tests/test_pay.py::test_total")
done(bad, "failed", "AssertionError: total is 0")
good = take("tests/test_pay.py::test_ok")
done(good, "passed")
json.dump({{"bad": bad["datasets"][0]["id"], "good": good["datasets"][0]["id"]}}, open({out:?}, "w"))
sys.exit(1)
"#,
        out = out.to_str().expect("utf8")
    );
    let path = write(dir, "suite.py", &format!("{CLIENT_PY}\n{body}"));
    vec!["python3".into(), path.to_string_lossy().into_owned()]
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
}

fn run_suite(dir: &Path, flags: &[&str], ci: fn(&mut Command) -> &mut Command) -> (Output, Value) {
    let out = dir.join("ids.json");
    let suite = failing_suite(dir, &out);
    let mut cmd = stockroom(dir);
    cmd.arg("run").args(flags).arg("--").args(&suite);
    let done = ci(&mut cmd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("stockroom run");
    assert_eq!(done.status.code(), Some(1), "{}", text(&done.stderr));
    (done, read_json(&out))
}

// ---------------------------------------------------------------- stockroom run

#[test]
fn run_on_github_releases_with_the_job_page_and_the_failing_tests_as_the_reason() {
    let pool = Pool::start();
    seed(&pool, 4);
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "stockroom.toml", &manifest(&pool.url()));
    let (_, ids) = run_suite(dir.path(), &[], github);

    // The job's lease, as the pool recorded its release.
    let job = job_lease(&pool);
    assert_eq!(job["status"], "released", "{job}");
    assert_eq!(job["outcome"], "failed", "{job}");
    assert_eq!(job["details_url"], GITHUB_RUN_URL, "{job}");
    let reason = job["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("failed tests: tests/test_pay.py::test_total;"),
        "{job}"
    );
    assert!(!reason.contains("test_ok"), "only the failing test: {job}");
    assert!(reason.contains("exited with code 1"), "{job}");
    // The job's own dataset is quarantined with that reason in its history.
    let slot = job["datasets"][0]["id"].as_str().expect("id");
    let entry = last_history(&pool, slot);
    assert_eq!(entry["to"], "quarantined", "{entry}");
    assert!(
        entry["reason"]
            .as_str()
            .is_some_and(|r| r.contains("failed tests: tests/test_pay.py::test_total")),
        "{entry}"
    );
    // The agent's per-test leases carry the job's page too.
    for key in ["bad", "good"] {
        let id = ids[key].as_str().expect("id");
        let own = lease_of(&pool, id);
        assert!(!is_job_lease(&own), "{own}");
        assert_eq!(own["status"], "released", "{own}");
        assert_eq!(own["details_url"], GITHUB_RUN_URL, "{key}: {own}");
    }
    assert_eq!(
        dataset(&pool, ids["bad"].as_str().expect("id"))["status"],
        "quarantined"
    );
    assert_eq!(
        dataset(&pool, ids["good"].as_str().expect("id"))["status"],
        "consumed"
    );
    assert!(active_leases(&pool).is_empty());
}

#[test]
fn run_reason_and_details_url_flags_override_the_tests_and_the_job_page() {
    let pool = Pool::start();
    seed(&pool, 4);
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "stockroom.toml", &manifest(&pool.url()));
    let (_, ids) = run_suite(
        dir.path(),
        &[
            "--reason",
            "flaky payment sandbox, see INC-12",
            "--details-url",
            "https://tickets.example.test/INC-12",
        ],
        github,
    );
    let job = job_lease(&pool);
    assert_eq!(job["outcome"], "failed", "{job}");
    assert_eq!(job["reason"], "flaky payment sandbox, see INC-12", "{job}");
    assert_eq!(
        job["details_url"], "https://tickets.example.test/INC-12",
        "{job}"
    );
    let slot = job["datasets"][0]["id"].as_str().expect("id");
    let entry = last_history(&pool, slot);
    assert!(
        entry["reason"].as_str().is_some_and(
            |r| r.contains("flaky payment sandbox, see INC-12") && !r.contains("test_total")
        ),
        "{entry}"
    );
    // --details-url is the run's link: the agent's releases carry it as well;
    // a test's own reason stays its own.
    let bad = ids["bad"].as_str().expect("id");
    assert_eq!(
        lease_of(&pool, bad)["details_url"],
        "https://tickets.example.test/INC-12"
    );
    let entry = last_history(&pool, bad);
    assert!(
        entry["reason"]
            .as_str()
            .is_some_and(|r| r.contains("AssertionError: total is 0")),
        "{entry}"
    );
    assert!(active_leases(&pool).is_empty());
}

// ---------------------------------------------------------------- start / stop

/// `NAME` from `export NAME='value'` lines.
fn exported(stdout: &str, name: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("export {name}=")))
        .map(|v| v.trim_matches('\'').to_string())
        .unwrap_or_else(|| panic!("no {name} exported:\n{stdout}"))
}

struct Agent {
    addr: String,
    token: String,
}

impl Agent {
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        http(&self.addr, method, path, body, Some(&self.token))
    }

    fn take(&self, test: &str, country: &str) -> Value {
        let (status, take) = self.call(
            "POST",
            "/v1/take",
            Some(&json!({"test": test, "worker": "gw0",
                         "items": [{"type": "customer", "state": "active", "where": {"country": country}}]})),
        );
        assert_eq!(status, 200, "{take}");
        take
    }

    fn done(&self, take: &Value, outcome: &str, reason: Option<&str>) -> Value {
        let id = take["take_id"].as_str().expect("take_id");
        let (status, done) = self.call(
            "POST",
            &format!("/v1/takes/{id}/done"),
            Some(&json!({"outcome": outcome, "reason": reason})),
        );
        assert_eq!(status, 200, "{done}");
        done
    }
}

fn only_id(take: &Value) -> String {
    let list = take["datasets"].as_array().expect("datasets");
    assert_eq!(list.len(), 1, "{take}");
    list[0]["id"].as_str().expect("id").to_string()
}

/// `stockroom start --format shell`; the agent its exports name.
fn start(dir: &Path, state: &Path, ci: fn(&mut Command) -> &mut Command) -> (Agent, String) {
    let mut cmd = stockroom(dir);
    cmd.args(["start", "--format", "shell", "--state-dir"])
        .arg(state);
    let out = ci(&mut cmd).output().expect("start");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let url = exported(&stdout, "STOCKROOM_AGENT_URL");
    let token = exported(&stdout, "STOCKROOM_AGENT_TOKEN");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(token.len() >= 32, "{token}");
    assert!(
        !text(&out.stderr).contains(&token),
        "the agent token is in the log"
    );
    let recorded = read_json(&state.join("state.json"));
    let lease_id = recorded["lease_id"].as_str().expect("lease_id").to_string();
    (
        Agent {
            addr: url.trim_start_matches("http://").to_string(),
            token,
        },
        lease_id,
    )
}

#[test]
fn start_exports_the_agent_and_stop_settles_its_takes_with_the_failing_tests() {
    let pool = Pool::start();
    seed(&pool, 8);
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "stockroom.toml", &manifest(&pool.url()));
    let state = dir.path().join("state");
    let (agent, job_id) = start(dir.path(), &state, gitlab);

    // Later steps of the job take through the agent `start` left running.
    let (status, reserved) = agent.call(
        "POST",
        "/v1/reserve",
        Some(&json!({"items": [{"type": "customer", "state": "active", "where": {"country": "DE"}, "count": 3}]})),
    );
    assert_eq!(status, 200, "{reserved}");
    assert_eq!(reserved["reserved"][0]["count"], 3, "{reserved}");
    let fails = agent.take("tests/test_shop.py::test_fails", "DE");
    let failed_answer = agent.done(&fails, "failed", Some("KeyError: 'cart'"));
    assert_eq!(failed_answer["datasets"][0]["status"], "quarantined");
    let passes = agent.take("tests/test_shop.py::test_passes", "DE");
    agent.done(&passes, "passed", None);
    // Not in the reserve: leased from the pool for this test alone; never done.
    let open = agent.take("tests/test_shop.py::test_open", "US");
    let (fails_id, passes_id, open_id) = (only_id(&fails), only_id(&passes), only_id(&open));
    let (status, takes) = agent.call("GET", "/v1/takes", None);
    assert_eq!(status, 200, "{takes}");
    let sources: Vec<&str> = takes["takes"]
        .as_array()
        .expect("takes")
        .iter()
        .filter_map(|t| t["source"].as_str())
        .collect();
    assert_eq!(sources.len(), 3, "{takes}");
    assert_eq!(
        sources.iter().filter(|s| **s == "reserve").count(),
        2,
        "{takes}"
    );
    // While the job goes on, the pool holds the open take's dataset, the
    // reserve's last one and the job's lease.
    assert_eq!(dataset(&pool, &open_id)["status"], "leased");
    assert_eq!(active_leases(&pool).len(), 3, "{:?}", active_leases(&pool));

    let mut stop = stockroom(dir.path());
    stop.args(["stop", "--outcome", "passed", "--state-dir"])
        .arg(&state);
    let out = gitlab(&mut stop).output().expect("stop");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // Nothing is held any more, and the agent is gone with the heartbeat.
    assert!(
        active_leases(&pool).is_empty(),
        "{:?}",
        active_leases(&pool)
    );
    assert!(
        TcpStream::connect(&agent.addr).is_err(),
        "the agent still listens after stop"
    );
    // The job's lease: released as passed, the failing test as the reason,
    // the GitLab job's page as its link.
    let job = lease(&pool, &job_id);
    assert!(is_job_lease(&job), "{job}");
    assert_eq!(job["status"], "released", "{job}");
    assert_eq!(job["outcome"], "passed", "{job}");
    assert_eq!(job["details_url"], GITLAB_JOB_URL, "{job}");
    let reason = job["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("failed tests: tests/test_shop.py::test_fails;"),
        "{job}"
    );
    assert!(reason.contains("stockroom stop"), "{job}");
    assert!(
        !reason.contains("test_passes") && !reason.contains("test_open"),
        "{job}"
    );
    // Each dataset where its own outcome says: the failed test's is
    // quarantined naming it, the passed one consumed, the take never done
    // settled with the job's outcome, the reserved one never taken ready
    // again as unused, and the customers never asked for untouched.
    let entry = last_history(&pool, &fails_id);
    assert_eq!(entry["to"], "quarantined", "{entry}");
    let why = entry["reason"].as_str().expect("reason");
    assert!(
        why.contains("tests/test_shop.py::test_fails") && why.contains("KeyError: 'cart'"),
        "{entry}"
    );
    assert_eq!(dataset(&pool, &passes_id)["status"], "consumed");
    let entry = last_history(&pool, &open_id);
    assert_eq!(entry["to"], "consumed", "{entry}");
    assert!(
        entry["holder"]
            .as_str()
            .is_some_and(|h| h.contains("test tests/test_shop.py::test_open")),
        "{entry}"
    );
    let open_lease = lease_of(&pool, &open_id);
    assert_eq!(open_lease["status"], "released", "{open_lease}");
    assert_eq!(open_lease["outcome"], "passed", "{open_lease}");
    assert_eq!(
        open_lease["details_url"], GITLAB_JOB_URL,
        "the heartbeat process's agent links the job too: {open_lease}"
    );
    let (status, body) = pool.request(
        "GET",
        "/api/v1/datasets?type=customer&limit=1000",
        None,
        None,
    );
    assert_eq!(status, 200, "{body}");
    let customers = body["datasets"].as_array().expect("datasets");
    let taken = [&fails_id, &passes_id, &open_id];
    let rest: Vec<&Value> = customers
        .iter()
        .filter(|d| !taken.iter().any(|id| d["id"] == id.as_str()))
        .collect();
    assert_eq!(rest.len(), 5, "{body}");
    let mut unused = 0;
    for d in rest {
        assert_eq!(d["status"], "ready", "{d}");
        let history = dataset(&pool, d["id"].as_str().expect("id"))["history"].to_string();
        if history.contains("unused") {
            unused += 1;
        }
    }
    assert_eq!(unused, 1, "the one reserved and never taken");
    // Every lease the agent made ended (none expired).
    for l in all_leases(&pool) {
        assert_eq!(l["status"], "released", "{l}");
    }
}

#[test]
fn stop_reason_and_details_url_flags_override_the_failing_tests_and_the_job_page() {
    let pool = Pool::start();
    seed(&pool, 2);
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "stockroom.toml", &manifest(&pool.url()));
    let state = dir.path().join("state");
    let (agent, job_id) = start(dir.path(), &state, github);
    let fails = agent.take("tests/test_login.py::test_lockout", "DE");
    agent.done(&fails, "failed", None);

    let mut stop = stockroom(dir.path());
    stop.args([
        "stop",
        "--outcome",
        "failed",
        "--reason",
        "staging was down",
        "--details-url",
        "https://status.example.test/incidents/9",
        "--state-dir",
    ])
    .arg(&state);
    let out = github(&mut stop).output().expect("stop");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let job = lease(&pool, &job_id);
    assert_eq!(job["outcome"], "failed", "{job}");
    assert_eq!(job["reason"], "staging was down", "{job}");
    assert_eq!(
        job["details_url"], "https://status.example.test/incidents/9",
        "{job}"
    );
    let slot = job["datasets"][0]["id"].as_str().expect("id");
    let entry = last_history(&pool, slot);
    assert_eq!(entry["to"], "quarantined", "{entry}");
    assert!(
        entry["reason"]
            .as_str()
            .is_some_and(|r| r.contains("staging was down") && !r.contains("test_lockout")),
        "{entry}"
    );
    // The test's own lease was released by the agent when it said done,
    // with the GitHub run's page the heartbeat process read at start.
    let own = lease_of(&pool, &only_id(&fails));
    assert_eq!(own["details_url"], GITHUB_RUN_URL, "{own}");
    assert!(active_leases(&pool).is_empty());
}
