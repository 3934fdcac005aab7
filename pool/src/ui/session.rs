//! Web sessions: a random id in an HttpOnly, SameSite=Strict cookie, mapped
//! in memory to the signed-in token's name and role and a per-session CSRF
//! token. The token itself never leaves the sign-in request. Sessions live
//! in this process only: a restart signs everybody out.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::auth::Caller;

/// The cookie's name.
pub const COOKIE: &str = "stockroom_session";
/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(12 * 3600);
/// At most this many sessions are kept; the least recently used goes first.
pub const MAX_SESSIONS: usize = 10_000;

/// What a request learns about its session.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub caller: Caller,
    pub csrf: String,
    /// Leases taken by hand in this session: their real data is shown here.
    pub leases: HashSet<String>,
}

struct Entry {
    session: Session,
    last_seen: Instant,
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
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

impl Sessions {
    pub fn create(&self, caller: Caller) -> Session {
        let session = Session {
            id: random_hex(),
            caller,
            csrf: random_hex(),
            leases: HashSet::new(),
        };
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, e| now.duration_since(e.last_seen) < IDLE);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(
            session.id.clone(),
            Entry {
                session: session.clone(),
                last_seen: now,
            },
        );
        session
    }

    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let entry = map.get_mut(id)?;
        if now.duration_since(entry.last_seen) >= IDLE {
            map.remove(id);
            return None;
        }
        entry.last_seen = now;
        Some(entry.session.clone())
    }

    pub fn add_lease(&self, id: &str, lease_id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get_mut(id) {
            e.session.leases.insert(lease_id.to_string());
        }
    }

    pub fn remove(&self, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id);
    }
}

/// The session id from a `Cookie` header.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .map(str::trim)
        .find_map(|kv| kv.strip_prefix(COOKIE)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(id: &str) -> String {
    format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/")
}

/// `Set-Cookie` that ends the session in the browser.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockroom_protocol::pool_config::Role;

    #[test]
    fn cookies_and_sessions() {
        assert_eq!(cookie_value("a=1; stockroom_session=abc; b=2"), Some("abc"));
        assert_eq!(cookie_value("stockroom_sessionx=abc"), None);
        assert_eq!(cookie_value("stockroom_session="), None);
        let s = Sessions::default();
        let one = s.create(Caller {
            name: "ci".into(),
            role: Role::Ci,
        });
        assert_eq!(one.id.len(), 64);
        assert_ne!(one.id, one.csrf);
        s.add_lease(&one.id, "L1");
        assert!(s.get(&one.id).is_some_and(|x| x.leases.contains("L1")));
        s.remove(&one.id);
        assert!(s.get(&one.id).is_none());
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("ab", "abc"));
        assert!(set_cookie("x").contains("HttpOnly; SameSite=Strict; Path=/"));
    }
}
