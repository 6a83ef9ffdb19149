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

/// One transaction of the caller's merchant. A malformed id, an unknown id
/// and another merchant's id all answer the same 404, so ids cannot be
/// probed across merchants. O(1): one HGETALL.
#[utoipa::path(
    get,
    path = "/transactions/{id}",
    tag = "transactions",
    params(("id" = String, Path, description = "Transaction id (`tx_…`)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The transaction", body = Transaction),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown id or another merchant's", body = ErrorBody),
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
    let hash = store::fetch(&mut state.redis.conn(), &id).await?;
    if hash.is_empty() || hash.get("merchant_id") != Some(&caller.merchant) {
        return Err(not_found());
    }
    Ok(Json(Transaction::from_hash(hash)?))
}
