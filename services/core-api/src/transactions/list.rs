//! `GET /transactions`: the caller's merchant's transactions, newest
//! first, filtered, with cursor pagination.
//!
//! Every index is a sorted set of ids with score 0, ordered by id, and ids
//! are UUIDv7, so by creation time. A page is read with ZREVRANGEBYLEX on
//! the most selective index the filters allow — customer, then reference,
//! then created_by, then status, then the merchant's whole index — bounded
//! above by the cursor and `to` and below by `from`. Records are fetched in
//! one pipelined round trip per batch and the remaining filters checked on
//! them (the record is the truth: a status may have moved since the index
//! was read).
//!
//! Cost, with N the size of the chosen index and `limit` the page size:
//! - one filter (or none): O(log N + limit) — the index holds exactly the
//!   matches, so one batch of `limit + 1` ids. A customer's page costs the
//!   same however many transactions the merchant's other customers have.
//! - `from`/`to` alone: the same, they are range bounds on the index.
//! - several filters: the most selective index is scanned in batches, each
//!   batch checked against the other filters' indexes with one ZMSCORE per
//!   index (no record is read unless it is in all of them), and at most
//!   [`MAX_SCANNED`] entries per request. A request that reaches that bound
//!   before filling its page answers what it found (possibly nothing) with
//!   `has_more: true` and a `next_cursor` after the last entry it scanned,
//!   so a client resumes exactly there. No request ever scans a whole
//!   customer's history, however few of its transactions match.
//!
//! A user token sees only the customers linked to its user (one SMEMBERS
//! first): a `customer_id` filter outside them answers an empty page, and
//! without one the page is merged from the linked customers' indexes (one
//! ZREVRANGEBYLEX per customer per batch, in one round trip; a user has at
//! most 100 customers). Nothing of another customer is ever read, so
//! neither `starting_after` nor a filter can reveal one.

use axum::extract::State;
use platform::ApiError;
use platform::auth::Caller;
use platform::http::ErrorCode;
use platform::http::{ErrorBody, Json, Query};
use platform::keyspace::Index;
use platform::transaction::{Status, TransactionId, id_bound};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use super::model::Transaction;
use super::store;
use crate::AppState;
use crate::domain::{CustomerId, Reference};

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

/// Query parameters, as text: each is parsed below so that a bad one
/// answers 400 `invalid_parameter` naming it.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this customer's transactions.
    customer_id: Option<String>,
    /// Only transactions in this status.
    #[param(value_type = Option<Status>)]
    status: Option<String>,
    /// Only transactions with this merchant reference.
    reference: Option<String>,
    /// Only transactions created by this user.
    created_by: Option<String>,
    /// Created at or after this RFC 3339 time.
    #[param(example = "2026-11-22T00:00:00Z")]
    from: Option<String>,
    /// Created strictly before this RFC 3339 time.
    to: Option<String>,
    /// Page size, 1–100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    starting_after: Option<String>,
}

/// A page of transactions, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionList {
    pub data: Vec<Transaction>,
    /// Whether there are more (older) transactions after this page. With
    /// several filters a page may hold fewer than `limit` (even none) while
    /// this is true: each request scans a bounded slice; continue from
    /// `next_cursor`.
    pub has_more: bool,
    /// Pass as `starting_after` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The parsed filters.
#[derive(Debug, Default)]
struct Filter {
    customer_id: Option<String>,
    status: Option<Status>,
    reference: Option<String>,
    created_by: Option<String>,
    /// Lower bound (inclusive) as a ZRANGEBYLEX bound.
    min: String,
    /// Upper bound as a ZRANGEBYLEX bound (cursor and `to`, exclusive).
    max: String,
    limit: usize,
}

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidParameter, message).with_param(param)
}

/// RFC 3339 to Unix milliseconds. A `+` in an offset arrives as a space
/// when the client did not percent-encode it; put it back.
fn parse_time(param: &str, text: &str) -> Result<u64, ApiError> {
    let text = text.replace(' ', "+");
    let time = OffsetDateTime::parse(&text, &Rfc3339)
        .map_err(|_| invalid(param, format!("{param} must be an RFC 3339 time")))?;
    u64::try_from(time.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| invalid(param, format!("{param} must not be before 1970")))
}

