//! The system's CA roots are trusted without `--ca-file` (docs/sidecar.md
//! "TLS", docs/generators.md "Generators over HTTPS"): a CA made here, named
//! by `SSL_CERT_FILE` as a machine's own trust store would be (rustls'
//! native roots read that file instead of `/etc/ssl/certs`), and a TLS proxy
//! on loopback with a certificate it signed.
//!
//! - the real `stockroom` reaches an `https://` pool through it with no
//!   `--ca-file`, and is refused without `SSL_CERT_FILE` or with another CA;
//! - the real `stockroom-pool` loads the capabilities of an `https://`
//!   generator through it, and reports a certificate error without it.

use std::ffi::OsStr;
use std::time::Duration;

use serde_json::{Value, json};
use stockroom_e2e::{HangingGenerator, Pool, stockroom, wait_for};

mod tls;
use tls::{make_pki, start_tls_proxy};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_sidecar_trusts_a_ca_of_the_system_roots_without_ca_file() {
    let pool = Pool::start();
    let pki = make_pki();
    let port = start_tls_proxy(&pki, pool.addr.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("system-roots.pem");
    std::fs::write(&ca, &pki.ca_pem).expect("write CA");
    let url = format!("https://localhost:{port}");

    // `stockroom()` clears the environment: the machine's own store, which
    // does not hold this CA, is refused.
    let out = stockroom(dir.path())
        .args(["catalog", "--pool", &url])
        .output()
        .expect("run");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("does not trust"), "{err}");

    // The CA in the system roots (SSL_CERT_FILE), no --ca-file: reached.
    let out = stockroom(dir.path())
        .env("SSL_CERT_FILE", &ca)
        .args(["catalog", "--json", "--pool", &url])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let catalog: Value = serde_json::from_slice(&out.stdout).expect("catalog JSON");
    assert!(catalog.get("types").is_some(), "{catalog}");

    // A whole run (lease, heartbeat, release) the same way.
    pool.seed(
        json!({"type": "customer", "state": "active", "data": {"customer_id": "C1"},
               "entities": ["customer:C1"]}),
    );
    std::fs::write(
        dir.path().join("stockroom.toml"),
        format!(
            "version = 1\npool = \"{url}\"\nacquire_timeout = \"5s\"\n[[dataset]]\nname = \"buyer\"\ntype = \"customer\"\nstate = \"active\"\n"
        ),
    )
    .expect("manifest");
    let out = stockroom(dir.path())
        .env("SSL_CERT_FILE", &ca)
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "test \"$STOCKROOM_BUYER_ID\" != \"\"",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (_, leases) = pool.request("GET", "/api/v1/leases", None, None);
    assert_eq!(leases["leases"][0]["outcome"], "passed", "{leases}");

    // System roots that hold another CA: refused, so the file is what counts.
    let other = dir.path().join("other-roots.pem");
    std::fs::write(&other, make_pki().ca_pem).expect("write CA");
    let out = stockroom(dir.path())
        .env("SSL_CERT_FILE", &other)
        .args(["catalog", "--pool", &url])
        .output()
        .expect("run");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("does not trust"), "{err}");
}

/// The catalog's health of generator `name`, once it has one to report.
fn generator_health(pool: &Pool, name: &str, ready: impl Fn(&Value) -> bool) -> Value {
    wait_for(
        &format!("generator {name:?} in the catalog"),
        Duration::from_secs(30),
        || {
            let (_, v) = pool.request("GET", "/api/v1/catalog", None, None);
            v["generators"]
                .as_array()?
                .iter()
                .find(|g| g["name"] == name && ready(g))
                .cloned()
        },
    )
}

#[test]
fn the_pool_trusts_an_https_generator_whose_ca_is_in_the_system_roots() {
    let pki = make_pki();
    let generator = HangingGenerator::start();
    let port = start_tls_proxy(&pki, generator.addr.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("system-roots.pem");
    std::fs::write(&ca, &pki.ca_pem).expect("write CA");
    let config = format!(
        "[[generators]]\nname = \"tls\"\nurl = \"https://localhost:{port}\"\ntimeout = \"5s\"\n"
    );

    let trusting = Pool::start_with_env(
        Some(&config),
        &[
            ("SSL_CERT_FILE", Some(ca.as_os_str())),
            ("SSL_CERT_DIR", None),
        ],
    );
    let health = generator_health(&trusting, "tls", |g| g["available"] == true);
    assert!(health["last_error"].is_null(), "{health}");
    let (_, catalog) = trusting.request("GET", "/api/v1/catalog", None, None);
    let offered = catalog["types"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["type"] == "customer")
        .flat_map(|t| t["states"].as_array().cloned().unwrap_or_default())
        .any(|s| s["state"] == "active" && s["available"] == true);
    assert!(
        offered,
        "customer/active from the https generator: {catalog}"
    );

    // Without the CA in its roots the pool cannot reach the generator, and says why.
    let refusing = Pool::start_with_env(
        Some(&config),
        &[("SSL_CERT_FILE", None::<&OsStr>), ("SSL_CERT_DIR", None)],
    );
    let health = generator_health(&refusing, "tls", |g| !g["last_error"].is_null());
    assert_eq!(health["available"], false, "{health}");
    let error = health["last_error"].as_str().unwrap_or("").to_lowercase();
    assert!(error.contains("certificate"), "{health}");
}
