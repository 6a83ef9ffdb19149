//! What the core-api tests share: a real Redis, the real core-api binary
//! (its logs captured to a file), tokens minted with the shared secret,
//! and a few request helpers.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use platform::auth::{JwtSecret, TokenIssuer};
use platform::testing::{ChildGuard, RedisServer, free_port};
use serde_json::{Value, json};

pub const SECRET: &str = "core-api-test-secret-0123456789abcdef";
pub const CARD: &str = psp_sandbox::cards::APPROVED;

pub struct App {
    pub redis: RedisServer,
    pub child: ChildGuard,
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub log_path: PathBuf,
    _log_dir: tempfile::TempDir,
    issuer: TokenIssuer,
}

impl App {
    /// Redis plus the core-api binary, ready (`/readyz` answers 200).
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// The same, with extra environment for core-api.
    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        let redis = RedisServer::start();
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let log_dir = tempfile::tempdir().unwrap();
        let log_path = log_dir.path().join("core-api.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_core-api"))
            .env_clear()
            .env("CORE_API_ADDR", addr.to_string())
            .env("REDIS_URL", redis.url())
            .env("JWT_SECRET", SECRET)
            .env("LOG_FORMAT", "json")
            // Everything the service would ever log, to prove it holds no card.
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let app = Self {
            redis,
            child: ChildGuard(child),
            addr,
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            log_path,
            _log_dir: log_dir,
            issuer: TokenIssuer::new(&JwtSecret::new(SECRET).unwrap(), Duration::from_secs(600)),
        };
        app.wait_ready().await;
        // The links of the dev users file (config/users.toml), which
        // auth-api would have seeded: the tests' users act for these.
        app.link("acme", "alice", &["cus_1", "cus_2"]);
        app.link("globex", "bob", &["cus_1"]);
        app
    }

    /// Links `user` of `merchant` to `customers`, as auth-api's link route
    /// does.
    pub fn link(&self, merchant: &str, user: &str, customers: &[&str]) {
        let mut redis = self.redis.connection();
        for customer in customers {
            let _: i64 = redis::cmd("SADD")
                .arg(platform::keyspace::user_customers(merchant, user))
                .arg(customer)
                .query(&mut redis)
                .unwrap();
        }
    }

    /// A new API key of `merchant`, stored as auth-api stores it (only the
    /// hash record core-api reads), and its id.
    pub fn api_key(&self, merchant: &str) -> (String, String) {
        let new = platform::access::api_key::generate();
        let id = platform::access::api_key::new_id();
        let mut redis = self.redis.connection();
        let _: i64 = redis::cmd("HSET")
            .arg(platform::keyspace::api_key_by_hash(&new.hash))
            .arg("id")
            .arg(&id)
            .arg("merchant")
            .arg(merchant)
            .query(&mut redis)
            .unwrap();
        (new.secret, id)
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let response = self
                .client
                .get(format!("{}/readyz", self.base))
                .send()
                .await;
            if response.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(Instant::now() < deadline, "core-api did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn token(&self, user: &str, merchant: &str) -> String {
        self.issuer.issue(user, merchant).0
    }

    pub fn alice(&self) -> String {
        self.token("alice", "acme")
    }

    pub fn bob(&self) -> String {
        self.token("bob", "globex")
    }

    /// POST /transactions with a JSON body.
    pub async fn create(&self, token: &str, body: &Value, idempotency_key: Option<&str>) -> Reply {
        let mut request = self
            .client
            .post(format!("{}/transactions", self.base))
            .bearer_auth(token)
            .json(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        Reply::from(request.send().await.unwrap()).await
    }

    pub async fn get(&self, token: &str, path_and_query: &str) -> Reply {
        let response = self
            .client
            .get(format!("{}{path_and_query}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        Reply::from(response).await
    }

    /// Moves a pending or processing transaction to the final status `to`
    /// by the status script, as the connector does.
    pub async fn make_final(&self, id: &str, to: platform::transaction::Status) {
        use platform::transaction::{Status, TransactionId, Transition, TransitionOutcome};
        let client = redis::Client::open(self.redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let id = TransactionId::parse(id).unwrap();
        let transition = Transition {
            from: vec![Status::Pending, Status::Processing],
            to,
            add_attempts: 1,
            log: None,
            fields: Vec::new(),
        };
        let outcome = platform::transaction::transition(&mut conn, &id, "acme", &transition)
            .await
            .unwrap();
        assert_eq!(outcome, TransitionOutcome::Applied);
    }

    /// Moves a pending transaction of acme to `succeeded` as the connector
    /// does once a PSP charged it: with the PSP's name and charge id.
    pub async fn charged(&self, id: &str, charge_id: &str) {
        use platform::keyspace::field;
        use platform::transaction::{Status, TransactionId, Transition, TransitionOutcome};
        let client = redis::Client::open(self.redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let id = TransactionId::parse(id).unwrap();
        let transition = Transition {
            from: vec![Status::Pending, Status::Processing],
            to: Status::Succeeded,
            add_attempts: 1,
            log: None,
            fields: vec![
                (field::PSP, "psp-a".to_owned()),
                (field::PSP_REFERENCE, charge_id.to_owned()),
            ],
        };
        let outcome = platform::transaction::transition(&mut conn, &id, "acme", &transition)
            .await
            .unwrap();
        assert_eq!(outcome, TransitionOutcome::Applied);
    }

    /// POST /transactions/{id}/refunds with `body` (`None`: no body).
    pub async fn refund(
        &self,
        token: &str,
        id: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Reply {
        let mut request = self
            .client
            .post(format!("{}/transactions/{id}/refunds", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        Reply::from(request.send().await.unwrap()).await
    }

    /// The ids of every `tx:*` record in Redis.
    pub fn record_ids(&self) -> Vec<String> {
        let mut conn = self.redis.connection();
        let mut keys: Vec<String> = redis::cmd("KEYS").arg("tx:*").query(&mut conn).unwrap();
        keys.sort();
        keys.into_iter()
            .filter(|k| platform::keyspace::owner(k) == Some("tx:{id}"))
            .map(|k| k["tx:".len()..].to_owned())
            .collect()
    }

    /// The decoded payloads of every message on the queue stream.
    pub fn queued(&self) -> Vec<platform::queue::ChargeMessage> {
        let mut conn = self.redis.connection();
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(platform::keyspace::STREAM)
            .arg("-")
            .arg("+")
            .query(&mut conn)
            .unwrap();
        entries
            .into_iter()
            .map(|(_, fields)| {
                let payload = &fields
                    .iter()
                    .find(|(name, _)| name == platform::keyspace::PAYLOAD_FIELD)
                    .unwrap()
                    .1;
                platform::queue::ChargeMessage::from_payload(payload).unwrap()
            })
            .collect()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap()
    }
}

/// A response, read fully.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub async fn from(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `(status, code, param)` of an error answer.
    pub fn error(&self) -> (u16, &str, Option<&str>) {
        let error = &self.json["error"];
        assert!(
            error.is_object(),
            "not an error body: {} {}",
            self.status,
            self.text
        );
        (
            self.status,
            error["code"].as_str().unwrap(),
            error["param"].as_str(),
        )
    }
}

/// The example body of the README walkthrough.
pub fn valid_body() -> Value {
    json!({
        "amount": 1299,
        "currency": "EUR",
        "customer_id": "cus_1",
        "reference": "order-42",
        "payment_method": {
            "type": "card",
            "number": CARD,
            "expiry_month": 12,
            "expiry_year": 2030,
            "cvc": "123"
        },
        "metadata": {"any": "string values"}
    })
}
