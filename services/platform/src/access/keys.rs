//! The Redis key names of API keys and user–customer links, in one place
//! (docs/architecture.md "Keyspace").

use super::api_key::KeyHash;

/// Hash `{id, merchant}` of one live API key, found by the SHA-256 of its
/// secret: what a verifier reads. Deleted when the key is revoked.
pub fn api_key_by_hash(hash: &KeyHash) -> String {
    format!("api_key:{}", hash.to_hex())
}

/// Hash of a merchant's live API keys: key id → JSON of its name, creation
/// time, last four characters and secret hash (never the secret).
pub fn merchant_api_keys(merchant: &str) -> String {
    format!("merchant:{merchant}:api_keys")
}

/// Set of the customer ids `user` of `merchant` may act for.
pub fn user_customers(merchant: &str, user: &str) -> String {
    format!("merchant:{merchant}:user:{user}:customers")
}

/// Present once the users file's links of `user` were written, so that a
/// restart does not bring back a link that was removed since.
pub fn user_links_seeded(merchant: &str, user: &str) -> String {
    format!("merchant:{merchant}:user:{user}:seeded")
}
