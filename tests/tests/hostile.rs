//! Hostile input through the gateway, table-driven: every case must be
//! answered with the 4xx status and the stable error `code` the table
//! names, as a JSON error body — never a 5xx — and must leave Redis exactly
//! as it was (same keys, same stream and index lengths). The one deliberate
//! exception is a failed login, which counts against the username in
//! auth-api's brute-force limiter (`auth:logins:*`): that write is the
//! defence, and the cases that cause it say so.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::client::APPROVED;
use e2e::client::{self, http_client, login, payment};
use e2e::stack::Stack;
use platform::auth::{AUDIENCE, Claims, ISSUER};
use reqwest::Method;
use serde_json::{Value, json};

/// Who the request claims to be.
#[derive(Clone)]
enum Auth {
    Alice,
    Bob,
    /// An API key of alice's merchant (acme), of bob's (globex).
    AliceKey,
    BobKey,
    None,
    /// The whole `Authorization` header value.
    Header(String),
}

struct Case {
    name: String,
    method: Method,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
    auth: Auth,
    status: u16,
    code: &'static str,
    /// A failed login: the limiter's counter may change.
    counts_login_failure: bool,
}

impl Case {
    fn new(name: impl Into<String>, method: Method, path: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            method,
            path: path.into(),
            headers: Vec::new(),
            body: None,
            auth: Auth::Alice,
            status: 0,
            code: "",
            counts_login_failure: false,
        }
    }
    /// Sets `name` (replacing an earlier value).
    fn header(self, name: &str, value: &str) -> Self {
        self.raw_header(name, value.as_bytes())
    }
    /// A header value as bytes (obs-text, which `&str` headers refuse).
    fn raw_header(mut self, name: &str, value: &[u8]) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.to_vec()));
        self
    }
    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }
    fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
    fn expect(mut self, status: u16, code: &'static str) -> Self {
        self.status = status;
        self.code = code;
        self
    }
    fn counts_login_failure(mut self) -> Self {
        self.counts_login_failure = true;
        self
    }
}

/// `POST /transactions` with a JSON content type, a fresh key and `body`.
fn pay(name: &str, body: impl Into<Vec<u8>>) -> Case {
    Case::new(name, Method::POST, "/transactions")
        .header("content-type", "application/json")
        .header("idempotency-key", &uuid::Uuid::new_v4().to_string())
        .body(body)
}

/// The valid payment with the value at JSON pointer `at` replaced (or
/// removed, for None).
fn with(at: &str, value: Option<Value>) -> Vec<u8> {
    let mut body = payment(APPROVED, "cus_1", "ref-hostile");
    let (parent, key) = at.rsplit_once('/').unwrap();
    let target = body.pointer_mut(parent).unwrap().as_object_mut().unwrap();
    match value {
        Some(value) => target.insert(key.to_owned(), value),
        None => target.remove(key),
    };
    serde_json::to_vec(&body).unwrap()
}

fn valid() -> String {
    payment(APPROVED, "cus_1", "ref-hostile").to_string()
}

