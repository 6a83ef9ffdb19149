//! The shared token verifier against every forgery the design names: it is
//! what core-api trusts, so each case here is a way in that must stay shut.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use platform::auth::{
    AUDIENCE, Caller, ISSUER, JwtSecret, TokenError, TokenIssuer, TokenVerifier,
    VERIFIED_TOKENS_CAPACITY,
};
use serde_json::{Value, json};
use tower::ServiceExt;

const SECRET: &str = "verifier-test-secret-0123456789abcdef";

fn secret() -> JwtSecret {
    JwtSecret::new(SECRET).unwrap()
}

fn verifier() -> TokenVerifier {
    TokenVerifier::new(&secret())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn valid_claims() -> Value {
    let iat = now();
    json!({
        "sub": "alice", "mid": "acme", "iss": ISSUER, "aud": AUDIENCE,
        "iat": iat, "exp": iat + 30, "jti": "00000000-0000-4000-8000-000000000000",
    })
}

/// base64url without padding, as JWTs use (kept here so the test needs no
/// dependency beyond the verifier's own).
fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// A token with any header and payload, signed HMAC-SHA256 with `secret`
/// over exactly those bytes — as a forger who knows the format would.
fn hs256_over(header: &Value, payload: &str, secret: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{signing_input}.{signature}")
}

fn signed(algorithm: Algorithm, claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn with_claim(name: &str, value: Value) -> Value {
    let mut claims = valid_claims();
    claims[name] = value;
    claims
}

fn without_claim(name: &str) -> Value {
    let mut claims = valid_claims();
    claims.as_object_mut().unwrap().remove(name);
    claims
}

#[test]
fn a_genuine_token_is_accepted() {
    let token = signed(Algorithm::HS256, &valid_claims(), SECRET.as_bytes());
    let claims = verifier().verify(&token).unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.mid.as_str()),
        ("alice", "acme")
    );
    // The crafting helper itself produces tokens the verifier accepts, so
    // the forgeries below fail for what they change, not for how they're made.
    let crafted = hs256_over(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &valid_claims().to_string(),
        SECRET.as_bytes(),
    );
    assert!(verifier().verify(&crafted).is_ok());
}

#[test]
fn every_forgery_is_rejected_as_invalid() {
    let key = SECRET.as_bytes();
    let payload = valid_claims().to_string();
    let genuine = signed(Algorithm::HS256, &valid_claims(), key);
    let (head, rest) = genuine.split_once('.').unwrap();
    let (body, signature) = rest.split_once('.').unwrap();
    let unsigned = |alg: &str| {
        format!(
            "{}.{}.",
            b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes()),
            b64(payload.as_bytes())
        )
    };
    let other_merchant = b64(with_claim("mid", json!("globex")).to_string().as_bytes());
    let mut flipped = signature.to_owned();
    let first = if flipped.starts_with('A') { "B" } else { "A" };
    flipped.replace_range(0..1, first);

    let forgeries: Vec<(&str, String)> = vec![
        ("alg none, no signature", unsigned("none")),
        ("alg None, no signature", unsigned("None")),
        (
            "alg none, genuine signature",
            format!("{}{signature}", unsigned("none")),
        ),
        (
            "HS384 with the right secret",
            signed(Algorithm::HS384, &valid_claims(), key),
        ),
        (
            "HS512 with the right secret",
            signed(Algorithm::HS512, &valid_claims(), key),
        ),
        (
            "RS256 header, HMAC signature (key confusion)",
            hs256_over(&json!({"alg": "RS256", "typ": "JWT"}), &payload, key),
        ),
        (
            "RS256 header, genuine signature",
            format!(
                "{}.{body}.{signature}",
                b64(br#"{"alg":"RS256","typ":"JWT"}"#)
            ),
        ),
        (
            "another secret",
            signed(
                Algorithm::HS256,
                &valid_claims(),
                b"another-secret-another-secret-00000",
            ),
        ),
        (
            "payload swapped, signature kept",
            format!("{head}.{other_merchant}.{signature}"),
        ),
        ("signature altered", format!("{head}.{body}.{flipped}")),
        ("signature removed", format!("{head}.{body}.")),
        (
            "signature truncated",
            format!("{head}.{body}.{}", &signature[..20]),
        ),
        (
            "wrong issuer",
            signed(
                Algorithm::HS256,
                &with_claim("iss", json!("someone-else")),
                key,
            ),
        ),
        (
            "wrong audience",
            signed(
                Algorithm::HS256,
                &with_claim("aud", json!("payment-platform/other")),
                key,
            ),
        ),
        (
            "no exp",
            signed(Algorithm::HS256, &without_claim("exp"), key),
        ),
        (
            "exp as text",
            signed(Algorithm::HS256, &with_claim("exp", json!("tomorrow")), key),
        ),
        (
            "no iss",
            signed(Algorithm::HS256, &without_claim("iss"), key),
        ),
        (
            "no aud",
            signed(Algorithm::HS256, &without_claim("aud"), key),
        ),
        (
            "no merchant",
            signed(Algorithm::HS256, &without_claim("mid"), key),
        ),
        (
            "payload not JSON",
            hs256_over(&json!({"alg": "HS256"}), "not json", key),
        ),
        ("empty", String::new()),
        ("one part", "abc".into()),
        ("two parts", format!("{head}.{body}")),
        ("four parts", format!("{genuine}.{signature}")),
        ("empty parts", "..".into()),
        ("not base64", "!!!.@@@.###".into()),
        (
            "header not JSON",
            format!("{}.{body}.{signature}", b64(b"nope")),
        ),
        ("spaces inside", format!("{head}. {body}.{signature}")),
    ];
    for (case, token) in forgeries {
        assert_eq!(
            verifier().verify(&token),
            Err(TokenError::Invalid),
            "{case}: {token}"
        );
    }
}

