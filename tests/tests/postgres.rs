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

#[path = "common/pg_gate.rs"]
mod pg_gate;

/// The tests of this file run one at a time (see `pg_gate`): within this process, and
/// across processes under `cargo nextest`.
static ONE_AT_A_TIME: std::sync::LazyLock<Arc<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(Arc::default);

/// A migrated store in a fresh schema, dropped with the value.
struct TempSchema {
    store: PostgresEventStore,
    _gate: Option<(tokio::sync::OwnedMutexGuard<()>, Option<pg_gate::PgGate>)>,
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
    let server_gate = pg_gate::pg_gate(&postgres_url()).await;
    let mut db = fresh_schema().await?;
    db._gate = Some((gate, server_gate));
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
    ) -> Result<eventsource::EventPage, StoreError> {
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

/// A new account stream with `deposits` events; its id.
async fn new_account(store: &PostgresEventStore, deposits: usize) -> Uuid {
    let id = Uuid::now_v7();
    store
        .append(
            "ConformanceAccount",
            id,
            ExpectedVersion::NoStream,
            &eventsource_test::conformance::deposits(id, 0, deposits),
        )
        .await
        .unwrap();
    id
}

/// Opens account `id` with one deposit, from the pool (its own transaction).
async fn open_account(store: &PostgresEventStore, id: Uuid) -> eventsource::AppendResult {
    store
        .append(
            "ConformanceAccount",
            id,
            ExpectedVersion::NoStream,
            &deposits(id, 0, 1),
        )
        .await
        .unwrap()
}

/// Every event a reader of the global log gets now, in order.
async fn read_everything(store: &PostgresEventStore) -> Vec<Arc<eventsource::RecordedEvent>> {
    store
        .read_all(ReadAll::from_start())
        .try_collect()
        .await
        .unwrap()
}

/// The positions of every stored event, in global order (positions are far apart: they
/// follow transaction ids).
async fn stored_positions(store: &PostgresEventStore) -> Vec<u64> {
    let all = read_everything(store).await;
    all.iter().map(|e| e.position).collect()
}

/// A schema made by an earlier version numbered positions with an identity column:
/// `migrate()` drops it, and the events stored before come first in the log.
#[tokio::test]
async fn migrate_upgrades_a_schema_whose_positions_came_from_an_identity() {
    let Some(db) = fresh().await else { return };
    let store = &db.store;
    let events = format!("{}.events", store.schema());
    let run = |sql: String| async move {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(store.pool())
            .await
            .unwrap();
    };
    run(format!(
        "ALTER TABLE {events} ALTER COLUMN position ADD GENERATED ALWAYS AS IDENTITY, \
         ALTER COLUMN transaction_id SET DEFAULT pg_current_xact_id()"
    ))
    .await;
    let old = Uuid::now_v7();
    run(format!(
        "INSERT INTO {events} (event_id, event_name, schema_version, aggregate_type, aggregate_id, \
         aggregate_version, occurred_at, stored_at, metadata, payload) \
         VALUES ('{}', 'Deposited', 1, 'ConformanceAccount', '{old}', 1, now(), now(), '{{}}', \
         '{{\"amount\": 1}}')",
        Uuid::now_v7()
    ))
    .await;

    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let new = Uuid::now_v7();
    open_account(store, new).await;
    let all = read_everything(store).await;
    let ids: Vec<Uuid> = all.iter().map(|e| e.aggregate_id()).collect();
    assert_eq!(ids, [old, new]);
    assert_eq!(all[0].position, 1, "the identity's number");
    assert!(
        all[1].position > 1 << 20,
        "a number from the transaction id"
    );
    let identity: String = sqlx::query_scalar(
        "SELECT attidentity::text FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'position'",
    )
    .bind(&events)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(identity, "", "no identity left");
}

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
    let second = open_account(store, b).await;
    assert!(
        first.global_position() < second.global_position(),
        "A took the lower position"
    );

    let seen = read_everything(store).await;
    assert!(
        seen.is_empty(),
        "B is held back while A is open: {:?}",
        seen.iter().map(|e| e.position).collect::<Vec<_>>()
    );
    assert_eq!(store.current_position().await.unwrap(), 0);
    assert!(store.reader_horizon().await.unwrap() >= 1);

    tx.commit().await.unwrap();
    let seen = read_everything(store).await;
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

/// Positions follow transaction ids, so a transaction may write its own rows before an
/// append, and append more than once: while it is open, readers see neither its events nor
/// those of younger transactions committed meanwhile; once it commits they get its events
/// (in the order it appended them) before the younger ones.
#[tokio::test]
async fn appends_after_other_writes_and_twice_in_one_transaction_keep_readers_in_order() {
    let Some(db) = fresh().await else { return };
    let store = &db.store;
    let notes = format!("{}.notes", store.schema());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {notes} (note TEXT)"
    )))
    .execute(store.pool())
    .await
    .unwrap();
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());

    // The transaction writes its own row first: it now has an id.
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {notes} VALUES ('written first')"
    )))
    .execute(&mut *tx)
    .await
    .unwrap();

    // A younger append commits meanwhile: readers must not get it yet.
    let younger = open_account(store, b).await;
    let seen = read_everything(store).await;
    assert!(seen.is_empty(), "the open transaction holds readers back");
    assert_eq!(store.current_position().await.unwrap(), 0);

    // Two appends in the open transaction, then another row of its own.
    let first = store
        .append_in(
            &mut tx,
            "ConformanceAccount",
            a,
            ExpectedVersion::NoStream,
            &deposits(a, 0, 2),
        )
        .await
        .unwrap();
    let second = store
        .append_in(
            &mut tx,
            "ConformanceAccount",
            c,
            ExpectedVersion::NoStream,
            &deposits(c, 0, 1),
        )
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {notes} VALUES ('written after')"
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    let positions = |result: &eventsource::AppendResult| -> Vec<u64> {
        result.events.iter().map(|e| e.position).collect()
    };
    let mut taken = positions(&first);
    taken.extend(positions(&second));
    taken.extend(positions(&younger));
    assert!(
        taken.windows(2).all(|w| w[0] < w[1]),
        "the older transaction's events come first, in append order: {taken:?}"
    );

    tx.commit().await.unwrap();
    let seen = read_everything(store).await;
    let ids: Vec<Uuid> = seen.iter().map(|e| e.aggregate_id()).collect();
    assert_eq!(
        ids,
        [a, a, c, b],
        "the older transaction's events, then the younger"
    );
    assert_eq!(seen.iter().map(|e| e.position).collect::<Vec<_>>(), taken);
    assert_eq!(store.current_position().await.unwrap(), taken[3]);
    let kept: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {notes}")))
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(kept, 2);
}