/// `POST /auth/token` with `content_type` and `body`.
fn token(name: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Case {
    Case::new(name, Method::POST, "/auth/token")
        .header("content-type", content_type)
        .body(body)
        .auth(Auth::None)
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(exp: u64) -> Claims {
    Claims {
        sub: "alice".into(),
        mid: "acme".into(),
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        iat: exp.saturating_sub(30),
        exp,
        jti: uuid::Uuid::new_v4().to_string(),
    }
}

fn sign(algorithm: jsonwebtoken::Algorithm, claims: &Claims, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(algorithm),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// Forged, expired and otherwise unacceptable tokens.
fn token_cases(secret: &str) -> Vec<Case> {
    use jsonwebtoken::Algorithm::{HS256, HS512};
    let valid_claims = claims(now() + 300);
    let payload = base64url(serde_json::to_string(&valid_claims).unwrap().as_bytes());
    let none_header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    let genuine = sign(HS256, &valid_claims, secret.as_bytes());
    let genuine_signature = genuine.rsplit('.').next().unwrap().to_owned();
    let mut wrong_audience = valid_claims.clone();
    wrong_audience.aud = "someone-else".into();
    let mut other_issuer = valid_claims.clone();
    other_issuer.iss = "evil-issuer".into();
    let list = |name: &str, header: String| {
        Case::new(name, Method::GET, "/transactions")
            .auth(Auth::Header(header))
            .expect(401, "token_invalid")
    };
    vec![
        Case::new("no Authorization header", Method::GET, "/transactions")
            .auth(Auth::None)
            .expect(401, "missing_token"),
        Case::new("Basic credentials", Method::GET, "/transactions")
            .auth(Auth::Header("Basic YWxpY2U6cGFzc3dvcmQ=".into()))
            .expect(401, "missing_token"),
        Case::new("empty Bearer", Method::GET, "/transactions")
            .auth(Auth::Header("Bearer ".into()))
            .expect(401, "missing_token"),
        list("garbage token", "Bearer not.a.jwt".into()),
        list(
            "alg none, no signature",
            format!("Bearer {none_header}.{payload}."),
        ),
        list(
            "alg none with the genuine signature",
            format!("Bearer {none_header}.{payload}.{genuine_signature}"),
        ),
        list(
            "signed with another secret",
            format!(
                "Bearer {}",
                sign(
                    HS256,
                    &valid_claims,
                    b"another-secret-another-secret-another-secret"
                )
            ),
        ),
        list(
            "HS512 with the right secret",
            format!("Bearer {}", sign(HS512, &valid_claims, secret.as_bytes())),
        ),
        list(
            "wrong audience",
            format!("Bearer {}", sign(HS256, &wrong_audience, secret.as_bytes())),
        ),
        list(
            "other issuer",
            format!("Bearer {}", sign(HS256, &other_issuer, secret.as_bytes())),
        ),
        list(
            "payload swapped under a genuine signature",
            format!(
                "Bearer {}.{}.{genuine_signature}",
                genuine.split('.').next().unwrap(),
                base64url(br#"{"sub":"alice","mid":"globex","iss":"payment-platform/auth-api","aud":"payment-platform/core-api","iat":1,"exp":99999999999,"jti":"x"}"#)
            ),
        ),
        list("8 KiB token", format!("Bearer {}", "A".repeat(8 * 1024))),
        Case::new("expired token", Method::GET, "/transactions")
            .auth(Auth::Header(format!(
                "Bearer {}",
                sign(HS256, &claims(now() - 60), secret.as_bytes())
            )))
            .expect(401, "token_expired"),
    ]
}

fn corpus(secret: &str, alices_transaction: &str) -> Vec<Case> {
    let mut cases = vec![
        // Malformed and truncated JSON.
        pay("truncated JSON", &valid()[..40]).expect(400, "malformed_body"),
        pay("empty body", "").expect(400, "malformed_body"),
        pay("not JSON", "amount=1299").expect(400, "malformed_body"),
        pay("trailing garbage", format!("{} x", valid())).expect(400, "malformed_body"),
        pay("two documents", format!("{}{}", valid(), valid())).expect(400, "malformed_body"),
        pay("JSON null", "null").expect(422, "invalid_field"),
        pay("JSON array", "[]").expect(422, "invalid_field"),
        pay("JSON string", "\"pay me\"").expect(422, "invalid_field"),
        pay("single quotes", valid().replace('"', "'")).expect(400, "malformed_body"),
        pay("comment in JSON", format!("/* hi */{}", valid())).expect(400, "malformed_body"),
        // Amounts.
        pay("amount as string", with("/amount", Some(json!("1299")))).expect(422, "invalid_amount"),
        pay("amount as float", with("/amount", Some(json!(12.99)))).expect(422, "invalid_amount"),
        pay("zero amount", with("/amount", Some(json!(0)))).expect(422, "invalid_amount"),
        pay("negative amount", with("/amount", Some(json!(-1299)))).expect(422, "invalid_amount"),
        pay("amount 1e30", valid().replace("1299", "1e30")).expect(422, "invalid_amount"),
        pay(
            "amount 2^64",
            valid().replace("1299", "18446744073709551616"),
        )
        .expect(422, "invalid_amount"),
        pay(
            "amount with 400 digits",
            valid().replace("1299", &"9".repeat(400)),
        )
        // Beyond what a JSON number can hold (f64): not JSON the parser accepts.
        .expect(400, "malformed_body"),
        pay(
            "amount over 10^12",
            with("/amount", Some(json!(1_000_000_000_001u64))),
        )
        .expect(422, "invalid_amount"),
        pay("amount true", with("/amount", Some(json!(true)))).expect(422, "invalid_amount"),
        pay("amount null", with("/amount", Some(Value::Null))).expect(422, "invalid_amount"),
        pay("amount missing", with("/amount", None)).expect(422, "missing_field"),
        // Currencies.
        pay("lower-case currency", with("/currency", Some(json!("eur"))))
            .expect(422, "invalid_currency"),
        pay("unknown currency", with("/currency", Some(json!("ABC"))))
            .expect(422, "invalid_currency"),
        pay(
            "four-letter currency",
            with("/currency", Some(json!("EURO"))),
        )
        .expect(422, "invalid_currency"),
        pay("empty currency", with("/currency", Some(json!("")))).expect(422, "invalid_currency"),
        pay("numeric currency", with("/currency", Some(json!(978)))).expect(422, "invalid_field"),
        // Cards.
        pay(
            "non-Luhn card",
            with("/payment_method/number", Some(json!("4242424242424241"))),
        )
        .expect(422, "invalid_card_number"),
        pay(
            "letters in card",
            with("/payment_method/number", Some(json!("4242abcd42424242"))),
        )
        .expect(422, "invalid_card_number"),
        pay(
            "card as JSON number",
            valid().replace(&format!("\"{APPROVED}\""), APPROVED),
        )
        .expect(422, "invalid_card_number"),
        pay(
            "short card",
            with("/payment_method/number", Some(json!("4242"))),
        )
        .expect(422, "invalid_card_number"),
        pay(
            "25-digit card",
            with(
                "/payment_method/number",
                Some(json!("4242424242424242424242424")),
            ),
        )
        .expect(422, "invalid_card_number"),
        pay(
            "full-width digits",
            with(
                "/payment_method/number",
                Some(json!("４２４２４２４２４２４２４２４２")),
            ),
        )
        .expect(422, "invalid_card_number"),
        pay(
            "expired card",
            with("/payment_method/expiry_year", Some(json!(2020))),
        )
        .expect(422, "card_expired"),
        pay(
            "month 13",
            with("/payment_method/expiry_month", Some(json!(13))),
        )
        .expect(422, "invalid_expiry"),
        pay(
            "month 0",
            with("/payment_method/expiry_month", Some(json!(0))),
        )
        .expect(422, "invalid_expiry"),
        pay(
            "two-digit year",
            with("/payment_method/expiry_year", Some(json!(30))),
        )
        .expect(422, "invalid_expiry"),
        pay("short CVC", with("/payment_method/cvc", Some(json!("12")))).expect(422, "invalid_cvc"),
        pay(
            "letters in CVC",
            with("/payment_method/cvc", Some(json!("abc"))),
        )
        .expect(422, "invalid_cvc"),
        pay(
            "bank transfer",
            with("/payment_method/type", Some(json!("bank"))),
        )
        .expect(422, "invalid_payment_method_type"),
        pay("no payment method", with("/payment_method", None)).expect(422, "missing_field"),
        pay(
            "payment method as string",
            with("/payment_method", Some(json!("card"))),
        )
        .expect(422, "invalid_field"),
        // Shape: unknown fields, duplicate keys, nesting, size, encoding.
        pay("unknown field", with("/surprise", Some(json!(1)))).expect(422, "unknown_field"),
        pay(
            "unknown card field",
            with("/payment_method/pan", Some(json!(APPROVED))),
        )
        .expect(422, "unknown_field"),
        pay(
            "duplicate amount key",
            valid().replacen("{", "{\"amount\":1,", 1),
        )
        .expect(422, "invalid_field"),
        pay(
            "deeply nested metadata",
            valid().replace(
                "{\"source\":\"e2e\"}",
                &format!("{{\"a\":{}{}}}", "[".repeat(5000), "]".repeat(5000)),
            ),
        )
        .expect(400, "malformed_body"),
        pay(
            "metadata value an object",
            with("/metadata", Some(json!({"a": {"b": "c"}}))),
        )
        .expect(422, "invalid_metadata"),
        pay(
            "21 metadata keys",
            with(
                "/metadata",
                Some(Value::Object(
                    (0..21).map(|i| (format!("k{i}"), json!("v"))).collect(),
                )),
            ),
        )
        .expect(422, "invalid_metadata"),
        pay("65 KiB body", vec![b' '; 65 * 1024]).expect(413, "body_too_large"),
        pay("invalid UTF-8", {
            let mut body = valid().into_bytes();
            body.splice(1..1, [0xff, 0xfe]);
            body
        })
        .expect(400, "malformed_body"),
        pay(
            "invalid UTF-8 in a string",
            valid()
                .replace("ref-hostile", "ref-\u{1}")
                .into_bytes()
                .into_iter()
                .map(|b| if b == 1 { 0xc3 } else { b })
                .collect::<Vec<u8>>(),
        )
        .expect(400, "malformed_body"),
        pay(
            "customer id 65 characters",
            with("/customer_id", Some(json!("c".repeat(65)))),
        )
        .expect(422, "invalid_customer_id"),
        pay(
            "customer id path traversal",
            with("/customer_id", Some(json!("../../etc/passwd"))),
        )
        .expect(422, "invalid_customer_id"),
        pay(
            "Redis glob in customer id",
            with("/customer_id", Some(json!("*"))),
        )
        .expect(422, "invalid_customer_id"),
        pay(
            "newline in reference",
            with("/reference", Some(json!("order\r\nX-Evil: 1"))),
        )
        .expect(422, "invalid_reference"),
        pay(
            "1000-character reference",
            with("/reference", Some(json!("r".repeat(1000)))),
        )
        .expect(422, "invalid_reference"),
        // Content types.
        pay("text/plain", valid())
            .header("content-type", "text/plain")
            .expect(415, "unsupported_media_type"),
        Case::new("no content type", Method::POST, "/transactions")
            .header("idempotency-key", "no-content-type")
            .body(valid())
            .expect(415, "unsupported_media_type"),
        pay("form body", "amount=1299&currency=EUR")
            .header("content-type", "application/x-www-form-urlencoded")
            .expect(415, "unsupported_media_type"),
        pay("multipart", valid())
            .header("content-type", "multipart/form-data; boundary=x")
            .expect(415, "unsupported_media_type"),
        // Idempotency keys and headers.
        pay("256-character Idempotency-Key", valid())
            .header("idempotency-key", &"k".repeat(256))
            .expect(400, "invalid_idempotency_key"),
        pay("Idempotency-Key with spaces only", valid())
            .header("idempotency-key", "   ")
            .expect(400, "invalid_idempotency_key"),
        pay("Idempotency-Key with a tab", valid())
            .header("idempotency-key", "a\tb")
            .expect(400, "invalid_idempotency_key"),
        pay("UTF-8 Idempotency-Key", valid())
            .raw_header("idempotency-key", "clé-ünïcode".as_bytes())
            .expect(400, "invalid_idempotency_key"),
        pay("Latin-1 byte in Idempotency-Key", valid())
            .raw_header("idempotency-key", b"key-\xff")
            .expect(400, "invalid_idempotency_key"),
        pay("valid key, hostile X-Request-Id, bad body", "{")
            .header("x-request-id", "\"},\"level\":\"ERROR\",\"forged\":\"")
            .expect(400, "malformed_body"),
        // Ids in paths.
        Case::new(
            "path traversal in id",
            Method::GET,
            "/transactions/..%2F..%2Fhealthz",
        )
        // The gateway refuses any path with an encoded slash.
        .expect(400, "invalid_path"),
        Case::new(
            "encoded dot segments",
            Method::GET,
            "/transactions/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        )
        // The gateway refuses any path with an encoded slash.
        .expect(400, "invalid_path"),
        Case::new("Redis glob as id", Method::GET, "/transactions/tx_*").expect(404, "not_found"),
        Case::new(
            "300-character id",
            Method::GET,
            format!("/transactions/tx_{}", "0".repeat(300)),
        )
        .expect(404, "not_found"),
        Case::new(
            "CRLF in id",
            Method::GET,
            "/transactions/tx_1%0d%0aSet-Cookie:%20evil=1",
        )
        .expect(404, "not_found"),
        Case::new(
            "another merchant's transaction",
            Method::GET,
            format!("/transactions/{alices_transaction}"),
        )
        .auth(Auth::Bob)
        .expect(404, "not_found"),
        Case::new(
            "upper-cased id",
            Method::GET,
            format!("/transactions/{}", alices_transaction.to_uppercase()),
        )
        .expect(404, "not_found"),
        // List parameters.
        Case::new("limit 0", Method::GET, "/transactions?limit=0").expect(400, "invalid_parameter"),
        Case::new("limit 101", Method::GET, "/transactions?limit=101")
            .expect(400, "invalid_parameter"),
        Case::new(
            "limit 2^70",
            Method::GET,
            "/transactions?limit=1180591620717411303424",
        )
        .expect(400, "invalid_parameter"),
        Case::new("limit text", Method::GET, "/transactions?limit=ten")
            .expect(400, "invalid_parameter"),
        Case::new("unknown status", Method::GET, "/transactions?status=stolen")
            .expect(400, "invalid_parameter"),
        Case::new("bad from", Method::GET, "/transactions?from=yesterday")
            .expect(400, "invalid_parameter"),
        Case::new("unknown parameter", Method::GET, "/transactions?admin=true")
            .expect(400, "unknown_parameter"),
        Case::new(
            "over-long customer filter",
            Method::GET,
            format!("/transactions?customer_id={}", "c".repeat(300)),
        )
        .expect(400, "invalid_parameter"),
        Case::new(
            "glob in cursor",
            Method::GET,
            "/transactions?starting_after=*",
        )
        .expect(400, "invalid_parameter"),
        // Methods and routes.
        Case::new("DELETE a transaction", Method::DELETE, "/transactions/tx_1")
            .expect(405, "method_not_allowed"),
        Case::new("PUT the collection", Method::PUT, "/transactions")
            .expect(405, "method_not_allowed"),
        Case::new("unknown route", Method::GET, "/admin").expect(404, "route_not_found"),
        // Auth endpoint abuse.
        token("login: empty JSON object", "application/json", "{}").expect(422, "missing_field"),
        token(
            "login: no password",
            "application/x-www-form-urlencoded",
            "username=alice",
        )
        .expect(422, "missing_field"),
        token(
            "login: 65-character username",
            "application/x-www-form-urlencoded",
            format!("username={}&password=x", "a".repeat(65)),
        )
        .expect(422, "invalid_field"),
        token(
            "login: 1025-byte password",
            "application/json",
            json!({"username": "alice", "password": "p".repeat(1025)}).to_string(),
        )
        .expect(422, "invalid_field"),
        token(
            "login: control character in username",
            "application/json",
            json!({"username": "al\u{0}ice", "password": "x"}).to_string(),
        )
        .expect(422, "invalid_field"),
        token(
            "login: username as number",
            "application/json",
            r#"{"username": 1, "password": "x"}"#,
        )
        .expect(422, "invalid_field"),
        token("login: text/plain", "text/plain", "alice:password")
            .expect(415, "unsupported_media_type"),
        token(
            "login: truncated JSON",
            "application/json",
            "{\"username\":",
        )
        .expect(400, "malformed_body"),
        token(
            "login: client_credentials grant",
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials&username=alice&password=x",
        )
        .expect(400, "unsupported_grant_type"),
        token(
            "login: 65 KiB form",
            "application/x-www-form-urlencoded",
            format!("username=alice&password={}", "p".repeat(65 * 1024)),
        )
        .expect(413, "body_too_large"),
        token(
            "login: unknown user",
            "application/json",
            json!({"username": "mallory", "password": "hunter2-hostile"}).to_string(),
        )
        .expect(401, "invalid_credentials")
        .counts_login_failure(),
        token(
            "login: SQL in the username",
            "application/x-www-form-urlencoded",
            "username=alice'%20OR%20'1'='1&password=hunter2-hostile",
        )
        .expect(401, "invalid_credentials")
        .counts_login_failure(),
        Case::new("login: GET", Method::GET, "/auth/token")
            .auth(Auth::None)
            .expect(405, "method_not_allowed"),
    ];
    cases.extend(token_cases(secret));
    cases.extend(access_cases());
    cases
}

/// The API key and link routes, and forged keys; none may write anything.
fn access_cases() -> Vec<Case> {
    let create_key = |name: &str, content_type: &str, body: &str| {
        Case::new(name, Method::POST, "/auth/api_keys")
            .header("content-type", content_type)
            .body(body.to_owned())
    };
    let link =
        |name: &str, method: Method, path: &str| Case::new(name, method, path).auth(Auth::AliceKey);
    let key_header = |key: String| Auth::Header(format!("Bearer {key}"));
    vec![
        create_key("key: empty JSON object", "application/json", "{}").expect(422, "missing_field"),
        create_key("key: empty name", "application/json", r#"{"name":""}"#)
            .expect(422, "invalid_name"),
        create_key(
            "key: 101-character name",
            "application/json",
            &json!({"name": "n".repeat(101)}).to_string(),
        )
        .expect(422, "invalid_name"),
        create_key(
            "key: control character in name",
            "application/json",
            &json!({"name": "a\u{7}b"}).to_string(),
        )
        .expect(422, "invalid_name"),
        create_key("key: name as number", "application/json", r#"{"name":1}"#)
            .expect(422, "invalid_field"),
        create_key(
            "key: unknown field",
            "application/json",
            r#"{"name":"x","merchant_id":"globex"}"#,
        )
        .expect(422, "unknown_field"),
        create_key("key: text/plain", "text/plain", "name=x").expect(415, "unsupported_media_type"),
        create_key("key: truncated JSON", "application/json", r#"{"name":"#)
            .expect(400, "malformed_body"),
        create_key(
            "key: created with an API key",
            "application/json",
            r#"{"name":"x"}"#,
        )
        .auth(Auth::AliceKey)
        .expect(403, "user_token_required"),
        create_key("key: no credentials", "application/json", r#"{"name":"x"}"#)
            .auth(Auth::None)
            .expect(401, "missing_token"),
        Case::new("key: list with an API key", Method::GET, "/auth/api_keys")
            .auth(Auth::AliceKey)
            .expect(403, "user_token_required"),
        Case::new("key: revoke a glob", Method::DELETE, "/auth/api_keys/key_*")
            .expect(404, "api_key_not_found"),
        Case::new(
            "key: revoke an unknown id",
            Method::DELETE,
            format!("/auth/api_keys/key_{}", "0".repeat(32)),
        )
        .expect(404, "api_key_not_found"),
        Case::new(
            "key: revoke a 300-character id",
            Method::DELETE,
            format!("/auth/api_keys/{}", "k".repeat(300)),
        )
        .expect(404, "api_key_not_found"),
        Case::new("key: PUT the collection", Method::PUT, "/auth/api_keys")
            .expect(405, "method_not_allowed"),
        // Forged keys at core-api: one answer for all.
        Case::new("key: prefix only", Method::GET, "/transactions")
            .auth(key_header("sk_test_".to_owned()))
            .expect(401, "api_key_invalid"),
        Case::new("key: unknown", Method::GET, "/transactions")
            .auth(key_header(format!("sk_test_{}", "A".repeat(43))))
            .expect(401, "api_key_invalid"),
        Case::new("key: live prefix", Method::GET, "/transactions")
            .auth(key_header(format!("sk_live_{}", "A".repeat(43))))
            .expect(401, "api_key_invalid"),
        Case::new("key: glob characters", Method::GET, "/transactions")
            .auth(key_header(format!("sk_test_{}*", "A".repeat(42))))
            .expect(401, "api_key_invalid"),
        Case::new("key: 4,000 characters", Method::GET, "/transactions")
            .auth(key_header(format!("sk_test_{}", "A".repeat(4000))))
            .expect(401, "api_key_invalid"),
        Case::new(
            "key: forged at auth-api",
            Method::GET,
            "/auth/users/alice/customers",
        )
        .auth(key_header(format!("sk_test_{}", "B".repeat(43))))
        .expect(401, "api_key_invalid"),
        // Links.
        link(
            "link: card number as customer",
            Method::PUT,
            "/auth/users/alice/customers/4242424242424242",
        )
        .expect(422, "invalid_customer_id"),
        link(
            "link: space in customer",
            Method::PUT,
            "/auth/users/alice/customers/a%20b",
        )
        .expect(422, "invalid_customer_id"),
        link(
            "link: 65-character customer",
            Method::PUT,
            &format!("/auth/users/alice/customers/{}", "c".repeat(65)),
        )
        .expect(422, "invalid_customer_id"),
        link(
            "link: unknown user",
            Method::PUT,
            "/auth/users/mallory/customers/cus_1",
        )
        .expect(404, "user_not_found"),
        link(
            "link: another merchant's user",
            Method::PUT,
            "/auth/users/bob/customers/cus_1",
        )
        .expect(404, "user_not_found"),
        link("link: glob user", Method::GET, "/auth/users/*/customers")
            .expect(404, "user_not_found"),
        link(
            "link: unlink with another merchant's key",
            Method::DELETE,
            "/auth/users/alice/customers/cus_1",
        )
        .auth(Auth::BobKey)
        .expect(404, "user_not_found"),
        link(
            "link: a user links itself",
            Method::PUT,
            "/auth/users/alice/customers/cus_3",
        )
        .auth(Auth::Alice)
        .expect(403, "api_key_required"),
        link(
            "link: a user lists links",
            Method::GET,
            "/auth/users/alice/customers",
        )
        .auth(Auth::Alice)
        .expect(403, "api_key_required"),
        link(
            "link: POST",
            Method::POST,
            "/auth/users/alice/customers/cus_1",
        )
        .expect(405, "method_not_allowed"),
        link(
            "link: no credentials",
            Method::PUT,
            "/auth/users/alice/customers/cus_3",
        )
        .auth(Auth::None)
        .expect(401, "missing_token"),
        // A user pays only for its linked customers (alice: cus_1, cus_2).
        pay(
            "user pays for an unlinked customer",
            with("/customer_id", Some(json!("cus_3"))),
        )
        .expect(403, "customer_not_permitted"),
        pay("user pays for no customer", with("/customer_id", None))
            .expect(403, "customer_not_permitted"),
    ]
}

/// What the corpus' requests are sent with.
struct Credentials {
    alice: String,
    bob: String,
    alice_key: String,
    bob_key: String,
}

async fn send(
    http: &reqwest::Client,
    gateway: &str,
    case: &Case,
    tokens: &Credentials,
) -> reqwest::Response {
    let mut request = http.request(case.method.clone(), format!("{gateway}{}", case.path));
    for (name, value) in &case.headers {
        let value = reqwest::header::HeaderValue::from_bytes(value).expect(&case.name);
        request = request.header(name.as_str(), value);
    }
    request = match &case.auth {
        Auth::Alice => request.bearer_auth(&tokens.alice),
        Auth::Bob => request.bearer_auth(&tokens.bob),
        Auth::AliceKey => request.bearer_auth(&tokens.alice_key),
        Auth::BobKey => request.bearer_auth(&tokens.bob_key),
        Auth::None => request,
        Auth::Header(value) => request.header("authorization", value.as_str()),
    };
    if let Some(body) = &case.body {
        request = request.body(body.clone());
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", case.name))
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_requests_get_a_stable_4xx_json_error_and_write_nothing() {
    let stack = Stack::boot().await;
    let gateway = stack.gateway();
    let http = http_client();
    let secret = client::dev_jwt_secret(&stack);
    let alice = login(&http, &gateway, "alice").await;
    let bob = login(&http, &gateway, "bob").await;
    let (alice_key, _) = client::create_api_key(&http, &gateway, "alice").await;
    let (bob_key, _) = client::create_api_key(&http, &gateway, "bob").await;
    let alices_transaction = client::create_accepted(
        &http,
        &gateway,
        &alice,
        &payment(APPROVED, "cus_1", "ref-hostile"),
    )
    .await;
    client::wait_all_final(
        &http,
        &gateway,
        "alice",
        std::slice::from_ref(&alices_transaction),
        Duration::from_secs(20),
    )
    .await;
    let mut redis = client::redis(&stack);
    // The connector acknowledges and deletes the message after the final
    // status, and adds the payment's success to its PSP's breaker window
    // at its next refresh; wait until Redis holds still for longer than
    // that refresh.
    let settle = (psp_connector::breaker::REFRESH * 2).max(Duration::from_millis(100));
    let mut before = client::redis_snapshot(&mut redis);
    for _ in 0..50 {
        tokio::time::sleep(settle).await;
        let now = client::redis_snapshot(&mut redis);
        if now == before {
            break;
        }
        before = now;
    }

    let cases = corpus(&secret, &alices_transaction);
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let tokens = Credentials {
        alice,
        bob,
        alice_key,
        bob_key,
    };
    let mut failures = Vec::new();
    for case in &cases {
        let response = send(&http, &gateway, case, &tokens).await;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let set_cookie = response.headers().contains_key("set-cookie");
        let text = response.text().await.unwrap_or_default();
        let code = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
        let after = client::redis_snapshot(&mut redis);
        let changed: Vec<_> = after
            .iter()
            .filter(|entry| !before.contains(entry))
            .chain(before.iter().filter(|entry| !after.contains(entry)))
            .filter(|(key, _)| {
                !(case.counts_login_failure
                    && platform::keyspace::owner(key) == Some("auth:logins:{digest}"))
            })
            .collect();
        let mut problems = Vec::new();
        if status >= 500 {
            problems.push("a 5xx".to_owned());
        }
        if (status, code.as_deref()) != (case.status, Some(case.code)) {
            problems.push(format!("expected {} {}", case.status, case.code));
        }
        if !content_type.starts_with("application/json") {
            problems.push(format!("content type {content_type:?}"));
        }
        if set_cookie {
            problems.push("a Set-Cookie header".to_owned());
        }
        if !changed.is_empty() {
            problems.push(format!("Redis changed: {changed:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: got {status} {}: {}",
                case.name,
                &text[..text.len().min(200)],
                problems.join("; ")
            ));
        }
        before = after;
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} hostile cases answered as expected", cases.len());

    let mut secrets: Vec<&str> = vec![
        "hunter2-hostile",
        &tokens.alice,
        &tokens.bob,
        &tokens.alice_key,
        &tokens.bob_key,
    ];
    secrets.push(&secret);
    client::assert_no_secrets_in_logs(&stack, &secrets);
}

/// Header injection on the wire: CR, LF and NUL inside header values and
/// folded (obs-fold) headers cannot be sent with an HTTP client library, so
/// these go over a raw socket. The gateway's HTTP parser (Go's net/http
/// under Caddy) refuses them with a plain-text 400 before any handler runs —
/// the one place a client gets an error that is not JSON — and nothing
/// reaches a service or Redis. A folded header becomes one value.
#[tokio::test(flavor = "multi_thread")]
async fn header_injection_on_the_wire_is_refused_by_the_gateway() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack = Stack::boot().await;
    let http = http_client();
    let token = login(&http, &stack.gateway(), "alice").await;
    let body = valid();
    let request = |key_header: &str| {
        format!(
            "POST /transactions HTTP/1.1\r\nHost: platform\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\n{key_header}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let cases = [
        (
            "bare CR in a value",
            request("Idempotency-Key: a\rSet-Cookie: evil=1"),
        ),
        ("NUL in a value", request("Idempotency-Key: a\0b")),
        ("space in a header name", request("Idempotency Key: a")),
        ("header without a colon", request("Idempotency-Key a")),
    ];
    let mut redis = client::redis(&stack);
    let before = client::redis_snapshot(&mut redis);
    for (name, raw) in cases {
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", stack.port(8000)))
            .await
            .unwrap();
        socket.write_all(raw.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        let status_line = answer.lines().next().unwrap_or_default().to_owned();
        eprintln!("{name}: {status_line}");
        assert!(
            status_line.starts_with("HTTP/1.1 400"),
            "{name}: expected 400 from the gateway, got {answer}"
        );
        assert!(
            !answer.to_ascii_lowercase().contains("set-cookie"),
            "{name}: {answer}"
        );
    }
    assert_eq!(
        client::redis_snapshot(&mut redis),
        before,
        "nothing written"
    );

    // An obs-fold continuation is folded into the value with a space, as
    // RFC 9112 §5.2 allows: one header, no injected one. The folded key is
    // an ordinary key, and a client sending it plainly gets the replay.
    let key = format!("fold-{}", uuid::Uuid::new_v4().simple());
    let raw = request(&format!("Idempotency-Key: {key}\r\n Set-Cookie: evil=1"));
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", stack.port(8000)))
        .await
        .unwrap();
    socket.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("set-cookie"),
        "{answer}"
    );
    let replay = http
        .post(format!("{}/transactions", stack.gateway()))
        .bearer_auth(&token)
        .header("idempotency-key", format!("{key} Set-Cookie: evil=1"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    client::assert_no_secrets_in_logs(&stack, &[&token]);
}
