//! The per-test agent (docs/per-test.md) end to end: the real `stockroom`
//! and `stockroom-pool`, clients that are real processes (curl, python3,
//! threads of this test), signals and a killed pool.
//!
//! Needs the binaries built first: `cargo build -p stockroom -p stockroom-pool`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stockroom_e2e::{
    Pool, Recorded, Recorder, Relay, StderrLines, http, stockroom, wait_for, wait_for_file,
};

const WAIT_CAP: Duration = Duration::from_secs(60);

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn manifest(pool_url: &str, extra: &str) -> String {
    format!(
        "version = 1\npool = \"{pool_url}\"\nacquire_timeout = \"5s\"\n{extra}\n[[dataset]]\nname = \"job\"\ntype = \"job\"\nstate = \"slot\"\n"
    )
}

/// The job's own dataset of the manifest, plus `n` customers (half DE,
/// half US); `reusable` customers go back to `ready` after `passed`. Pairs
/// of customers share an `account:` entity, so the pool may never hand out
/// both of a pair at once.
fn seed(pool: &Pool, n: usize, reusable: bool) {
    pool.seed(json!([{"type": "job", "state": "slot", "data": {"slot": 1}, "reusable": true}]));
    let items: Vec<Value> = (0..n)
        .map(|i| {
            json!({"type": "customer", "state": "active",
                   "attributes": {"country": if i % 2 == 0 { "DE" } else { "US" }},
                   "data": {"customer_id": format!("C{i}"), "password": "pw-secret"},
                   "secret_fields": ["password"], "reusable": reusable,
                   "entities": [format!("customer:C{i}"), format!("account:A{}", i / 2)]})
        })
        .collect();
    pool.seed(Value::Array(items));
}

fn customers(pool: &Pool) -> Vec<Value> {
    let (status, body) = pool.request(
        "GET",
        "/api/v1/datasets?type=customer&state=active&limit=1000",
        None,
        None,
    );
    assert_eq!(status, 200, "{body}");
    body["datasets"].as_array().cloned().unwrap_or_default()
}

fn dataset(pool: &Pool, id: &str) -> Value {
    let (status, body) = pool.request("GET", &format!("/api/v1/datasets/{id}"), None, None);
    assert_eq!(status, 200, "{body}");
    body
}

fn active_leases(pool: &Pool) -> Vec<Value> {
    let (status, body) = pool.request("GET", "/api/v1/leases?status=active", None, None);
    assert_eq!(status, 200, "{body}");
    body["leases"].as_array().cloned().unwrap_or_default()
}

fn statuses(pool: &Pool) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for d in customers(pool) {
        *out.entry(d["status"].as_str().unwrap_or("?").to_string())
            .or_insert(0) += 1;
    }
    out
}

/// `stockroom run` in `dir` with piped stdout and stderr.
fn spawn_run(dir: &Path, envs: &[(&str, &str)], cmd: &[&str]) -> Child {
    let mut c = stockroom(dir);
    c.arg("run").arg("--").args(cmd);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stockroom run")
}

fn python() -> &'static str {
    "python3"
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// A small client of the agent: `python3 -c` with the agent's variables.
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
"#;

/// Runs a python snippet (after [`CLIENT_PY`]) as the command.
fn py_command(dir: &Path, name: &str, body: &str) -> Vec<String> {
    let path = write(dir, name, &format!("{CLIENT_PY}\n{body}"));
    vec![python().into(), path.to_string_lossy().into_owned()]
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
}

// ---------------------------------------------------------------- a curl-only client

#[test]
fn a_curl_only_client_takes_and_says_done_and_bad_input_gets_problems() {
    let pool = Pool::start();
    seed(&pool, 6, false);
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "stockroom.toml", &manifest(&pool.url(), ""));
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    // Exactly what docs/per-test.md shows, plus what the test reads back.
    let sh = r#"set -eu
