//! The Redis keyspace: every key, stream, consumer group and field name the
//! platform writes, stated here once.
//!
//! Services, tests and the benchmark build names only through this module,
//! and Lua scripts receive them through `KEYS`/`ARGV` instead of building
//! them, so a layout change is one edit here. [`owner`] recognises every
//! name this module can produce; the end-to-end suite scans Redis after a
//! run and fails on any key without an owner. The layout is described in
//! docs/architecture.md ("Keyspace").
//!
//! The keys a payment touches are joined with `[..].concat()`, not
//! `format!`: a payment builds about ten of them in each service, and the
//! formatting machinery cost over a thousand instructions per key.

use crate::access::api_key::KeyHash;
use crate::auth::is_identifier;
use crate::event::{EventId, EventType};
use crate::refund::RefundId;
use crate::transaction::{Status, TransactionId};
use crate::webhook::EndpointId;

// ------------------------------------------------------------ transactions

const RECORD_PREFIX: &str = "tx:";
const MERCHANT_PREFIX: &str = "merchant:";
const INDEX_SUFFIX: &str = ":tx";

/// The record hash of a transaction: `tx:{id}` (fields: [`field`]).
pub fn record(id: &TransactionId) -> String {
    [RECORD_PREFIX, id.as_str()].concat()
}

/// A per-merchant index of transaction ids: a sorted set, every score 0, so
/// members sort by id, and ids (UUIDv7) by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Index<'a> {
    /// Every transaction of the merchant: `merchant:{m}:tx`.
    All,
    /// `merchant:{m}:customer:{customer_id}:tx`.
    Customer(&'a str),
    /// `merchant:{m}:reference:{reference}:tx`.
    Reference(&'a str),
    /// `merchant:{m}:created_by:{user}:tx`.
    CreatedBy(&'a str),
    /// `merchant:{m}:status:{status}:tx`.
    Status(Status),
}

// The filter name of each filtered index, as it appears in its key.
const CUSTOMER: &str = "customer";
const REFERENCE: &str = "reference";
const CREATED_BY: &str = "created_by";
const STATUS: &str = "status";

impl Index<'_> {
    /// The index's key for `merchant`.
    pub fn key(&self, merchant: &str) -> String {
        match self.filter() {
            None => [MERCHANT_PREFIX, merchant, INDEX_SUFFIX].concat(),
            Some((filter, value)) => [
                MERCHANT_PREFIX,
                merchant,
                ":",
                filter,
                ":",
                value,
                INDEX_SUFFIX,
            ]
            .concat(),
        }
    }

    fn filter(&self) -> Option<(&'static str, &str)> {
        match *self {
            Index::All => None,
            Index::Customer(value) => Some((CUSTOMER, value)),
            Index::Reference(value) => Some((REFERENCE, value)),
            Index::CreatedBy(value) => Some((CREATED_BY, value)),
            Index::Status(status) => Some((STATUS, status.as_str())),
        }
    }

    /// The pattern of this kind of index's keys, for [`owner`].
    fn pattern(&self) -> &'static str {
        match self {
            Index::All => "merchant:{m}:tx",
            Index::Customer(_) => "merchant:{m}:customer:{customer_id}:tx",
            Index::Reference(_) => "merchant:{m}:reference:{reference}:tx",
            Index::CreatedBy(_) => "merchant:{m}:created_by:{user}:tx",
            Index::Status(_) => "merchant:{m}:status:{status}:tx",
        }
    }

    /// The inverse of [`Index::key`]: the merchant and the index.
    fn parse(key: &str) -> Option<(&str, Index<'_>)> {
        let inner = key
            .strip_prefix(MERCHANT_PREFIX)?
            .strip_suffix(INDEX_SUFFIX)?;
        let Some((merchant, filtered)) = inner.split_once(':') else {
            return Some((inner, Index::All));
        };
        let (filter, value) = filtered.split_once(':')?;
        if value.is_empty() {
            return None;
        }
        let index = match filter {
            CUSTOMER => Index::Customer(value),
            REFERENCE => Index::Reference(value),
            CREATED_BY => Index::CreatedBy(value),
            STATUS => Index::Status(value.parse().ok()?),
            _ => return None,
        };
        Some((merchant, index))
    }
}

