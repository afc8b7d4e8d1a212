//! The Redis Streams bus against a real server: fan-out, work sharing, acknowledgement
//! after success, reclaiming a crashed consumer's messages, dead letters and their replay,
//! unknown events, reconnects.
//!
//! Each test works under its own key prefix and deletes its keys when it ends (even when
//! it fails). Idle timeouts are short so that retries happen quickly; every wait polls
//! with a deadline instead of sleeping for a guessed time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use eventsource::{
    AggregateRepository, BoxError, DomainEvent, EventBus, EventEnvelope, EventHandler,
    InMemoryEventStore, Payload, RecordedEvent, RedisConsumerBuilder, RedisEventBus, StartFrom,
};
use eventsource_examples::{Order, OrderCreated, OrderItemAdded};
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Wallet", name = "redis_test.deposited")]
struct Deposited {
    amount: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Wallet", name = "redis_test.withdrawn")]
struct Withdrawn {
    amount: u64,
}

const IDLE: Duration = Duration::from_millis(200);
const DEADLINE: Duration = Duration::from_secs(15);

use eventsource_test::backend::{redis_url, require_or_skip};

/// A test's own corner of the server: a bus under a unique prefix, an admin connection,
/// and cleanup of every key under the prefix when dropped.
struct Ctx {
    bus: RedisEventBus,
    admin: MultiplexedConnection,
    prefix: String,
}

impl Ctx {
    /// `None` (after printing SKIPPED) when the server is not reachable, unless
    /// `EVENTSOURCE_TEST_REQUIRE_BACKENDS=1`, which makes it fail.
    async fn new(test: &str) -> Option<Ctx> {
        let url = redis_url();
        let prefix = format!("estest:{test}:{}", Uuid::now_v7().simple());
        let connected = async {
            let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
            let admin = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| e.to_string())?;
            let bus = RedisEventBus::builder(&url)
                .prefix(&prefix)
                .build()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((admin, bus))
        };
        let connected = match tokio::time::timeout(Duration::from_secs(5), connected).await {
            Ok(connected) => connected,
            Err(_) => Err("timed out".to_owned()),
        };
        let (admin, bus) = require_or_skip("redis", &url, connected)?;
        Some(Ctx { bus, admin, prefix })
    }

    fn consumer(&self, group: &str) -> RedisConsumerBuilder {
        self.bus
            .consumer(group)
            .idle_timeout(IDLE)
            .block_time(Duration::from_millis(100))
    }

    /// How many messages of `group` are delivered and not acknowledged.
    async fn pending(&self, group: &str) -> u64 {
        let summary: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
            .arg(self.bus.stream_key())
            .arg(group)
            .query_async(&mut self.admin.clone())
            .await
            .unwrap();
        summary.0
    }

    /// The server's delivery count of one message in `group`'s pending list.
    async fn delivery_count(&self, group: &str, id: &str) -> Option<u64> {
        let reply: redis::streams::StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(self.bus.stream_key())
            .arg(group)
            .arg(id)
            .arg(id)
            .arg(1)
            .query_async(&mut self.admin.clone())
            .await
            .unwrap();
        reply.ids.first().map(|p| p.times_delivered as u64)
    }

    /// Stream ids of the event stream, oldest first.
    async fn stream_ids(&self) -> Vec<String> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.bus.stream_key())
            .arg("-")
            .arg("+")
            .query_async(&mut self.admin.clone())
            .await
            .unwrap();
        reply.ids.into_iter().map(|e| e.id).collect()
    }

    /// The ids of the connections named `name` in `CLIENT LIST`.
    async fn client_ids(&self, name: &str) -> Vec<u64> {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut self.admin.clone())
            .await
            .unwrap();
        list.lines()
            .filter(|line| line.split(' ').any(|kv| kv == format!("name={name}")))
            .filter_map(|line| line.split(' ').find_map(|kv| kv.strip_prefix("id=")))
            .map(|id| id.parse().unwrap())
            .collect()
    }

    async fn kill_client(&self, id: u64) {
        let killed: u64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut self.admin.clone())
            .await
            .unwrap();
        assert_eq!(killed, 1, "connection {id} should have been killed");
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // Synchronous, so that it runs even when the test panicked.
        let Ok(client) = redis::Client::open(redis_url()) else {
            return;
        };
        let Ok(mut con) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query(&mut con)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query(&mut con);
        }
    }
}