A="$STOCKROOM_AGENT_URL"; AUTH="Authorization: Bearer $STOCKROOM_AGENT_TOKEN"; O="$1"
env > "$O/env"
curl -sS -H "$AUTH" -X POST "$A/v1/reserve" -d '{"items": [{"type": "customer", "state": "active", "count": 2}]}' > "$O/reserve"
curl -sS -H "$AUTH" -X POST "$A/v1/take" -d '{"test": "tests/test_cart.py::test_pay", "worker": "gw0", "items": [{"name": "buyer", "type": "customer", "state": "active"}]}' > "$O/take1"
T1=$(sed 's/.*"take_id":"\([^"]*\)".*/\1/' "$O/take1")
curl -sS -H "$AUTH" -X POST "$A/v1/takes/$T1/done" -d '{"outcome": "failed", "reason": "AssertionError: total"}' > "$O/done1"
curl -sS -H "$AUTH" -X POST "$A/v1/takes/$T1/done" -d '{"outcome": "passed"}' > "$O/done1-again"
curl -sS -H "$AUTH" -X POST "$A/v1/take" -d '{"test": "tests/test_cart.py::test_refund", "items": [{"type": "customer", "state": "active", "where": {"country": "US"}, "count": 2}]}' > "$O/take2"
T2=$(sed 's/.*"take_id":"\([^"]*\)".*/\1/' "$O/take2")
curl -sS -H "$AUTH" -X POST "$A/v1/takes/$T2/done" -d '{"outcome": "passed"}' > "$O/done2"
curl -sS -w '%{http_code}' -H "$AUTH" -X POST "$A/v1/take" -d '{"items": [{"type": "customer", "state": "nope"}]}' > "$O/unknown"
S=$(date +%s%N)
curl -sS -w '%{http_code}' -H "$AUTH" -X POST "$A/v1/take" -d '{"wait_seconds": 1, "items": [{"type": "customer", "state": "active", "count": 50}]}' > "$O/too-many"
echo $(( ($(date +%s%N) - S) / 1000000 )) > "$O/too-many-ms"
curl -sS -w '%{http_code}' -X POST "$A/v1/take" -d '{"items": [{"type": "customer", "state": "active"}]}' > "$O/no-token"
curl -sS -w '%{http_code}' -H "Authorization: Bearer wrong" "$A/v1/takes" > "$O/wrong-token"
curl -sS -w '%{http_code}' -H "$AUTH" -X POST "$A/v1/takes/tk_0123456789abcdef0123456789abcdef/done" -d '{"outcome": "passed"}' > "$O/other-run"
curl -sS -w '%{http_code}' -H "$AUTH" -X POST "$A/v1/take" -d '{"items": []}' > "$O/empty"
curl -sS -w '%{http_code}' -H "$AUTH" -X POST "$A/v1/takes/$T2/done" -d '{"outcome": "maybe"}' > "$O/bad-outcome"
curl -sS -H "$AUTH" "$A/v1/takes" > "$O/takes"
"#;
    let sh_path = write(dir.path(), "client.sh", sh);
    let child = spawn_run(
        dir.path(),
        &[("STOCKROOM_TOKEN", "not-for-tests")],
        &[
            "sh",
            sh_path.to_str().expect("utf8"),
            out.to_str().expect("utf8"),
        ],
    );
    let done = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&done.stderr).into_owned();
    assert_eq!(done.status.code(), Some(0), "{err}");

    let env = std::fs::read_to_string(out.join("env")).expect("env");
    assert!(
        env.contains("STOCKROOM_AGENT_URL=http://127.0.0.1:"),
        "{env}"
    );
    assert!(env.contains("STOCKROOM_AGENT_TOKEN="), "{env}");
    assert!(
        !env.contains("not-for-tests"),
        "the pool token reached the tests"
    );
    let token = env
        .lines()
        .find_map(|l| l.strip_prefix("STOCKROOM_AGENT_TOKEN="))
        .expect("token");
    assert!(token.len() >= 32, "{token}");
    assert!(
        !err.contains(token),
        "the agent token is in the log:\n{err}"
    );

    let reserve = read_json(&out.join("reserve"));
    assert_eq!(reserve["reserved"][0]["count"], 2, "{reserve}");
    let take1 = read_json(&out.join("take1"));
    let ds1 = take1["datasets"][0]["id"].as_str().expect("id").to_string();
    assert_eq!(take1["datasets"][0]["name"], "buyer");
    assert_eq!(take1["datasets"][0]["data"]["password"], "pw-secret");
    let done1 = read_json(&out.join("done1"));
    assert_eq!(done1["datasets"][0]["status"], "quarantined", "{done1}");
    assert_eq!(
        read_json(&out.join("done1-again")),
        done1,
        "a repeated done is harmless"
    );
    let take2 = read_json(&out.join("take2"));
    assert_eq!(
        take2["datasets"].as_array().map(Vec::len),
        Some(2),
        "{take2}"
    );
    for d in take2["datasets"].as_array().expect("list") {
        assert_eq!(d["attributes"]["country"], "US");
    }

    let problem = |name: &str, status: &str| {
        let text = std::fs::read_to_string(out.join(name)).expect("answer");
        let (body, code) = text.split_at(text.len() - 3);
        assert_eq!(code, status, "{name}: {text}");
        serde_json::from_str::<Value>(body).unwrap_or_else(|e| panic!("{name}: {e}: {text}"))
    };
    let unknown = problem("unknown", "422");
    assert_eq!(
        unknown["type"],
        "https://stockroom.dev/problems/unknown-state"
    );
    let known: Vec<&str> = unknown["known_states"]
        .as_array()
        .expect("known_states")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(known.contains(&"customer/active"), "{unknown}");
    let too_many = problem("too-many", "503");
    assert_eq!(too_many["type"], "https://stockroom.dev/problems/no-stock");
    assert_eq!(too_many["shortfall"][0]["wanted"], 50, "{too_many}");
    let waited: u64 = std::fs::read_to_string(out.join("too-many-ms"))
        .expect("ms")
        .trim()
        .parse()
        .expect("number");
    assert!(
        waited >= 900,
        "a take waits for stock before 503: {waited} ms"
    );
    for (name, status, kind) in [
        ("no-token", "401", "unauthorized"),
        ("wrong-token", "401", "unauthorized"),
        ("other-run", "404", "not-found"),
        ("empty", "422", "invalid-request"),
        ("bad-outcome", "422", "invalid-request"),
    ] {
        let p = problem(name, status);
        assert_eq!(
            p["type"],
            format!("https://stockroom.dev/problems/{kind}"),
            "{name}: {p}"
        );
    }
    let takes = read_json(&out.join("takes"));
    let list = takes["takes"].as_array().expect("takes");
    assert_eq!(list.len(), 2, "{takes}");
    assert!(
        list.iter()
            .any(|t| t["test"] == "tests/test_cart.py::test_pay" && t["worker"] == "gw0"),
        "{takes}"
    );
    assert!(
        !takes.to_string().contains("pw-secret"),
        "the listing shows no data"
    );

    // At the pool: the failed test's dataset is quarantined with the test
    // and reason in its history, the passed ones consumed, the reserved one
    // never taken back to ready as unused; nothing is held.
    let d1 = dataset(&pool, &ds1);
    assert_eq!(d1["status"], "quarantined");
    let last = d1["history"]
        .as_array()
        .and_then(|h| h.last())
        .expect("history");
    let reason = last["reason"].as_str().expect("reason");
    assert!(reason.contains("tests/test_cart.py::test_pay"), "{last}");
    assert!(reason.contains("AssertionError: total"), "{last}");
    assert!(
        last["holder"]
            .as_str()
            .is_some_and(|h| h.contains("test tests/test_cart.py::test_pay")),
        "{last}"
    );
    for d in take2["datasets"].as_array().expect("list") {
        let id = d["id"].as_str().expect("id");
        assert_eq!(dataset(&pool, id)["status"], "consumed");
    }
    let unused: Vec<Value> = customers(&pool)
        .into_iter()
        .filter(|d| {
            d["status"] == "ready"
                && dataset(&pool, d["id"].as_str().unwrap_or_default())["history"]
                    .to_string()
                    .contains("unused")
        })
        .collect();
    assert_eq!(
        unused.len(),
        1,
        "the reserved dataset never taken is ready again"
    );
    assert!(active_leases(&pool).is_empty());
    // The job's lease is released with the failing test as its reason, and
    // the summary names each dataset by id once.
    assert!(
        err.contains("failed tests: tests/test_cart.py::test_pay"),
        "{err}"
    );
    assert_eq!(err.matches(&ds1).count(), 1, "{err}");
}

