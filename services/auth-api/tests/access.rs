//! API keys and user–customer links, auth-api in-process (`build` on port
//! 0) against a real Redis; tokens minted with the shared secret.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use auth_api::{Config, TokenTtl};
use platform::access::api_key::KeyHash;
use platform::auth::{JwtSecret, TokenIssuer};
use platform::keyspace;
use platform::redis::RedisUrl;
use platform::testing::{RedisServer, Spawned};
use redis::Commands;
use serde_json::{Value, json};

const SECRET: &str = "test-secret-test-secret-test-secret!";

struct App {
    base: String,
    redis: RedisServer,
    _served: Spawned,
    client: reqwest::Client,
    issuer: TokenIssuer,
}

async fn start_on(redis: RedisServer) -> App {
    let config = Config {
        auth_api_addr: "127.0.0.1:0".parse().unwrap(),
        redis_url: RedisUrl::parse(&redis.url()).unwrap(),
        jwt_secret: JwtSecret::new(SECRET).unwrap(),
        auth_token_ttl_secs: TokenTtl::default(),
        auth_users_file: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/users.toml"
        )),
        auth_login_queue: None,
    };
    let served = Spawned::start(config, auth_api::build).await;
    let app = App {
        base: served.url(),
        redis,
        _served: served,
        client: reqwest::Client::new(),
        issuer: TokenIssuer::new(&JwtSecret::new(SECRET).unwrap(), Duration::from_secs(60)),
    };
    // Ready once the users file's links are written.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = app.client.get(app.url("/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "auth-api did not become ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app
}

impl App {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn token(&self, user: &str, merchant: &str) -> String {
        self.issuer.issue(user, merchant).0
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        credential: &str,
        body: Option<Value>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(credential);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (
            status,
            response.json().await.unwrap_or(Value::Null),
            headers,
        )
    }