/// A refused `append_in` (a stale expectation) writes nothing and takes no transaction
/// id, so the caller's transaction can still append with the right expectation.
#[tokio::test]
async fn a_refused_append_in_leaves_the_transaction_as_it_was() {
    let Some(db) = fresh().await else { return };
    let store = &db.store;
    let id = Uuid::now_v7();
    store
        .append(
            "ConformanceAccount",
            id,
            ExpectedVersion::NoStream,
            &deposits(id, 0, 2),
        )
        .await
        .unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    for stale in [ExpectedVersion::Exact(1), ExpectedVersion::NoStream] {
        let outcome = store
            .append_in(
                &mut tx,
                "ConformanceAccount",
                id,
                stale,
                &deposits(id, 2, 1),
            )
            .await;
        assert!(
            matches!(outcome, Err(StoreError::Conflict(ref c)) if c.actual == 2),
            "{stale:?}: {outcome:?}"
        );
    }
    let xid: Option<String> = sqlx::query_scalar("SELECT pg_current_xact_id_if_assigned()::text")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(xid, None, "no transaction id taken by the refusals");
    store
        .append_in(
            &mut tx,
            "ConformanceAccount",
            id,
            ExpectedVersion::Exact(2),
            &deposits(id, 2, 1),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store
            .stream_version("ConformanceAccount", id)
            .await
            .unwrap(),
        3
    );
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

/// A subscription in one process is woken by an append made in another (here: another
/// pool) through LISTEN/NOTIFY, long before its poll interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_notify_wakes_a_subscription_in_another_process() {
    use eventsource::projection::{Projection, ProjectionRunner};

    #[derive(Clone, Default)]
    struct Seen(Arc<std::sync::atomic::AtomicU64>);

    #[async_trait::async_trait]
    impl Projection for Seen {
        fn name(&self) -> &str {
            "seen"
        }
        async fn handle(
            &mut self,
            _: &eventsource::RecordedEvent,
        ) -> Result<(), eventsource::BoxError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
    }

    let Some(db) = fresh().await else { return };
    let follower = PostgresEventStore::connect(&postgres_url(), db.store.schema())
        .await
        .unwrap();
    let listening = follower.listen().await.unwrap();
    let seen = Seen::default();
    let runner = ProjectionRunner::new(Arc::new(follower.clone()))
        .with(seen.clone())
        .poll_interval(Duration::from_secs(3600))
        .start();
    // Let the runner reach its wait (nothing to read yet).
    tokio::time::sleep(Duration::from_millis(200)).await;
    new_account(&db.store, 2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.0.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the notification did not wake the subscription"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    runner.stop().await.unwrap();
    listening.abort();
    follower.pool().close().await;
}

mod projection_storage {
    use eventsource::projection::{
        CheckpointRepository, InMemoryCheckpointRepository, InMemoryDlqRepository,
        ProjectionRunner, RetryPolicy,
    };
    use eventsource::store::{PostgresProjection, TransactionalProjection};
    use eventsource::{
        BoxError, PostgresCheckpointRepository, PostgresDlqRepository, RecordedEvent,
    };
    use eventsource_test::conformance::projection_storage_contract;
    use sqlx::{AssertSqlSafe, PgConnection};

    use super::*;

    #[tokio::test]
    async fn postgres_and_in_memory_repositories_follow_one_contract() {
        let Some(db) = fresh().await else { return };
        projection_storage_contract(
            &PostgresCheckpointRepository::new(&db.store),
            &PostgresDlqRepository::new(&db.store),
            &db.store,
        )
        .await;
        projection_storage_contract(
            &InMemoryCheckpointRepository::new(),
            &InMemoryDlqRepository::new(),
            &db.store,
        )
        .await;
    }

    /// Counts events per aggregate in a table of the store's schema; fails (after writing
    /// its row) on the event at `fail_at`, while that is set.
    struct EventsPerAggregate {
        table: String,
        fail_at: Option<u64>,
    }

    #[async_trait::async_trait]
    impl PostgresProjection for EventsPerAggregate {
        fn name(&self) -> &str {
            "events-per-aggregate"
        }

        async fn handle(
            &mut self,
            tx: &mut PgConnection,
            event: &RecordedEvent,
        ) -> Result<(), BoxError> {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {} (aggregate_id, n) VALUES ($1, 1) \
                 ON CONFLICT (aggregate_id) DO UPDATE SET n = {0}.n + 1",
                self.table
            )))
            .bind(event.aggregate_id())
            .execute(&mut *tx)
            .await?;
            if self.fail_at == Some(event.position) {
                return Err(format!("refusing position {}", event.position).into());
            }
            Ok(())
        }

        async fn reset(&mut self, tx: &mut PgConnection) -> Result<(), BoxError> {
            sqlx::query(AssertSqlSafe(format!("TRUNCATE {}", self.table)))
                .execute(tx)
                .await?;
            Ok(())
        }
    }

    async fn total(store: &PostgresEventStore, table: &str) -> i64 {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT COALESCE(SUM(n), 0)::bigint FROM {table}"
        )))
        .fetch_one(store.pool())
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_read_model_and_its_checkpoint_commit_together() {
        let Some(db) = fresh().await else { return };
        let store = &db.store;
        let table = format!("{}.events_per_aggregate", store.schema());
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE {table} (aggregate_id UUID PRIMARY KEY, n BIGINT NOT NULL)"
        )))
        .execute(store.pool())
        .await
        .unwrap();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        for id in [a, b] {
            store
                .append(
                    "ConformanceAccount",
                    id,
                    ExpectedVersion::NoStream,
                    &deposits(id, 0, 3),
                )
                .await
                .unwrap();
        }
        let checkpoints = Arc::new(PostgresCheckpointRepository::new(store));
        let runner = |fail_at| {
            ProjectionRunner::new(Arc::new(store.clone()))
                .with(TransactionalProjection::new(
                    store,
                    EventsPerAggregate {
                        table: table.clone(),
                        fail_at,
                    },
                ))
                .checkpoints(checkpoints.clone())
                .dead_letters(Arc::new(PostgresDlqRepository::new(store)))
                .retry(RetryPolicy::immediate(2))
        };

        let positions = stored_positions(store).await;

        // The handler writes its row and then fails at the fifth event: each attempt rolls
        // back, so the read model holds exactly events 1-4 and the checkpoint is the
        // fourth's position.
        let error = runner(Some(positions[4])).catch_up().await.unwrap_err();
        assert!(
            error
                .to_string()
                .contains(&format!("refusing position {}", positions[4])),
            "{error}"
        );
        assert_eq!(total(store, &table).await, 4);
        let checkpoint = checkpoints
            .load("events-per-aggregate")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(checkpoint.position, positions[3]);

        // A fresh runner resumes at the fifth: every event counted exactly once.
        let report = runner(None).catch_up().await.unwrap();
        assert_eq!((report.events_read, report.position), (2, positions[5]));
        assert_eq!(total(store, &table).await, 6);

        // Rebuild: the read model and the checkpoint are reset in one transaction, then
        // replayed.
        let mut rebuilding = runner(None);
        let report = rebuilding.rebuild("events-per-aggregate").await.unwrap();
        assert_eq!(report.events_read, 6);
        assert_eq!(total(store, &table).await, 6);
    }
}

