//! The SQLite store against a real database file: the store contract, concurrent writers,
//! and data that survives reopening.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;

use eventsource::{
    AggregateRepository, EventStore, ExpectedVersion, ReadAll, SqliteEventStore, SqliteOptions,
};
use eventsource_examples::{Order, Status};
use eventsource_test::conformance::{ConformanceAccount, deposits};
use futures_util::TryStreamExt;
use uuid::Uuid;

/// A fresh database file in the temp dir, removed when dropped.
struct TempDb(PathBuf);

impl TempDb {
    fn new() -> Self {
        TempDb(std::env::temp_dir().join(format!("eventsource-test-{}.sqlite", Uuid::now_v7())))
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

/// A migrated store that owns its temp file.
struct TempStore {
    store: SqliteEventStore,
    _db: TempDb,
}

#[async_trait::async_trait]
impl EventStore for TempStore {
    async fn append(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        events: &[eventsource::UncommittedEvent],
    ) -> Result<eventsource::AppendResult, eventsource::StoreError> {
        self.store
            .append(aggregate_type, aggregate_id, expected, events)
            .await
    }
    async fn read_stream(
        &self,
        t: &str,
        id: Uuid,
        after: u64,
    ) -> Result<eventsource::StreamEvents, eventsource::StoreError> {
        self.store.read_stream(t, id, after).await
    }
    async fn read_all_batch(
        &self,
        query: &ReadAll,
        after: u64,
        max: usize,
    ) -> Result<eventsource::EventPage, eventsource::StoreError> {
        self.store.read_all_batch(query, after, max).await
    }
    fn read_all_batches(&self, query: ReadAll) -> eventsource::store::BatchStream<'_> {
        self.store.read_all_batches(query)
    }
    fn read_all(&self, query: ReadAll) -> eventsource::store::EventStream<'_> {
        self.store.read_all(query)
    }
    async fn stream_version(&self, t: &str, id: Uuid) -> Result<u64, eventsource::StoreError> {
        self.store.stream_version(t, id).await
    }
    async fn current_position(&self) -> Result<u64, eventsource::StoreError> {
        self.store.current_position().await
    }
    async fn event_exists(&self, id: Uuid) -> Result<bool, eventsource::StoreError> {
        self.store.event_exists(id).await
    }
}

async fn fresh_store() -> Option<TempStore> {
    let db = TempDb::new();
    let store = SqliteEventStore::open(&db.0).await.unwrap();
    store.migrate().await.unwrap();
    Some(TempStore { store, _db: db })
}

eventsource_test::store_conformance_tests!(fresh_store());

