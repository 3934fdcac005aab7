//! The semantics every [`Store`] backend must have, as one suite.
//!
//! `pool/tests/conformance.rs` runs it against SQLite; a PostgreSQL backend
//! runs the same [`run_all`] against its own database. Each check uses its own
//! type names, so the checks can share one store. Time is passed in, so TTLs
//! are tested without sleeping. Failures panic with a message (test style).

#![allow(clippy::unwrap_used, clippy::panic)]

use serde_json::json;
use stockroom_protocol::api::{Holder, LeaseItem, NewDataset};
use stockroom_protocol::{AttrValue, Attributes, DatasetStatus, LeaseStatus, OnFailure, Outcome};

use super::{HeartbeatResult, LeaseAttempt, LeaseResult, ReleaseResult, SettleResult, Store};

const T0: i64 = 1_700_000_000_000;

fn new(type_name: &str, state: &str, attrs: &[(&str, &str)], entities: &[&str]) -> NewDataset {
    NewDataset {
        type_name: type_name.into(),
        state: state.into(),
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), AttrValue::from(*v)))
            .collect::<Attributes>(),
        data: json!({"k": "v", "password": "p"}),
        secret_fields: vec!["password".into()],
        entities: entities.iter().map(|e| e.to_string()).collect(),
        reusable: false,
    }
}

fn item(name: &str, type_name: &str, state: &str, count: u32) -> LeaseItem {
    LeaseItem {
        name: name.into(),
        type_name: type_name.into(),
        state: state.into(),
        where_: Attributes::new(),
        count,
        on_failure: OnFailure::Quarantine,
    }
}

fn attempt(items: Vec<LeaseItem>, now_ms: i64) -> LeaseAttempt {
    LeaseAttempt {
        holder: Holder {
            job: Some("conformance".into()),
            ..Holder::default()
        },
        items,
        ttl_ms: 60_000,
        idempotency_key: None,
        now_ms,
    }
}

async fn granted(store: &dyn Store, a: LeaseAttempt) -> stockroom_protocol::api::LeaseGranted {
    match store.lease(a).await.unwrap() {
        LeaseResult::Granted(g) => g,
        other => panic!("expected a new lease, got {other:?}"),
    }
}

async fn status_of(store: &dyn Store, id: &str) -> DatasetStatus {
    store
        .get_dataset(id.to_string())
        .await
        .unwrap()
        .unwrap()
        .status
}

/// Runs every check.
pub async fn run_all(store: &dyn Store) {
    all_or_nothing(store).await;
    entity_isolation(store).await;
    release_outcomes(store).await;
    heartbeat_and_expiry(store).await;
    idempotency(store).await;
    where_filters(store).await;
    discard_and_recycle(store).await;
}

/// A multi-item lease takes every item or nothing.
pub async fn all_or_nothing(store: &dyn Store) {
    store
        .register(
            vec![new("c_aon", "a", &[], &[]), new("c_aon", "b", &[], &[])],
            "t".into(),
            T0,
        )
        .await
        .unwrap();
    let r = store
        .lease(attempt(
            vec![item("x", "c_aon", "a", 1), item("y", "c_aon", "b", 2)],
            T0,
        ))
        .await
        .unwrap();
    let LeaseResult::NoStock(short) = r else {
        panic!("expected no stock, got {r:?}")
    };
    assert_eq!(short.len(), 1);
    assert_eq!(
        (short[0].name.as_str(), short[0].wanted, short[0].ready),
        ("y", 2, 1)
    );
    let table = store.stock().await.unwrap();
    assert_eq!(
        table[&("c_aon".to_string(), "a".to_string())].ready,
        1,
        "nothing may stay held"
    );
    let g = granted(
        store,
        attempt(
            vec![item("x", "c_aon", "a", 1), item("y", "c_aon", "b", 1)],
            T0,
        ),
    )
    .await;
    assert_eq!(g.datasets.len(), 2);
    assert_eq!(
        g.datasets[0].dataset.data["password"], "p",
        "the holder gets real data"
    );
    assert!(g.lease_id.starts_with("lease_") && g.lease_id.len() >= 6 + 32);
    let view = store.get_lease(g.lease_id.clone()).await.unwrap().unwrap();
    assert_eq!(view.status, LeaseStatus::Active);
    assert_eq!(
        status_of(store, &g.datasets[0].dataset.id).await,
        DatasetStatus::Leased
    );
}