mod outbox {
    use std::collections::BTreeMap;

    use eventsource::store::{OutboxCounts, OutboxRelay, RelayBatch};
    use eventsource_test::RecordingBus;
    use sqlx::AssertSqlSafe;

    use super::*;

    async fn outbox_store() -> Option<(TempSchema, PostgresEventStore)> {
        let db = fresh().await?;
        let store = db.store.clone().with_outbox(true);
        Some((db, store))
    }

    fn counts(pending: u64, published: u64, failed: u64) -> OutboxCounts {
        OutboxCounts {
            pending,
            published,
            failed,
        }
    }

    /// Outbox rows are written in the order appends run, not in position order: an older
    /// transaction that appends after a younger one has committed writes its rows last,
    /// yet its positions are lower. The relay publishes in position order all the same.
    #[tokio::test]
    async fn the_relay_publishes_in_position_order_whatever_order_rows_were_written() {
        let Some((_db, store)) = outbox_store().await else {
            return;
        };
        let bus = Arc::new(RecordingBus::default());
        let relay = OutboxRelay::new(&store, bus.clone());
        let (older, younger) = (Uuid::now_v7(), Uuid::now_v7());
        let mut tx = store.pool().begin().await.unwrap();
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(&mut *tx)
            .await
            .unwrap();
        open_account(&store, younger).await;
        store
            .append_in(
                &mut tx,
                "ConformanceAccount",
                older,
                ExpectedVersion::NoStream,
                &deposits(older, 0, 2),
            )
            .await
            .unwrap();
        assert_eq!(
            relay.relay_once().await.unwrap(),
            RelayBatch::default(),
            "nothing is claimable while the older transaction is open"
        );
        tx.commit().await.unwrap();

        assert_eq!(relay.relay_once().await.unwrap().published, 3);
        let positions = stored_positions(&store).await;
        assert_eq!(bus.positions(), positions, "position order");
        let all = read_everything(&store).await;
        let ids: Vec<Uuid> = all.iter().map(|e| e.aggregate_id()).collect();
        assert_eq!(ids, [older, older, younger]);
    }