#[tokio::test]
async fn migrate_is_idempotent_and_appends_need_it() {
    let db = TempDb::new();
    let store = SqliteEventStore::open(&db.0).await.unwrap();
    let id = Uuid::now_v7();
    let error = store
        .append(
            "ConformanceAccount",
            id,
            ExpectedVersion::Any,
            &deposits(id, 0, 1),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no such table"), "{error}");
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    store
        .append(
            "ConformanceAccount",
            id,
            ExpectedVersion::Any,
            &deposits(id, 0, 1),
        )
        .await
        .unwrap();
    store.close().await;
}

#[tokio::test]
async fn events_and_state_survive_reopening_the_file() {
    let db = TempDb::new();
    let id = Uuid::now_v7();
    {
        let store = SqliteEventStore::open(&db.0).await.unwrap();
        store.migrate().await.unwrap();
        let orders = AggregateRepository::<Order, _>::new(store.clone());
        let mut order = orders.load_or_create(id).await.unwrap();
        order.execute(|o| o.create(Uuid::now_v7(), 10.0)).unwrap();
        order.execute(|o| o.add_item("Widget", 2, 5.0)).unwrap();
        orders.save(&mut order).await.unwrap();
        store.close().await;
    }
    let store = SqliteEventStore::open(&db.0).await.unwrap();
    store.migrate().await.unwrap();
    let orders = AggregateRepository::<Order, _>::new(store.clone());
    let mut order = orders.load(id).await.unwrap();
    assert_eq!(order.version(), 2);
    assert_eq!(order.state().total_amount, 20.0);
    order.execute(|o| o.ship("TRACK-9")).unwrap();
    orders.save(&mut order).await.unwrap();
    assert_eq!(
        orders.load(id).await.unwrap().state().status,
        Status::Shipped
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tasks_keep_versions_and_positions_consistent() {
    let db = TempDb::new();
    let store = Arc::new(
        SqliteEventStore::open_with(
            &db.0,
            SqliteOptions {
                durable: false,
                ..SqliteOptions::default()
            },
        )
        .await
        .unwrap(),
    );
    store.migrate().await.unwrap();
    let shared = Uuid::now_v7();
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let own = Uuid::now_v7();
                let mut committed = 0;
                for round in 0..10 {
                    store
                        .append(
                            "ConformanceAccount",
                            own,
                            ExpectedVersion::Exact(round),
                            &deposits(own, round, 1),
                        )
                        .await
                        .unwrap();
                    // Contend on one stream too: reload-and-retry until the append lands.
                    loop {
                        let version = store
                            .stream_version("ConformanceAccount", shared)
                            .await
                            .unwrap();
                        match store
                            .append(
                                "ConformanceAccount",
                                shared,
                                ExpectedVersion::Exact(version),
                                &deposits(shared, version, 1),
                            )
                            .await
                        {
                            Ok(_) => break,
                            Err(e) if e.is_conflict() => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    committed += 1;
                }
                committed
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    assert_eq!(total, 60);
    let shared_events = store
        .read_stream("ConformanceAccount", shared, 0)
        .await
        .unwrap();
    assert_eq!(shared_events.version, 60);
    let versions: Vec<u64> = shared_events
        .events
        .iter()
        .map(|e| e.aggregate_version())
        .collect();
    assert_eq!(
        versions,
        (1..=60).collect::<Vec<_>>(),
        "no gap, no duplicate version"
    );
    let all: Vec<_> = store
        .read_all(ReadAll::from_start())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 120);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    let mut account = eventsource::AggregateRoot::<ConformanceAccount>::new(shared);
    account
        .load_from_history(shared_events.events.iter().map(|e| &**e))
        .unwrap();
    assert_eq!(account.state().deposits, 60);
    store.close().await;
}

#[tokio::test]
async fn a_corrupt_row_is_a_typed_error_not_a_panic() {
    let db = TempDb::new();
    let store = SqliteEventStore::open(&db.0).await.unwrap();
    store.migrate().await.unwrap();
    let id = Uuid::now_v7();
    store
        .append(
            "ConformanceAccount",
            id,
            ExpectedVersion::Any,
            &deposits(id, 0, 1),
        )
        .await
        .unwrap();
    sqlx::query("UPDATE eventsource_events SET metadata = '{not json'")
        .execute(store.pool())
        .await
        .unwrap();
    let error = store
        .read_stream("ConformanceAccount", id, 0)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), eventsource::ErrorKind::Data, "{error}");
    assert!(error.to_string().contains("metadata"), "{error}");
    store.close().await;
}

mod projection_storage {
    use eventsource::projection::{InMemoryCheckpointRepository, InMemoryDlqRepository};
    use eventsource::{SqliteCheckpointRepository, SqliteDlqRepository};
    use eventsource_test::conformance::projection_storage_contract;

    use super::*;

    #[tokio::test]
    async fn sqlite_and_in_memory_repositories_follow_one_contract() {
        let db = TempDb::new();
        let store = SqliteEventStore::open(&db.0).await.unwrap();
        store.migrate().await.unwrap();
        projection_storage_contract(
            &SqliteCheckpointRepository::new(&store),
            &SqliteDlqRepository::new(&store),
            &store,
        )
        .await;
        projection_storage_contract(
            &InMemoryCheckpointRepository::new(),
            &InMemoryDlqRepository::new(),
            &store,
        )
        .await;
        store.close().await;
    }

    #[tokio::test]
    async fn a_projection_resumes_from_its_sqlite_checkpoint_after_reopening() {
        use eventsource::projection::{Projection, ProjectionRunner};

        #[derive(Clone, Default)]
        struct Seen(Arc<std::sync::Mutex<Vec<u64>>>);

        #[async_trait::async_trait]
        impl Projection for Seen {
            fn name(&self) -> &str {
                "seen"
            }
            async fn handle(
                &mut self,
                event: &eventsource::RecordedEvent,
            ) -> Result<(), eventsource::BoxError> {
                self.0.lock().unwrap().push(event.position);
                Ok(())
            }
        }

        let db = TempDb::new();
        let seen = Seen::default();
        for round in 0..3u64 {
            let store = SqliteEventStore::open(&db.0).await.unwrap();
            store.migrate().await.unwrap();
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
            let mut runner = ProjectionRunner::new(Arc::new(store.clone()))
                .checkpoints(Arc::new(SqliteCheckpointRepository::new(&store)))
                .dead_letters(Arc::new(SqliteDlqRepository::new(&store)))
                .with(seen.clone());
            let report = runner.catch_up().await.unwrap();
            assert_eq!(
                report.events_read, 2,
                "round {round} reads only the new events"
            );
            store.close().await;
        }
        assert_eq!(*seen.0.lock().unwrap(), [1, 2, 3, 4, 5, 6]);
    }
}

mod outbox {
    use eventsource_test::RecordingBus;

    use super::*;

    #[tokio::test]
    async fn appends_write_outbox_rows_in_their_transaction_and_the_relay_publishes_them_once() {
        let db = TempDb::new();
        let store = SqliteEventStore::open_with(
            &db.0,
            SqliteOptions {
                outbox: true,
                ..SqliteOptions::default()
            },
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let id = Uuid::now_v7();
        store
            .append(
                "ConformanceAccount",
                id,
                ExpectedVersion::NoStream,
                &deposits(id, 0, 3),
            )
            .await
            .unwrap();
        // A refused append writes no outbox row.
        assert!(
            store
                .append(
                    "ConformanceAccount",
                    id,
                    ExpectedVersion::NoStream,
                    &deposits(id, 0, 2)
                )
                .await
                .is_err()
        );
        assert_eq!(
            store.outbox_counts().await.unwrap().get("pending"),
            Some(&3)
        );

        let bus = RecordingBus::new();
        bus.fail_with("broker down");
        assert_eq!(store.relay_outbox(&bus, 10, 3).await.unwrap(), 0);
        assert_eq!(
            store.outbox_counts().await.unwrap().get("pending"),
            Some(&3),
            "a failed publish leaves rows pending"
        );
        bus.recover();
        assert_eq!(store.relay_outbox(&bus, 2, 3).await.unwrap(), 2);
        assert_eq!(store.relay_outbox(&bus, 2, 3).await.unwrap(), 1);
        assert_eq!(store.relay_outbox(&bus, 2, 3).await.unwrap(), 0);
        assert_eq!(bus.positions(), [1, 2, 3], "oldest first, each once");
        assert_eq!(store.purge_published_outbox().await.unwrap(), 3);

        // After the maximum attempts a row is marked failed, not retried forever.
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
        for _ in 0..3 {
            store.relay_outbox(&bus, 10, 3).await.unwrap();
        }
        let counts = store.outbox_counts().await.unwrap();
        assert_eq!(
            (counts.get("failed"), counts.get("pending")),
            (Some(&1), None)
        );
        store.close().await;
    }
}

mod read_ahead {
    use super::*;

    async fn appended(store: &SqliteEventStore, streams: usize, per: usize) -> Vec<u64> {
        let mut positions = Vec::new();
        for _ in 0..streams {
            let id = Uuid::now_v7();
            let done = store
                .append(
                    "ConformanceAccount",
                    id,
                    ExpectedVersion::NoStream,
                    &deposits(id, 0, per),
                )
                .await
                .unwrap();
            positions.extend(done.events.iter().map(|e| e.position));
        }
        positions
    }

    #[tokio::test]
    async fn read_all_reads_every_page_in_order_and_stops_at_the_limit() {
        let db = TempDb::new();
        let store = SqliteEventStore::open(&db.0).await.unwrap();
        store.migrate().await.unwrap();
        let positions = appended(&store, 7, 5).await;
        for batch_size in [1, 4, 5, 35, 36, 1000] {
            let read: Vec<u64> = store
                .read_all(ReadAll::from_start().batch_size(batch_size))
                .map_ok(|e| e.position)
                .try_collect()
                .await
                .unwrap();
            assert_eq!(read, positions, "batch size {batch_size}");
            let limited: Vec<u64> = store
                .read_all(
                    ReadAll::after(positions[3])
                        .batch_size(batch_size)
                        .limit(11),
                )
                .map_ok(|e| e.position)
                .try_collect()
                .await
                .unwrap();
            assert_eq!(limited, positions[4..15], "batch size {batch_size}");
            let pages: Vec<Vec<u64>> = store
                .read_all_batches(ReadAll::from_start().batch_size(batch_size))
                .map_ok(|page| page.iter().map(|e| e.position).collect())
                .try_collect()
                .await
                .unwrap();
            assert!(pages.iter().all(|page| page.len() <= batch_size));
            assert_eq!(pages.concat(), positions, "batch size {batch_size}");
        }
        store.close().await;
    }

    #[tokio::test]
    async fn the_page_read_ahead_does_not_hold_the_only_reader_connection() {
        let db = TempDb::new();
        let store = SqliteEventStore::open_with(
            &db.0,
            SqliteOptions {
                readers: 1,
                ..SqliteOptions::default()
            },
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let positions = appended(&store, 3, 4).await;
        let mut events = store.read_all(ReadAll::from_start().batch_size(2));
        let mut read = Vec::new();
        while let Some(event) = events.try_next().await.unwrap() {
            // A handler that reads the store while the next page is on its way.
            let stream = store
                .read_stream("ConformanceAccount", event.aggregate_id(), 0)
                .await
                .unwrap();
            assert_eq!(stream.version, 4);
            read.push(event.position);
        }
        assert_eq!(read, positions);
        store.close().await;
    }

    #[tokio::test]
    async fn a_stream_longer_than_one_query_reads_whole() {
        let db = TempDb::new();
        let store = SqliteEventStore::open(&db.0).await.unwrap();
        store.migrate().await.unwrap();
        let id = Uuid::now_v7();
        for version in (0..2500).step_by(500) {
            store
                .append(
                    "ConformanceAccount",
                    id,
                    ExpectedVersion::Exact(version),
                    &deposits(id, version, 500),
                )
                .await
                .unwrap();
        }
        for after in [0, 999, 1000, 1001, 2499, 2500] {
            let read = store
                .read_stream("ConformanceAccount", id, after)
                .await
                .unwrap();
            assert_eq!(read.version, 2500);
            let versions: Vec<u64> = read.events.iter().map(|e| e.aggregate_version()).collect();
            assert_eq!(
                versions,
                (after + 1..=2500).collect::<Vec<_>>(),
                "after {after}"
            );
        }
        store.close().await;
    }

    #[tokio::test]
    async fn a_corrupt_row_ends_read_all_with_a_typed_error() {
        let db = TempDb::new();
        let store = SqliteEventStore::open(&db.0).await.unwrap();
        store.migrate().await.unwrap();
        let positions = appended(&store, 3, 4).await;
        sqlx::query("UPDATE eventsource_events SET aggregate_version = 'x,1:' WHERE position = ?1")
            .bind(i64::try_from(positions[6]).unwrap())
            .execute(store.pool())
            .await
            .unwrap();
        let mut events = store.read_all(ReadAll::from_start().batch_size(2));
        let mut read = Vec::new();
        let error = loop {
            match events.try_next().await {
                Ok(Some(event)) => read.push(event.position),
                Ok(None) => panic!("read past a corrupt row"),
                Err(error) => break error,
            }
        };
        assert_eq!(read, positions[..6]);
        assert_eq!(error.kind(), eventsource::ErrorKind::Data, "{error}");
        assert!(error.to_string().contains("aggregate_version"), "{error}");
        assert!(
            events.try_next().await.unwrap().is_none(),
            "nothing after the error"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn text_with_a_nul_character_is_refused_before_anything_is_written() {
    let store = fresh_store().await.unwrap();
    let id = Uuid::now_v7();
    // One event is bound column by column; a batch goes through a JSON array.
    for n in [1, 2] {
        let mut events = deposits(id, 0, n);
        events[n - 1].envelope.context.actor_id = Some("robot\0".into());
        let error = store
            .append("ConformanceAccount", id, ExpectedVersion::Any, &events)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, eventsource::StoreError::InvalidAppend { reason, .. }
                if reason.contains("actor_id contains a NUL character")),
            "{error:?}"
        );
    }
    assert_eq!(store.current_position().await.unwrap(), 0);
    assert_eq!(
        store
            .stream_version("ConformanceAccount", id)
            .await
            .unwrap(),
        0
    );
    // The same events without the NUL are stored and read back.
    store
        .append(
            "ConformanceAccount",
            id,
            ExpectedVersion::NoStream,
            &deposits(id, 0, 2),
        )
        .await
        .unwrap();
    let all: Vec<_> = store
        .read_all(ReadAll::from_start())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
}

#[tokio::test]
async fn a_closed_store_refuses_appends_with_an_error_retrying_cannot_fix() {
    let store = fresh_store().await.unwrap();
    let id = Uuid::now_v7();
    store.store.close().await;
    let error = store
        .append(
            "ConformanceAccount",
            id,
            ExpectedVersion::Any,
            &deposits(id, 0, 1),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            eventsource::StoreError::Backend {
                backend: "sqlite",
                transient: false,
                ..
            }
        ),
        "{error:?}"
    );
}