/// The fields of the record hash. Never the card number or CVC.
pub mod field {
    pub const ID: &str = "id";
    pub const MERCHANT_ID: &str = "merchant_id";
    pub const STATUS: &str = "status";
    pub const AMOUNT: &str = "amount";
    pub const CURRENCY: &str = "currency";
    pub const CUSTOMER_ID: &str = "customer_id";
    pub const REFERENCE: &str = "reference";
    pub const CREATED_BY: &str = "created_by";
    pub const BRAND: &str = "brand";
    pub const LAST4: &str = "last4";
    /// JSON object.
    pub const METADATA: &str = "metadata";
    pub const ATTEMPTS: &str = "attempts";
    pub const DECLINE_CODE: &str = "decline_code";
    pub const FAILURE_REASON: &str = "failure_reason";
    /// The name of the PSP that charged (status `succeeded` only).
    pub const PSP: &str = "psp";
    /// That PSP's id of the charge (`ch_…`), what refunds name.
    pub const PSP_REFERENCE: &str = "psp_reference";
    /// JSON array of [`crate::transaction::Attempt`], oldest first.
    pub const ATTEMPT_LOG: &str = "attempt_log";
    pub const REQUEST_ID: &str = "request_id";
    pub const CREATED_AT: &str = "created_at";
    pub const UPDATED_AT: &str = "updated_at";
    /// Minor units held by the transaction's refunds that have not failed
    /// (pending or succeeded): what may not exceed `amount`. Absent: 0.
    pub const REFUND_RESERVED: &str = "refund_reserved";
    /// Minor units of its succeeded refunds. Absent: 0.
    pub const REFUNDED_AMOUNT: &str = "refunded_amount";
}

// ----------------------------------------------------------------- refunds

const REFUND_PREFIX: &str = "refund:";
const REFUNDS_SUFFIX: &str = ":refunds";

/// The record hash of a refund: `refund:{id}` (fields: [`refund_field`]).
pub fn refund(id: &RefundId) -> String {
    [REFUND_PREFIX, id.as_str()].concat()
}

/// A transaction's refunds, `tx:{id}:refunds`: a sorted set of refund ids,
/// every score 0, so by id, and ids (UUIDv7) by creation time.
pub fn transaction_refunds(id: &TransactionId) -> String {
    [RECORD_PREFIX, id.as_str(), REFUNDS_SUFFIX].concat()
}

/// The stream refunds are queued on (core-api → psp-connector); each entry
/// holds a [`crate::refund::RefundMessage`] in [`PAYLOAD_FIELD`], and is
/// deleted once the refund is final.
pub const REFUND_STREAM: &str = "refunds";
/// The consumer group of all connector processes on [`REFUND_STREAM`].
pub const REFUND_GROUP: &str = "psp-connector-refunds";

/// The fields of a refund record hash.
pub mod refund_field {
    pub const ID: &str = "id";
    pub const TRANSACTION_ID: &str = "transaction_id";
    pub const MERCHANT_ID: &str = "merchant_id";
    /// `pending`, `succeeded` or `failed`.
    pub const STATUS: &str = "status";
    pub const AMOUNT: &str = "amount";
    pub const CURRENCY: &str = "currency";
    /// The PSP that charged the transaction, where the refund is made.
    pub const PSP: &str = "psp";
    /// That PSP's charge id, which the refund names.
    pub const PSP_REFERENCE: &str = "psp_reference";
    /// That PSP's id of the refund (`re_…`, status `succeeded` only).
    pub const PSP_REFUND_ID: &str = "psp_refund_id";
    /// Why it failed (status `failed` only).
    pub const FAILURE_REASON: &str = "failure_reason";
    /// Refund calls made at the PSP.
    pub const ATTEMPTS: &str = "attempts";
    pub const CREATED_BY: &str = "created_by";
    pub const REQUEST_ID: &str = "request_id";
    pub const CREATED_AT: &str = "created_at";
    pub const UPDATED_AT: &str = "updated_at";
}

// ------------------------------------------------------------------- queue