// ---------------------------------------------------------------- many takers

/// One take as the driver recorded it: its datasets and entities, held
/// from the answer until the done was sent (or the end of the run).
#[derive(Debug, Clone)]
struct Held {
    take_id: String,
    ids: Vec<String>,
    entities: Vec<String>,
    from: u64,
    until: u64,
    outcome: Option<String>,
}

fn overlaps(intervals: &mut [(u64, u64, String)]) -> Option<String> {
    intervals.sort();
    intervals
        .windows(2)
        .find_map(|w| (w[1].0 < w[0].1).then(|| format!("{} and {} overlap", w[0].2, w[1].2)))
}

#[test]
fn many_concurrent_takers_through_one_agent_keep_every_invariant() {
    let pool = Pool::start();
    seed(&pool, 80, true);
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "stockroom.toml",
        &manifest(&pool.url(), "lease_ttl = \"10s\""),
    );
    let out = dir.path().join("events");
    std::fs::create_dir(&out).expect("mkdir");
    let driver = script("agent_takers.py");
    let child = spawn_run(
        dir.path(),
        &[],
        &[
            python(),
            driver.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
            "--pool",
            &pool.url(),
            "--threads",
            "8",
            "--procs",
            "4",
            "--takes",
            "15",
            "--reserve",
            "20",
        ],
    );
    let done = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&done.stderr).into_owned();
    assert_eq!(done.status.code(), Some(0), "{err}");
    let end = u64::MAX;

    // Every event of every process.
    let mut events: Vec<Value> = Vec::new();
    for entry in std::fs::read_dir(&out).expect("events") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            for line in std::fs::read_to_string(&path).expect("read").lines() {
                events.push(serde_json::from_str(line).expect("event"));
            }
        }
    }
    let mut takes: HashMap<String, Held> = HashMap::new();
    let mut refused = Vec::new();
    let mut final_listing = Value::Null;
    let mut orphan = Value::Null;
    for e in &events {
        let strings = |k: &str| -> Vec<String> {
            e[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        match e["kind"].as_str() {
            Some("take") => {
                let id = e["take_id"].as_str().expect("take_id").to_string();
                takes.insert(
                    id.clone(),
                    Held {
                        take_id: id,
                        ids: strings("ids"),
                        entities: strings("entities"),
                        from: e["t"].as_u64().expect("t"),
                        until: end,
                        outcome: None,
                    },
                );
            }
            Some("refused") | Some("done-refused") => refused.push(e.clone()),
            Some("final") => final_listing = e["listing"].clone(),
            Some("orphan") => orphan = e["take"].clone(),
            _ => {}
        }
    }
    for e in &events {
        if e["kind"] == "done" {
            let id = e["take_id"].as_str().expect("take_id");
            let held = takes.get_mut(id).expect("done of a recorded take");
            held.until = e["t"].as_u64().expect("t");
            held.outcome = e["outcome"].as_str().map(String::from);
        }
    }
    assert!(refused.is_empty(), "refused: {refused:?}");
    assert!(!orphan.is_null(), "the killed test's take was not recorded");
    let orphan_ids: Vec<String> = orphan["datasets"]
        .as_array()
        .expect("datasets")
        .iter()
        .filter_map(|d| d["id"].as_str().map(String::from))
        .collect();

    // 1. No dataset and no entity held by two takes at once (client clock).
    let mut by_dataset: HashMap<String, Vec<(u64, u64, String)>> = HashMap::new();
    let mut by_entity: HashMap<String, Vec<(u64, u64, String)>> = HashMap::new();
    for h in takes.values() {
        for id in &h.ids {
            by_dataset
                .entry(id.clone())
                .or_default()
                .push((h.from, h.until, h.take_id.clone()));
        }
        for en in &h.entities {
            by_entity
                .entry(en.clone())
                .or_default()
                .push((h.from, h.until, h.take_id.clone()));
        }
    }
    for (id, intervals) in by_dataset.iter_mut() {
        assert_eq!(overlaps(intervals), None, "dataset {id} held twice at once");
    }
    for (en, intervals) in by_entity.iter_mut() {
        assert_eq!(overlaps(intervals), None, "entity {en} held twice at once");
    }

    // 2. The pool's recorded history: one status at a time, and no entity
    // leased by two leases at once.
    let all = customers(&pool);
    let mut history_entries = 0;
    let mut pool_intervals: HashMap<String, Vec<(u64, u64, String)>> = HashMap::new();
    let mut unused_back = 0;
    for d in &all {
        let id = d["id"].as_str().expect("id");
        let view = dataset(&pool, id);
        let history = view["history"].as_array().expect("history");
        history_entries += history.len();
        let mut status = String::new();
        let mut leased_at: Option<(u64, String)> = None;
        for h in history {
            let at = humantime::parse_rfc3339_weak(h["at"].as_str().expect("at"))
                .expect("rfc3339")
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after epoch")
                .as_millis() as u64;
            if let Some(from) = h["from"].as_str() {
                assert_eq!(from, status, "{id}: a change from a status it was not in");
            }
            let to = h["to"].as_str().expect("to").to_string();
            if to == "leased" {
                leased_at = Some((at, h["lease_id"].as_str().unwrap_or("").to_string()));
            } else if status == "leased" {
                let (start, lease) = leased_at.take().expect("leased before");
                for en in view["entities"].as_array().expect("entities") {
                    pool_intervals
                        .entry(en.as_str().expect("entity").to_string())
                        .or_default()
                        .push((start, at, format!("{id} in {lease}")));
                }
                if h["reason"].as_str().is_some_and(|r| r.contains("unused")) {
                    assert_eq!(to, "ready", "{id}: unused goes back to ready");
                    unused_back += 1;
                }
            }
            status = to;
        }
        assert_ne!(status, "leased", "{id} is still leased after the run");
        assert_eq!(status, d["status"].as_str().expect("status"));
    }
    for (en, intervals) in pool_intervals.iter_mut() {
        assert_eq!(
            overlaps(intervals),
            None,
            "the pool leased entity {en} twice at once"
        );
    }

    // 3. Nothing lost: every dataset ended where its last take's outcome
    // says (customers are reusable: passed and unused → ready; failed and
    // cancelled → quarantined; takes never done got the run's `passed`).
    let mut last: HashMap<String, (u64, Option<String>)> = HashMap::new();
    for h in takes.values() {
        for id in &h.ids {
            let e = last.entry(id.clone()).or_insert((0, None));
            if h.from >= e.0 {
                *e = (h.from, h.outcome.clone());
            }
        }
    }
    for d in &all {
        let id = d["id"].as_str().expect("id");
        let want = match last.get(id).map(|(_, o)| o.as_deref()) {
            Some(Some("failed" | "cancelled")) => "quarantined",
            _ if orphan_ids.iter().any(|o| o == id) => "consumed",
            _ => "ready",
        };
        assert_eq!(d["status"], want, "{id}: last take {:?}", last.get(id));
    }
    assert!(
        active_leases(&pool).is_empty(),
        "nothing is held after the run"
    );

    // The counts, for the issue note.
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for h in takes.values() {
        *outcomes
            .entry(h.outcome.clone().unwrap_or_else(|| "not done".into()))
            .or_insert(0) += 1;
    }
    let listed = final_listing["takes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let from_reserve = listed.iter().filter(|t| t["source"] == "reserve").count();
    let from_pool = listed.iter().filter(|t| t["source"] == "pool").count();
    let datasets_taken: BTreeSet<&String> = takes.values().flat_map(|h| &h.ids).collect();
    println!(
        "invariant checker: {} takes ({} from the reserve, {} leased on demand), outcomes {:?}; \
         {} distinct datasets taken, {} entity timelines and {} dataset timelines checked on the client clock; \
         {} history entries of {} datasets checked at the pool, {} entity timelines at the pool; \
         {} datasets back to ready as unused; final statuses {:?}; {} pool requests by the agent",
        takes.len(),
        from_reserve,
        from_pool,
        outcomes,
        datasets_taken.len(),
        by_entity.len(),
        by_dataset.len(),
        history_entries,
        all.len(),
        pool_intervals.len(),
        unused_back,
        statuses(&pool),
        final_listing["pool_requests"],
    );
    assert!(takes.len() >= 180, "{} takes", takes.len());
    assert!(from_reserve >= 10 && from_pool > 0, "{final_listing}");
    assert!(unused_back > 0);
}

// ---------------------------------------------------------------- races and faults

#[test]
fn two_workers_racing_for_the_last_dataset_one_gets_it() {
    let pool = Pool::start();
    seed(&pool, 1, false);
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "stockroom.toml", &manifest(&pool.url(), ""));
    let result = dir.path().join("race.json");
    let cmd = py_command(
        dir.path(),
        "race.py",
        &format!(
            r#"
import threading
results = []
def take(worker):
    results.append(call("POST", "/v1/take", {{"test": "race", "worker": worker, "wait_seconds": 1,
                        "items": [{{"type": "customer", "state": "active"}}]}}))
ts = [threading.Thread(target=take, args=("gw%d" % i,)) for i in range(2)]
[t.start() for t in ts]; [t.join() for t in ts]
json.dump(results, open({:?}, "w"))
"#,
            result.to_str().expect("utf8")
        ),
    );
    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let done = spawn_run(dir.path(), &[], &args)
        .wait_with_output()
        .expect("wait");
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let results = read_json(&result);
    let codes: BTreeSet<u64> = results
        .as_array()
        .expect("two")
        .iter()
        .map(|r| r[0].as_u64().expect("status"))
        .collect();
    assert_eq!(codes, BTreeSet::from([200, 503]), "{results}");
    let refused = results
        .as_array()
        .expect("two")
        .iter()
        .find(|r| r[0] == 503)
        .expect("503");
    assert_eq!(
        refused[1]["type"],
        "https://stockroom.dev/problems/no-stock"
    );
    assert!(refused[1]["shortfall"].is_array(), "{refused}");
    assert!(active_leases(&pool).is_empty());
}

#[test]
fn sigterm_to_the_sidecar_settles_open_takes_as_cancelled() {
    let pool = Pool::start();
    seed(&pool, 4, false);
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "stockroom.toml", &manifest(&pool.url(), ""));
    let ready = dir.path().join("ready.json");
    let cmd = py_command(
        dir.path(),
        "hold.py",
        &format!(
            r#"
import time
call("POST", "/v1/reserve", {{"items": [{{"type": "customer", "state": "active", "count": 3}}]}})
_, a = call("POST", "/v1/take", {{"test": "t_passes", "items": [{{"type": "customer", "state": "active"}}]}})
call("POST", "/v1/takes/%s/done" % a["take_id"], {{"outcome": "passed"}})
_, b = call("POST", "/v1/take", {{"test": "t_running", "items": [{{"type": "customer", "state": "active"}}]}})
json.dump({{"passed": a["datasets"][0]["id"], "open": b["datasets"][0]["id"]}}, open({:?} + ".tmp", "w"))
os.rename({:?} + ".tmp", {:?})
time.sleep(120)
"#,
            ready.to_str().expect("utf8"),
            ready.to_str().expect("utf8"),
            ready.to_str().expect("utf8"),
        ),
    );
    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let child = spawn_run(dir.path(), &[], &args);
    assert!(wait_for_file(&ready, WAIT_CAP), "the command never took");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let done = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&done.stderr).into_owned();
    assert_eq!(done.status.code(), Some(143), "{err}");
    let ids = read_json(&ready);
    assert_eq!(
        dataset(&pool, ids["passed"].as_str().expect("id"))["status"],
        "consumed"
    );
    let open = dataset(&pool, ids["open"].as_str().expect("id"));
    assert_eq!(open["status"], "quarantined", "{open}");
    let last = open["history"]
        .as_array()
        .and_then(|h| h.last())
        .expect("history");
    assert!(
        last["reason"]
            .as_str()
            .is_some_and(|r| r.contains("cancelled") && r.contains("t_running")),
        "{last}"
    );
    let by_status = statuses(&pool);
    assert_eq!(
        by_status.get("ready"),
        Some(&2),
        "{by_status:?}: the reserved one never taken and the one never reserved"
    );
    assert!(active_leases(&pool).is_empty());
}

