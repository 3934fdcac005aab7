//! The shared store conformance suite, one test per check, on every backend:
//! SQLite on a real file always; PostgreSQL in a fresh database per test
//! (created, then dropped) when STOCKROOM_TEST_POSTGRES names an admin URL.
//! Under CI (`CI=true`) a missing STOCKROOM_TEST_POSTGRES fails the
//! PostgreSQL tests instead of skipping them.
#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::sync::Arc;

use common::FreshDb;
use stockroom_pool::store::postgres::PostgresStore;
use stockroom_pool::store::sqlite::SqliteStore;
use stockroom_pool::store::{NewGeneration, Store, conformance};
use stockroom_protocol::pool_config::StoreUrl;

async fn on_sqlite<F, Fut>(_name: &str, check: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("nested/pool.db")).unwrap();
    check(Arc::new(store)).await;
}

/// A fresh database, or `None` outside CI when no server is configured.
async fn fresh_db(name: &str) -> Option<FreshDb> {
    let db = FreshDb::create(name).await;
    if db.is_none() && std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{name}: CI=true but STOCKROOM_TEST_POSTGRES is not set; the PostgreSQL tests must run"
        );
    }
    db
}

fn url(db: &FreshDb) -> StoreUrl {
    StoreUrl::parse(&db.url).unwrap()
}

async fn on_postgres<F, Fut>(name: &str, check: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = fresh_db(name).await else {
        return;
    };
    {
        let store = PostgresStore::open(&url(&db)).await.unwrap();
        check(Arc::new(store)).await;
    }
    db.drop_db().await;
}

mod sqlite {
    stockroom_pool::conformance_tests!(super::on_sqlite);
}

mod postgres {
    stockroom_pool::conformance_tests!(super::on_postgres);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_everything_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pool.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        conformance::all_or_nothing(&store).await;
    }
    let store = SqliteStore::open(&path).unwrap();
    let table = store.stock().await.unwrap();
    assert_eq!(table[&("c_aon".to_string(), "a".to_string())].leased, 1);
    assert_eq!(
        store
            .list_leases(Some(stockroom_protocol::LeaseStatus::Active), 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrations_are_safe_when_replicas_start_together() {
    let Some(db) = fresh_db("postgres_migrations_are_safe_when_replicas_start_together").await
    else {
        return;
    };
    {
        let url = url(&db);
        let (a, b, c) = tokio::join!(
            PostgresStore::open(&url),
            PostgresStore::open(&url),
            PostgresStore::open(&url)
        );
        let (a, b, _c) = (a.unwrap(), b.unwrap(), c.unwrap());
        conformance::all_or_nothing(&a).await;
        let table = b.stock().await.unwrap();
        assert_eq!(table[&("c_aon".to_string(), "a".to_string())].leased, 1);
    }
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_generation_cap_holds_across_store_instances() {
    let Some(db) = fresh_db("postgres_generation_cap_holds_across_store_instances").await else {
        return;
    };
    {
        let mut stores = Vec::new();
        for _ in 0..3 {
            stores.push(Arc::new(PostgresStore::open(&url(&db)).await.unwrap()));
        }
        let tasks: Vec<_> = (0..30)
            .map(|i| {
                let store = Arc::clone(&stores[i % 3]);
                tokio::spawn(async move {
                    store
                        .begin_generation(
                            NewGeneration {
                                type_name: "cap".into(),
                                state: "s".into(),
                                generator: "g".into(),
                                request: serde_json::json!({}),
                                reusable: false,
                                lifecycle: Vec::new(),
                                cap: Some(5),
                            },
                            1_700_000_000_000,
                        )
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut started = 0;
        for t in tasks {
            started += usize::from(t.await.unwrap().is_some());
        }
        assert_eq!(started, 5, "the cap holds across replicas");
        let table = stores[0].stock().await.unwrap();
        assert_eq!(table[&("cap".to_string(), "s".to_string())].generating, 5);
    }
    db.drop_db().await;
}
