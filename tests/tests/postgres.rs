//! The PostgreSQL store against the real server: the store contract, ordering that never
//! skips, concurrency, and the seed's end-to-end scenarios. Each test uses its own schema.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use eventsource::{
    AggregateRepository, EventStore, ExpectedVersion, PostgresEventStore, ReadAll, StoreError,
};
use eventsource_examples::{Order, Status};
use eventsource_test::backend::{postgres_url, require_or_skip};
use eventsource_test::conformance::deposits;
use futures_util::TryStreamExt;
use uuid::Uuid;

/// The tests of this file run one at a time. Readers never see an event while a lower
/// position may still commit, so an append in flight anywhere in the database (another
/// test's) briefly holds back every reader — the documented trade-off of the ordering —
/// and a test that reads right after writing would see its own events a moment late.
static ONE_AT_A_TIME: std::sync::LazyLock<Arc<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(Arc::default);

/// A migrated store in a fresh schema, dropped with the value.
struct TempSchema {
    store: PostgresEventStore,
    _gate: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for TempSchema {
    fn drop(&mut self) {
        let store = self.store.clone();
        // Drop runs inside the test's runtime: do the async cleanup on a thread of its own.
        let _ = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let _ = runtime.block_on(async {
                    let url = postgres_url();
                    let cleanup = PostgresEventStore::connect(&url, store.schema()).await?;
                    cleanup.drop_schema().await
                });
            }
        })
        .join();
    }
}

async fn fresh() -> Option<TempSchema> {
    // Taken before migrating: a migration is a transaction too.
    let gate = Arc::clone(&ONE_AT_A_TIME).lock_owned().await;
    let mut db = fresh_schema().await?;
    db._gate = Some(gate);
    Some(db)
}

async fn fresh_schema() -> Option<TempSchema> {
    let url = postgres_url();
    let schema = format!("es_test_{}", Uuid::now_v7().simple());
    let store = require_or_skip(
        "postgres",
        &url,
        PostgresEventStore::connect(&url, &schema).await,
    )?;
    store.migrate().await.unwrap();
    Some(TempSchema { store, _gate: None })
}

#[async_trait::async_trait]
impl EventStore for TempSchema {
    async fn append(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        events: &[eventsource::UncommittedEvent],
    ) -> Result<eventsource::AppendResult, StoreError> {
        self.store
            .append(aggregate_type, aggregate_id, expected, events)
            .await
    }
    async fn read_stream(
        &self,
        t: &str,
        id: Uuid,
        after: u64,
    ) -> Result<eventsource::StreamEvents, StoreError> {
        self.store.read_stream(t, id, after).await
    }
    async fn read_all_batch(
        &self,
        q: &ReadAll,
        after: u64,
        max: usize,
    ) -> Result<Vec<Arc<eventsource::RecordedEvent>>, StoreError> {
        self.store.read_all_batch(q, after, max).await
    }
    async fn stream_version(&self, t: &str, id: Uuid) -> Result<u64, StoreError> {
        self.store.stream_version(t, id).await
    }
    async fn current_position(&self) -> Result<u64, StoreError> {
        self.store.current_position().await
    }
    async fn event_exists(&self, id: Uuid) -> Result<bool, StoreError> {
        self.store.event_exists(id).await
    }
}

eventsource_test::store_conformance_tests!(fresh());

#[tokio::test]
async fn schema_names_are_validated() {
    for bad in ["Events", "a-b", "x; DROP TABLE y", "", "1abc"] {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy(&postgres_url())
            .unwrap();
        assert!(
            PostgresEventStore::with_pool(pool, bad).is_err(),
            "{bad:?} must be refused"
        );
    }
}

