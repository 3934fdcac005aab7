use super::*;

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::parse(Path::new("stockroom.toml"), text)
}

/// Parses `text`, expects exactly one error, returns "line:col: message".
fn one_error(text: &str) -> String {
    let err = parse(text).expect_err("manifest should be rejected");
    let errors = err.errors();
    assert_eq!(errors.len(), 1, "expected one error, got: {err}");
    let e = &errors[0];
    assert_eq!(e.position.file, Path::new("stockroom.toml"));
    format!("{}:{}: {}", e.position.line, e.position.column, e.message)
}

const FULL: &str = r#"version = 1
pool = "http://127.0.0.1:7878/"
lease_ttl = "120s"
acquire_timeout = "5m"

[inject]
env_prefix = "TD_"
json_file = "datasets.json"

[[dataset]]
name = "buyer"
type = "customer"
state = "active-with-payment"
where = { country = "DE", vip = true }
count = 1
shards = "all"
on_failure = "quarantine"

[[dataset]]
name = "orders"
type = "order"
state = "placed"
count = 3
shards = [0, 2]
on_failure = "release"
"#;

#[test]
fn full_manifest_parses_with_every_key() {
    let m = parse(FULL).unwrap();
    assert_eq!(m.pool.as_deref(), Some("http://127.0.0.1:7878"));
    assert_eq!(m.lease_ttl.unwrap().0.as_secs(), 120);
    assert_eq!(m.acquire_timeout.unwrap().0.as_secs(), 300);
    assert_eq!(m.inject.env_prefix, "TD_");
    assert_eq!(
        m.inject.json_file.as_deref(),
        Some(Path::new("datasets.json"))
    );
    let buyer = &m.datasets[0];
    assert_eq!(buyer.where_["country"].as_str(), "DE");
    assert_eq!(buyer.where_["vip"].as_str(), "true");
    assert_eq!(buyer.shards, Shards::All);
    assert_eq!(buyer.on_failure, OnFailure::Quarantine);
    assert_eq!(
        (buyer.state_position.line, buyer.state_position.column),
        (13, 9)
    );
    assert_eq!(buyer.where_positions["country"].line, 14);
    let orders = &m.datasets[1];
    assert_eq!(orders.count, 3);
    assert_eq!(orders.on_failure, OnFailure::Release);
    assert_eq!(orders.shards, Shards::Only([0, 2].into()));
    assert_eq!(m.datasets_for_shard(1).len(), 1);
    assert_eq!(m.datasets_for_shard(2).len(), 2);
    let item = orders.to_lease_item();
    assert_eq!((item.count, item.type_name.as_str()), (3, "order"));
}

#[test]
fn minimal_manifest_gets_the_defaults() {
    let m = parse("version = 1\n[[dataset]]\nname = \"a\"\ntype = \"t\"\nstate = \"s\"\n").unwrap();
    assert_eq!(m.inject.env_prefix, "STOCKROOM_");
    assert_eq!(m.inject.json_file, None);
    assert_eq!(m.pool, None);
    let d = &m.datasets[0];
    assert_eq!(
        (d.count, &d.shards, d.on_failure),
        (1, &Shards::All, OnFailure::Quarantine)
    );
}

#[test]
fn unknown_keys_are_errors_at_their_position() {
    let e = one_error("version = 1\nlease_tl = \"5s\"\n");
    assert!(e.starts_with("2:1: "), "{e}");
    assert!(e.contains("unknown field `lease_tl`"), "{e}");
    assert!(
        e.contains("lease_ttl"),
        "should list the expected keys: {e}"
    );

    let e = one_error(
        "version = 1\n[[dataset]]\nname = \"a\"\ntype = \"t\"\nstate = \"s\"\ncolour = 1\n",
    );
    assert!(e.starts_with("6:1: "), "{e}");
    assert!(e.contains("unknown field `colour`"), "{e}");

    let e = one_error("version = 1\n[inject]\nprefix = \"X\"\n");
    assert!(
        e.starts_with("3:1: ") && e.contains("unknown field `prefix`"),
        "{e}"
    );
}