/// The stream transactions are queued on (core-api → psp-connector).
pub const STREAM: &str = "transactions";
/// Where undeliverable messages go, with the reason.
pub const DEAD_LETTER_STREAM: &str = "transactions:dead";
/// The consumer group of all connector processes.
pub const GROUP: &str = "psp-connector";
/// The stream entry field holding the JSON message.
pub const PAYLOAD_FIELD: &str = "payload";
/// Retries waiting for their due time: a sorted set, member = transaction
/// id, score = due Unix milliseconds.
pub const RETRY_SET: &str = "transactions:retry";
/// The message of each waiting retry: a hash by transaction id.
pub const RETRY_PAYLOADS: &str = "transactions:retry:payloads";

/// The fields of a dead letter on [`DEAD_LETTER_STREAM`] (never the
/// payload: its card is sealed, but a dead letter has no need of it).
pub mod dead_letter {
    pub const REASON: &str = "reason";
    pub const ERROR: &str = "error";
    pub const ENTRY_ID: &str = "entry_id";
    pub const DEAD_AT: &str = "dead_at";
    pub const TRANSACTION_ID: &str = "transaction_id";
    pub const REQUEST_ID: &str = "request_id";
    pub const ATTEMPTS: &str = "attempts";
}

// ------------------------------------------------------------------ events

const EVENT_PREFIX: &str = "evt:";
const EVENTS_SUFFIX: &str = ":events";
const EVENT_TYPE_INFIX: &str = ":events:type:";

/// The record hash of an event: `evt:{id}` (fields: [`event_field`]).
pub fn event(id: &EventId) -> String {
    [EVENT_PREFIX, id.as_str()].concat()
}

/// Every event of a merchant, `merchant:{m}:events`, or those of one type,
/// `merchant:{m}:events:type:{type}`: sorted sets of event ids, every score
/// 0, so by id, and ids (UUIDv7) by creation time, like [`Index`].
pub fn merchant_events(merchant: &str, event_type: Option<EventType>) -> String {
    match event_type {
        None => [MERCHANT_PREFIX, merchant, EVENTS_SUFFIX].concat(),
        Some(t) => [MERCHANT_PREFIX, merchant, EVENT_TYPE_INFIX, t.as_str()].concat(),
    }
}

/// The stream of new events (transition script → webhook-dispatcher); each
/// entry holds [`event_field::ID`], [`event_field::MERCHANT_ID`] and
/// [`event_field::TYPE`], and is deleted once fanned out to the endpoints.
pub const EVENT_STREAM: &str = "events";
/// The consumer group of all webhook-dispatcher processes.
pub const EVENT_GROUP: &str = "webhook-dispatcher";

/// The fields of an event record (and, the first three, of its stream
/// entry).
pub mod event_field {
    pub const ID: &str = "id";
    pub const MERCHANT_ID: &str = "merchant_id";
    pub const TYPE: &str = "type";
    pub const CREATED_AT: &str = "created_at";
    pub const TRANSACTION_ID: &str = "transaction_id";
    /// The transaction record hash as the status change left it, as a JSON
    /// object of strings.
    pub const OBJECT: &str = "object";
    /// Refund events only: the refund record hash as the settlement left
    /// it, as a JSON object of strings.
    pub const REFUND: &str = "refund";
}

// -------------------------------------------------------------- webhooks

const ENDPOINT_PREFIX: &str = "webhook_endpoint:";
const ENDPOINTS_SUFFIX: &str = ":webhook_endpoints";
const DUE_SUFFIX: &str = ":due";
const TRIES_SUFFIX: &str = ":tries";
const ATTEMPTS_SUFFIX: &str = ":attempts";

/// A webhook endpoint: `webhook_endpoint:{id}` (fields: [`endpoint_field`]).
pub fn webhook_endpoint(id: &EndpointId) -> String {
    format!("{ENDPOINT_PREFIX}{id}")
}

/// A merchant's endpoints, `merchant:{m}:webhook_endpoints`: a sorted set
/// of endpoint ids, every score 0 (by id, so by creation time).
pub fn merchant_webhook_endpoints(merchant: &str) -> String {
    format!("{MERCHANT_PREFIX}{merchant}{ENDPOINTS_SUFFIX}")
}

