//! Web sessions: a random id in an HttpOnly, SameSite=Strict cookie, mapped
//! to the signed-in token's name and role, a per-session CSRF token and the
//! leases taken by hand in the session. The token itself never leaves the
//! sign-in request, and only the SHA-256 of the cookie value is kept, so a
//! dump of the sessions gives no usable cookie.
//!
//! Sessions are kept in the pool's store, so replicas behind a load
//! balancer share them (docs/operations.md) and a restart signs nobody out.
//! A session unused for [`IDLE`] ends; the store deletes idle sessions
//! whenever it looks one up, so the table stays bounded by what was used in
//! the last [`IDLE`].

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Caller, digest_hex};
pub use crate::store::SessionRow;
use crate::store::{Store, StoreResult};

/// The cookie's name.
pub const COOKIE: &str = "stockroom_session";
/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(12 * 3600);

/// What a request learns about its session.
#[derive(Clone)]
pub struct Session {
    /// Hex SHA-256 of the cookie value: the session's key in the store.
    pub id_hash: String,
    pub caller: Caller,
    pub csrf: String,
    /// Leases taken by hand in this session: their real data is shown here.
    pub leases: HashSet<String>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("caller", &self.caller)
            .field("leases", &self.leases)
            .finish_non_exhaustive()
    }
}

impl From<SessionRow> for Session {
    fn from(row: SessionRow) -> Session {
        Session {
            id_hash: row.id_hash,
            caller: Caller {
                name: row.caller_name,
                role: row.role,
            },
            csrf: row.csrf,
            leases: row.leases.into_iter().collect(),
        }
    }
}

/// The web page's sessions: cookie values in, hashed before every lookup.
pub struct Sessions {
    store: Arc<dyn Store>,
}

impl Sessions {
    pub fn new(store: Arc<dyn Store>) -> Sessions {
        Sessions { store }
    }

    /// Starts a session for `caller`; answers the cookie value and the session.
    pub async fn create(&self, caller: Caller, now_ms: i64) -> StoreResult<(String, Session)> {
        let cookie = random_hex();
        let row = SessionRow {
            id_hash: digest_hex(&cookie),
            caller_name: caller.name,
            role: caller.role,
            csrf: random_hex(),
            leases: Vec::new(),
            last_seen_ms: now_ms,
        };
        self.store.put_session(row.clone()).await?;
        Ok((cookie, row.into()))
    }

    /// The live session of a cookie value.
    pub async fn get(&self, cookie: &str, now_ms: i64) -> StoreResult<Option<Session>> {
        let idle_ms = i64::try_from(IDLE.as_millis()).unwrap_or(i64::MAX);
        let row = self
            .store
            .get_session(digest_hex(cookie), now_ms, idle_ms)
            .await?;
        Ok(row.map(Session::from))
    }

    pub async fn add_lease(&self, session: &Session, lease_id: &str) -> StoreResult<()> {
        self.store
            .add_session_lease(session.id_hash.clone(), lease_id.to_string())
            .await
    }

    pub async fn remove(&self, session: &Session) -> StoreResult<()> {
        self.store.delete_session(session.id_hash.clone()).await
    }
}

/// 32 random bytes as hex.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy source: refuse to make a guessable id.
        panic!("the operating system's random source failed");
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without stopping at the first difference.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The session cookie's value from a `Cookie` header.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .map(str::trim)
        .find_map(|kv| kv.strip_prefix(COOKIE)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(value: &str) -> String {
    format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/")
}

/// `Set-Cookie` that ends the session in the browser.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use stockroom_protocol::pool_config::Role;

    /// Sessions on a real SQLite store in a temporary directory.
    fn sessions() -> (tempfile::TempDir, Arc<dyn Store>, Sessions) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::store::sqlite::SqliteStore::open(&dir.path().join("pool.db")).unwrap());
        let sessions = Sessions::new(Arc::clone(&store));
        (dir, store, sessions)
    }

    fn ci() -> Caller {
        Caller {
            name: "ci".into(),
            role: Role::Ci,
        }
    }

    #[test]
    fn cookies() {
        assert_eq!(cookie_value("a=1; stockroom_session=abc; b=2"), Some("abc"));
        assert_eq!(cookie_value("stockroom_sessionx=abc"), None);
        assert_eq!(cookie_value("stockroom_session="), None);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("ab", "abc"));
        assert!(set_cookie("x").contains("HttpOnly; SameSite=Strict; Path=/"));
    }

    #[tokio::test]
    async fn only_the_hash_of_the_cookie_is_stored() {
        let (_dir, store, s) = sessions();
        let (cookie, one) = s.create(ci(), 0).await.unwrap();
        assert_eq!(cookie.len(), 64);
        assert_ne!(cookie, one.csrf);
        assert_eq!(one.id_hash, digest_hex(&cookie));
        let stored = store
            .get_session(digest_hex(&cookie), 1, i64::MAX)
            .await
            .unwrap()
            .unwrap();
        assert_ne!(stored.csrf, cookie);
        assert!(
            store
                .get_session(cookie.clone(), 1, i64::MAX)
                .await
                .unwrap()
                .is_none(),
            "the cookie value itself is not a key in the store"
        );
        assert!(
            s.get(&one.id_hash, 1).await.unwrap().is_none(),
            "the hash is no cookie"
        );
        assert!(
            !format!("{one:?}").contains(&one.csrf),
            "no CSRF token in Debug"
        );
    }

    #[tokio::test]
    async fn leases_removal_and_the_idle_limit() {
        let (_dir, _, s) = sessions();
        let (cookie, one) = s.create(ci(), 0).await.unwrap();
        s.add_lease(&one, "L1").await.unwrap();
        s.add_lease(&one, "L1").await.unwrap();
        let got = s.get(&cookie, 1000).await.unwrap().unwrap();
        assert_eq!(got.leases, HashSet::from(["L1".to_string()]));
        let idle = i64::try_from(IDLE.as_millis()).unwrap();
        assert!(
            s.get(&cookie, 1000 + idle - 1).await.unwrap().is_some(),
            "each use refreshes it"
        );
        assert!(s.get(&cookie, 1000 + 2 * idle).await.unwrap().is_none());
        let (cookie, two) = s.create(ci(), 0).await.unwrap();
        s.remove(&two).await.unwrap();
        assert!(s.get(&cookie, 1).await.unwrap().is_none());
    }
}
