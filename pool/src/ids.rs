//! Unguessable identifiers: knowing a lease id is what makes a client its holder.

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The OS random source failing is not recoverable for a server that hands out secrets.
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// `lease_` + 128 random bits in hex.
pub fn lease_id() -> String {
    format!("lease_{}", random_hex(16))
}

/// `ds_` + 80 random bits in hex (uniqueness is also enforced by the store).
pub fn dataset_id() -> String {
    format!("ds_{}", random_hex(10))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_have_their_prefix_and_length() {
        let l = super::lease_id();
        assert!(l.starts_with("lease_") && l.len() == 6 + 32);
        assert_ne!(l, super::lease_id());
        assert_eq!(super::dataset_id().len(), 3 + 20);
    }
}