/// An endpoint's deliveries waiting for their (next) attempt,
/// `webhook_endpoint:{id}:due`: a sorted set, member = event id, score =
/// due Unix milliseconds (a claimed delivery's score is pushed out by the
/// lease, so a crashed dispatcher's deliveries come due again).
pub fn endpoint_due(id: &EndpointId) -> String {
    format!("{ENDPOINT_PREFIX}{id}{DUE_SUFFIX}")
}

/// Attempts made so far per waiting delivery, `webhook_endpoint:{id}:tries`:
/// a hash, event id → count.
pub fn endpoint_tries(id: &EndpointId) -> String {
    format!("{ENDPOINT_PREFIX}{id}{TRIES_SUFFIX}")
}

/// An endpoint's delivery log, `webhook_endpoint:{id}:attempts`: a capped
/// stream, one entry per attempt (fields: [`attempt_field`]).
pub fn endpoint_attempts(id: &EndpointId) -> String {
    format!("{ENDPOINT_PREFIX}{id}{ATTEMPTS_SUFFIX}")
}

/// Endpoints with deliveries waiting: a sorted set, member = endpoint id,
/// score = the earliest due time among its deliveries (Unix ms).
pub const WEBHOOK_DUE: &str = "webhooks:due";
/// Deliveries given up on, with the reason (fields: [`webhook_dead_field`]).
pub const WEBHOOK_DEAD: &str = "webhooks:dead";
/// The development sink's endpoint of each merchant it was created for: a
/// hash, merchant → endpoint id, so it is created once, not again after
/// the merchant deleted it.
pub const WEBHOOK_DEV_SINK: &str = "webhooks:dev_sink";

/// The fields of a webhook endpoint hash. The secrets are stored: the
/// dispatcher signs with them; they are never logged or shown again.
pub mod endpoint_field {
    pub const ID: &str = "id";
    pub const MERCHANT_ID: &str = "merchant_id";
    pub const URL: &str = "url";
    /// Comma-separated event types, or `*`.
    pub const EVENTS: &str = "events";
    pub const DESCRIPTION: &str = "description";
    pub const SECRET: &str = "secret";
    /// The secret before the last rotation, valid until
    /// [`PREVIOUS_SECRET_EXPIRES_AT`] (Unix ms).
    pub const PREVIOUS_SECRET: &str = "previous_secret";
    pub const PREVIOUS_SECRET_EXPIRES_AT: &str = "previous_secret_expires_at";
    pub const CREATED_AT: &str = "created_at";
}

/// The fields of a delivery-log entry.
pub mod attempt_field {
    pub const EVENT_ID: &str = "event_id";
    pub const ATTEMPT: &str = "attempt";
    /// The HTTP status, absent when there was no answer.
    pub const STATUS_CODE: &str = "status_code";
    /// Why the attempt failed without an answer (`timeout`, `connect`, …).
    pub const ERROR: &str = "error";
    pub const LATENCY_MS: &str = "latency_ms";
    /// `delivered`, `retrying` or `dead`.
    pub const OUTCOME: &str = "outcome";
    pub const AT: &str = "at";
}

/// The fields of a dead delivery on [`WEBHOOK_DEAD`].
pub mod webhook_dead_field {
    pub const ENDPOINT_ID: &str = "endpoint_id";
    pub const EVENT_ID: &str = "event_id";
    pub const MERCHANT_ID: &str = "merchant_id";
    pub const REASON: &str = "reason";
    pub const ATTEMPTS: &str = "attempts";
    pub const DEAD_AT: &str = "dead_at";
}

// ------------------------------------------------------------------- PSPs

const PSP_PREFIX: &str = "psp:";
const BREAKER_SUFFIX: &str = ":breaker";

/// The PSPs the connectors were started with, name → base URL (a hash,
/// written by every connector at start; what `GET /psps` lists).
pub const PSP_DIRECTORY: &str = "psps";