    async fn new_key(&self, user: &str, merchant: &str) -> Value {
        let (status, body, _) = self
            .call(
                reqwest::Method::POST,
                "/api_keys",
                &self.token(user, merchant),
                Some(json!({"name": "test"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    fn dump(&self) -> String {
        let mut redis = self.redis.connection();
        let all: Vec<String> = redis.keys("*").unwrap();
        let mut dump = String::new();
        for key in all {
            let kind: String = redis::cmd("TYPE").arg(&key).query(&mut redis).unwrap();
            let value: redis::Value = match kind.as_str() {
                "hash" => redis::cmd("HGETALL").arg(&key).query(&mut redis).unwrap(),
                "set" => redis::cmd("SMEMBERS").arg(&key).query(&mut redis).unwrap(),
                "string" => redis::cmd("GET").arg(&key).query(&mut redis).unwrap(),
                _ => redis::Value::Nil,
            };
            dump.push_str(&format!("{key} {value:?}\n"));
        }
        dump
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_users_file_links_are_seeded_once() {
    let app = start_on(RedisServer::start()).await;
    let mut redis = app.redis.connection();
    let members = |redis: &mut redis::Connection, merchant: &str, user: &str| {
        let mut set: Vec<String> = redis
            .smembers(keyspace::user_customers(merchant, user))
            .unwrap();
        set.sort();
        set
    };
    assert_eq!(members(&mut redis, "acme", "alice"), ["cus_1", "cus_2"]);
    assert_eq!(members(&mut redis, "acme", "carol"), ["cus_2"]);
    assert_eq!(members(&mut redis, "globex", "bob"), ["cus_1"]);
    // A link removed since is not brought back by a restart.
    let _: i64 = redis
        .srem(keyspace::user_customers("acme", "alice"), "cus_2")
        .unwrap();
    let App { redis: server, .. } = app;
    let again = start_on(server).await;
    let mut redis = again.redis.connection();
    assert_eq!(members(&mut redis, "acme", "alice"), ["cus_1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_are_shown_once_stored_as_a_hash_listed_and_revoked() {
    use reqwest::Method;
    let app = start_on(RedisServer::start()).await;
    let alice = app.token("alice", "acme");
    let (status, created, headers) = app
        .call(
            Method::POST,
            "/api_keys",
            &alice,
            Some(json!({"name": "checkout"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(headers["cache-control"], "no-store");
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(platform::access::api_key::parse(&key).is_some(), "{key}");
    assert!(platform::access::api_key::is_key_id(&id), "{id}");
    assert_eq!(created["last4"], &key[key.len() - 4..]);

    // At rest: the hash record and the listing, never the secret.
    let dump = app.dump();
    assert!(!dump.contains(&key[8..]), "secret stored:\n{dump}");
    let mut redis = app.redis.connection();
    let record: std::collections::HashMap<String, String> = redis
        .hgetall(keyspace::api_key_by_hash(&KeyHash::of(&key)))
        .unwrap();
    assert_eq!(record["id"], id);
    assert_eq!(record["merchant"], "acme");

    let (status, listed, _) = app.call(Method::GET, "/api_keys", &alice, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        listed["data"],
        json!([{"id": id, "name": "checkout", "created_at": created["created_at"], "last4": created["last4"]}])
    );

    // Who may not: a key, a user who does not manage keys, another merchant.
    let (status, body, _) = app
        .call(Method::POST, "/api_keys", &key, Some(json!({"name": "x"})))
        .await;
    assert_eq!((status, code(&body)), (403, "user_token_required"));
    let carol = app.token("carol", "acme");
    let (status, body, _) = app.call(Method::GET, "/api_keys", &carol, None).await;
    assert_eq!((status, code(&body)), (403, "not_permitted"));
    // A token naming a user of another merchant than its own is refused too.
    let forged_merchant = app.token("alice", "globex");
    let (status, _, _) = app
        .call(Method::GET, "/api_keys", &forged_merchant, None)
        .await;
    assert_eq!(status, 403);
    let bob = app.token("bob", "globex");
    let (status, body, _) = app
        .call(Method::DELETE, &format!("/api_keys/{id}"), &bob, None)
        .await;
    assert_eq!((status, code(&body)), (404, "api_key_not_found"));
    let (_, listed, _) = app.call(Method::GET, "/api_keys", &bob, None).await;
    assert_eq!(listed["data"], json!([]));

    // Revoked: both records gone, once.
    let (status, body, _) = app
        .call(Method::DELETE, &format!("/api_keys/{id}"), &alice, None)
        .await;
    assert_eq!((status, &body), (200, &json!({"id": id, "deleted": true})));
    let exists: bool = redis
        .exists(keyspace::api_key_by_hash(&KeyHash::of(&key)))
        .unwrap();
    assert!(!exists);
    let (status, _, _) = app
        .call(Method::DELETE, &format!("/api_keys/{id}"), &alice, None)
        .await;
    assert_eq!(status, 404);
    // The revoked key is refused here too (cache at most 500 ms old).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, body, _) = app
        .call(Method::GET, "/users/alice/customers", &key, None)
        .await;
    assert_eq!((status, code(&body)), (401, "api_key_invalid"));

    // At most 100 live keys per merchant.
    for _ in 0..100 {
        app.new_key("alice", "acme").await;
    }
    let (status, body, _) = app
        .call(
            Method::POST,
            "/api_keys",
            &alice,
            Some(json!({"name": "101st"})),
        )
        .await;
    assert_eq!((status, code(&body)), (409, "too_many_api_keys"));
}

#[tokio::test(flavor = "multi_thread")]
async fn links_change_only_with_an_api_key_of_the_users_merchant() {
    use reqwest::Method;
    let app = start_on(RedisServer::start()).await;
    let key = app.new_key("alice", "acme").await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_key = app.new_key("bob", "globex").await["key"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, body, _) = app
        .call(Method::PUT, "/users/carol/customers/cus_7", &key, None)
        .await;
    assert_eq!(
        (status, &body),
        (
            200,
            &json!({"username": "carol", "customers": ["cus_2", "cus_7"]})
        )
    );
    let (status, again, _) = app
        .call(Method::PUT, "/users/carol/customers/cus_7", &key, None)
        .await;
    assert_eq!((status, &again), (200, &body), "idempotent");
    let (status, body, _) = app
        .call(Method::DELETE, "/users/carol/customers/cus_2", &key, None)
        .await;
    assert_eq!((status, &body["customers"]), (200, &json!(["cus_7"])));
    let (status, body, _) = app
        .call(Method::GET, "/users/carol/customers", &key, None)
        .await;
    assert_eq!((status, &body["customers"]), (200, &json!(["cus_7"])));

    for (credential, path, expected) in [
        (
            app.token("carol", "acme"),
            "/users/carol/customers/cus_1",
            (403, "api_key_required"),
        ),
        (
            app.token("alice", "acme"),
            "/users/carol/customers/cus_1",
            (403, "api_key_required"),
        ),
        (
            bob_key.clone(),
            "/users/carol/customers/cus_1",
            (404, "user_not_found"),
        ),
        (
            key.clone(),
            "/users/bob/customers/cus_1",
            (404, "user_not_found"),
        ),
        (
            key.clone(),
            "/users/mallory/customers/cus_1",
            (404, "user_not_found"),
        ),
        (
            key.clone(),
            "/users/carol/customers/a%20b",
            (422, "invalid_customer_id"),
        ),
        (
            key.clone(),
            "/users/carol/customers/4242424242424242",
            (422, "invalid_customer_id"),
        ),
    ] {
        let (status, body, _) = app.call(Method::PUT, path, &credential, None).await;
        assert_eq!((status, code(&body)), expected, "{path}");
    }
    let (_, body, _) = app
        .call(Method::GET, "/users/carol/customers", &key, None)
        .await;
    assert_eq!(
        body["customers"],
        json!(["cus_7"]),
        "nothing else was linked"
    );

    // At most 100 customers per user.
    for i in 0..99 {
        let (status, _, _) = app
            .call(
                Method::PUT,
                &format!("/users/carol/customers/cus_x{i}"),
                &key,
                None,
            )
            .await;
        assert_eq!(status, 200);
    }
    let (status, body, _) = app
        .call(
            Method::PUT,
            "/users/carol/customers/cus_one_more",
            &key,
            None,
        )
        .await;
    assert_eq!((status, code(&body)), (409, "too_many_customers"));
}