/// Polls `check` until it holds or the deadline passes.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn recorded<E: DomainEvent>(event: E, position: u64) -> Arc<RecordedEvent> {
    recorded_as(E::NAME, E::VERSION, Payload::typed(event), position)
}

fn recorded_as(
    name: &'static str,
    version: u32,
    payload: Payload,
    position: u64,
) -> Arc<RecordedEvent> {
    let now = chrono::Utc::now();
    Arc::new(RecordedEvent {
        envelope: EventEnvelope {
            event_id: Uuid::now_v7(),
            event_name: name.into(),
            schema_version: version,
            aggregate_id: Uuid::now_v7(),
            aggregate_type: "Wallet".into(),
            aggregate_version: position,
            occurred_at: now,
            context: eventsource::EventContext {
                tenant_id: Some("tenant-1".into()),
                correlation_id: Some(Uuid::now_v7()),
                causation_id: None,
                actor_id: Some("tester".into()),
                metadata: [("source".to_owned(), serde_json::json!("redis-test"))].into(),
            }
            .into(),
        },
        payload,
        position,
        stored_at: now,
    })
}

fn deposits(n: u64) -> Vec<Arc<RecordedEvent>> {
    (1..=n)
        .map(|i| recorded(Deposited { amount: i }, i))
        .collect()
}

/// How a [`Recorder`] answers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Succeed,
    Fail,
    /// Never returns, as if the process hung or died mid-handler.
    Hang,
}

/// Records what it handled; can be told to fail or hang.
struct Recorder {
    name: String,
    fail: AtomicBool,
    hang: AtomicBool,
    attempts: AtomicUsize,
    /// Events handled successfully: event id -> the decoded amount.
    handled: Mutex<Vec<(Uuid, u64, u64)>>,
}

impl Recorder {
    fn new(name: &str, mode: Mode) -> Arc<Self> {
        Arc::new(Recorder {
            name: name.to_owned(),
            fail: AtomicBool::new(mode == Mode::Fail),
            hang: AtomicBool::new(mode == Mode::Hang),
            attempts: AtomicUsize::new(0),
            handled: Mutex::new(Vec::new()),
        })
    }

    fn set_failing(&self, fail: bool) {
        self.fail.store(fail, Ordering::SeqCst);
    }

    fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    fn count(&self) -> usize {
        self.handled.lock().unwrap().len()
    }

    fn ids(&self) -> Vec<Uuid> {
        self.handled.lock().unwrap().iter().map(|h| h.0).collect()
    }

    fn positions(&self) -> Vec<u64> {
        self.handled.lock().unwrap().iter().map(|h| h.2).collect()
    }

    fn handler(self: &Arc<Self>) -> Arc<dyn EventHandler> {
        Arc::clone(self) as Arc<dyn EventHandler>
    }
}

