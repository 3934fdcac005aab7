//! Bearer tokens: configured as hex SHA-256 digests, never stored in clear.
//!
//! With no tokens configured, authentication is off (the pool then only
//! listens on loopback, see `config::validate`) and every caller is admin.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use stockroom_protocol::api::ProblemKind;
use stockroom_protocol::pool_config::{Role, TokenConfig};

/// Who called: the token's name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// The configured tokens, by digest.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_digest: HashMap<[u8; 32], Caller>,
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// Hex SHA-256 of a token, as the config expects it.
pub fn digest_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Tokens {
    pub fn new(tokens: &[TokenConfig]) -> Tokens {
        let by_digest = tokens
            .iter()
            .filter_map(|t| {
                Some((
                    decode_hex(&t.sha256)?,
                    Caller {
                        name: t.name.clone(),
                        role: t.role,
                    },
                ))
            })
            .collect();
        Tokens { by_digest }
    }

    pub fn enabled(&self) -> bool {
        !self.by_digest.is_empty()
    }

    /// Checks an `Authorization` header value for a role.
    pub fn check(
        &self,
        authorization: Option<&str>,
        needed: Role,
    ) -> Result<Caller, (ProblemKind, String)> {
        if !self.enabled() {
            return Ok(Caller {
                name: "anonymous".into(),
                role: Role::Admin,
            });
        }
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or((
                ProblemKind::Unauthorized,
                "send `Authorization: Bearer TOKEN`".to_string(),
            ))?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // A hash-map lookup on the digest: the secret itself is never compared.
        let caller = self.by_digest.get(&digest).ok_or((
            ProblemKind::Unauthorized,
            "the token is not known to this pool".to_string(),
        ))?;
        if caller.role < needed {
            return Err((
                ProblemKind::Forbidden,
                format!(
                    "token {:?} has role {}, this needs role {}",
                    caller.name,
                    caller.role.as_str(),
                    needed.as_str()
                ),
            ));
        }
        Ok(caller.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_unknown_tokens() {
        let tokens = Tokens::new(&[
            TokenConfig {
                name: "ci".into(),
                role: Role::Ci,
                sha256: digest_hex("c1"),
            },
            TokenConfig {
                name: "ops".into(),
                role: Role::Admin,
                sha256: digest_hex("a1"),
            },
        ]);
        assert_eq!(
            tokens.check(Some("Bearer c1"), Role::Ci).unwrap().name,
            "ci"
        );
        assert_eq!(
            tokens.check(Some("Bearer c1"), Role::Admin).unwrap_err().0,
            ProblemKind::Forbidden
        );
        assert_eq!(
            tokens.check(Some("Bearer a1"), Role::Admin).unwrap().role,
            Role::Admin
        );
        assert_eq!(
            tokens.check(Some("Bearer zz"), Role::Ci).unwrap_err().0,
            ProblemKind::Unauthorized
        );
        assert_eq!(
            tokens.check(None, Role::Ci).unwrap_err().0,
            ProblemKind::Unauthorized
        );
        assert_eq!(
            Tokens::default().check(None, Role::Admin).unwrap().role,
            Role::Admin
        );
    }
}