/// A holds an uncommitted append; B commits after it. A reader must not get B before A
/// is resolved, and after A commits it gets A then B.
#[tokio::test]
async fn a_reader_never_skips_an_event_committed_out_of_order() {
    let Some(db) = fresh().await else { return };
    let store = &db.store;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let mut tx = store.pool().begin().await.unwrap();
    let first = store
        .append_in(
            &mut tx,
            "ConformanceAccount",
            a,
            ExpectedVersion::NoStream,
            &deposits(a, 0, 1),
        )
        .await
        .unwrap();
    let second = store
        .append(
            "ConformanceAccount",
            b,
            ExpectedVersion::NoStream,
            &deposits(b, 0, 1),
        )
        .await
        .unwrap();
    assert!(
        first.global_position() < second.global_position(),
        "A took the lower position"
    );

    let seen: Vec<_> = store
        .read_all(ReadAll::from_start())
        .try_collect()
        .await
        .unwrap();
    assert!(
        seen.is_empty(),
        "B is held back while A is open: {:?}",
        seen.iter().map(|e| e.position).collect::<Vec<_>>()
    );
    assert_eq!(store.current_position().await.unwrap(), 0);
    assert!(store.reader_horizon().await.unwrap() >= 1);

    tx.commit().await.unwrap();
    let seen: Vec<_> = store
        .read_all(ReadAll::from_start())
        .try_collect()
        .await
        .unwrap();
    let ids: Vec<Uuid> = seen.iter().map(|e| e.aggregate_id()).collect();
    assert_eq!(ids, [a, b], "A then B once A commits");

    // A rolled-back append leaves nothing, and does not hold readers back afterwards.
    let c = Uuid::now_v7();
    let mut tx = store.pool().begin().await.unwrap();
    store
        .append_in(
            &mut tx,
            "ConformanceAccount",
            c,
            ExpectedVersion::NoStream,
            &deposits(c, 0, 1),
        )
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        store.stream_version("ConformanceAccount", c).await.unwrap(),
        0
    );
    assert_eq!(store.reader_horizon().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_exact_zero_appends_have_exactly_one_winner() {
    let Some(db) = fresh().await else { return };
    let store = Arc::new(db.store.clone());
    let id = Uuid::now_v7();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .append(
                        "ConformanceAccount",
                        id,
                        ExpectedVersion::Exact(0),
                        &deposits(id, 0, 1),
                    )
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::Conflict(conflict)) => assert_eq!(conflict.actual, 1),
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(wins, 1);
    drop(store);
}

/// Writers on several connections append while a reader tails the log: the reader sees
/// every event exactly once, in position order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_a_tailing_reader() {
    let Some(db) = fresh().await else { return };
    let store = Arc::new(db.store.clone());
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let id = Uuid::now_v7();
                for round in 0..25 {
                    store
                        .append(
                            "ConformanceAccount",
                            id,
                            ExpectedVersion::Exact(round * 2),
                            &deposits(id, round * 2, 2),
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reader saw {} of 200",
            seen.len()
        );
        let after = seen.last().copied().unwrap_or(0);
        let page = store
            .read_all_batch(&ReadAll::default(), after, 17)
            .await
            .unwrap();
        if page.is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        seen.extend(page.iter().map(|e| e.position));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let all: Vec<u64> = store
        .read_all(ReadAll::from_start())
        .map_ok(|e| e.position)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        seen, all,
        "the tailing reader saw exactly the log, in order"
    );
    drop(store);
}

#[tokio::test]
async fn the_seed_end_to_end_scenarios() {
    let Some(db) = fresh().await else { return };
    let orders = AggregateRepository::<Order, _>::new(db.store.clone());
    // Rehydration.
    let id = Uuid::now_v7();
    let mut order = orders.load_or_create(id).await.unwrap();
    order.execute(|o| o.create(Uuid::now_v7(), 0.0)).unwrap();
    orders.save(&mut order).await.unwrap();
    let mut order = orders.load(id).await.unwrap();
    order.execute(|o| o.add_item("Widget", 2, 15.0)).unwrap();
    order.execute(|o| o.add_item("Gadget", 1, 30.0)).unwrap();
    orders.save(&mut order).await.unwrap();
    let loaded = orders.load(id).await.unwrap();
    assert_eq!(
        (
            loaded.version(),
            loaded.state().total_amount,
            loaded.state().items.len()
        ),
        (3, 60.0, 2)
    );
    // Concurrent modification across connections.
    let mut first = orders.load(id).await.unwrap();
    let mut second = orders.load(id).await.unwrap();
    first.execute(|o| o.ship("TRACK-1")).unwrap();
    orders.save(&mut first).await.unwrap();
    second.execute(|o| o.add_item("Late", 1, 1.0)).unwrap();
    let error = orders.save(&mut second).await.unwrap_err();
    assert!(error.is_conflict(), "{error}");
    assert_eq!(
        orders.load(id).await.unwrap().state().status,
        Status::Shipped
    );
    // Projection rebuild from read-all.
    for i in 0..3 {
        let mut order = orders.load_or_create(Uuid::now_v7()).await.unwrap();
        order
            .execute(|o| o.create(Uuid::now_v7(), f64::from(i) * 10.0))
            .unwrap();
        orders.save(&mut order).await.unwrap();
    }
    let created: usize = db
        .store
        .read_all(ReadAll::from_start())
        .try_filter(|e| std::future::ready(e.name() == "OrderCreated"))
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .len();
    assert_eq!(created, 4);
}