#[async_trait]
impl EventHandler for Recorder {
    fn name(&self) -> &str {
        &self.name
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(format!("{} refuses {}", self.name, event.event_id()).into());
        }
        // The payload arrives as JSON and decodes into the handler's own type.
        let amount = if event.is::<Deposited>() {
            event.decode::<Deposited>()?.amount
        } else if event.is::<Withdrawn>() {
            event.decode::<Withdrawn>()?.amount
        } else {
            0
        };
        self.handled
            .lock()
            .unwrap()
            .push((event.event_id(), amount, event.position));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Publishing and the wire format
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_receives_every_envelope_field_and_decodes_the_payload_into_its_type() {
    let Some(ctx) = Ctx::new("envelope").await else {
        return;
    };
    let seen: Arc<Mutex<Vec<RecordedEvent>>> = Arc::default();
    struct Keep(Arc<Mutex<Vec<RecordedEvent>>>);
    #[async_trait]
    impl EventHandler for Keep {
        async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError> {
            self.0.lock().unwrap().push(event.clone());
            Ok(())
        }
    }
    let consumer = ctx
        .consumer("g")
        .subscribe_all(Arc::new(Keep(Arc::clone(&seen))))
        .start()
        .await
        .unwrap();

    let sent = recorded(Deposited { amount: 42 }, 7);
    ctx.bus.publish(std::slice::from_ref(&sent)).await.unwrap();

    eventually("the event is handled", || async {
        seen.lock().unwrap().len() == 1
    })
    .await;
    let got = seen.lock().unwrap()[0].clone();
    assert_eq!(got.envelope, sent.envelope);
    assert_eq!(got.position, 7);
    assert_eq!(got.stored_at, sent.stored_at);
    assert!(matches!(got.payload, Payload::Json(_)));
    assert_eq!(got.decode::<Deposited>().unwrap(), Deposited { amount: 42 });
    consumer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_published_in_order_and_an_approximate_max_length_trims_the_stream() {
    let Some(ctx) = Ctx::new("maxlen").await else {
        return;
    };
    ctx.bus.publish(&deposits(5)).await.unwrap();
    assert_eq!(ctx.stream_ids().await.len(), 5);

    let url = redis_url();
    let capped = RedisEventBus::builder(&url)
        .prefix(ctx.bus.prefix())
        .max_len(10)
        .build()
        .await
        .unwrap();
    for chunk in deposits(3000).chunks(100) {
        capped.publish(chunk).await.unwrap();
    }
    let len: u64 = redis::cmd("XLEN")
        .arg(ctx.bus.stream_key())
        .query_async(&mut ctx.admin.clone())
        .await
        .unwrap();
    // `MAXLEN ~` trims whole nodes (100 entries by default): far below what was published.
    assert!(len < 500, "stream should be trimmed, has {len} entries");
}

// ---------------------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_group_gets_every_event_in_publish_order() {
    let Some(ctx) = Ctx::new("fanout").await else {
        return;
    };
    let billing = Recorder::new("billing", Mode::Succeed);
    let shipping = Recorder::new("shipping", Mode::Succeed);
    let a = ctx
        .consumer("billing")
        .subscribe_all(billing.handler())
        .start()
        .await
        .unwrap();
    let b = ctx
        .consumer("shipping")
        .subscribe_all(shipping.handler())
        .start()
        .await
        .unwrap();

    let events = deposits(20);
    ctx.bus.publish(&events[..10]).await.unwrap();
    for event in &events[10..] {
        ctx.bus.publish(std::slice::from_ref(event)).await.unwrap();
    }

    eventually("both groups handled 20 events", || async {
        billing.count() == 20 && shipping.count() == 20
    })
    .await;
    let expected: Vec<Uuid> = events.iter().map(|e| e.event_id()).collect();
    assert_eq!(billing.ids(), expected);
    assert_eq!(shipping.ids(), expected);
    assert_eq!(ctx.pending("billing").await, 0);
    assert_eq!(ctx.pending("shipping").await, 0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_of_one_group_share_the_work_and_each_event_is_handled_once() {
    let Some(ctx) = Ctx::new("sharing").await else {
        return;
    };
    let first = Recorder::new("first", Mode::Succeed);
    let second = Recorder::new("second", Mode::Succeed);
    // Slow handlers: while one consumer works, the other is waiting for the next message.
    struct Slow(Arc<Recorder>);
    #[async_trait]
    impl EventHandler for Slow {
        async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError> {
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.0.handle(event).await
        }
    }
    let start = |recorder: &Arc<Recorder>| {
        ctx.consumer("workers")
            .batch_size(2)
            .subscribe_all(Arc::new(Slow(Arc::clone(recorder))))
            .start()
    };
    let a = start(&first).await.unwrap();
    let b = start(&second).await.unwrap();
    assert_ne!(a.name(), b.name());

    let events = deposits(40);
    for event in &events {
        ctx.bus.publish(std::slice::from_ref(event)).await.unwrap();
    }

    eventually("40 events handled in the group", || async {
        first.count() + second.count() == 40
    })
    .await;
    let mut all: Vec<Uuid> = first.ids();
    all.extend(second.ids());
    let distinct: BTreeSet<Uuid> = all.iter().copied().collect();
    assert_eq!(distinct.len(), 40, "no event handled twice");
    assert_eq!(distinct, events.iter().map(|e| e.event_id()).collect());
    assert!(
        first.count() > 0 && second.count() > 0,
        "both consumers worked: {} / {}",
        first.count(),
        second.count()
    );
    eventually("both count their work", || async {
        a.stats().handled + b.stats().handled == 40
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Acknowledgement
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_acknowledged_only_after_every_handler_succeeded() {
    let Some(ctx) = Ctx::new("ack").await else {
        return;
    };
    let steady = Recorder::new("steady", Mode::Succeed);
    let flaky = Recorder::new("flaky", Mode::Fail);
    let consumer = ctx
        .consumer("g")
        .max_deliveries(100)
        .subscribe_all(steady.handler())
        .subscribe::<Deposited>(flaky.handler())
        .start()
        .await
        .unwrap();

    ctx.bus.publish(&deposits(1)).await.unwrap();
    let id = ctx.stream_ids().await.remove(0);

    // One handler fails: the message stays pending and comes back after the idle time.
    eventually("the flaky handler was tried twice", || async {
        flaky.attempts() >= 2
    })
    .await;
    assert_eq!(
        ctx.pending("g").await,
        1,
        "not acknowledged while a handler fails"
    );
    assert!(ctx.delivery_count("g", &id).await.unwrap() >= 2);
    assert!(steady.count() >= 2, "every delivery runs every handler");
    assert_eq!(flaky.count(), 0);
    assert!(consumer.stats().failed >= 1);

    flaky.set_failing(false);
    eventually("the message is acknowledged", || async {
        ctx.pending("g").await == 0
    })
    .await;
    assert_eq!(flaky.count(), 1);
    assert_eq!(consumer.stats().handled, 1);
    assert_eq!(consumer.stats().dead_lettered, 0);
    consumer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_a_consumer_read_and_died_with_is_handled_by_another_after_the_idle_time() {
    let Some(ctx) = Ctx::new("crash").await else {
        return;
    };
    let doomed = Recorder::new("doomed", Mode::Hang);
    let a = ctx
        .consumer("g")
        .name("a")
        .subscribe_all(doomed.handler())
        .start()
        .await
        .unwrap();

    let events = deposits(1);
    ctx.bus.publish(&events).await.unwrap();
    eventually("consumer a is inside its handler", || async {
        doomed.attempts() == 1
    })
    .await;
    a.abort();
    assert_eq!(
        ctx.pending("g").await,
        1,
        "the crashed consumer never acknowledged"
    );

    let survivor = Recorder::new("survivor", Mode::Succeed);
    let b = ctx
        .consumer("g")
        .name("b")
        .subscribe_all(survivor.handler())
        .start()
        .await
        .unwrap();
    eventually("consumer b handled the orphaned message", || async {
        survivor.count() == 1
    })
    .await;
    assert_eq!(survivor.ids(), vec![events[0].event_id()]);
    assert_eq!(b.stats().reclaimed, 1);
    eventually("acknowledged", || async { ctx.pending("g").await == 0 }).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_nobody_handles_are_acknowledged_and_skipped() {
    let Some(ctx) = Ctx::new("unknown").await else {
        return;
    };
    let deposits_only = Recorder::new("deposits", Mode::Succeed);
    let consumer = ctx
        .consumer("g")
        .subscribe::<Deposited>(deposits_only.handler())
        .start()
        .await
        .unwrap();

    let unknown = recorded_as(
        "redis_test.never_registered",
        1,
        Payload::json(r#"{"x":1}"#),
        1,
    );
    let withdrawn = recorded(Withdrawn { amount: 3 }, 2);
    let deposited = recorded(Deposited { amount: 5 }, 3);
    ctx.bus
        .publish(&[unknown, withdrawn, Arc::clone(&deposited)])
        .await
        .unwrap();

    eventually("the deposit is handled", || async {
        deposits_only.count() == 1
    })
    .await;
    eventually("everything is acknowledged", || async {
        ctx.pending("g").await == 0
    })
    .await;
    assert_eq!(deposits_only.ids(), vec![deposited.event_id()]);
    let stats = consumer.stats();
    assert_eq!(
        (stats.handled, stats.skipped, stats.dead_lettered),
        (1, 2, 0)
    );
    consumer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stopped_gracefully_leaves_its_group_and_an_aborted_one_stays_with_its_messages()
{
    let Some(ctx) = Ctx::new("leave").await else {
        return;
    };
    let consumers = || async {
        let reply: redis::streams::StreamInfoConsumersReply = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(ctx.bus.stream_key())
            .arg("g")
            .query_async(&mut ctx.admin.clone())
            .await
            .unwrap();
        reply
            .consumers
            .into_iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
    };
    let recorder = Recorder::new("r", Mode::Succeed);
    let polite = ctx
        .consumer("g")
        .subscribe_all(recorder.handler())
        .start()
        .await
        .unwrap();
    ctx.bus.publish(&deposits(1)).await.unwrap();
    eventually("handled", || async { recorder.count() == 1 }).await;
    eventually("registered in the group", || async {
        consumers().await.len() == 1
    })
    .await;
    polite.shutdown().await;
    assert!(consumers().await.is_empty());

    let stuck = Recorder::new("stuck", Mode::Hang);
    let crashed = ctx
        .consumer("g")
        .subscribe_all(stuck.handler())
        .start()
        .await
        .unwrap();
    let name = crashed.name().to_owned();
    ctx.bus.publish(&deposits(1)).await.unwrap();
    eventually("inside the handler", || async { stuck.attempts() == 1 }).await;
    crashed.abort();
    assert_eq!(
        consumers().await,
        vec![name],
        "its pending message keeps it listed until claimed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_counts_as_a_failure_and_the_consumer_keeps_going() {
    let Some(ctx) = Ctx::new("panic").await else {
        return;
    };
    struct Panics;
    #[async_trait]
    impl EventHandler for Panics {
        fn name(&self) -> &str {
            "panics"
        }
        async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError> {
            if event.decode::<Deposited>()?.amount == 1 {
                panic!("amount one is cursed");
            }
            Ok(())
        }
    }
    let consumer = ctx
        .consumer("g")
        .max_deliveries(1)
        .subscribe_all(Arc::new(Panics))
        .start()
        .await
        .unwrap();
    ctx.bus.publish(&deposits(2)).await.unwrap();
    eventually("the second event is handled", || async {
        consumer.stats().handled == 1
    })
    .await;
    eventually("the first is dead-lettered", || async {
        ctx.bus.dead_letter_count("g").await.unwrap() == 1
    })
    .await;
    let letter = ctx.bus.dead_letters("g", 1).await.unwrap().remove(0);
    assert!(
        letter.error.contains("panicked: amount one is cursed"),
        "{}",
        letter.error
    );
    assert!(letter.error.contains("panics"), "{}", letter.error);
    consumer.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Dead letters
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_after_the_maximum_deliveries_with_its_error_and_count() {
    let Some(ctx) = Ctx::new("poison").await else {
        return;
    };
    let refuser = Recorder::new("refuser", Mode::Fail);
    let consumer = ctx
        .consumer("g")
        .max_deliveries(3)
        .subscribe_all(refuser.handler())
        .start()
        .await
        .unwrap();

    let poison = recorded(Deposited { amount: 13 }, 1);
    ctx.bus
        .publish(std::slice::from_ref(&poison))
        .await
        .unwrap();
    let source_id = ctx.stream_ids().await.remove(0);

    eventually("the message is dead-lettered", || async {
        ctx.bus.dead_letter_count("g").await.unwrap() == 1
    })
    .await;
    assert_eq!(
        refuser.attempts(),
        3,
        "exactly the maximum number of deliveries"
    );
    assert_eq!(ctx.pending("g").await, 0, "acknowledged once dead-lettered");

    let letters = ctx.bus.dead_letters("g", 10).await.unwrap();
    let letter = &letters[0];
    assert_eq!(letter.deliveries, 3);
    assert_eq!(letter.group, "g");
    assert_eq!(letter.consumer, consumer.name());
    assert_eq!(letter.source, ctx.bus.stream_key());
    assert_eq!(letter.source_id, source_id);
    assert_eq!(letter.event_name, Deposited::NAME);
    assert!(letter.error.contains("refuser"), "{}", letter.error);
    assert!(
        letter.error.contains(&poison.event_id().to_string()),
        "{}",
        letter.error
    );
    assert!(letter.failed_at().is_some());
    let event = letter.event.as_ref().unwrap();
    assert_eq!(event.envelope, poison.envelope);
    assert_eq!(
        event.decode::<Deposited>().unwrap(),
        Deposited { amount: 13 }
    );

    eventually("counted", || async { consumer.stats().dead_lettered == 1 }).await;
    assert_eq!(
        consumer.stats().reclaimed,
        2,
        "deliveries 2 and 3 came from the pending list"
    );
    consumer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_dies_on_the_last_delivery_still_leads_to_a_dead_letter() {
    let Some(ctx) = Ctx::new("killer").await else {
        return;
    };
    // A handler that takes the process down every time: deliveries keep being counted.
    let killer = Recorder::new("killer", Mode::Hang);
    let mut crashing = ctx
        .consumer("g")
        .max_deliveries(2)
        .subscribe_all(killer.handler())
        .start()
        .await
        .unwrap();
    ctx.bus.publish(&deposits(1)).await.unwrap();
    for attempt in 1..=2 {
        eventually("the handler runs", || async {
            killer.attempts() == attempt
        })
        .await;
        crashing.abort();
        crashing = ctx
            .consumer("g")
            .max_deliveries(2)
            .subscribe_all(killer.handler())
            .start()
            .await
            .unwrap();
    }
    eventually(
        "dead-lettered without running the handler a third time",
        || async { ctx.bus.dead_letter_count("g").await.unwrap() == 1 },
    )
    .await;
    assert_eq!(killer.attempts(), 2);
    let letter = ctx.bus.dead_letters("g", 1).await.unwrap().remove(0);
    assert_eq!(letter.deliveries, 3);
    assert!(
        letter.error.contains("without being acknowledged"),
        "{}",
        letter.error
    );
    crashing.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_goes_straight_to_the_dead_letters() {
    let Some(ctx) = Ctx::new("malformed").await else {
        return;
    };
    let all = Recorder::new("all", Mode::Succeed);
    let consumer = ctx
        .consumer("g")
        .subscribe_all(all.handler())
        .start()
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(ctx.bus.stream_key())
        .arg("*")
        .arg("name")
        .arg("redis_test.deposited")
        .arg("meta")
        .arg("{broken")
        .query_async(&mut ctx.admin.clone())
        .await
        .unwrap();
    eventually("dead-lettered", || async {
        ctx.bus.dead_letter_count("g").await.unwrap() == 1
    })
    .await;
    let letter = ctx.bus.dead_letters("g", 1).await.unwrap().remove(0);
    assert_eq!(letter.deliveries, 1, "no retry can fix it");
    assert!(letter.error.contains("meta"), "{}", letter.error);
    assert!(letter.event.is_err());
    assert_eq!(all.attempts(), 0);
    assert_eq!(ctx.pending("g").await, 0);
    consumer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_dead_letter_hands_it_to_the_failed_group_only() {
    let Some(ctx) = Ctx::new("replay").await else {
        return;
    };
    let fixed_later = Recorder::new("fixed-later", Mode::Fail);
    let other = Recorder::new("other", Mode::Succeed);
    let failing = ctx
        .consumer("failing")
        .max_deliveries(1)
        .subscribe_all(fixed_later.handler())
        .start()
        .await
        .unwrap();
    let healthy = ctx
        .consumer("healthy")
        .subscribe_all(other.handler())
        .start()
        .await
        .unwrap();

    let events = deposits(3);
    ctx.bus.publish(&events).await.unwrap();
    eventually("three dead letters", || async {
        ctx.bus.dead_letter_count("failing").await.unwrap() == 3
    })
    .await;
    eventually("the healthy group handled all", || async {
        other.count() == 3
    })
    .await;

    fixed_later.set_failing(false);
    let letters = ctx.bus.dead_letters("failing", 10).await.unwrap();
    assert_eq!(letters.len(), 3);
    let first = ctx
        .bus
        .replay_dead_letter("failing", &letters[0].id)
        .await
        .unwrap();
    assert!(first.is_some());
    assert_eq!(
        ctx.bus
            .replay_dead_letter("failing", &letters[0].id)
            .await
            .unwrap(),
        None,
        "a dead letter is replayed once"
    );
    eventually("the replayed event is handled", || async {
        fixed_later.count() == 1
    })
    .await;
    assert_eq!(fixed_later.ids(), vec![events[0].event_id()]);

    assert_eq!(ctx.bus.replay_dead_letters("failing").await.unwrap(), 2);
    eventually("every replayed event is handled", || async {
        fixed_later.count() == 3
    })
    .await;
    assert_eq!(ctx.bus.dead_letter_count("failing").await.unwrap(), 0);
    let replayed: BTreeSet<Uuid> = fixed_later.ids().into_iter().collect();
    assert_eq!(replayed, events.iter().map(|e| e.event_id()).collect());
    assert_eq!(fixed_later.positions().len(), 3);

    // Replays went to the failed group's retry stream, not to the stream every group reads.
    assert_eq!(ctx.stream_ids().await.len(), 3);
    assert_eq!(other.count(), 3);
    let retry_pending: (u64, redis::Value, redis::Value, redis::Value) = redis::cmd("XPENDING")
        .arg(ctx.bus.retry_key("failing"))
        .arg("failing")
        .query_async(&mut ctx.admin.clone())
        .await
        .unwrap();
    assert_eq!(retry_pending.0, 0, "replays are acknowledged too");
    failing.shutdown().await;
    healthy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discarded_dead_letter_is_gone() {
    let Some(ctx) = Ctx::new("discard").await else {
        return;
    };
    let refuser = Recorder::new("refuser", Mode::Fail);
    let consumer = ctx
        .consumer("g")
        .max_deliveries(1)
        .subscribe_all(refuser.handler())
        .start()
        .await
        .unwrap();
    ctx.bus.publish(&deposits(1)).await.unwrap();
    eventually("dead-lettered", || async {
        ctx.bus.dead_letter_count("g").await.unwrap() == 1
    })
    .await;
    let id = ctx.bus.dead_letters("g", 1).await.unwrap().remove(0).id;
    assert!(ctx.bus.discard_dead_letter("g", &id).await.unwrap());
    assert!(!ctx.bus.discard_dead_letter("g", &id).await.unwrap());
    assert_eq!(ctx.bus.dead_letter_count("g").await.unwrap(), 0);
    consumer.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_reconnects_after_its_connection_is_killed_without_redoing_acknowledged_work() {
    let Some(ctx) = Ctx::new("reconnect").await else {
        return;
    };
    let recorder = Recorder::new("r", Mode::Succeed);
    let consumer = ctx
        .consumer("g")
        .subscribe_all(recorder.handler())
        .start()
        .await
        .unwrap();
    let events = deposits(6);

    ctx.bus.publish(&events[..3]).await.unwrap();
    eventually("the first three are handled", || async {
        recorder.count() == 3
    })
    .await;
    eventually("and acknowledged", || async { ctx.pending("g").await == 0 }).await;

    let before = ctx.client_ids(consumer.connection_name()).await;
    assert_eq!(
        before.len(),
        1,
        "one connection named {}",
        consumer.connection_name()
    );
    ctx.kill_client(before[0]).await;

    ctx.bus.publish(&events[3..]).await.unwrap();
    eventually("the last three are handled", || async {
        recorder.count() == 6
    })
    .await;
    let after = ctx.client_ids(consumer.connection_name()).await;
    assert_eq!(after.len(), 1);
    assert_ne!(after, before, "a new connection");
    assert!(consumer.stats().reconnects >= 1);
    assert_eq!(
        recorder.ids(),
        events.iter().map(|e| e.event_id()).collect::<Vec<_>>(),
        "each event once, in order"
    );
    consumer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_survives_a_killed_connection() {
    let Some(ctx) = Ctx::new("publisher").await else {
        return;
    };
    ctx.bus.publish(&deposits(1)).await.unwrap();
    let id = ctx.bus.connection_id().await.unwrap();
    ctx.kill_client(u64::try_from(id).unwrap()).await;
    ctx.bus.publish(&deposits(2)).await.unwrap();
    assert_eq!(ctx.stream_ids().await.len(), 3);
    assert_ne!(ctx.bus.connection_id().await.unwrap(), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_transient_backend_error() {
    // Port 1 on localhost: nothing listens there.
    let error = RedisEventBus::builder("redis://127.0.0.1:1")
        .connection_timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            eventsource::BusError::Backend {
                backend: "redis",
                transient: true,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_group_is_recreated_by_its_consumer() {
    let Some(ctx) = Ctx::new("nogroup").await else {
        return;
    };
    let recorder = Recorder::new("r", Mode::Succeed);
    let consumer = ctx
        .consumer("g")
        .start_from(StartFrom::Latest)
        .subscribe_all(recorder.handler())
        .start()
        .await
        .unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(ctx.bus.stream_key())
        .arg("g")
        .query_async(&mut ctx.admin.clone())
        .await
        .unwrap();
    eventually("the group exists again", || async {
        let groups: redis::streams::StreamInfoGroupsReply = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(ctx.bus.stream_key())
            .query_async(&mut ctx.admin.clone())
            .await
            .unwrap();
        groups.groups.iter().any(|g| g.name == "g")
    })
    .await;
    ctx.bus.publish(&deposits(1)).await.unwrap();
    eventually("handled", || async { recorder.count() == 1 }).await;
    consumer.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Working with the rest of the framework
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_wakes_waiters_and_reports_the_positions_it_handled() {
    let Some(ctx) = Ctx::new("wake").await else {
        return;
    };
    let signal = Arc::new(tokio::sync::Notify::new());
    let recorder = Recorder::new("r", Mode::Succeed);
    let consumer = ctx
        .consumer("g")
        .wake(Arc::clone(&signal))
        .subscribe_all(recorder.handler())
        .start()
        .await
        .unwrap();
    let mut positions = consumer.positions();

    let woken = signal.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    ctx.bus.publish(&deposits(4)).await.unwrap();
    tokio::time::timeout(DEADLINE, woken)
        .await
        .expect("the consumer wakes the signal");
    tokio::time::timeout(DEADLINE, positions.wait_for(|p| *p == 4))
        .await
        .expect("position 4 reported")
        .unwrap();
    assert_eq!(recorder.positions(), vec![1, 2, 3, 4]);
    consumer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_publishes_saved_events_to_redis_and_a_consumer_decodes_them() {
    let Some(ctx) = Ctx::new("repository").await else {
        return;
    };
    let totals: Arc<Mutex<BTreeMap<Uuid, f64>>> = Arc::default();
    struct Totals(Arc<Mutex<BTreeMap<Uuid, f64>>>);
    #[async_trait]
    impl EventHandler for Totals {
        async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError> {
            let added = event.decode::<OrderItemAdded>()?;
            *self
                .0
                .lock()
                .unwrap()
                .entry(event.aggregate_id())
                .or_default() += f64::from(added.quantity) * added.unit_price;
            Ok(())
        }
    }
    let created = Recorder::new("created", Mode::Succeed);
    let consumer = ctx
        .consumer("read-model")
        .subscribe::<OrderItemAdded>(Arc::new(Totals(Arc::clone(&totals))))
        .subscribe::<OrderCreated>(created.handler())
        .start()
        .await
        .unwrap();

    let orders = AggregateRepository::<Order, _>::new(InMemoryEventStore::new())
        .with_bus(Arc::new(ctx.bus.clone()));
    let id = Uuid::now_v7();
    let mut order = orders.load_or_create(id).await.unwrap();
    order.execute(|o| o.create(Uuid::now_v7(), 0.0)).unwrap();
    order.execute(|o| o.add_item("pen", 2, 1.5)).unwrap();
    order.execute(|o| o.add_item("ink", 1, 4.0)).unwrap();
    orders.save(&mut order).await.unwrap();

    eventually("the read model has the order", || async {
        totals.lock().unwrap().get(&id).copied() == Some(7.0)
    })
    .await;
    eventually("the creation was seen", || async { created.count() == 1 }).await;
    eventually("three events handled", || async {
        consumer.stats().handled == 3
    })
    .await;
    eventually("and acknowledged", || async {
        ctx.pending("read-model").await == 0
    })
    .await;
    consumer.shutdown().await;
}