    #[tokio::test]
    async fn an_outbox_row_exists_exactly_when_its_event_does() {
        let Some((_db, store)) = outbox_store().await else {
            return;
        };
        let relay = OutboxRelay::new(&store, Arc::new(RecordingBus::default()));
        let id = new_account(&store, 3).await;
        // A refused append (conflict) writes no row; neither does an idempotent retry.
        store
            .append(
                "ConformanceAccount",
                id,
                ExpectedVersion::NoStream,
                &deposits(id, 0, 2),
            )
            .await
            .unwrap_err();
        // An append in a transaction that rolls back leaves neither events nor rows.
        let other = Uuid::now_v7();
        let mut tx = store.pool().begin().await.unwrap();
        store
            .append_in(
                &mut tx,
                "ConformanceAccount",
                other,
                ExpectedVersion::NoStream,
                &deposits(other, 0, 2),
            )
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(
            store
                .stream_version("ConformanceAccount", other)
                .await
                .unwrap(),
            0
        );
        assert_eq!(relay.counts().await.unwrap(), counts(3, 0, 0));
        // A store without the outbox writes none.
        let plain = Uuid::now_v7();
        store
            .clone()
            .with_outbox(false)
            .append(
                "ConformanceAccount",
                plain,
                ExpectedVersion::NoStream,
                &deposits(plain, 0, 1),
            )
            .await
            .unwrap();
        assert_eq!(relay.counts().await.unwrap(), counts(3, 0, 0));
    }

