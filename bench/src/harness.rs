//! What every scenario runs against: the booted stack, the references
//! beside it, an HTTP client with the dev users' tokens, a Redis
//! connection, and the two wrk loads the scenarios are made of.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use e2e::stack::Stack;
use platform::keyspace::{self, Index};
use platform::transaction::Status;
use redis::aio::MultiplexedConnection;

use crate::driver::{self, Tokens};
use crate::reference::References;
use crate::scenarios::end_to_end::END_TO_END_CUSTOMER;
use crate::scenarios::list_by_customer::{BIG_CUSTOMER, SMALL_CUSTOMER};
use crate::settings::{CONNECTIONS, WRK_THREADS};
use crate::{log, wrk};

const CONNECTORS: [&str; 2] = ["psp-connector-0", "psp-connector-1"];
/// Merchants of the dev users (config/users.toml).
const MERCHANTS: [&str; 2] = ["acme", "globex"];

/// The customer of every POST load (alice's).
pub const LOAD_CUSTOMER: &str = "cus_load";

pub struct Harness {
    pub stack: Stack,
    pub references: References,
    pub gateway: String,
    /// `http://127.0.0.1:<port>` of each core-api replica.
    pub core_apis: [String; 2],
    pub client: reqwest::Client,
    /// alice of acme, the large merchant.
    pub alice: Arc<Tokens>,
    /// bob of globex, the small merchant.
    pub bob: Arc<Tokens>,
    pub redis: MultiplexedConnection,
    /// Prefix of every Idempotency-Key of this run.
    pub run_id: String,
    /// Each POST load's duration.
    pub seconds: u64,
    script: PathBuf,
}

impl Harness {
    /// Starts the references beside `stack` and logs both users in;
    /// `work` holds the wrk script and the references' files.
    pub async fn start(
        stack: Stack,
        root: &Path,
        work: &Path,
        run_id: String,
        seconds: u64,
    ) -> anyhow::Result<Harness> {
        let script = work.join("load.lua");
        std::fs::write(&script, wrk::SCRIPT)?;
        let references = References::start(root, work).await?;
        let gateway = stack.gateway();
        let core_apis = [
            format!("http://127.0.0.1:{}", stack.port(7200)),
            format!("http://127.0.0.1:{}", stack.port(7201)),
        ];
        let client = driver::client();
        let alice = Tokens::new(&client, &gateway, "alice");
        let bob = Tokens::new(&client, &gateway, "bob");
        // A user token pays only for the customers linked to its user.
        let customers = [
            (
                "alice",
                &[LOAD_CUSTOMER, END_TO_END_CUSTOMER, BIG_CUSTOMER][..],
            ),
            ("bob", &[SMALL_CUSTOMER][..]),
        ];
        for (user, customers) in customers {
            link_customers(&client, &gateway, user, customers).await?;
        }
        let redis = redis::Client::open(stack.redis_url())?
            .get_multiplexed_async_connection()
            .await?;
        Ok(Harness {
            stack,
            references,
            gateway,
            core_apis,
            client,
            alice,
            bob,
            redis,
            run_id,
            seconds,
            script,
        })
    }

    /// `POST /transactions` from wrk, 64 connections, each request with its
    /// own Idempotency-Key (`name` tells this load's keys apart).
    pub async fn post_load(
        &self,
        url: &str,
        token: Option<String>,
        name: &str,
        seconds: u64,
    ) -> anyhow::Result<wrk::Figures> {
        let load = wrk::Load {
            url: url.to_owned(),
            method: "POST",
            path: "/transactions".into(),
            token,
            body: Some(driver::body(LOAD_CUSTOMER)),
            run_id: format!("{}-{name}", self.run_id),
            threads: WRK_THREADS,
            connections: CONNECTIONS,
            seconds,
        };
        wrk::run_blocking(self.script.clone(), load).await
    }

    /// GET `path` on one core-api, a few connections: latency, not
    /// throughput. Half as long as a POST load.
    pub async fn list_load(&self, path: &str, token: String) -> anyhow::Result<wrk::Figures> {
        let load = wrk::Load {
            url: self.core_apis[0].clone(),
            method: "GET",
            path: path.to_owned(),
            token: Some(token),
            body: None,
            run_id: "list".into(),
            threads: 1,
            connections: 4,
            seconds: (self.seconds / 2).max(1),
        };
        wrk::run_blocking(self.script.clone(), load).await
    }