/// No entity is held by two active leases; release frees it.
pub async fn entity_isolation(store: &dyn Store) {
    store
        .register(
            vec![
                new("c_ent", "s", &[], &["customer:1"]),
                new("c_ent", "s", &[], &["customer:1", "order:9"]),
            ],
            "t".into(),
            T0,
        )
        .await
        .unwrap();
    let g = granted(store, attempt(vec![item("x", "c_ent", "s", 1)], T0)).await;
    let r = store
        .lease(attempt(vec![item("x", "c_ent", "s", 1)], T0))
        .await
        .unwrap();
    assert!(
        matches!(r, LeaseResult::NoStock(_)),
        "the second dataset shares customer:1: {r:?}"
    );
    let two = store
        .lease(attempt(vec![item("x", "c_ent", "s", 2)], T0))
        .await
        .unwrap();
    assert!(matches!(two, LeaseResult::NoStock(_)));
    store
        .release(g.lease_id, Outcome::Passed, None, None, T0)
        .await
        .unwrap();
    let g2 = granted(store, attempt(vec![item("x", "c_ent", "s", 1)], T0)).await;
    assert!(
        g2.datasets[0]
            .dataset
            .entities
            .contains(&"order:9".to_string())
    );
}

/// Outcomes and per-item `on_failure`, reusable datasets, idempotent release.
pub async fn release_outcomes(store: &dyn Store) {
    let mut reusable = new("c_rel", "r", &[], &[]);
    reusable.reusable = true;
    store
        .register(
            vec![
                new("c_rel", "p", &[], &[]),
                new("c_rel", "q", &[], &[]),
                new("c_rel", "k", &[], &[]),
                reusable,
            ],
            "t".into(),
            T0,
        )
        .await
        .unwrap();
    let mut keep = item("k", "c_rel", "k", 1);
    keep.on_failure = OnFailure::Release;
    let g = granted(store, attempt(vec![item("q", "c_rel", "q", 1), keep], T0)).await;
    let ReleaseResult::Released(answer) = store
        .release(
            g.lease_id.clone(),
            Outcome::Failed,
            Some("red".into()),
            None,
            T0,
        )
        .await
        .unwrap()
    else {
        panic!("expected a release")
    };
    assert_eq!(answer.datasets[0].status, DatasetStatus::Quarantined);
    assert_eq!(answer.datasets[1].status, DatasetStatus::Consumed);
    let again = store
        .release(g.lease_id.clone(), Outcome::Passed, None, None, T0 + 5)
        .await
        .unwrap();
    assert_eq!(
        again,
        ReleaseResult::AlreadyReleased(answer),
        "release is idempotent"
    );
    assert_eq!(
        store
            .get_lease(g.lease_id.clone())
            .await
            .unwrap()
            .unwrap()
            .status,
        LeaseStatus::Released
    );

    let g = granted(
        store,
        attempt(
            vec![item("p", "c_rel", "p", 1), item("r", "c_rel", "r", 1)],
            T0,
        ),
    )
    .await;
    store
        .release(g.lease_id, Outcome::Passed, None, None, T0)
        .await
        .unwrap();
    assert_eq!(
        status_of(store, &g.datasets[0].dataset.id).await,
        DatasetStatus::Consumed
    );
    assert_eq!(
        status_of(store, &g.datasets[1].dataset.id).await,
        DatasetStatus::Ready
    );
    let r = store
        .lease(attempt(vec![item("p", "c_rel", "p", 1)], T0))
        .await
        .unwrap();
    assert!(
        matches!(r, LeaseResult::NoStock(_)),
        "a consumed dataset is never handed out again"
    );
    let g = granted(store, attempt(vec![item("r", "c_rel", "r", 1)], T0)).await;
    store
        .release(g.lease_id, Outcome::Cancelled, None, None, T0)
        .await
        .unwrap();
    assert_eq!(
        status_of(store, &g.datasets[0].dataset.id).await,
        DatasetStatus::Quarantined
    );
    let hist = store
        .history(g.datasets[0].dataset.id.clone())
        .await
        .unwrap();
    let tos: Vec<_> = hist.iter().map(|h| h.to).collect();
    assert_eq!(
        tos,
        vec![
            DatasetStatus::Ready,
            DatasetStatus::Leased,
            DatasetStatus::Ready,
            DatasetStatus::Leased,
            DatasetStatus::Quarantined
        ]
    );
    assert!(hist[1].lease_id.is_some() && hist[1].holder.is_some());
}

