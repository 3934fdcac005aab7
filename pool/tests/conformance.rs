//! The shared store conformance suite against every backend: SQLite on a real
//! file always; PostgreSQL in a fresh database (created, then dropped) when
//! STOCKROOM_TEST_POSTGRES names an admin URL.
#![allow(clippy::unwrap_used)]

mod common;

use common::FreshDb;
use stockroom_pool::store::{conformance, sqlite::SqliteStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_store_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("nested/pool.db")).unwrap();
    conformance::run_all(&store).await;
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
    use stockroom_pool::store::Store;
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
async fn postgres_passes_the_store_conformance_suite() {
    let Some(db) = FreshDb::create("postgres_passes_the_store_conformance_suite").await else {
        return;
    };
    {
        let store = stockroom_pool::store::postgres::PostgresStore::open(&db.url)
            .await
            .unwrap();
        conformance::run_all(&store).await;
    }
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrations_are_safe_when_replicas_start_together() {
    let Some(db) =
        FreshDb::create("postgres_migrations_are_safe_when_replicas_start_together").await
    else {
        return;
    };
    {
        use stockroom_pool::store::postgres::PostgresStore;
        let (a, b, c) = tokio::join!(
            PostgresStore::open(&db.url),
            PostgresStore::open(&db.url),
            PostgresStore::open(&db.url)
        );
        let (a, b, _c) = (a.unwrap(), b.unwrap(), c.unwrap());
        conformance::all_or_nothing(&a).await;
        use stockroom_pool::store::Store;
        let table = b.stock().await.unwrap();
        assert_eq!(table[&("c_aon".to_string(), "a".to_string())].leased, 1);
    }
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_generation_cap_holds_across_store_instances() {
    let Some(db) = FreshDb::create("postgres_generation_cap_holds_across_store_instances").await
    else {
        return;
    };
    {
        use std::sync::Arc;
        use stockroom_pool::store::postgres::PostgresStore;
        use stockroom_pool::store::{NewGeneration, Store};
        let mut stores = Vec::new();
        for _ in 0..3 {
            stores.push(Arc::new(PostgresStore::open(&db.url).await.unwrap()));
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
