//! The Redis bus across a server crash and restart.
//!
//! The shared test server must not be restarted, so this test runs its own private
//! `redis-server` (the binary that serves `EVENTSOURCE_TEST_REDIS_URL` on a test machine)
//! on a free port, with an append-only file synced on every write, kills it, and starts it
//! again on the same data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use eventsource::{
    BoxError, BusError, DomainEvent, EventBus, EventEnvelope, EventHandler, Payload, RecordedEvent,
    RedisEventBus,
};
use eventsource_test::backend::require_or_skip;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Wallet", name = "redis_restart_test.deposited")]
struct Deposited {
    amount: u64,
}

/// A private server; killed and its files removed when dropped.
struct Server {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Server {
    fn start(port: u16, dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut server = Server {
            port,
            dir,
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// Kills the process without letting it shut down cleanly.
    fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let client = redis::Client::open(self.url()).map_err(|e| e.to_string())?;
            match client.get_multiplexed_async_connection().await {
                Ok(mut con) => {
                    let pong: Result<String, _> = redis::cmd("PING").query_async(&mut con).await;
                    if pong.is_ok() {
                        return Ok(());
                    }
                }
                Err(error) if Instant::now() > deadline => return Err(error.to_string()),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.crash();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn deposit(amount: u64) -> Arc<RecordedEvent> {
    let now = chrono::Utc::now();
    Arc::new(RecordedEvent {
        envelope: EventEnvelope {
            event_id: Uuid::now_v7(),
            event_name: Deposited::NAME.into(),
            schema_version: Deposited::VERSION,
            aggregate_id: Uuid::now_v7(),
            aggregate_type: "Wallet".into(),
            aggregate_version: 1,
            occurred_at: now,
            context: Default::default(),
        },
        payload: Payload::typed(Deposited { amount }),
        position: amount,
        stored_at: now,
    })
}

struct Amounts(Arc<Mutex<Vec<u64>>>);

#[async_trait]
impl EventHandler for Amounts {
    async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError> {
        self.0
            .lock()
            .unwrap()
            .push(event.decode::<Deposited>()?.amount);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_carries_on_after_the_server_crashes_and_restarts_without_redoing_acknowledged_events()
 {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!(
        "eventsource-redis-restart-{}",
        Uuid::now_v7().simple()
    ));
    let started = Server::start(port, dir).map_err(|e| format!("cannot run redis-server: {e}"));
    let Some(mut server) = require_or_skip("redis", &format!("redis://127.0.0.1:{port}"), started)
    else {
        return;
    };
    server.wait_ready().await.unwrap();

    let bus = RedisEventBus::builder(&server.url())
        .prefix("restart")
        .response_timeout(Duration::from_secs(1))
        .connection_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
    let consumer = bus
        .consumer("g")
        .idle_timeout(Duration::from_millis(200))
        .block_time(Duration::from_millis(100))
        .subscribe_all(Arc::new(Amounts(Arc::clone(&seen))))
        .start()
        .await
        .unwrap();

    bus.publish(&[deposit(1), deposit(2), deposit(3)])
        .await
        .unwrap();
    eventually("the first three are handled", || async {
        seen.lock().unwrap().len() == 3
    })
    .await;
    // Wait until they are acknowledged on the server, the progress that must survive.
    let admin = redis::Client::open(server.url()).unwrap();
    let pending = || async {
        let mut con = admin.get_multiplexed_async_connection().await.ok()?;
        let summary: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
            .arg(bus.stream_key())
            .arg("g")
            .query_async(&mut con)
            .await
            .ok()?;
        Some(summary.0)
    };
    eventually("acknowledged", || async { pending().await == Some(0) }).await;

    server.crash();
    let error = bus.publish(&[deposit(99)]).await.unwrap_err();
    assert!(
        matches!(
            error,
            BusError::Backend {
                transient: true,
                ..
            }
        ),
        "a down server is a transient error: {error:?}"
    );

    server.spawn().unwrap();
    server.wait_ready().await.unwrap();
    // The publisher reconnects on its own; retry until it has.
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(error) = bus.publish(&[deposit(4), deposit(5), deposit(6)]).await {
        assert!(
            Instant::now() < deadline,
            "the bus never published again: {error}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually("the last three are handled", || async {
        seen.lock().unwrap().len() == 6
    })
    .await;
    eventually("acknowledged", || async { pending().await == Some(0) }).await;

    assert_eq!(
        *seen.lock().unwrap(),
        vec![1, 2, 3, 4, 5, 6],
        "nothing acknowledged was redone"
    );
    assert!(consumer.stats().reconnects >= 1);
    consumer.shutdown().await;
}