    #[tokio::test]
    async fn the_relay_publishes_oldest_first_retries_with_backoff_and_gives_up_at_the_maximum() {
        let Some((_db, store)) = outbox_store().await else {
            return;
        };
        let bus = Arc::new(RecordingBus::default());
        let relay = OutboxRelay::new(&store, bus.clone())
            .batch_size(2)
            .max_attempts(3)
            .backoff(Duration::ZERO, Duration::ZERO);
        let id = new_account(&store, 3).await;

        bus.fail_with("broker down");
        let failed_once = relay.relay_once().await.unwrap();
        assert_eq!(
            failed_once,
            RelayBatch {
                published: 0,
                retrying: 2,
                failed: 0
            }
        );
        assert_eq!(relay.counts().await.unwrap(), counts(3, 0, 0));
        bus.recover();
        assert_eq!(relay.relay_once().await.unwrap().published, 2);
        assert_eq!(relay.relay_once().await.unwrap().published, 1);
        assert_eq!(relay.relay_once().await.unwrap(), RelayBatch::default());
        assert_eq!(
            bus.positions(),
            stored_positions(&store).await,
            "oldest first, once"
        );
        assert_eq!(relay.counts().await.unwrap(), counts(0, 3, 0));

        // A row's next attempt waits for its backoff.
        let backing_off = OutboxRelay::new(&store, bus.clone())
            .max_attempts(3)
            .backoff(Duration::from_secs(3600), Duration::from_secs(3600));
        store
            .append(
                "ConformanceAccount",
                id,
                ExpectedVersion::Exact(3),
                &deposits(id, 3, 1),
            )
            .await
            .unwrap();
        bus.fail_with("broker down");
        assert_eq!(backing_off.relay_once().await.unwrap().retrying, 1);
        assert_eq!(
            backing_off.relay_once().await.unwrap(),
            RelayBatch::default(),
            "not due for an hour"
        );

        // After the maximum the row is failed, with its error, and no longer retried.
        let error: Option<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "UPDATE {}.outbox SET next_attempt_at = now() WHERE status = 'pending' RETURNING last_error",
            store.schema()
        )))
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert!(error.unwrap_or_default().contains("broker down"));
        assert_eq!(relay.relay_once().await.unwrap().retrying, 1);
        assert_eq!(relay.relay_once().await.unwrap().failed, 1);
        assert_eq!(relay.counts().await.unwrap(), counts(0, 3, 1));
        assert_eq!(relay.relay_once().await.unwrap(), RelayBatch::default());

        // Requeued after the cause is fixed; published rows are purged.
        bus.recover();
        assert_eq!(relay.requeue_failed().await.unwrap(), 1);
        assert_eq!(relay.relay_once().await.unwrap().published, 1);
        assert_eq!(bus.positions(), stored_positions(&store).await);
        assert_eq!(bus.positions().len(), 4);
        assert_eq!(
            relay
                .purge_published(Duration::from_secs(3600))
                .await
                .unwrap(),
            0
        );
        assert_eq!(relay.purge_published(Duration::ZERO).await.unwrap(), 4);
        assert_eq!(relay.counts().await.unwrap(), counts(0, 0, 0));
    }

    #[tokio::test]
    async fn an_event_that_cannot_be_decoded_is_marked_failed_not_dropped() {
        let Some((_db, store)) = outbox_store().await else {
            return;
        };
        let bus = Arc::new(RecordingBus::default());
        let relay = OutboxRelay::new(&store, bus.clone());
        new_account(&store, 3).await;
        let positions = stored_positions(&store).await;
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {}.events SET metadata = '\"not a map\"' WHERE position = {}",
            store.schema(),
            positions[1]
        )))
        .execute(store.pool())
        .await
        .unwrap();
        let batch = relay.relay_once().await.unwrap();
        assert_eq!((batch.published, batch.failed), (2, 1));
        assert_eq!(bus.positions(), [positions[0], positions[2]]);
        let error: String = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT last_error FROM {}.outbox WHERE status = 'failed' AND position = {}",
            store.schema(),
            positions[1]
        )))
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert!(error.contains("metadata"), "{error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_relays_at_once_never_publish_a_row_twice() {
        let Some((_db, store)) = outbox_store().await else {
            return;
        };
        let bus = Arc::new(RecordingBus::new().with_delay(Duration::from_millis(2)));
        let relay = |size| {
            OutboxRelay::new(&store, bus.clone())
                .batch_size(size)
                .poll_interval(Duration::from_millis(5))
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut relays = Vec::new();
        for size in [7, 11] {
            let relay = relay(size);
            let mut stopped = stopped.clone();
            relays.push(tokio::spawn(async move {
                relay.run_until(stopped.wait_for(|s| *s)).await
            }));
        }
        // Writers append while both relays run.
        let mut writers = Vec::new();
        for _ in 0..4 {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                for _ in 0..25 {
                    new_account(&store, 4).await;
                }
            }));
        }
        for writer in writers {
            writer.await.unwrap();
        }
        let checker = relay(1);
        for _ in 0..500 {
            if checker.counts().await.unwrap().pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(true).unwrap();
        let mut by_relay = Vec::new();
        for relay in relays {
            by_relay.push(relay.await.unwrap().published);
        }
        let received = bus.positions();
        let mut seen = BTreeMap::new();
        for position in &received {
            *seen.entry(*position).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 400, "every event published");
        assert!(seen.values().all(|n| *n == 1), "none published twice");
        assert_eq!(by_relay.iter().sum::<usize>(), 400);
        assert!(
            by_relay.iter().all(|n| *n > 0),
            "both relays worked: {by_relay:?}"
        );
        assert_eq!(checker.counts().await.unwrap(), counts(0, 400, 0));
    }
}

#[tokio::test]
async fn text_with_a_nul_character_is_a_typed_refusal_not_a_driver_error() {
    let Some(db) = fresh().await else { return };
    let store = &db.store;
    let id = Uuid::now_v7();
    let mut events = deposits(id, 0, 2);
    events[1].envelope.context.tenant_id = Some("tenant\0".into());
    let error = store
        .append("ConformanceAccount", id, ExpectedVersion::Any, &events)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::InvalidAppend { reason, .. }
            if reason.contains("tenant_id contains a NUL character")),
        "{error:?}"
    );
    assert_eq!(store.current_position().await.unwrap(), 0);
}