#[test]
fn syntax_and_type_errors_are_positioned() {
    let e = one_error("version = 1\npool = \n");
    assert!(e.starts_with("2:"), "{e}");

    let e = one_error(
        "version = 1\n[[dataset]]\nname = \"a\"\ntype = \"t\"\nstate = \"s\"\ncount = \"two\"\n",
    );
    assert!(e.starts_with("6:9: "), "{e}");
    assert_eq!(
        e,
        "6:9: invalid type: string \"two\", expected a whole number"
    );

    let e = one_error(
        "version = 1\n[[dataset]]\nname = \"a\"\ntype = \"t\"\nstate = \"s\"\non_failure = \"ignore\"\n",
    );
    assert!(e.starts_with("6:14: "), "{e}");
    assert!(e.contains("quarantine") && e.contains("release"), "{e}");

    let e = one_error("version = 1\nlease_ttl = \"2 minutes\"\n");
    assert!(e.starts_with("2:13: "), "{e}");
    assert!(e.contains("\"120s\""), "{e}");

    let e = one_error(
        "version = 1\n[[dataset]]\nname = \"a\"\ntype = \"t\"\nstate = \"s\"\nshards = \"some\"\n",
    );
    assert!(
        e.starts_with("6:10: ") && e.contains("\"all\" or a list"),
        "{e}"
    );

    let e = one_error(
        "version = 1\n[[dataset]]\nname = \"a\"\ntype = \"t\"\nstate = \"s\"\nwhere = { tags = [\"x\"] }\n",
    );
    assert!(e.starts_with("6:"), "{e}");
    assert!(e.contains("string, integer or boolean"), "{e}");
}

#[test]
fn missing_required_keys_are_named() {
    let e = one_error("version = 1\n[[dataset]]\nname = \"a\"\ntype = \"t\"\n");
    assert!(e.contains("missing field `state`"), "{e}");
    assert!(e.starts_with("2:1: "), "{e}");

    let e = one_error("[[dataset]]\nname = \"a\"\ntype = \"t\"\nstate = \"s\"\n");
    assert_eq!(
        e,
        "1:1: missing `version = 1` (the manifest format version) at the top of the file"
    );

    let e = one_error("version = 1\n");
    assert!(e.starts_with("2:1: no [[dataset]] entries"), "{e}");
}

#[test]
fn semantic_rules_report_the_exact_position() {
    let base = |extra: &str| {
        format!("version = 1\n[[dataset]]\nname = \"a\"\ntype = \"t\"\nstate = \"s\"\n{extra}")
    };

    assert_eq!(
        one_error("version = 2\n[[dataset]]\nname = \"a\"\ntype = \"t\"\nstate = \"s\"\n"),
        "1:11: unsupported manifest version 2; expected `version = 1`"
    );
    let e = one_error(&base("count = 0\n"));
    assert_eq!(e, "6:9: count must be between 1 and 1000, found 0");
    let e = one_error(&base("count = 5000\n"));
    assert!(
        e.starts_with("6:9: count must be between 1 and 1000"),
        "{e}"
    );
    let e = one_error(&base("shards = []\n"));
    assert!(e.starts_with("6:10: shards is an empty list"), "{e}");
    let e = one_error(&base("shards = [0, -1]\n"));
    assert!(e.starts_with("6:10: shard index -1 is invalid"), "{e}");
    let e = one_error(&base("shards = [1, 1]\n"));
    assert_eq!(e, "6:10: shard index 1 is listed twice");
    let e = one_error(
        "version = 1\nlease_ttl = \"0s\"\n[[dataset]]\nname = \"a\"\ntype = \"t\"\nstate = \"s\"\n",
    );
    assert_eq!(e, "2:13: lease_ttl must be at least 1s, found \"0s\"");
    let e = one_error(
        "version = 1\npool = \"127.0.0.1:7878\"\n[[dataset]]\nname = \"a\"\ntype = \"t\"\nstate = \"s\"\n",
    );
    assert!(e.starts_with("2:8: expected the pool's URL"), "{e}");
    let e = one_error(
        "version = 1\n[inject]\nenv_prefix = \"9X\"\n[[dataset]]\nname = \"a\"\ntype = \"t\"\nstate = \"s\"\n",
    );
    assert!(e.starts_with("3:14: env_prefix must be"), "{e}");
}

#[test]
fn names_must_be_valid_and_unique() {
    let e = one_error("version = 1\n[[dataset]]\nname = \"Buyer\"\ntype = \"t\"\nstate = \"s\"\n");
    assert!(
        e.starts_with("3:8: dataset name \"Buyer\" is invalid"),
        "{e}"
    );
    let e = one_error("version = 1\n[[dataset]]\nname = \"1x\"\ntype = \"t\"\nstate = \"s\"\n");
    assert!(e.starts_with("3:8: "), "{e}");
    let e = one_error(
        "version = 1\n[[dataset]]\nname = \"a\"\ntype = \"t\"\nstate = \"s\"\n[[dataset]]\nname = \"a\"\ntype = \"t\"\nstate = \"s\"\n",
    );
    assert_eq!(
        e,
        "7:8: dataset name \"a\" is used twice (first at line 3); names must be unique"
    );
    let e = one_error("version = 1\n[[dataset]]\nname = \"a\"\ntype = \"T T\"\nstate = \"s\"\n");
    assert!(e.starts_with("4:8: type \"T T\" is invalid"), "{e}");
    assert!(is_valid_name("buyer_2"));
    assert!(!is_valid_name("_x") && !is_valid_name("") && !is_valid_name("a-b"));
}