#[test]
fn the_pool_killed_mid_run_the_reserve_still_serves_and_all_is_settled_after() {
    let mut pool = Pool::start();
    seed(&pool, 4, false);
    let relay = Relay::start(&pool.addr);
    let dir = tempfile::tempdir().expect("tempdir");
    // A 6 s TTL heartbeats every 2 s: the outage is noticed quickly, and the
    // restarted pool is back long before the leases run out.
    write(
        dir.path(),
        "stockroom.toml",
        &manifest(&relay.url(), "lease_ttl = \"6s\""),
    );
    let step = |name: &str| dir.path().join(name);
    let (reserved, down, taken, back) =
        (step("reserved"), step("down"), step("taken"), step("back"));
    let cmd = py_command(
        dir.path(),
        "outage.py",
        &format!(
            r#"
import time
def wait(path):
    while not os.path.exists(path): time.sleep(0.02)
def mark(path, value):
    json.dump(value, open(path + ".tmp", "w")); os.rename(path + ".tmp", path)
mark({reserved:?}, call("POST", "/v1/reserve", {{"items": [{{"type": "customer", "state": "active", "count": 2}}]}}))
wait({down:?})
a = call("POST", "/v1/take", {{"test": "t_during_outage", "items": [{{"type": "customer", "state": "active"}}]}})
b = call("POST", "/v1/take", {{"test": "t_needs_pool", "items": [{{"type": "job", "state": "slot"}}]}})
mark({taken:?}, {{"reserve": a, "pool": b}})
wait({back:?})
print(call("POST", "/v1/takes/%s/done" % a[1]["take_id"], {{"outcome": "passed"}}))
"#,
            reserved = reserved.to_str().expect("utf8"),
            down = down.to_str().expect("utf8"),
            taken = taken.to_str().expect("utf8"),
            back = back.to_str().expect("utf8"),
        ),
    );
    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let mut child = spawn_run(dir.path(), &[("STOCKROOM_RETRY_FOR", "1s")], &args);
    let mut stderr = StderrLines::read(child.stderr.take().expect("piped stderr"));
    assert!(wait_for_file(&reserved, WAIT_CAP), "no reserve");
    relay.cut();
    pool.kill();
    std::fs::write(&down, "").expect("down");
    assert!(
        wait_for_file(&taken, WAIT_CAP),
        "no takes during the outage"
    );
    let during = read_json(&taken);
    assert_eq!(
        during["reserve"][0], 200,
        "the reserve serves without the pool: {during}"
    );
    assert_eq!(during["pool"][0], 503, "{during}");
    assert_eq!(
        during["pool"][1]["type"], "https://stockroom.dev/problems/unavailable",
        "{during}"
    );
    stderr.wait_for(WAIT_CAP, |l| l.contains("agent: failed to heartbeat"));
    pool.restart();
    relay.point_to(&pool.addr);
    stderr.wait_for(WAIT_CAP, |l| {
        l.contains("agent: the pool answers heartbeats again")
    });
    std::fs::write(&back, "").expect("back");
    let out = child.wait_with_output().expect("wait");
    let err = stderr.all();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("LEASE LOST"), "{err}");
    let taken_id = during["reserve"][1]["datasets"][0]["id"]
        .as_str()
        .expect("id");
    assert_eq!(dataset(&pool, taken_id)["status"], "consumed");
    assert_eq!(
        statuses(&pool).get("ready"),
        Some(&3),
        "{:?}",
        statuses(&pool)
    );
    assert!(active_leases(&pool).is_empty());
}