    /// A new API key of `admin`'s merchant (a user who manages its keys).
    pub async fn api_key(&self, admin: &str) -> anyhow::Result<String> {
        create_key(&self.client, &self.gateway, admin).await
    }

    /// Every path the scenarios use, connectors running, until all settled.
    pub async fn warm_up(&self) -> anyhow::Result<()> {
        log("warming up");
        let token = Some(self.alice.get().await?);
        self.post_load(&self.gateway, token, "warm-gateway", 3)
            .await?;
        self.post_load(&self.references.caddy, None, "warm-caddy", 2)
            .await?;
        self.post_load(&self.references.hellos[0], None, "warm-hello", 1)
            .await?;
        self.wait_settled(Duration::from_secs(120)).await?;
        Ok(())
    }

    /// Transactions not yet final, over both merchants' status indexes.
    pub async fn unsettled(&self) -> anyhow::Result<u64> {
        let mut pipe = redis::pipe();
        for merchant in MERCHANTS {
            for status in [Status::Pending, Status::Processing] {
                pipe.zcard(Index::Status(status).key(merchant));
            }
        }
        let counts: Vec<u64> = pipe.query_async(&mut self.redis.clone()).await?;
        Ok(counts.iter().sum())
    }

    /// [`Harness::unsettled`] once it stops growing (connectors paused): a
    /// load generator that stops closes connections with POSTs in flight,
    /// and core-api may still write those a moment later. Counted too early,
    /// they would be settled (and charged) without being in the backlog.
    pub async fn unsettled_when_quiet(&self) -> anyhow::Result<u64> {
        let mut count = self.unsettled().await?;
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let again = self.unsettled().await?;
            if again == count {
                return Ok(count);
            }
            count = again;
        }
    }

    /// Waits until every transaction is final and the stream is empty.
    pub async fn wait_settled(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let queued: u64 = redis::cmd("XLEN")
                .arg(keyspace::STREAM)
                .query_async(&mut self.redis.clone())
                .await?;
            if queued == 0 && self.unsettled().await? == 0 {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                bail!("not settled after {timeout:?}: {queued} messages still queued");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the references, then the stack (`process-compose down` blocks).
    pub async fn shut_down(self) -> anyhow::Result<()> {
        drop(self.references);
        let stack = self.stack;
        tokio::task::spawn_blocking(move || drop(stack)).await?;
        Ok(())
    }
}

/// Both connectors stopped, so the accept path is measured alone and what
/// it queues is the settle scenario's backlog; started again when dropped
/// (also on failure, so the stack can still be stopped).
pub struct PausedConnectors<'a>(&'a Stack);

impl<'a> PausedConnectors<'a> {
    /// Stops both connectors through process-compose (SIGTERM, drained);
    /// a frozen process (SIGSTOP) would fail its readiness probes and be
    /// restarted by process-compose after a while.
    pub fn new(stack: &'a Stack) -> Self {
        for name in CONNECTORS {
            stack.api().stop(name);
        }
        for name in CONNECTORS {
            while !stack.state(name).has_ended() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        PausedConnectors(stack)
    }
}

impl Drop for PausedConnectors<'_> {
    fn drop(&mut self) {
        for name in CONNECTORS {
            self.0.api().start(name);
        }
    }
}

/// A new API key of `admin`'s merchant, through the gateway.
async fn create_key(
    client: &reqwest::Client,
    gateway: &str,
    admin: &str,
) -> anyhow::Result<String> {
    let token = Tokens::new(client, gateway, admin).get().await?;
    let response = client
        .post(format!("{gateway}/auth/api_keys"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "bench"}))
        .send()
        .await?;
    if response.status() != 201 {
        bail!("POST /auth/api_keys answered {}", response.status());
    }
    let created: serde_json::Value = response.json().await?;
    match created["key"].as_str() {
        Some(key) => Ok(key.to_owned()),
        None => bail!("no key in {created}"),
    }
}

/// Links `user` to `customers` with an API key the user creates (alice and
/// bob manage their merchants' keys).
async fn link_customers(
    client: &reqwest::Client,
    gateway: &str,
    user: &str,
    customers: &[&str],
) -> anyhow::Result<()> {
    let key = create_key(client, gateway, user).await?;
    for customer in customers {
        let response = client
            .put(format!("{gateway}/auth/users/{user}/customers/{customer}"))
            .bearer_auth(&key)
            .send()
            .await?;
        if response.status() != 200 {
            bail!(
                "linking {user} to {customer} answered {}",
                response.status()
            );
        }
    }
    Ok(())
}