#[test]
fn several_semantic_errors_are_all_reported() {
    let err = parse(
        "version = 1\n[[dataset]]\nname = \"A\"\ntype = \"t\"\nstate = \"s\"\n[[dataset]]\nname = \"b\"\ntype = \"t\"\nstate = \"s\"\ncount = 0\n",
    )
    .unwrap_err();
    let lines: Vec<String> = err.to_string().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with("stockroom.toml:3:8: "), "{err}");
    assert!(lines[1].starts_with("stockroom.toml:10:9: "), "{err}");
}

#[test]
fn shard_lists_are_checked_against_the_total_at_run_time() {
    let m = parse(FULL).unwrap();
    assert!(m.check_shard_total(3).is_ok());
    let err = m.check_shard_total(2).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "stockroom.toml:24:10: dataset \"orders\" lists shard 2, but this job has 2 shard(s)"
        ),
        "{msg}"
    );
}

#[test]
fn load_reports_an_unreadable_file() {
    let err = Manifest::load(Path::new("/nonexistent/stockroom.toml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read manifest /nonexistent/stockroom.toml: "),
        "{err}"
    );
}

const ENTRY: &str = "[[dataset]]\nname = \"a\"\ntype = \"t\"\nstate = \"s\"\n";

#[test]
fn malformed_pool_urls_are_rejected_at_their_position() {
    for bad in [
        "http://[::1",
        "http://a b",
        "http://127.0.0.1:99999",
        "http://",
        "https://user:pw@pool.example",
        "ftp://pool.example",
    ] {
        let e = one_error(&format!("version = 1\npool = \"{bad}\"\n{ENTRY}"));
        assert!(e.starts_with("2:8: expected the pool's URL"), "{bad}: {e}");
    }
    for good in [
        "http://[::1]:7878",
        "https://pool.example.com/stockroom/",
        "http://127.0.0.1:7878",
    ] {
        let m = parse(&format!("version = 1\npool = \"{good}\"\n{ENTRY}")).unwrap();
        assert_eq!(m.pool.as_deref(), Some(good.trim_end_matches('/')));
    }
    assert!(check_pool_url(":99999").is_err());
}

#[test]
fn names_that_shadow_the_sidecars_own_variables_are_rejected() {
    for (name, var) in [
        ("lease", "STOCKROOM_LEASE_ID"),
        ("datasets", "STOCKROOM_DATASETS_FILE"),
        ("shard", "STOCKROOM_SHARD_INDEX"),
        ("agent", "STOCKROOM_AGENT_URL"),
        ("state", "STOCKROOM_STATE_DIR"),
    ] {
        let e = one_error(&format!(
            "version = 1\n[[dataset]]\nname = \"{name}\"\ntype = \"t\"\nstate = \"s\"\n"
        ));
        assert!(e.starts_with("3:8: dataset name"), "{e}");
        assert!(e.contains(var), "{name}: {e}");
    }
    // With another prefix, only the prefixed variables are taken.
    let e = one_error(
        "version = 1\n[inject]\nenv_prefix = \"TD_\"\n[[dataset]]\nname = \"lease\"\ntype = \"t\"\nstate = \"s\"\n",
    );
    assert!(e.contains("TD_LEASE_ID"), "{e}");
    parse("version = 1\n[inject]\nenv_prefix = \"TD_\"\n[[dataset]]\nname = \"agent\"\ntype = \"t\"\nstate = \"s\"\n").unwrap();
    parse("version = 1\n[[dataset]]\nname = \"lease_data\"\ntype = \"t\"\nstate = \"s\"\n")
        .unwrap();
}

#[test]
fn text_that_is_not_utf8_is_positioned_at_the_first_bad_byte() {
    let mut bytes = b"version = 1\n# caf".to_vec();
    bytes.push(0xe9); // Latin-1 e-acute
    bytes.extend_from_slice(b"\n[[dataset]]\n");
    let err = Manifest::parse_bytes(Path::new("stockroom.toml"), &bytes).unwrap_err();
    let e = &err.errors()[0];
    assert_eq!((e.position.line, e.position.column), (2, 6));
    assert!(e.message.contains("not UTF-8"), "{e}");
    assert!(err.to_string().starts_with("stockroom.toml:2:6: "), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.toml");
    std::fs::write(&file, &bytes).unwrap();
    assert!(matches!(
        Manifest::load(&file),
        Err(ManifestError::Invalid(_))
    ));
}