// ---------------------------------------------------------------- stockroom agent

#[test]
fn stockroom_agent_writes_its_ready_file_and_settles_when_stdin_closes() {
    let pool = Pool::start();
    seed(&pool, 3, false);
    let dir = tempfile::tempdir().expect("tempdir");
    let ready = dir.path().join("agent-ready.json");
    let mut child: Child = stockroom(dir.path())
        .args(["agent", "--ready-file"])
        .arg(&ready)
        .env("STOCKROOM_POOL", pool.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stockroom agent");
    assert!(wait_for_file(&ready, WAIT_CAP), "no ready file");
    let mode = std::fs::metadata(&ready)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let info = read_json(&ready);
    let url = info["url"].as_str().expect("url");
    let token = info["token"].as_str().expect("token");
    let addr = url.trim_start_matches("http://");
    let (status, reserved) = http(
        addr,
        "POST",
        "/v1/reserve",
        Some(&json!({"items": [{"type": "customer", "state": "active", "count": 2}]})),
        Some(token),
    );
    assert_eq!(status, 200, "{reserved}");
    let (status, take) = http(
        addr,
        "POST",
        "/v1/take",
        Some(&json!({"test": "laptop", "items": [{"type": "customer", "state": "active"}]})),
        Some(token),
    );
    assert_eq!(status, 200, "{take}");
    let (status, _) = http(addr, "GET", "/v1/takes", None, None);
    assert_eq!(status, 401);
    // The plugin "dies": its end of the pipe closes.
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.flush().expect("flush");
    drop(stdin);
    let started = Instant::now();
    let out = wait_for("the agent to exit", WAIT_CAP, || {
        child.try_wait().expect("try_wait")
    });
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("stderr");
    assert_eq!(out.code(), Some(0), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!ready.exists(), "the ready file goes with the agent");
    assert!(!err.contains(token), "{err}");
    let id = take["datasets"][0]["id"].as_str().expect("id");
    let taken = dataset(&pool, id);
    assert_eq!(
        taken["status"], "quarantined",
        "not done → cancelled: {taken}"
    );
    assert_eq!(statuses(&pool).get("ready"), Some(&2));
    assert!(active_leases(&pool).is_empty());
}

#[test]
fn stockroom_agent_ends_on_sigterm_without_a_ready_file_it_prints_exports() {
    let pool = Pool::start();
    seed(&pool, 1, false);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child: Child = Command::new(stockroom_e2e::stockroom_bin())
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("STOCKROOM_POOL", pool.url())
        .args(["agent", "--ignore-stdin"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut lines = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).expect("line");
        lines.push(line.trim().to_string());
    }
    assert!(
        lines[0].starts_with("export STOCKROOM_AGENT_URL=http://127.0.0.1:"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("export STOCKROOM_AGENT_TOKEN="),
        "{lines:?}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
}

// ---------------------------------------------------------------- heartbeats

#[test]
fn one_batch_heartbeat_per_interval_keeps_every_lease_of_the_agent_alive() {
    let pool = Pool::start();
    seed(&pool, 12, false);
    // Every call of the sidecar and its agent passes the recorder.
    let recorder = Recorder::start(&pool.addr);
    let dir = tempfile::tempdir().expect("tempdir");
    // A 3 s TTL gives a 1 s heartbeat interval, for the job's lease and
    // for each of the agent's.
    write(
        dir.path(),
        "stockroom.toml",
        &manifest(&recorder.url(), "lease_ttl = \"3s\""),
    );
    let (held, go) = (dir.path().join("held.json"), dir.path().join("go"));
    // One reserve lease (DE) and four takes leased one by one (US, not in
    // the reserve): five leases of the agent, none done until the end.
    let cmd = py_command(
        dir.path(),
        "hold_many.py",
        &format!(
            r#"
import time
s, r = call("POST", "/v1/reserve", {{"items": [{{"type": "customer", "state": "active", "where": {{"country": "DE"}}, "count": 2}}]}})
assert s == 200, r
for i in range(4):
    s, a = call("POST", "/v1/take", {{"test": "t%d" % i, "items": [{{"type": "customer", "state": "active", "where": {{"country": "US"}}}}]}})
    assert s == 200, a
s, listing = call("GET", "/v1/takes")
json.dump(listing, open({held:?} + ".tmp", "w")); os.rename({held:?} + ".tmp", {held:?})
while not os.path.exists({go:?}): time.sleep(0.02)
"#,
            held = held.to_str().expect("utf8"),
            go = go.to_str().expect("utf8"),
        ),
    );
    let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let child = spawn_run(dir.path(), &[], &args);
    assert!(wait_for_file(&held, WAIT_CAP), "the command never took");
    let since = Instant::now();
    let listing = read_json(&held);
    let agent_leases: BTreeSet<String> = listing["leases"]
        .as_array()
        .expect("leases")
        .iter()
        .map(|l| l["lease_id"].as_str().expect("lease_id").to_string())
        .collect();
    assert_eq!(agent_leases.len(), 5, "{listing}");
    let is_batch = |r: &Recorded| r.method == "POST" && r.path == "/api/v1/leases/heartbeat";
    // About four intervals of all five leases held.
    wait_for("4 heartbeat intervals", WAIT_CAP, || {
        let n = recorder
            .requests()
            .iter()
            .filter(|r| r.at >= since && is_batch(r))
            .count();
        (n >= 4).then_some(())
    });
    let until = Instant::now();
    std::fs::write(&go, "").expect("go");
    let done = child.wait_with_output().expect("wait");
    assert_eq!(
        done.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );

    let requests = recorder.requests();
    let window: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.at >= since && r.at <= until && is_batch(r))
        .collect();
    assert!(window.len() >= 4, "{window:?}");
    // Each call names every lease the agent holds, each with its own token.
    for r in &window {
        let body = r.json();
        let items = body["leases"].as_array().expect("leases");
        let named: BTreeSet<String> = items
            .iter()
            .map(|l| l["lease_id"].as_str().expect("lease_id").to_string())
            .collect();
        assert_eq!(named, agent_leases, "{body}");
        assert_eq!(items.len(), agent_leases.len(), "{body}");
        assert!(
            items
                .iter()
                .all(|l| l["lease_token"].as_str().is_some_and(|t| !t.is_empty())),
            "{body}"
        );
    }
    // One call per interval, not one per lease: the calls are at least an
    // interval (1 s, less a margin for the clock) apart.
    for pair in window.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(900),
            "two heartbeat calls {gap:?} apart: {window:?}"
        );
    }
    // No lease of the agent is ever heartbeaten on its own; only the job's
    // lease (held by the sidecar, not the agent) is.
    let single: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.path.ends_with("/heartbeat") && !is_batch(r))
        .collect();
    assert!(!single.is_empty(), "the job's lease was never heartbeaten");
    for r in &single {
        assert!(
            !agent_leases.iter().any(|id| r.path.contains(id.as_str())),
            "a lease of the agent heartbeaten alone: {}",
            r.path
        );
    }
    assert!(active_leases(&pool).is_empty());
}

