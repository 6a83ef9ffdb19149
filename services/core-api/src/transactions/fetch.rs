//! `GET /transactions/{id}`.

use axum::extract::{Path, State, rejection::PathRejection};
use platform::ApiError;
use platform::auth::Caller;
use platform::http::ErrorCode;
use platform::http::{ErrorBody, Json};
use platform::transaction::TransactionId;

use super::model::Transaction;
use super::store;
use crate::AppState;

fn not_found() -> ApiError {
    ApiError::not_found(ErrorCode::NotFound, "no such transaction")
}

/// One transaction of the caller's merchant. A malformed id, an unknown id,
/// another merchant's id and (for a user token) a transaction of a customer
/// not linked to the user all answer the same 404, so ids cannot be probed.
/// O(1): one HGETALL (and one SISMEMBER for a user, in the same round trip),
/// and for a transaction with refunds one more round trip that reads them.
#[utoipa::path(
    get,
    path = "/transactions/{id}",
    tag = "transactions",
    params(("id" = String, Path, description = "Transaction id (`tx_…`)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The transaction", body = Transaction),
        (status = 401, description = "Missing, invalid or expired token, or an unknown or revoked API key", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown id, another merchant's, or (user token) a customer not linked to the user", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: Redis is unreachable", body = ErrorBody),
    )
)]
pub async fn get_transaction(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Transaction>, ApiError> {
    let Ok(Path(id)) = id else {
        return Err(not_found());
    };
    let id = TransactionId::parse(&id).map_err(|_| not_found())?;
    let mut conn = state.redis.conn();
    let hash = match caller.user() {
        None => store::fetch(&mut conn, &id).await?,
        Some(user) => {
            // A user sees only the transactions of customers linked to
            // them; the record and the link are read in one round trip.
            let (hash, linked) =
                store::fetch_if_linked(&mut conn, &id, &caller.merchant, user).await?;
            if !linked {
                return Err(not_found());
            }
            hash
        }
    };
    if hash.is_empty() || hash.get("merchant_id") != Some(&caller.merchant) {
        return Err(not_found());
    }
    // Only a transaction that ever had a refund has the reservation field;
    // the others cost no second round trip.
    let had_refunds = hash.contains_key(platform::keyspace::field::REFUND_RESERVED);
    let mut transaction = Transaction::from_hash(hash)?;
    transaction.refunds = Some(if had_refunds {
        crate::refunds::refunds_of(&mut conn, &id).await?
    } else {
        Vec::new()
    });
    Ok(Json(transaction))
}
