//! Users ↔ customers, many to many, per merchant: a user token acts only for
//! the customers linked to its user (an API key acts for all of its
//! merchant's). Stored as one set per user ([`crate::keyspace::user_customers`]);
//! written by auth-api, read by core-api on every user-token request, so an
//! unlink takes effect with the next request.

use redis::aio::ConnectionLike;

/// The most customers one user may be linked to: core-api reads a user's
/// whole set for a list (one index per customer), so it stays small.
pub const MAX_CUSTOMERS_PER_USER: usize = 100;

/// Whether `text` may be a customer id: the shape core-api stores, and not
/// a card number (see core-api's `CustomerId`).
pub fn is_customer_id(text: &str) -> bool {
    super::is_merchant_token(text) && !crate::card::contains_card_number(text)
}

/// The customers `user` of `merchant` may act for, sorted.
pub async fn customers_of<C: ConnectionLike + Send>(
    conn: &mut C,
    merchant: &str,
    user: &str,
) -> redis::RedisResult<Vec<String>> {
    let mut customers: Vec<String> = redis::cmd("SMEMBERS")
        .arg(crate::keyspace::user_customers(merchant, user))
        .query_async(conn)
        .await?;
    customers.sort();
    Ok(customers)
}
