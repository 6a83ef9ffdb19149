//! The Auth API in-process (`build` on port 0) against a real Redis.

use std::path::PathBuf;
use std::time::Duration;

use auth_api::credentials::Username;
use auth_api::limiter::key_for;
use auth_api::{Config, TokenTtl};
use platform::auth::{AUDIENCE, ISSUER, JwtSecret, TokenVerifier};
use platform::redis::RedisUrl;
use platform::testing::{RedisServer, Spawned};
use redis::Commands;
use serde_json::{Value, json};

const SECRET: &str = "test-secret-test-secret-test-secret!";

fn dev_users_file() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/users.toml"
    ))
}

struct App {
    served: Spawned,
    redis: RedisServer,
    client: reqwest::Client,
}

impl App {
    async fn start() -> Self {
        let redis = RedisServer::start();
        let config = Config {
            auth_api_addr: "127.0.0.1:0".parse().unwrap(),
            redis_url: RedisUrl::parse(&redis.url()).unwrap(),
            jwt_secret: JwtSecret::new(SECRET).unwrap(),
            auth_token_ttl_secs: TokenTtl::default(),
            auth_users_file: dev_users_file(),
            auth_login_queue: None,
        };
        Self {
            served: Spawned::start(config, auth_api::build).await,
            redis,
            client: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.served.url())
    }

