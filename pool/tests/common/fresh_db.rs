//! A fresh PostgreSQL database per test, dropped afterwards (also when the
//! test panics). STOCKROOM_TEST_POSTGRES names an admin URL. Without it a
//! test fails under CI (`CI=true`: a PostgreSQL test that did not run must
//! not pass there) and is skipped elsewhere, with a line saying so.

const SET_IT: &str = "set STOCKROOM_TEST_POSTGRES=postgres://USER@HOST:PORT/DB (an admin URL; .ci/run uses postgres://postgres@127.0.0.1:5432/test)";

/// CI providers set `CI=true`; so does .ci/run.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The admin URL to run `test` against, `None` to skip it (outside CI only).
pub fn admin_url(test: &str, configured: Option<String>, in_ci: bool) -> Option<String> {
    match configured.filter(|url| !url.is_empty()) {
        Some(url) => Some(url),
        None if in_ci => panic!("{test}: CI=true but STOCKROOM_TEST_POSTGRES is not set: {SET_IT}"),
        None => {
            println!("{test}: not run: {SET_IT}");
            None
        }
    }
}

/// A database made for one test.
pub struct FreshDb {
    admin: String,
    pub name: String,
    pub url: String,
}

impl FreshDb {
    pub async fn create(test: &str) -> Option<FreshDb> {
        let admin = admin_url(test, std::env::var("STOCKROOM_TEST_POSTGRES").ok(), in_ci())?;
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).unwrap();
        let name = format!(
            "stockroom_test_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let admin_client = Self::connect(&admin).await;
        admin_client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Some(FreshDb { admin, name, url })
    }

    pub async fn connect(url: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to STOCKROOM_TEST_POSTGRES");
        tokio::spawn(conn);
        client
    }

    /// Terminates every backend connected to the test database (the pools' too).
    pub async fn terminate_all_backends(&self) -> u64 {
        let c = Self::connect(&self.admin).await;
        let rows = c
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .await
            .unwrap();
        rows.len() as u64
    }

    pub async fn drop_db(self) {
        let c = Self::connect(&self.admin).await;
        c.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await
        .unwrap();
    }
}

/// A test that panics still drops its database.
impl Drop for FreshDb {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}
