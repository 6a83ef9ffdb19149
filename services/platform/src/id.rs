//! The one shape of every id the platform issues: a prefix (`tx_`, `evt_`,
//! `we_`, `key_`) and a UUIDv7 in 32 lower-case hex digits. UUIDv7 starts
//! with the creation time, so indexes whose members are ids (scored 0,
//! ordered by member) list them in creation order.

/// A new id with `prefix`.
pub fn generate(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

/// Whether `text` is exactly what [`generate`] produces for `prefix`:
/// anything else (other prefixes, path segments, upper case, other UUID
/// versions) is not an id.
pub fn is_generated(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix).is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && uuid::Uuid::parse_str(hex).is_ok_and(|u| u.get_version_num() == 7)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_recognised_and_others_are_not() {
        let id = generate("evt_");
        assert!(is_generated(&id, "evt_"));
        assert!(!is_generated(&id, "tx_"));
        assert!(!is_generated(&id.to_uppercase(), "evt_"));
        let v4 = format!("evt_{}", uuid::Uuid::new_v4().simple());
        assert!(!is_generated(&v4, "evt_"));
        assert!(!is_generated("evt_../../x", "evt_"));
    }
}