    async fn post(&self, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> Answer {
        let mut request = self.client.post(self.url("/token")).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        Answer::from(request.send().await.expect("request sent")).await
    }

    async fn login_json(&self, username: &str, password: &str) -> Answer {
        let body = json!({"username": username, "password": password}).to_string();
        self.post(Some("application/json"), body).await
    }

    async fn login_form(&self, username: &str, password: &str) -> Answer {
        let body = format!("grant_type=password&username={username}&password={password}");
        self.post(Some("application/x-www-form-urlencoded"), body)
            .await
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    async fn from(response: reqwest::Response) -> Self {
        Self {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.expect("body"),
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| panic!("JSON body: {}", self.text))
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

fn verifier() -> TokenVerifier {
    TokenVerifier::new(&JwtSecret::new(SECRET).unwrap())
}

fn attempt_keys(redis: &RedisServer) -> Vec<String> {
    redis
        .connection()
        .keys(platform::keyspace::login_attempts("*"))
        .unwrap()
}

#[tokio::test]
async fn json_and_form_logins_for_both_dev_users() {
    let app = App::start().await;
    for (user, merchant) in [("alice", "acme"), ("bob", "globex")] {
        for answer in [
            app.login_json(user, "password").await,
            app.login_form(user, "password").await,
        ] {
            assert_eq!(answer.status, 200, "{user}: {}", answer.text);
            assert_eq!(answer.header("cache-control"), Some("no-store"));
            let body = answer.json();
            assert_eq!(body["token_type"], "Bearer");
            assert_eq!(body["expires_in"], 30);
            let claims = verifier()
                .verify(body["access_token"].as_str().unwrap())
                .expect("the shared verifier accepts the token");
            assert_eq!((claims.sub.as_str(), claims.mid.as_str()), (user, merchant));
            assert_eq!(
                (claims.iss.as_str(), claims.aud.as_str()),
                (ISSUER, AUDIENCE)
            );
            assert_eq!(claims.exp - claims.iat, 30);
            assert!(
                claims.jti.parse::<uuid_like::Uuid>().is_ok(),
                "{}",
                claims.jti
            );
        }
    }
    // Usernames are trimmed and case-folded.
    let answer = app.login_json("  Alice ", "password").await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let token = answer.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(verifier().verify(&token).unwrap().sub, "alice");
    // Successful logins leave no failures and no slot behind.
    let mut conn = app.redis.connection();
    for key in attempt_keys(&app.redis) {
        let (failures, inflight): (Option<i64>, Option<i64>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("failures")
            .arg("inflight")
            .query(&mut conn)
            .unwrap();
        assert_eq!(
            (failures.unwrap_or(0), inflight.unwrap_or(0)),
            (0, 0),
            "{key}"
        );
    }
}

/// A UUID check without another dependency: 8-4-4-4-12 hex digits.
mod uuid_like {
    pub struct Uuid;
    impl std::str::FromStr for Uuid {
        type Err = ();
        fn from_str(text: &str) -> Result<Self, ()> {
            let groups: Vec<&str> = text.split('-').collect();
            let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
            let hex = groups
                .iter()
                .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()));
            (lengths == [8, 4, 4, 4, 12] && hex)
                .then_some(Uuid)
                .ok_or(())
        }
    }
}

#[tokio::test]
async fn unknown_user_and_wrong_password_answer_identically() {
    let app = App::start().await;
    let unknown = app.login_json("mallory", "password").await;
    let wrong = app.login_json("alice", "not-the-password").await;
    let wrong_form = app.login_form("bob", "nope").await;
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.code(), "invalid_credentials");
    for other in [&wrong, &wrong_form] {
        assert_eq!((other.status, &other.text), (unknown.status, &unknown.text));
        assert_eq!(other.header("content-type"), unknown.header("content-type"));
    }
}

#[tokio::test]
async fn five_failures_lock_the_username_until_the_window_passes() {
    let app = App::start().await;
    for attempt in 1..=5 {
        let answer = app.login_json("alice", "wrong").await;
        assert_eq!(answer.status, 401, "attempt {attempt}: {}", answer.text);
    }
    let locked = app.login_json("alice", "wrong").await;
    assert_eq!(locked.status, 429, "{}", locked.text);
    assert_eq!(locked.code(), "too_many_attempts");
    let retry_after: u64 = locked.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");

    // The right password is refused too, in any spelling of the name.
    for name in ["alice", " ALICE "] {
        let answer = app.login_form(name, "password").await;
        assert_eq!(
            (answer.status, answer.code()),
            (429, "too_many_attempts".into())
        );
        assert!(answer.header("retry-after").is_some());
    }
    // Other users are not affected.
    assert_eq!(app.login_json("bob", "password").await.status, 200);

    // alice's counter expires within the 60 s window.
    let key = key_for(&Username::parse("alice").unwrap());
    let mut conn = app.redis.connection();
    let failures: i64 = conn.hget(&key, "failures").unwrap();
    assert_eq!(failures, 5);
    let ttl_ms: i64 = conn.pttl(&key).unwrap();
    assert!((1..=60_000).contains(&ttl_ms), "{ttl_ms}");

    // Let the window pass (without waiting a minute): alice recovers.
    let _: () = conn.pexpire(&key, 1).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let answer = app.login_json("alice", "password").await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

#[tokio::test]
async fn only_failures_count_towards_the_limit() {
    let app = App::start().await;
    for _ in 0..4 {
        assert_eq!(app.login_json("bob", "wrong").await.status, 401);
    }
    for _ in 0..3 {
        assert_eq!(app.login_json("bob", "password").await.status, 200);
    }
    assert_eq!(app.login_json("bob", "wrong").await.status, 401);
    assert_eq!(app.login_json("bob", "password").await.status, 429);
}

#[tokio::test]
async fn parallel_logins_of_one_user_all_succeed() {
    let app = App::start().await;
    let logins = (0..12).map(|_| app.login_json("alice", "password"));
    for answer in futures::future::join_all(logins).await {
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
}

#[tokio::test]
async fn a_burst_of_parallel_guesses_gets_only_five_checked() {
    let app = App::start().await;
    let attempts = (0..20).map(|i| {
        let (client, url) = (app.client.clone(), app.url("/token"));
        async move {
            client
                .post(url)
                .json(&json!({"username": "mallory", "password": format!("guess-{i}")}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let mut statuses = futures::future::join_all(attempts).await;
    statuses.sort_unstable();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 401).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 429).count(),
        15,
        "{statuses:?}"
    );
}

/// Content-Type, body, then the expected status, code and param.
type BodyCase = (
    Option<&'static str>,
    String,
    u16,
    &'static str,
    Option<&'static str>,
);

#[tokio::test]
async fn content_types_and_malformed_bodies_are_json_errors() {
    let app = App::start().await;
    let long_name = "a".repeat(65);
    let cases: Vec<BodyCase> = vec![
        (
            Some("text/plain"),
            "username=alice&password=password".into(),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            None,
            r#"{"username":"alice","password":"password"}"#.into(),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            Some("application/xml"),
            "<login/>".into(),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            Some("application/json"),
            r#"{"username":"alice","password":"#.into(),
            400,
            "malformed_body",
            None,
        ),
        (
            Some("application/json"),
            "".into(),
            400,
            "malformed_body",
            None,
        ),
        (
            Some("application/json"),
            r#"{"username":"alice","password":"password"} x"#.into(),
            400,
            "malformed_body",
            None,
        ),
        (
            Some("application/json"),
            r#"{"username":"alice"}"#.into(),
            422,
            "missing_field",
            Some("password"),
        ),
        (
            Some("application/json"),
            r#"{"username":7,"password":"password"}"#.into(),
            422,
            "invalid_field",
            Some("username"),
        ),
        (
            Some("application/json"),
            r#"["alice","password"]"#.into(),
            422,
            "invalid_field",
            Some("body"),
        ),
        (
            Some("application/json"),
            json!({"username": long_name, "password": "x"}).to_string(),
            422,
            "invalid_field",
            Some("username"),
        ),
        (
            Some("application/json"),
            r#"{"username":"  ","password":"password"}"#.into(),
            422,
            "invalid_field",
            Some("username"),
        ),
        (
            Some("application/json"),
            r#"{"username":"alice","password":""}"#.into(),
            422,
            "invalid_field",
            Some("password"),
        ),
        (
            Some("application/x-www-form-urlencoded"),
            "password=password".into(),
            422,
            "missing_field",
            Some("username"),
        ),
        (
            Some("application/x-www-form-urlencoded"),
            "grant_type=client_credentials&username=alice&password=password".into(),
            400,
            "unsupported_grant_type",
            Some("grant_type"),
        ),
    ];
    for (content_type, body, status, code, param) in cases {
        let answer = app.post(content_type, body.clone()).await;
        assert_eq!(
            (
                answer.status,
                answer.code().as_str(),
                answer.json()["error"]["param"].as_str()
            ),
            (status, code, param),
            "{content_type:?} {body:?}: {}",
            answer.text
        );
        assert_eq!(answer.header("content-type"), Some("application/json"));
    }
    // None of these reached the password check, so none counted as a failure.
    assert!(attempt_keys(&app.redis).is_empty());
}

#[tokio::test]
async fn redis_down_is_503_not_500() {
    let mut app = App::start().await;
    app.redis.kill();
    let answer = app.login_json("alice", "password").await;
    assert_eq!(
        (answer.status, answer.code()),
        (503, "storage_unavailable".into()),
        "{}",
        answer.text
    );
}

#[tokio::test]
async fn openapi_describes_the_route_bodies_and_errors() {
    let app = App::start().await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    let token = &doc["paths"]["/token"]["post"];
    for content_type in ["application/json", "application/x-www-form-urlencoded"] {
        assert_eq!(
            token["requestBody"]["content"][content_type]["schema"]["$ref"],
            "#/components/schemas/TokenRequest"
        );
    }
    for status in ["400", "401", "413", "415", "422", "429", "503"] {
        assert_eq!(
            token["responses"][status]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody",
            "{status}"
        );
    }
    assert!(token["responses"]["429"]["headers"]["Retry-After"].is_object());
    assert_eq!(
        token["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/TokenResponse"
    );
    for schema in [
        "TokenRequest",
        "TokenResponse",
        "ErrorBody",
        "ErrorDetail",
        "ErrorType",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path}");
    }
    platform::testing::assert_error_codes_documented(&doc, "TokenRequest");
}
