//! `stockroom check` end to end, as docs/sidecar.md ("`stockroom check`" and
//! "Exit codes") describes it: the real binary on manifests written here,
//! offline, with its exact exit codes and the lines users read.
//!
//! - a valid manifest exits 0 and says so;
//! - shard lists that need more shards than `--shard-total` (or
//!   `STOCKROOM_SHARD_TOTAL`) exit 65, positioned, as `run` would;
//! - without a shard total, lists that need more than the default single
//!   shard still exit 0 but print the documented warning, and `run` on the
//!   same manifest exits 65 as the warning says;
//! - a bad manifest exits 65 with `file:line:column` for each problem the
//!   manifest's checks find, or for the one TOML itself refuses.

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use stockroom_e2e::stockroom;

/// The manifest of docs/sidecar.md's example: `orders` has `shards = [0, 2]`
/// (line 13, the list at column 10), so it needs 3 shards.
const SPLIT: &str = r#"version = 1

[[dataset]]
name = "buyer"
type = "customer"
state = "active"

[[dataset]]
name = "orders"
type = "order"
state = "placed"
count = 2
shards = [0, 2]
"#;

/// The documented warning for [`SPLIT`] checked without a shard total.
const SPLIT_WARNING: &str = "WARN stockroom.toml: dataset \"orders\" lists shard 2, but no shard \
    total is given (--shard-total, STOCKROOM_SHARD_TOTAL or the CI's shard variables), so \
    `stockroom run` would use 1 shard and exit 65; pass --shard-total 3 or more to check for a \
    split job";

const VALID_LINE: &str = "stockroom: stockroom.toml is valid (2 dataset entries, checked offline)";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The stderr lines, trimmed (the log level is padded: ` WARN`).
fn lines(out: &Output) -> Vec<String> {
    text(&out.stderr)
        .lines()
        .map(|l| l.trim().to_string())
        .collect()
}

fn check(dir: &Path, args: &[&str]) -> Output {
    stockroom(dir)
        .args(["check", "--offline", "--manifest", "stockroom.toml"])
        .args(args)
        .output()
        .expect("run stockroom check")
}

fn manifest_dir(body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("stockroom.toml"), body).expect("write manifest");
    dir
}