// ---------------------------------------------------------------- another run's take

/// `stockroom agent` with a ready file: the process, its address and token.
fn spawn_agent(dir: &Path, pool: &Pool, name: &str) -> (Child, String, String) {
    let ready = dir.join(format!("{name}.json"));
    let child: Child = stockroom(dir)
        .args(["agent", "--ready-file"])
        .arg(&ready)
        .env("STOCKROOM_POOL", pool.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stockroom agent");
    assert!(wait_for_file(&ready, WAIT_CAP), "no ready file for {name}");
    let info = read_json(&ready);
    let url = info["url"].as_str().expect("url");
    (
        child,
        url.trim_start_matches("http://").to_string(),
        info["token"].as_str().expect("token").to_string(),
    )
}

fn end_agent(mut child: Child) -> std::process::Output {
    drop(child.stdin.take());
    child.wait_with_output().expect("wait")
}

#[test]
fn done_for_a_take_of_another_run_is_404_and_leaves_that_take_alone() {
    let pool = Pool::start();
    seed(&pool, 2, false);
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, first_addr, first_token) = spawn_agent(dir.path(), &pool, "first");
    let (second, second_addr, second_token) = spawn_agent(dir.path(), &pool, "second");
    let take_body = json!({"test": "t_first", "items": [{"type": "customer", "state": "active"}]});
    let (status, take) = http(
        &first_addr,
        "POST",
        "/v1/take",
        Some(&take_body),
        Some(&first_token),
    );
    assert_eq!(status, 200, "{take}");
    let take_id = take["take_id"].as_str().expect("take_id");
    let id = take["datasets"][0]["id"].as_str().expect("id");
    // The second run's agent, asked about the first run's real take.
    for outcome in ["failed", "passed"] {
        let (status, problem) = http(
            &second_addr,
            "POST",
            &format!("/v1/takes/{take_id}/done"),
            Some(&json!({"outcome": outcome})),
            Some(&second_token),
        );
        assert_eq!(status, 404, "{problem}");
        assert_eq!(
            problem["type"], "https://stockroom.dev/problems/not-found",
            "{problem}"
        );
    }
    // With the first run's id but the first agent's token: 401, not a done.
    let (status, _) = http(
        &second_addr,
        "POST",
        &format!("/v1/takes/{take_id}/done"),
        Some(&json!({"outcome": "failed"})),
        Some(&first_token),
    );
    assert_eq!(status, 401);
    let (status, listing) = http(&second_addr, "GET", "/v1/takes", None, Some(&second_token));
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["takes"], json!([]), "{listing}");
    // The first run's take is untouched: still leased, and its own done works.
    assert_eq!(dataset(&pool, id)["status"], "leased");
    let (status, done) = http(
        &first_addr,
        "POST",
        &format!("/v1/takes/{take_id}/done"),
        Some(&json!({"outcome": "passed"})),
        Some(&first_token),
    );
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["datasets"][0]["status"], "consumed", "{done}");
    for child in [first, second] {
        let out = end_agent(child);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(dataset(&pool, id)["status"], "consumed");
    assert_eq!(statuses(&pool).get("ready"), Some(&1));
    assert!(active_leases(&pool).is_empty());
}
