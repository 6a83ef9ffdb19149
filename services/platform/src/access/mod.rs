//! Who may act for what, beyond the user token of [`crate::auth`]: merchant
//! API keys ([`api_key`]) and the links between users and the customers
//! they may act for ([`links`]). Their Redis key names are built in
//! [`crate::keyspace`].

pub mod api_key;
pub mod links;

/// 1–64 characters of `[A-Za-z0-9_.:-]`: the shape of merchant-chosen ids
/// (customer ids, references). Narrow on purpose: these values become part
/// of Redis key names and log fields. core-api's request parsing and
/// auth-api's link routes both use it, so the two accept the same ids.
pub fn is_merchant_token(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}
