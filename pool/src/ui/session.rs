//! Web sessions: a random id in an HttpOnly, SameSite=Strict cookie, mapped
//! to the signed-in token's name and role, a per-session CSRF token and the
//! leases taken by hand in the session. The token itself never leaves the
//! sign-in request, and only the SHA-256 of the cookie value is kept, so a
//! dump of the sessions gives no usable cookie.
//!
//! Every read and write goes through [`SessionStore`], whose four operations
//! are those of the pool's store; [`MemorySessions`] keeps the sessions in
//! this process (a restart signs everybody out) until the store keeps them,
//! so that replicas behind a load balancer share them (docs/operations.md).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stockroom_protocol::pool_config::Role;

use crate::auth::{Caller, digest_hex};
use crate::store::{BoxFuture, StoreResult};

/// The cookie's name.
pub const COOKIE: &str = "stockroom_session";
/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(12 * 3600);
/// At most this many sessions are kept in memory; the least recently used goes first.
pub const MAX_SESSIONS: usize = 10_000;

/// One session as it is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Hex SHA-256 of the cookie value.
    pub id_hash: String,
    pub caller_name: String,
    pub role: Role,
    pub csrf: String,
    /// Leases taken by hand in this session.
    pub leases: Vec<String>,
    pub last_seen_ms: i64,
}

impl fmt::Debug for SessionRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRow")
            .field("caller_name", &self.caller_name)
            .field("role", &self.role)
            .field("leases", &self.leases)
            .field("last_seen_ms", &self.last_seen_ms)
            .finish_non_exhaustive()
    }
}

/// Where sessions live: the same four operations as the pool's store, so
/// the store can take the place of [`MemorySessions`].
pub trait SessionStore: Send + Sync + 'static {
    /// Adds (or replaces) a session.
    fn put_session(&self, row: SessionRow) -> BoxFuture<'_, StoreResult<()>>;

    /// The session, its `last_seen_ms` set to `now_ms`; `None` when unknown
    /// or unused for `idle_ms` or longer (it is then gone).
    fn get_session(
        &self,
        id_hash: String,
        now_ms: i64,
        idle_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Option<SessionRow>>>;

    fn delete_session(&self, id_hash: String) -> BoxFuture<'_, StoreResult<()>>;

    /// Remembers that the session took `lease_id`; nothing when the session is gone.
    fn add_session_lease(
        &self,
        id_hash: String,
        lease_id: String,
    ) -> BoxFuture<'_, StoreResult<()>>;
}

/// Sessions in this process's memory, at most `cap` of them.
pub struct MemorySessions {
    cap: usize,
    rows: Mutex<HashMap<String, SessionRow>>,
}

impl MemorySessions {
    pub fn new(cap: usize) -> MemorySessions {
        MemorySessions {
            cap: cap.max(1),
            rows: Mutex::default(),
        }
    }

    fn rows(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionRow>> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SessionStore for MemorySessions {
    fn put_session(&self, row: SessionRow) -> BoxFuture<'_, StoreResult<()>> {
        let mut rows = self.rows();
        if rows.len() >= self.cap
            && !rows.contains_key(&row.id_hash)
            && let Some(oldest) = rows
                .values()
                .min_by_key(|r| r.last_seen_ms)
                .map(|r| r.id_hash.clone())
        {
            rows.remove(&oldest);
        }
        rows.insert(row.id_hash.clone(), row);
        Box::pin(async { Ok(()) })
    }

    fn get_session(
        &self,
        id_hash: String,
        now_ms: i64,
        idle_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Option<SessionRow>>> {
        let mut rows = self.rows();
        let found = match rows.get_mut(&id_hash) {
            Some(row) if now_ms.saturating_sub(row.last_seen_ms) < idle_ms => {
                row.last_seen_ms = now_ms;
                Some(row.clone())
            }
            Some(_) => {
                rows.remove(&id_hash);
                None
            }
            None => None,
        };
        Box::pin(async { Ok(found) })
    }

    fn delete_session(&self, id_hash: String) -> BoxFuture<'_, StoreResult<()>> {
        self.rows().remove(&id_hash);
        Box::pin(async { Ok(()) })
    }

    fn add_session_lease(
        &self,
        id_hash: String,
        lease_id: String,
    ) -> BoxFuture<'_, StoreResult<()>> {
        if let Some(row) = self.rows().get_mut(&id_hash)
            && !row.leases.contains(&lease_id)
        {
            row.leases.push(lease_id);
        }
        Box::pin(async { Ok(()) })
    }
}

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
    store: Arc<dyn SessionStore>,
}

impl Sessions {
    pub fn new(store: Arc<dyn SessionStore>) -> Sessions {
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

    fn sessions(cap: usize) -> (Arc<MemorySessions>, Sessions) {
        let memory = Arc::new(MemorySessions::new(cap));
        let sessions = Sessions::new(Arc::clone(&memory) as Arc<dyn SessionStore>);
        (memory, sessions)
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
        let (memory, s) = sessions(10);
        let (cookie, one) = s.create(ci(), 0).await.unwrap();
        assert_eq!(cookie.len(), 64);
        assert_ne!(cookie, one.csrf);
        assert_eq!(one.id_hash, digest_hex(&cookie));
        let stored: Vec<SessionRow> = memory.rows().values().cloned().collect();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].id_hash, digest_hex(&cookie));
        assert!(
            stored
                .iter()
                .all(|r| r.id_hash != cookie && r.csrf != cookie)
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
        let (_, s) = sessions(10);
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

    #[tokio::test]
    async fn the_least_recently_used_session_goes_at_the_cap() {
        let (_, s) = sessions(2);
        let (a, _) = s.create(ci(), 0).await.unwrap();
        let (b, _) = s.create(ci(), 1).await.unwrap();
        assert!(
            s.get(&a, 2).await.unwrap().is_some(),
            "a is now newer than b"
        );
        let (c, _) = s.create(ci(), 3).await.unwrap();
        assert!(s.get(&b, 4).await.unwrap().is_none(), "b went");
        assert!(s.get(&a, 4).await.unwrap().is_some());
        assert!(s.get(&c, 4).await.unwrap().is_some());
    }
}