/// The circuit breaker of one PSP, shared by every connector:
/// `psp:{name}:breaker` (a hash, fields [`breaker_field`]).
pub fn breaker(psp: &crate::psp::PspName) -> String {
    [PSP_PREFIX, psp.as_str(), BREAKER_SUFFIX].concat()
}

/// The fields of a [`breaker`] hash.
pub mod breaker_field {
    /// `closed`, `open` or `half_open`.
    pub const STATE: &str = "state";
    /// Failures in the current window.
    pub const FAILURES: &str = "failures";
    /// Calls (failed or not) in the current window.
    pub const CALLS: &str = "calls";
    pub const WINDOW_STARTED_MS: &str = "window_started_ms";
    pub const OPENED_AT_MS: &str = "opened_at_ms";
    /// When the probe under way (state `half_open`) began.
    pub const PROBE_STARTED_MS: &str = "probe_started_ms";
}

// ------------------------------------------------------------- idempotency

const IDEMPOTENCY_PREFIX: &str = "idem:";

/// A merchant's `Idempotency-Key` entry: `idem:{merchant}:{key}` (a string,
/// JSON; core-api's `idempotency` module).
pub fn idempotency(merchant: &str, key: &str) -> String {
    [IDEMPOTENCY_PREFIX, merchant, ":", key].concat()
}

// -------------------------------------------------------------------- auth

const LOGIN_ATTEMPTS_PREFIX: &str = "auth:logins:";

/// The failed-login counters of one username, by a fixed-length hex digest
/// of the name (auth-api's `limiter`): `auth:logins:{digest}`.
pub fn login_attempts(username_digest: &str) -> String {
    format!("{LOGIN_ATTEMPTS_PREFIX}{username_digest}")
}

/// The fields of a [`login_attempts`] hash.
pub mod login_field {
    /// Failed logins in the current window.
    pub const FAILURES: &str = "failures";
    /// Password checks under way.
    pub const IN_FLIGHT: &str = "inflight";
}

// ------------------------------------------------- API keys and user links

const API_KEY_PREFIX: &str = "api_key:";
const API_KEYS_SUFFIX: &str = ":api_keys";
const USER_INFIX: &str = ":user:";
const USER_CUSTOMERS_SUFFIX: &str = ":customers";
const USER_SEEDED_SUFFIX: &str = ":seeded";

/// One live API key, found by the SHA-256 of its secret:
/// `api_key:{sha256 hex}` (a hash, fields [`api_key_field`]): what a
/// verifier reads. Deleted when the key is revoked.
pub fn api_key_by_hash(hash: &KeyHash) -> String {
    format!("{API_KEY_PREFIX}{}", hash.to_hex())
}

/// The fields of an [`api_key_by_hash`] hash.
pub mod api_key_field {
    /// The key's id, `key_…`.
    pub const ID: &str = "id";
    pub const MERCHANT: &str = "merchant";
}

/// A merchant's live API keys: `merchant:{m}:api_keys`, a hash of key id →
/// JSON of its name, creation time, last four characters and secret hash
/// (never the secret).
pub fn merchant_api_keys(merchant: &str) -> String {
    format!("{MERCHANT_PREFIX}{merchant}{API_KEYS_SUFFIX}")
}

/// The customer ids `user` of `merchant` may act for:
/// `merchant:{m}:user:{u}:customers`, a set.
pub fn user_customers(merchant: &str, user: &str) -> String {
    [
        MERCHANT_PREFIX,
        merchant,
        USER_INFIX,
        user,
        USER_CUSTOMERS_SUFFIX,
    ]
    .concat()
}

/// `merchant:{m}:user:{u}:seeded`, present once the users file's links of
/// `user` were written, so that a restart does not bring back a link that
/// was removed since.
pub fn user_links_seeded(merchant: &str, user: &str) -> String {
    format!("{MERCHANT_PREFIX}{merchant}{USER_INFIX}{user}{USER_SEEDED_SUFFIX}")
}

