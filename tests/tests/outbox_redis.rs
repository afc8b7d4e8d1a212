//! The whole path to other services: orders saved to PostgreSQL write outbox rows in the
//! same transaction, a relay publishes them to Redis Streams, and a consumer group gets
//! each event once, in order. Needs both servers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use eventsource::store::OutboxRelay;
use eventsource::{
    AggregateRepository, BoxError, EventHandler, EventStore, PostgresEventStore, ReadAll,
    RecordedEvent, RedisEventBus,
};
use eventsource_examples::{Order, OrderCreated};
use eventsource_test::backend::{postgres_url, redis_url, require_or_skip};
use futures_util::TryStreamExt;
use uuid::Uuid;

struct Keep(Arc<Mutex<Vec<(u64, String)>>>);

#[async_trait]
impl EventHandler for Keep {
    async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError> {
        self.0
            .lock()
            .unwrap()
            .push((event.position, event.name().to_owned()));
        Ok(())
    }
}

#[path = "common/pg_gate.rs"]
mod pg_gate;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_orders_reach_a_redis_consumer_through_the_outbox_once_and_in_order() {
    let schema = format!("es_test_{}", Uuid::now_v7().simple());
    let pg = postgres_url();
    let _gate = pg_gate::pg_gate(&pg).await;
    let Some(store) = require_or_skip(
        "postgres",
        &pg,
        PostgresEventStore::connect(&pg, &schema).await,
    ) else {
        return;
    };
    let url = redis_url();
    let prefix = format!("estest:outbox:{}", Uuid::now_v7().simple());
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        RedisEventBus::builder(&url).prefix(&prefix).build(),
    )
    .await
    .map_err(|_| "timed out".to_owned())
    .and_then(|bus| bus.map_err(|e| e.to_string()));
    let Some(bus) = require_or_skip("redis", &url, connected) else {
        store.drop_schema().await.ok();
        return;
    };
    store.migrate().await.unwrap();
    let store = store.with_outbox(true);

    let seen: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let consumer = bus
        .consumer("read-side")
        .block_time(Duration::from_millis(100))
        .subscribe_all(Arc::new(Keep(Arc::clone(&seen))))
        .start()
        .await
        .unwrap();
    let relay =
        OutboxRelay::new(&store, Arc::new(bus.clone())).poll_interval(Duration::from_millis(20));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relaying = tokio::spawn(async move { relay.run_until(stopped).await });

    let orders = AggregateRepository::<Order, _>::new(store.clone());
    for i in 0..5 {
        let mut order = orders.load_or_create(Uuid::now_v7()).await.unwrap();
        order
            .execute(|o| o.create(Uuid::now_v7(), f64::from(i)))
            .unwrap();
        order.execute(|o| o.add_item("Widget", 1, 2.5)).unwrap();
        orders.save(&mut order).await.unwrap();
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while seen.lock().unwrap().len() < 10 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    let relayed = relaying.await.unwrap();
    consumer.shutdown().await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(relayed.published, 10);
    let stored: Vec<u64> = store
        .read_all(ReadAll::from_start())
        .map_ok(|event| event.position)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(stored.len(), 10);
    assert_eq!(
        seen.iter()
            .map(|(position, _)| *position)
            .collect::<Vec<_>>(),
        stored,
        "each event once, in the store's order"
    );
    assert_eq!(
        seen.iter()
            .filter(|(_, name)| name == <OrderCreated as eventsource::DomainEvent>::NAME)
            .count(),
        5
    );

    // Cleanup: the test's keys and schema.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut admin)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut admin)
            .await
            .unwrap();
    }
    store.drop_schema().await.unwrap();
}