#[test]
fn a_valid_manifest_exits_0_and_says_so() {
    let dir = manifest_dir(&SPLIT.replace("shards = [0, 2]", "shards = [0]"));
    let out = check(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        lines(&out),
        [VALID_LINE],
        "a manifest that fits 1 shard warns of nothing"
    );

    // The split manifest with enough shards: valid, no warning.
    let dir = manifest_dir(SPLIT);
    let out = check(dir.path(), &["--shard-total", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(lines(&out), [VALID_LINE]);

    // --json: the same verdict as machine output on stdout.
    let out = check(dir.path(), &["--shard-total", "3", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("check --json prints JSON");
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["checked"], "offline", "{v}");
    assert_eq!(v["datasets"], serde_json::json!(["buyer", "orders"]), "{v}");
    assert_eq!(v["warnings"], serde_json::json!([]), "{v}");
}

#[test]
fn shard_lists_past_the_shard_total_exit_65_positioned() {
    let dir = manifest_dir(SPLIT);
    let expected = "stockroom.toml:13:10: dataset \"orders\" lists shard 2, but this job has 2 \
                    shard(s) (indexes 0 to 1); fix `shards` or the shard total";
    let out = check(dir.path(), &["--shard-total", "2"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{err}");
    assert!(lines(&out).iter().any(|l| l == expected), "{err}");
    assert!(!err.contains("is valid"), "{err}");

    // The variables are the same setting; as for `run`, they come in a pair.
    let out = stockroom(dir.path())
        .args(["check", "--offline", "--manifest", "stockroom.toml"])
        .env("STOCKROOM_SHARD_INDEX", "0")
        .env("STOCKROOM_SHARD_TOTAL", "2")
        .output()
        .expect("run stockroom check");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{err}");
    assert!(lines(&out).iter().any(|l| l == expected), "{err}");
    let out = stockroom(dir.path())
        .args(["check", "--offline", "--manifest", "stockroom.toml"])
        .env("STOCKROOM_SHARD_TOTAL", "2")
        .output()
        .expect("run stockroom check");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("STOCKROOM_SHARD_TOTAL is set but STOCKROOM_SHARD_INDEX is not"),
        "{err}"
    );

    // A shard index at or past the total is a usage error.
    let out = check(dir.path(), &["--shard-index", "3", "--shard-total", "3"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("--shard-index 3 must be below --shard-total 3"),
        "{err}"
    );
}

#[test]
fn without_a_shard_total_a_split_manifest_warns_and_exits_0_and_run_exits_65() {
    let dir = manifest_dir(SPLIT);
    let out = check(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Exactly the two lines docs/sidecar.md shows.
    assert_eq!(lines(&out), [SPLIT_WARNING, VALID_LINE]);

    let out = check(dir.path(), &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("check --json prints JSON");
    let warning = v["warnings"][0].as_str().unwrap_or_default();
    assert_eq!(warning, SPLIT_WARNING.trim_start_matches("WARN "), "{v}");

    // What the warning says `run` does: exit 65 before any network call (the
    // pool's port is closed; reaching for it would be 69).
    let out = stockroom(dir.path())
        .args([
            "run",
            "--manifest",
            "stockroom.toml",
            "--pool",
            "http://127.0.0.1:9",
            "--retry-for",
            "1s",
            "--",
            "true",
        ])
        .output()
        .expect("run stockroom run");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{err}");
    assert!(
        err.contains(
            "stockroom.toml:13:10: dataset \"orders\" lists shard 2, but this job has 1 shard(s)"
        ),
        "{err}"
    );
}

/// The positioned lines of a failed check: `file:line:column: what`.
fn positioned(out: &Output) -> Vec<String> {
    lines(out)
        .into_iter()
        .filter(|l| l.starts_with("stockroom.toml:"))
        .collect()
}

#[test]
fn a_bad_manifest_exits_65_with_file_line_column() {
    // Three problems the manifest's own checks find: each on its own line.
    let dir = manifest_dir(
        "version = 1\n[[dataset]]\nname = \"buyer\"\ntype = \"customer\"\nstate = \"active\"\ncount = 0\n\n\
         [[dataset]]\nname = \"buyer\"\ntype = \"customer\"\nstate = \"active\"\nshards = [1, 1]\n",
    );
    let out = check(dir.path(), &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{err}");
    assert_eq!(
        positioned(&out),
        [
            "stockroom.toml:6:9: count must be between 1 and 1000, found 0",
            "stockroom.toml:9:8: dataset name \"buyer\" is used twice (first at line 3); names must be unique",
            "stockroom.toml:12:10: shard index 1 is listed twice",
        ],
        "{err}"
    );
    assert!(
        err.contains("stockroom: error: the manifest is invalid:"),
        "{err}"
    );
    assert!(!err.contains("is valid"), "{err}");

    // What TOML itself refuses ends the reading there: one position each.
    for (body, expected) in [
        (
            "version = 1\n[[dataset]]\nname = \"buyer\"\ntype = \"customer\"\nstate = \"active\"\ncolour = \"red\"\n",
            "stockroom.toml:6:1: unknown field `colour`, expected one of `name`, `type`, `state`, `where`, `count`, `shards`, `on_failure`",
        ),
        (
            "version = 1\n[[dataset]]\nname = \"buyer\"\ntype = \"customer\"\ncount = \"two\"\nstate = \"active\"\n",
            "stockroom.toml:5:9: invalid type: string \"two\", expected a whole number",
        ),
        (
            "version = 1\n[[dataset]\n",
            "stockroom.toml:2:11: unclosed array table, expected `]`",
        ),
    ] {
        let dir = manifest_dir(body);
        let out = check(dir.path(), &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(65), "{err}");
        assert_eq!(positioned(&out), [expected], "{err}");
    }
}
