//! Unguessable identifiers: knowing a lease id is what makes a client its holder.

use std::time::{SystemTime, UNIX_EPOCH};

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The OS random source failing is not recoverable for a server that hands out secrets.
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// `lease_` + 12 hex digits of the creation time in milliseconds + 128
/// random bits in hex.
///
/// The random bits make it unguessable (contract: at least 128). The time
/// prefix makes ids of new leases sort after older ones, so the store's
/// B-tree indexes keyed by lease id (leases, lease items, entity holds, the
/// datasets' lease column) grow at their right edge: a lease dirties a few
/// pages at the end of each index instead of a random page in each, which is
/// most of what a commit writes to the WAL under load.
pub fn lease_id() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    // 12 hex digits hold milliseconds until the year 10889.
    format!("lease_{:012x}{}", ms & 0xffff_ffff_ffff, random_hex(16))
}

/// `lt_` + 256 random bits in hex: the proof of holding a lease
/// (docs/pool.md, "Lease tokens"). Handed out once, stored only as a hash.
pub fn lease_token() -> String {
    format!("lt_{}", random_hex(32))
}

/// `ds_` + 80 random bits in hex (uniqueness is also enforced by the store).
pub fn dataset_id() -> String {
    format!("ds_{}", random_hex(10))
}

/// 64 random bits in hex: tells apart generator requests of one dataset
/// that are separate steps (each step keeps its own on every retry).
pub fn request_suffix() -> String {
    random_hex(8)
}

/// 64 random bits in hex: a name for this process among several replicas.
pub fn replica_tag() -> String {
    random_hex(8)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_have_their_prefix_and_length() {
        let l = super::lease_id();
        assert!(l.starts_with("lease_") && l.len() == 6 + 12 + 32);
        assert!(l[6..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(l, super::lease_id());
        assert_eq!(super::dataset_id().len(), 3 + 20);
        let t = super::lease_token();
        assert!(t.starts_with("lt_") && t.len() == 3 + 64);
        assert_ne!(t, super::lease_token());
        assert_eq!(super::replica_tag().len(), 16);
    }

    #[test]
    fn later_lease_ids_sort_after_earlier_ones() {
        let a = super::lease_id();
        std::thread::sleep(std::time::Duration::from_millis(3));
        let b = super::lease_id();
        assert!(a < b, "{a} should sort before {b}");
    }
}
