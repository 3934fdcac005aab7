//! The shared store conformance suite against the SQLite backend, on a real file.

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