#[test]
fn expired_is_told_apart_only_for_genuine_tokens() {
    let past = now() - 10;
    let expired = json!({
        "sub": "alice", "mid": "acme", "iss": ISSUER, "aud": AUDIENCE,
        "iat": past - 30, "exp": past, "jti": "x",
    });
    let genuine = signed(Algorithm::HS256, &expired, SECRET.as_bytes());
    assert_eq!(verifier().verify(&genuine), Err(TokenError::Expired));
    // A forged expired token says nothing about expiry.
    let forged = signed(
        Algorithm::HS256,
        &expired,
        b"another-secret-another-secret-00000",
    );
    assert_eq!(verifier().verify(&forged), Err(TokenError::Invalid));
}

#[test]
fn a_token_expires_after_its_ttl_with_no_leeway() {
    let (token, claims) =
        TokenIssuer::new(&secret(), Duration::from_secs(1)).issue("bob", "globex");
    assert_eq!(claims.exp - claims.iat, 1);
    assert!(verifier().verify(&token).is_ok());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while verifier().verify(&token) != Err(TokenError::Expired) {
        assert!(
            std::time::Instant::now() < deadline,
            "not expired after 5 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The verifier remembers tokens it has verified (so a client's next
/// request skips the HMAC); these are the ways that memory must not open.
#[test]
fn a_remembered_token_still_expires_on_time() {
    let verifier = verifier();
    let (token, _) = TokenIssuer::new(&secret(), Duration::from_secs(1)).issue("bob", "globex");
    assert!(verifier.verify(&token).is_ok());
    assert_eq!(verifier.remembered(), 1, "a verified token is remembered");
    assert!(verifier.verify(&token).is_ok());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while verifier.verify(&token) != Err(TokenError::Expired) {
        assert!(
            std::time::Instant::now() < deadline,
            "a remembered token was still accepted 5 s after its 1 s lifetime"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(verifier.verify(&token), Err(TokenError::Expired));
    assert_eq!(verifier.remembered(), 0, "an expired token is forgotten");
}

#[test]
fn a_token_is_good_through_its_exp_second_fresh_or_remembered() {
    let verifier = verifier();
    loop {
        let at = now();
        let mut claims = valid_claims();
        claims["iat"] = json!(at - 10);
        claims["exp"] = json!(at);
        let token = signed(Algorithm::HS256, &claims, SECRET.as_bytes());
        let fresh = verifier.verify(&token);
        let remembered = verifier.verify(&token);
        if now() != at {
            continue; // the second turned meanwhile: try again
        }
        assert!(fresh.is_ok(), "{fresh:?}");
        assert!(remembered.is_ok(), "{remembered:?}");
        break;
    }
}

#[test]
fn a_text_one_byte_off_a_remembered_token_is_verified_in_full() {
    let verifier = verifier();
    let (token, _) = TokenIssuer::new(&secret(), Duration::from_secs(30)).issue("alice", "acme");
    assert!(verifier.verify(&token).is_ok());
    let signature_at = token.rfind('.').unwrap() + 1;
    let payload_at = token.find('.').unwrap() + 1;
    for at in [signature_at + 5, signature_at + 20, payload_at + 10, 3] {
        let mut forged = token.clone().into_bytes();
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        for _ in 0..2 {
            assert_eq!(verifier.verify(&forged), Err(TokenError::Invalid), "{at}");
        }
    }
    assert_eq!(
        verifier.remembered(),
        1,
        "a refused token is never remembered"
    );
    assert!(verifier.verify(&token).is_ok());
}

#[test]
fn the_remembered_tokens_are_bounded_and_shared_by_clones() {
    let verifier = verifier();
    let clone = verifier.clone();
    let issuer = TokenIssuer::new(&secret(), Duration::from_secs(30));
    for i in 0..VERIFIED_TOKENS_CAPACITY + 500 {
        let (token, _) = issuer.issue(&format!("user{i}"), "acme");
        let by = if i % 2 == 0 { &verifier } else { &clone };
        assert_eq!(by.verify(&token).unwrap().sub, format!("user{i}"));
    }
    assert!(
        verifier.remembered() <= VERIFIED_TOKENS_CAPACITY,
        "{} remembered",
        verifier.remembered()
    );
    assert_eq!(verifier.remembered(), clone.remembered());
    assert!(verifier.remembered() > VERIFIED_TOKENS_CAPACITY / 2);
}

/// The `Caller` extractor's answers: codes and `WWW-Authenticate`.
#[tokio::test]
async fn the_caller_extractor_answers_401_with_a_code_per_case() {
    async fn whoami(caller: Caller) -> String {
        format!("{}@{}", caller.actor(), caller.merchant)
    }
    let app = Router::new()
        .route("/whoami", get(whoami))
        .with_state(platform::auth::CallerVerifier::from(verifier()));
    let call = |authorization: Option<String>| {
        let app = app.clone();
        async move {
            let mut request = Request::get("/whoami");
            if let Some(value) = authorization {
                request = request.header(header::AUTHORIZATION, value);
            }
            let response = app
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let challenge = response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .map(|v| v.to_str().unwrap().to_owned());
            let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            (status, challenge, String::from_utf8(body.to_vec()).unwrap())
        }
    };

    let (token, _) = TokenIssuer::new(&secret(), Duration::from_secs(30)).issue("alice", "acme");
    let (status, _, body) = call(Some(format!("Bearer {token}"))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "alice@acme"));
    let (status, _, _) = call(Some(format!("bearer {token}"))).await;
    assert_eq!(status, StatusCode::OK, "the scheme is case-insensitive");

    let mut expired = valid_claims();
    expired["exp"] = json!(now() - 5);
    let expired = signed(Algorithm::HS256, &expired, SECRET.as_bytes());
    let forged = signed(Algorithm::HS512, &valid_claims(), SECRET.as_bytes());
    for (authorization, code, invalid_token) in [
        (None, "missing_token", false),
        (
            Some("Basic YWxpY2U6cGFzc3dvcmQ=".to_owned()),
            "missing_token",
            false,
        ),
        (Some("Bearer ".to_owned()), "missing_token", false),
        (Some(format!("Bearer {expired}")), "token_expired", true),
        (Some(format!("Bearer {forged}")), "token_invalid", true),
        (Some("Bearer not-a-token".to_owned()), "token_invalid", true),
    ] {
        let (status, challenge, body) = call(authorization.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["code"], code, "{authorization:?}");
        let challenge = challenge.expect("WWW-Authenticate on every 401");
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        assert_eq!(
            challenge.contains("error=\"invalid_token\""),
            invalid_token,
            "{authorization:?}: {challenge}"
        );
    }
}

/// Tokens signed with the right secret that auth-api could never have
/// issued (issue 21, point 9): each is refused as invalid, while the edges
/// of what it can issue still pass.
#[test]
fn tokens_auth_api_could_not_have_issued_are_refused() {
    let key = SECRET.as_bytes();
    let now = now();
    let lifetime = |iat: u64, exp: u64| {
        let mut claims = valid_claims();
        claims["iat"] = json!(iat);
        claims["exp"] = json!(exp);
        claims
    };
    let crit = |crit: Value| {
        hs256_over(
            &json!({"alg": "HS256", "typ": "JWT", "crit": crit}),
            &valid_claims().to_string(),
            key,
        )
    };
    let refused: Vec<(&str, String)> = vec![
        (
            "exp ten years ahead",
            signed(
                Algorithm::HS256,
                &lifetime(now, now + 10 * 365 * 86_400),
                key,
            ),
        ),
        (
            "exp 2^63",
            signed(Algorithm::HS256, &lifetime(now, 1 << 63), key),
        ),
        (
            "exp u64::MAX",
            signed(Algorithm::HS256, &lifetime(now, u64::MAX), key),
        ),
        (
            "lifetime one second over the maximum",
            signed(Algorithm::HS256, &lifetime(now, now + 3601), key),
        ),
        (
            "iat a minute in the future",
            signed(Algorithm::HS256, &lifetime(now + 60, now + 90), key),
        ),
        (
            "exp before iat",
            signed(Algorithm::HS256, &lifetime(now + 3, now + 1), key),
        ),
        (
            "exp equal to iat",
            signed(Algorithm::HS256, &lifetime(now + 2, now + 2), key),
        ),
        ("crit naming a claim", crit(json!(["exp"]))),
        ("crit b64 (RFC 7797)", crit(json!(["b64"]))),
        ("crit empty", crit(json!([]))),
        ("crit not a list", crit(json!("exp"))),
        (
            "mid with key-name characters",
            signed(
                Algorithm::HS256,
                &with_claim("mid", json!("acme:status:pending")),
                key,
            ),
        ),
        (
            "mid empty",
            signed(Algorithm::HS256, &with_claim("mid", json!("")), key),
        ),
        (
            "mid 65 characters",
            signed(
                Algorithm::HS256,
                &with_claim("mid", json!("m".repeat(65))),
                key,
            ),
        ),
        (
            "mid with a space",
            signed(Algorithm::HS256, &with_claim("mid", json!("ac me")), key),
        ),
        (
            "mid not ASCII",
            signed(Algorithm::HS256, &with_claim("mid", json!("acmé")), key),
        ),
        (
            "sub with key-name characters",
            signed(Algorithm::HS256, &with_claim("sub", json!("alice:tx")), key),
        ),
        (
            "sub empty",
            signed(Algorithm::HS256, &with_claim("sub", json!("")), key),
        ),
        (
            "sub with a newline",
            signed(
                Algorithm::HS256,
                &with_claim("sub", json!("alice\nbob")),
                key,
            ),
        ),
    ];
    for (case, token) in refused {
        assert_eq!(
            verifier().verify(&token),
            Err(TokenError::Invalid),
            "{case}: {token}"
        );
    }

    // The edges of what auth-api issues: the longest lifetime, an issuer
    // clock a little ahead, and every character an id may have.
    let accepted: Vec<(&str, Value)> = vec![
        ("lifetime exactly the maximum", lifetime(now, now + 3600)),
        ("iat 3 s ahead (clock skew)", lifetime(now + 3, now + 33)),
        (
            "ids with every allowed character",
            json!({
                "sub": "Al.ice_9-x", "mid": "m".repeat(64), "iss": ISSUER, "aud": AUDIENCE,
                "iat": now, "exp": now + 30, "jti": "j",
            }),
        ),
    ];
    for (case, claims) in accepted {
        let token = signed(Algorithm::HS256, &claims, key);
        assert!(verifier().verify(&token).is_ok(), "{case}");
    }
    // A token with an unknown header parameter that is not `crit` is fine.
    let kid = hs256_over(
        &json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}),
        &valid_claims().to_string(),
        key,
    );
    assert!(verifier().verify(&kid).is_ok());
}

#[test]
fn the_identifier_rule_is_the_merchant_id_rule() {
    use platform::auth::is_identifier;
    for good in ["acme", "globex", "a", "A-Z_a.z-0", &"x".repeat(64)] {
        assert!(is_identifier(good), "{good}");
    }
    for bad in ["", "acme:x", "a b", "é", "a/b", "a*", &"x".repeat(65)] {
        assert!(!is_identifier(bad), "{bad}");
    }
}
