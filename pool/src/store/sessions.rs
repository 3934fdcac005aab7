//! A web page session as the store keeps it.

use stockroom_protocol::pool_config::Role;

/// One signed-in browser. Only the hash of the cookie is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Hex SHA-256 of the cookie value.
    pub id_hash: String,
    pub caller_name: String,
    pub role: Role,
    pub csrf: String,
    /// Leases taken through the page in this session.
    pub leases: Vec<String>,
    pub last_seen_ms: i64,
}

/// Without the CSRF token and the cookie's hash.
impl std::fmt::Debug for SessionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRow")
            .field("caller_name", &self.caller_name)
            .field("role", &self.role)
            .field("leases", &self.leases)
            .field("last_seen_ms", &self.last_seen_ms)
            .finish_non_exhaustive()
    }
}

/// A stored role word.
pub(crate) fn parse_role(s: &str) -> crate::store::StoreResult<Role> {
    match s {
        "ci" => Ok(Role::Ci),
        "admin" => Ok(Role::Admin),
        other => Err(crate::store::StoreError::corrupt(format!(
            "unknown session role {other:?}"
        ))),
    }
}
