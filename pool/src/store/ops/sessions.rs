//! Web sessions, kept in the store so that any replica serves the page.

use crate::store::StoreResult;
use crate::store::sessions::SessionRow;
use crate::store::tx::Tx;

/// The session, refreshed; `None` when unknown or idle longer than
/// `idle_ms` (idle sessions, this one included, are deleted on the way).
pub(crate) async fn get<T: Tx>(
    tx: &T,
    id_hash: &str,
    now_ms: i64,
    idle_ms: i64,
) -> StoreResult<Option<SessionRow>> {
    tx.purge_sessions(now_ms.saturating_sub(idle_ms)).await?;
    let Some(mut s) = tx.get_session(id_hash).await? else {
        return Ok(None);
    };
    tx.touch_session(id_hash, now_ms).await?;
    s.last_seen_ms = now_ms;
    Ok(Some(s))
}

/// Remembers that the session took a lease (once).
pub(crate) async fn add_lease<T: Tx>(tx: &T, id_hash: &str, lease_id: &str) -> StoreResult<()> {
    let Some(mut s) = tx.get_session(id_hash).await? else {
        return Ok(());
    };
    if !s.leases.iter().any(|l| l == lease_id) {
        s.leases.push(lease_id.to_string());
        tx.set_session_leases(id_hash, &serde_json::to_string(&s.leases)?)
            .await?;
    }
    Ok(())
}