/// Heartbeats extend; an overdue lease is expired and its datasets quarantined.
pub async fn heartbeat_and_expiry(store: &dyn Store) {
    store
        .register(
            vec![new("c_hb", "s", &[], &["e:1"]), new("c_hb", "s", &[], &[])],
            "t".into(),
            T0,
        )
        .await
        .unwrap();
    let g = granted(store, attempt(vec![item("a", "c_hb", "s", 1)], T0)).await;
    let hb = store
        .heartbeat(g.lease_id.clone(), None, T0 + 50_000)
        .await
        .unwrap();
    assert_eq!(
        hb,
        HeartbeatResult::Extended {
            expires_at_ms: T0 + 110_000,
            ttl_ms: 60_000
        }
    );
    assert!(
        store
            .expire_due(T0 + 100_000, 100)
            .await
            .unwrap()
            .iter()
            .all(|e| e.lease_id != g.lease_id)
    );
    let expired = store.expire_due(T0 + 110_000, 100).await.unwrap();
    assert!(expired.iter().any(|e| e.lease_id == g.lease_id));
    assert_eq!(
        store
            .heartbeat(g.lease_id.clone(), None, T0 + 110_001)
            .await
            .unwrap(),
        HeartbeatResult::Gone(LeaseStatus::Expired)
    );
    assert_eq!(
        store
            .release(
                g.lease_id.clone(),
                Outcome::Passed,
                None,
                None,
                T0 + 110_002
            )
            .await
            .unwrap(),
        ReleaseResult::Expired
    );
    let id = g.datasets[0].dataset.id.clone();
    let view = store.get_dataset(id).await.unwrap().unwrap();
    assert_eq!(view.status, DatasetStatus::Quarantined);
    assert_eq!(
        view.history.last().unwrap().reason,
        "lease expired without heartbeat"
    );
    // A heartbeat that finds its lease overdue expires it on the spot.
    let g = granted(store, attempt(vec![item("a", "c_hb", "s", 1)], T0)).await;
    assert_eq!(
        store
            .heartbeat(g.lease_id.clone(), None, T0 + 60_000)
            .await
            .unwrap(),
        HeartbeatResult::Gone(LeaseStatus::Expired)
    );
    assert_eq!(
        store
            .heartbeat("lease_nope".into(), None, T0)
            .await
            .unwrap(),
        HeartbeatResult::NotFound
    );
}

/// The same idempotency key while active gives the same lease; after release, a new one.
pub async fn idempotency(store: &dyn Store) {
    store
        .register(
            vec![new("c_idem", "s", &[], &[]), new("c_idem", "s", &[], &[])],
            "t".into(),
            T0,
        )
        .await
        .unwrap();
    let mut a = attempt(vec![item("a", "c_idem", "s", 1)], T0);
    a.idempotency_key = Some("k1".into());
    let g = granted(store, a.clone()).await;
    match store.lease(a.clone()).await.unwrap() {
        LeaseResult::Existing(same) => assert_eq!(same.lease_id, g.lease_id),
        other => panic!("expected the same lease, got {other:?}"),
    }
    store
        .release(g.lease_id.clone(), Outcome::Passed, None, None, T0)
        .await
        .unwrap();
    let g2 = granted(store, a).await;
    assert_ne!(g2.lease_id, g.lease_id);
}

/// `where` filters match attributes exactly.
pub async fn where_filters(store: &dyn Store) {
    store
        .register(
            vec![
                new("c_where", "s", &[("country", "DE"), ("vip", "true")], &[]),
                new("c_where", "s", &[("country", "US")], &[]),
            ],
            "t".into(),
            T0,
        )
        .await
        .unwrap();
    let mut it = item("a", "c_where", "s", 1);
    it.where_.insert("country".into(), "US".into());
    let g = granted(store, attempt(vec![it.clone()], T0)).await;
    assert_eq!(g.datasets[0].dataset.attributes["country"].as_str(), "US");
    assert!(matches!(
        store.lease(attempt(vec![it], T0)).await.unwrap(),
        LeaseResult::NoStock(_)
    ));
    let mut it = item("a", "c_where", "s", 1);
    it.where_.insert("country".into(), "DE".into());
    it.where_.insert("vip".into(), "false".into());
    assert!(matches!(
        store.lease(attempt(vec![it.clone()], T0)).await.unwrap(),
        LeaseResult::NoStock(_)
    ));
    it.where_.insert("vip".into(), "true".into());
    granted(store, attempt(vec![it], T0)).await;
}

/// Admin settles quarantined datasets; wrong statuses are refused.
pub async fn discard_and_recycle(store: &dyn Store) {
    let ds = store
        .register(
            vec![new("c_adm", "s", &[], &[]), new("c_adm", "s", &[], &[])],
            "t".into(),
            T0,
        )
        .await
        .unwrap();
    let g = granted(store, attempt(vec![item("a", "c_adm", "s", 2)], T0)).await;
    assert!(matches!(
        store
            .recycle(ds[0].dataset.id.clone(), "admin".into(), T0)
            .await
            .unwrap(),
        SettleResult::WrongStatus(DatasetStatus::Leased)
    ));
    store
        .release(g.lease_id, Outcome::Failed, None, None, T0)
        .await
        .unwrap();
    let SettleResult::Done(v) = store
        .recycle(ds[0].dataset.id.clone(), "admin".into(), T0)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(v.status, DatasetStatus::Ready);
    let SettleResult::Done(v) = store
        .discard(ds[1].dataset.id.clone(), "admin".into(), T0)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(v.status, DatasetStatus::Discarded);
    assert_eq!(v.history.last().unwrap().holder.as_deref(), Some("admin"));
    assert!(matches!(
        store
            .discard("ds_nope".into(), "admin".into(), T0)
            .await
            .unwrap(),
        SettleResult::NotFound
    ));
    let table = store.stock().await.unwrap();
    let c = &table[&("c_adm".to_string(), "s".to_string())];
    assert_eq!(
        (c.ready, c.discarded, c.quarantined, c.leased),
        (1, 1, 0, 0)
    );
}