impl ListQuery {
    fn parse(self) -> Result<Filter, ApiError> {
        let customer_id = self
            .customer_id
            .map(|c| CustomerId::parse_lookup(&c).map(|c| c.as_str().to_owned()))
            .transpose()
            .map_err(|e| invalid("customer_id", e.message))?;
        let reference = self
            .reference
            .map(|r| Reference::parse_lookup(&r).map(|r| r.as_str().to_owned()))
            .transpose()
            .map_err(|e| invalid("reference", e.message))?;
        let created_by = self
            .created_by
            .map(|u| {
                platform::auth::is_identifier(&u)
                    .then_some(u)
                    .ok_or_else(|| invalid("created_by", "created_by must be a user name"))
            })
            .transpose()?;
        let status = self
            .status
            .map(|s| s.parse::<Status>())
            .transpose()
            .map_err(|_| {
                invalid(
                    "status",
                    "status must be one of pending, processing, succeeded, declined, failed",
                )
            })?;
        let limit = match self.limit {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    invalid(
                        "limit",
                        format!("limit must be an integer from 1 to {MAX_LIMIT}"),
                    )
                })?,
        };
        let from = self.from.map(|t| parse_time("from", &t)).transpose()?;
        let to = self.to.map(|t| parse_time("to", &t)).transpose()?;
        let cursor = self
            .starting_after
            .map(|c| TransactionId::parse(&c))
            .transpose()
            .map_err(|_| invalid("starting_after", "starting_after must be a transaction id"))?;
        // Both upper bounds are exclusive; the smaller one wins.
        let max = [cursor.map(|c| c.to_string()), to.map(id_bound)]
            .into_iter()
            .flatten()
            .min()
            .map_or_else(|| "+".to_owned(), |bound| format!("({bound}"));
        let min = from.map_or_else(|| "-".to_owned(), |ms| format!("[{}", id_bound(ms)));
        Ok(Filter {
            customer_id,
            status,
            reference,
            created_by,
            min,
            max,
            limit,
        })
    }
}

impl Filter {
    /// The indexes to scan, merged newest first, and the indexes of the
    /// other filters, whose membership is checked on what they yield: the
    /// most selective index the filters allow, or, for a user without a
    /// `customer_id` filter, the indexes of the user's customers.
    fn indexes(&self, merchant: &str, customers: Option<&[String]>) -> (Vec<String>, Vec<String>) {
        if let (Some(customers), None) = (customers, &self.customer_id) {
            let primaries = customers
                .iter()
                .map(|c| Index::Customer(c).key(merchant))
                .collect();
            let others = [
                self.reference.as_deref().map(Index::Reference),
                self.created_by.as_deref().map(Index::CreatedBy),
                self.status.map(Index::Status),
            ]
            .into_iter()
            .flatten()
            .map(|index| index.key(merchant))
            .collect();
            return (primaries, others);
        }
        let (primary, others) = self.index(merchant);
        (vec![primary], others)
    }

    /// The most selective index the filters allow, and the indexes of the
    /// other filters.
    fn index(&self, merchant: &str) -> (String, Vec<String>) {
        let mut set: Vec<String> = [
            self.customer_id.as_deref().map(Index::Customer),
            self.reference.as_deref().map(Index::Reference),
            self.created_by.as_deref().map(Index::CreatedBy),
            self.status.map(Index::Status),
        ]
        .into_iter()
        .flatten()
        .map(|index| index.key(merchant))
        .collect();
        if set.is_empty() {
            return (Index::All.key(merchant), Vec::new());
        }
        let primary = set.remove(0);
        (primary, set)
    }