/// The owner of a key under `merchant:` that is not a transaction index.
fn access_owner(key: &str) -> Option<&'static str> {
    let rest = key.strip_prefix(MERCHANT_PREFIX)?;
    if let Some(merchant) = rest.strip_suffix(API_KEYS_SUFFIX) {
        return is_identifier(merchant).then_some("merchant:{m}:api_keys");
    }
    let (merchant, user_key) = rest.split_once(USER_INFIX)?;
    if !is_identifier(merchant) {
        return None;
    }
    if let Some(user) = user_key.strip_suffix(USER_CUSTOMERS_SUFFIX) {
        return is_identifier(user).then_some("merchant:{m}:user:{u}:customers");
    }
    let user = user_key.strip_suffix(USER_SEEDED_SUFFIX)?;
    is_identifier(user).then_some("merchant:{m}:user:{u}:seeded")
}

// --------------------------------------------------------------- benchmark

/// The stream `redis-benchmark` XADDs to as the reference of the
/// benchmark's settle row (`cargo run --release -p bench`); deleted after.
pub const BENCH_XADD_REFERENCE: &str = "bench:xadd-reference";

// ------------------------------------------------------------------- audit

/// Which of this module's names `key` is (`"tx:{id}"`, `"merchant:{m}:tx"`,
/// …), or `None` when no code here builds it: for tests that check nothing
/// else writes to Redis.
pub fn owner(key: &str) -> Option<&'static str> {
    let constants = [
        (STREAM, "transactions"),
        (DEAD_LETTER_STREAM, "transactions:dead"),
        (RETRY_SET, "transactions:retry"),
        (RETRY_PAYLOADS, "transactions:retry:payloads"),
        (EVENT_STREAM, "events"),
        (WEBHOOK_DUE, "webhooks:due"),
        (WEBHOOK_DEAD, "webhooks:dead"),
        (WEBHOOK_DEV_SINK, "webhooks:dev_sink"),
        (BENCH_XADD_REFERENCE, "bench:xadd-reference"),
        (PSP_DIRECTORY, "psps"),
        (REFUND_STREAM, "refunds"),
    ];
    if let Some((_, name)) = constants.iter().find(|(constant, _)| *constant == key) {
        return Some(name);
    }
    if let Some(name) = key
        .strip_prefix(PSP_PREFIX)
        .and_then(|rest| rest.strip_suffix(BREAKER_SUFFIX))
    {
        return crate::psp::PspName::parse(name)
            .is_ok()
            .then_some("psp:{name}:breaker");
    }
    if let Some(id) = key.strip_prefix(RECORD_PREFIX) {
        if let Some(id) = id.strip_suffix(REFUNDS_SUFFIX) {
            return TransactionId::parse(id)
                .is_ok()
                .then_some("tx:{id}:refunds");
        }
        return TransactionId::parse(id).is_ok().then_some("tx:{id}");
    }
    if let Some(id) = key.strip_prefix(REFUND_PREFIX) {
        return RefundId::parse(id).is_ok().then_some("refund:{id}");
    }
    if let Some(id) = key.strip_prefix(EVENT_PREFIX) {
        return EventId::parse(id).is_some().then_some("evt:{id}");
    }
    if let Some(rest) = key.strip_prefix(ENDPOINT_PREFIX) {
        let (id, suffix) = match rest.find(':') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        EndpointId::parse(id)?;
        return match suffix {
            "" => Some("webhook_endpoint:{id}"),
            DUE_SUFFIX => Some("webhook_endpoint:{id}:due"),
            TRIES_SUFFIX => Some("webhook_endpoint:{id}:tries"),
            ATTEMPTS_SUFFIX => Some("webhook_endpoint:{id}:attempts"),
            _ => None,
        };
    }
    if let Some(rest) = key.strip_prefix(MERCHANT_PREFIX) {
        if let Some(merchant) = rest.strip_suffix(EVENTS_SUFFIX) {
            return is_identifier(merchant).then_some("merchant:{m}:events");
        }
        if let Some(merchant) = rest.strip_suffix(ENDPOINTS_SUFFIX) {
            return is_identifier(merchant).then_some("merchant:{m}:webhook_endpoints");
        }
        if let Some((merchant, event_type)) = rest.split_once(EVENT_TYPE_INFIX) {
            return (is_identifier(merchant) && event_type.parse::<EventType>().is_ok())
                .then_some("merchant:{m}:events:type:{type}");
        }
    }
    if let Some(rest) = key.strip_prefix(IDEMPOTENCY_PREFIX) {
        let (merchant, idempotency_key) = rest.split_once(':')?;
        return (is_identifier(merchant) && !idempotency_key.is_empty())
            .then_some("idem:{merchant}:{key}");
    }
    if let Some(digest) = key.strip_prefix(LOGIN_ATTEMPTS_PREFIX) {
        return (!digest.is_empty() && digest.bytes().all(|b| b.is_ascii_hexdigit()))
            .then_some("auth:logins:{digest}");
    }
    if let Some(hex) = key.strip_prefix(API_KEY_PREFIX) {
        return KeyHash::from_hex(hex)
            .is_some()
            .then_some("api_key:{sha256}");
    }
    if let Some(owner) = access_owner(key) {
        return Some(owner);
    }
    let (merchant, index) = Index::parse(key)?;
    is_identifier(merchant).then(|| index.pattern())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_built_here_has_an_owner() {
        let id = TransactionId::generate();
        let mut keys = vec![
            record(&id),
            idempotency("acme", "order-42"),
            login_attempts("0123abcd"),
            api_key_by_hash(&KeyHash::of("sk_test_x")),
            merchant_api_keys("acme"),
            user_customers("acme", "alice"),
            user_links_seeded("acme", "alice"),
            STREAM.to_owned(),
            DEAD_LETTER_STREAM.to_owned(),
            RETRY_SET.to_owned(),
            RETRY_PAYLOADS.to_owned(),
            event(&EventId::generate()),
            merchant_events("acme", None),
            EVENT_STREAM.to_owned(),
            WEBHOOK_DUE.to_owned(),
            WEBHOOK_DEAD.to_owned(),
            WEBHOOK_DEV_SINK.to_owned(),
            BENCH_XADD_REFERENCE.to_owned(),
            PSP_DIRECTORY.to_owned(),
            breaker(&crate::psp::PspName::parse("psp-a").unwrap()),
            refund(&RefundId::generate()),
            transaction_refunds(&id),
            REFUND_STREAM.to_owned(),
        ];
        keys.extend(
            EventType::ALL
                .iter()
                .map(|t| merchant_events("acme", Some(*t))),
        );
        let endpoint = EndpointId::generate();
        keys.extend([
            webhook_endpoint(&endpoint),
            merchant_webhook_endpoints("acme"),
            endpoint_due(&endpoint),
            endpoint_tries(&endpoint),
            endpoint_attempts(&endpoint),
        ]);
        keys.extend(
            [
                Index::All,
                Index::Customer("cus_1"),
                Index::Reference("order:42"),
                Index::CreatedBy("alice"),
            ]
            .iter()
            .chain(Status::ALL.map(Index::Status).iter())
            .map(|index| index.key("acme")),
        );
        for key in keys {
            assert!(owner(&key).is_some(), "{key} has no owner");
        }
    }

    #[test]
    fn names_built_elsewhere_have_none() {
        for key in [
            "tx:123",
            "merchant:acme:colour:red:tx",
            "merchant:acme:status:refunded:tx",
            "merchant::tx",
            "idem:acme",
            "auth:logins:alice",
            "session:1",
            "transactions:other",
            "evt:1",
            "webhook_endpoint:we_1",
            "merchant:acme:events:type:charge.refunded",
            "events:other",
            "api_key:abc",
            "merchant:acme:user:alice:friends",
            "merchant:acme:user::customers",
            "merchant:a:b:api_keys",
            "refund:re_1",
            "tx:tx_1:refunds",
            "refunds:other",
        ] {
            assert_eq!(owner(key), None, "{key}");
        }
    }

    #[test]
    fn index_keys_are_the_documented_layout() {
        assert_eq!(Index::All.key("acme"), "merchant:acme:tx");
        assert_eq!(
            Index::Status(Status::Pending).key("acme"),
            "merchant:acme:status:pending:tx"
        );
        assert_eq!(
            Index::CreatedBy("alice").key("acme"),
            "merchant:acme:created_by:alice:tx"
        );
    }
}