    fn matches(&self, merchant: &str, customers: Option<&[String]>, tx: &Transaction) -> bool {
        tx.merchant_id == merchant
            && customers.is_none_or(|allowed| {
                tx.customer_id
                    .as_ref()
                    .is_some_and(|c| allowed.binary_search(c).is_ok())
            })
            && self
                .customer_id
                .as_ref()
                .is_none_or(|c| tx.customer_id.as_ref() == Some(c))
            && self
                .reference
                .as_ref()
                .is_none_or(|r| tx.reference.as_ref() == Some(r))
            && self.created_by.as_ref().is_none_or(|u| &tx.created_by == u)
            && self.status.is_none_or(|s| tx.status == s)
    }
}

/// Ids scanned per round trip when filters remain to be checked on the
/// records: more than a page, since some will not match.
const FILTERED_BATCH: usize = 200;

/// Index entries one request scans at most when filters remain to be
/// checked; then it answers with a cursor to resume from.
pub const MAX_SCANNED: usize = 2_000;

/// Lists the caller's merchant's transactions (a user token: only those of
/// the customers linked to the user); see the module doc for the cost of
/// each query shape.
#[utoipa::path(
    get,
    path = "/transactions",
    tag = "transactions",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page, newest first", body = TransactionList),
        (status = 400, description = "`invalid_parameter` (also: given twice) or `unknown_parameter`; `param` names it", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired token, or an unknown or revoked API key", body = ErrorBody),
        (status = 503, description = "`storage_unavailable`: Redis is unreachable", body = ErrorBody),
    )
)]
pub async fn list_transactions(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Json<TransactionList>, ApiError> {
    let filter = query.parse()?;
    let mut conn = state.redis.conn();
    let customers = match caller.user() {
        Some(user) => {
            Some(platform::access::links::customers_of(&mut conn, &caller.merchant, user).await?)
        }
        None => None,
    };
    if let Some(customers) = &customers {
        let outside = filter
            .customer_id
            .as_ref()
            .is_some_and(|c| customers.binary_search(c).is_err());
        if outside || customers.is_empty() {
            return Ok(Json(TransactionList {
                data: Vec::new(),
                has_more: false,
                next_cursor: None,
            }));
        }
    }
    let customers = customers.as_deref();
    let (index, others) = filter.indexes(&caller.merchant, customers);
    let filtered = !others.is_empty();
    let wanted = filter.limit + 1;
    let mut page: Vec<Transaction> = Vec::with_capacity(wanted);
    let mut max = filter.max.clone();
    let mut scanned = 0;
    // The last id scanned when the scan budget ran out before the page
    // filled: the cursor to resume from.
    let mut resume_after: Option<String> = None;
    'scan: loop {
        let batch = if filtered {
            FILTERED_BATCH.min(MAX_SCANNED - scanned)
        } else {
            wanted - page.len()
        };
        let ids =
            store::ids_newest_first_of_all(&mut conn, &index, &max, &filter.min, batch).await?;
        let Some(last) = ids.last().cloned() else {
            break;
        };
        max = format!("({last}");
        scanned += ids.len();
        let exhausted = ids.len() < batch;
        let ids = if filtered {
            store::members_of_all(&mut conn, &others, ids).await?
        } else {
            ids
        };
        let ids: Vec<TransactionId> = ids
            .iter()
            .filter_map(|id| TransactionId::parse(id).ok())
            .collect();
        for hash in store::fetch_many(&mut conn, &ids).await? {
            // A record that vanished between the two reads is skipped.
            if hash.is_empty() {
                continue;
            }
            let tx = Transaction::from_hash(hash)?;
            if filter.matches(&caller.merchant, customers, &tx) {
                page.push(tx);
                if page.len() == wanted {
                    break 'scan;
                }
            }
        }
        if exhausted {
            break;
        }
        if filtered && scanned >= MAX_SCANNED {
            resume_after = Some(last);
            break;
        }
    }
    let (has_more, next_cursor) = if page.len() > filter.limit {
        page.truncate(filter.limit);
        (true, page.last().map(|tx| tx.id.clone()))
    } else {
        (resume_after.is_some(), resume_after)
    };
    Ok(Json(TransactionList {
        data: page,
        has_more,
        next_cursor,
    }))
}
