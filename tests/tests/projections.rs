//! Projections: the seed's scenarios, retries and the dead-letter queue, and subscriptions
//! that never skip or repeat an event.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsource::projection::{
    CheckpointRepository, DeadLetterFilter, DeadLetterStatus, DlqRepository,
    InMemoryCheckpointRepository, InMemoryDlqRepository, OnExhausted, Projection, ProjectionError,
    ProjectionRunner, RetryPolicy, StartFrom,
};
use eventsource::{
    AggregateRepository, AggregateRoot, BoxError, EventStore, ExpectedVersion, InMemoryEventStore,
    RecordedEvent, StoreError,
};
use eventsource_examples::{Order, OrderCreated, OrderShipped};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
struct Summary {
    status: &'static str,
    total: f64,
    tracking: Option<String>,
}

/// The seed's order summary read model, shared so the test can look at it.
#[derive(Clone, Default)]
struct OrderSummaries {
    rows: Arc<Mutex<HashMap<Uuid, Summary>>>,
    /// Positions handled, in order (to check exactly-once delivery).
    seen: Arc<Mutex<Vec<u64>>>,
}

#[async_trait::async_trait]
impl Projection for OrderSummaries {
    fn name(&self) -> &str {
        "order-summaries"
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        self.seen.lock().unwrap().push(event.position);
        let mut rows = self.rows.lock().unwrap();
        if let Some(created) = event.as_event::<OrderCreated>()? {
            rows.insert(
                event.aggregate_id(),
                Summary {
                    status: "created",
                    total: created.total_amount,
                    tracking: None,
                },
            );
        } else if let Some(shipped) = event.as_event::<OrderShipped>()? {
            let row = rows
                .get_mut(&event.aggregate_id())
                .ok_or("shipped before created")?;
            row.status = "shipped";
            row.tracking = Some(shipped.tracking_number.clone());
        }
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), BoxError> {
        self.rows.lock().unwrap().clear();
        self.seen.lock().unwrap().clear();
        Ok(())
    }
}

/// Fails on every call while `failing` is set, counting calls.
#[derive(Clone, Default)]
struct Flaky {
    failing: Arc<Mutex<bool>>,
    calls: Arc<Mutex<u32>>,
    handled: Arc<Mutex<Vec<u64>>>,
}

#[async_trait::async_trait]
impl Projection for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        *self.calls.lock().unwrap() += 1;
        if *self.failing.lock().unwrap() {
            return Err("Handler error: read model offline".into());
        }
        self.handled.lock().unwrap().push(event.position);
        Ok(())
    }
}

async fn create_orders(store: &Arc<InMemoryEventStore>, n: usize) -> Vec<Uuid> {
    let orders = AggregateRepository::<Order, _>::new(Arc::clone(store));
    let mut ids = Vec::new();
    for i in 0..n {
        let mut order = AggregateRoot::<Order>::new(Uuid::now_v7());
        order
            .execute(|o| o.create(Uuid::now_v7(), i as f64))
            .unwrap();
        orders.save(&mut order).await.unwrap();
        ids.push(order.id());
    }
    ids
}

async fn ship(store: &Arc<InMemoryEventStore>, id: Uuid, tracking: &str) {
    let orders = AggregateRepository::<Order, _>::new(Arc::clone(store));
    let mut order = orders.load(id).await.unwrap();
    order.execute(|o| o.ship(tracking)).unwrap();
    orders.save(&mut order).await.unwrap();
}

fn runner(store: &Arc<InMemoryEventStore>) -> ProjectionRunner {
    ProjectionRunner::new(Arc::clone(store) as Arc<dyn EventStore>).retry(RetryPolicy::immediate(3))
}

mod the_seed_scenarios {
    use super::*;

    #[tokio::test]
    async fn a_projection_handles_an_event_and_a_sequence() {
        let store = Arc::new(InMemoryEventStore::new());
        let id = create_orders(&store, 1).await[0];
        ship(&store, id, "TRACK-123").await;
        let summaries = OrderSummaries::default();
        let mut runner = runner(&store).with(summaries.clone());
        let report = runner.catch_up().await.unwrap();
        assert_eq!(
            (report.events_read, report.delivered, report.dead_lettered),
            (2, 2, 0)
        );
        let rows = summaries.rows.lock().unwrap();
        assert_eq!(
            rows[&id],
            Summary {
                status: "shipped",
                total: 0.0,
                tracking: Some("TRACK-123".into())
            }
        );
    }

    #[tokio::test]
    async fn the_checkpoint_is_the_last_event_handled() {
        let store = Arc::new(InMemoryEventStore::new());
        create_orders(&store, 3).await;
        let checkpoints = Arc::new(InMemoryCheckpointRepository::new());
        let mut runner = runner(&store)
            .checkpoints(checkpoints.clone())
            .with(OrderSummaries::default());
        runner.catch_up().await.unwrap();
        let last = store.all_events().last().cloned().unwrap();
        let checkpoint = checkpoints.load("order-summaries").await.unwrap().unwrap();
        assert_eq!(checkpoint.position, last.position);
        assert_eq!(checkpoint.event_id, Some(last.event_id()));
    }

    #[tokio::test]
    async fn reset_clears_the_read_model_and_the_checkpoint() {
        let store = Arc::new(InMemoryEventStore::new());
        create_orders(&store, 1).await;
        let summaries = OrderSummaries::default();
        let checkpoints = Arc::new(InMemoryCheckpointRepository::new());
        let mut runner = runner(&store)
            .checkpoints(checkpoints.clone())
            .with(summaries.clone());
        runner.catch_up().await.unwrap();
        assert_eq!(summaries.rows.lock().unwrap().len(), 1);
        runner.reset("order-summaries").await.unwrap();
        assert!(summaries.rows.lock().unwrap().is_empty());
        assert!(checkpoints.load("order-summaries").await.unwrap().is_none());
        // And it replays from the beginning.
        runner.catch_up().await.unwrap();
        assert_eq!(summaries.rows.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_failing_handler_is_called_three_times_then_dead_lettered() {
        let store = Arc::new(InMemoryEventStore::new());
        create_orders(&store, 1).await;
        let flaky = Flaky::default();
        *flaky.failing.lock().unwrap() = true;
        let dlq = Arc::new(InMemoryDlqRepository::new());
        let checkpoints = Arc::new(InMemoryCheckpointRepository::new());
        let mut runner = runner(&store)
            .dead_letters(dlq.clone())
            .checkpoints(checkpoints.clone())
            .with(flaky.clone());
        let error = runner.catch_up().await.unwrap_err();
        assert!(
            matches!(
                &error,
                ProjectionError::HandlerFailed {
                    attempts: 3,
                    position: 1,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("Handler error"), "{error}");
        assert_eq!(*flaky.calls.lock().unwrap(), 3, "3 calls in all");
        let failed = dlq.list(&DeadLetterFilter::default()).await.unwrap();
        assert_eq!(failed.len(), 1);
        let event = &store.all_events()[0];
        assert_eq!(failed[0].event_id, event.event_id());
        assert_eq!(failed[0].event_name, "OrderCreated");
        assert!(failed[0].error.contains("Handler error"));
        assert_eq!(failed[0].attempts, 3);
        assert_eq!(failed[0].status, DeadLetterStatus::Failed);
        assert!(
            checkpoints.load("flaky").await.unwrap().is_none(),
            "the checkpoint does not move past a failed event"
        );
        let status = &runner.status()[0];
        assert!(status.halted.is_some());
        assert_eq!(
            status.lag,
            store.event_count() as u64,
            "halted at the first event: behind by every event read"
        );
    }
}

mod dead_letters {
    use super::*;

    #[tokio::test]
    async fn with_continue_the_projection_moves_on_and_the_dead_letter_is_the_record() {
        let store = Arc::new(InMemoryEventStore::new());
        create_orders(&store, 2).await;
        let flaky = Flaky::default();
        *flaky.failing.lock().unwrap() = true;
        let dlq = Arc::new(InMemoryDlqRepository::new());
        let policy = RetryPolicy {
            on_exhausted: OnExhausted::Continue,
            ..RetryPolicy::immediate(2)
        };
        let mut runner = runner(&store)
            .retry(policy)
            .dead_letters(dlq.clone())
            .with(flaky.clone());
        let report = runner.catch_up().await.unwrap();
        assert_eq!(report.dead_lettered, 2);
        assert_eq!(report.position, 2);
        assert_eq!(dlq.stats().await.unwrap().by_status["failed"], 2);
    }

    #[tokio::test]
    async fn retrying_a_dead_letter_after_the_fix_resolves_it_and_unhalts_the_projection() {
        let store = Arc::new(InMemoryEventStore::new());
        create_orders(&store, 3).await;
        let flaky = Flaky::default();
        *flaky.failing.lock().unwrap() = true;
        let dlq = Arc::new(InMemoryDlqRepository::new());
        let mut runner = runner(&store).dead_letters(dlq.clone()).with(flaky.clone());
        runner.catch_up().await.unwrap_err();
        let event_id = store.all_events()[0].event_id();

        // Still broken: the row stays failed and counts the extra attempts.
        assert!(!runner.retry_dead_letter(event_id, "flaky").await.unwrap());
        let row = dlq.get(event_id, "flaky").await.unwrap().unwrap();
        assert_eq!((row.status, row.attempts), (DeadLetterStatus::Failed, 6));
        assert!(row.first_failed_at <= row.last_failed_at);

        *flaky.failing.lock().unwrap() = false;
        assert!(runner.retry_dead_letter(event_id, "flaky").await.unwrap());
        let row = dlq.get(event_id, "flaky").await.unwrap().unwrap();
        assert_eq!(row.status, DeadLetterStatus::Resolved);
        assert_eq!(row.resolved_by.as_deref(), Some("retry"));
        runner.catch_up().await.unwrap();
        assert_eq!(
            *flaky.handled.lock().unwrap(),
            [1, 2, 3],
            "each event exactly once, in order"
        );
        assert_eq!(dlq.delete_resolved().await.unwrap(), 1);
        assert!(
            dlq.list(&DeadLetterFilter::default())
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_second_failure_updates_the_row_and_keeps_the_first_failure_time() {
        let store = Arc::new(InMemoryEventStore::new());
        create_orders(&store, 1).await;
        let event = store.all_events()[0].clone();
        let dlq = InMemoryDlqRepository::new();
        let first = dlq.record_failure(&event, "p", "boom 1", 3).await.unwrap();
        dlq.set_status(
            event.event_id(),
            "p",
            DeadLetterStatus::Resolved,
            Some("ops"),
        )
        .await
        .unwrap();
        let second = dlq.record_failure(&event, "p", "boom 2", 2).await.unwrap();
        assert_eq!(second.first_failed_at, first.first_failed_at);
        assert_eq!(
            (second.attempts, second.error.as_str(), second.status),
            (5, "boom 2", DeadLetterStatus::Failed)
        );
        assert_eq!(second.resolved_by, None);
        dlq.record_failure(&event, "other", "x", 1).await.unwrap();
        let stats = dlq.stats().await.unwrap();
        assert_eq!(stats.by_projection.len(), 2);
        let only_p = dlq
            .list(&DeadLetterFilter {
                projection: Some("p".into()),
                status: None,
            })
            .await
            .unwrap();
        assert_eq!(only_p.len(), 1);
        assert!(
            serde_json::from_str::<serde_json::Value>(&only_p[0].payload).is_ok(),
            "the payload is kept as JSON"
        );
    }

    /// A checkpoint store that fails while `broken` is set.
    struct BrokenCheckpoints {
        inner: InMemoryCheckpointRepository,
        broken: Mutex<bool>,
    }

    #[async_trait::async_trait]
    impl CheckpointRepository for BrokenCheckpoints {
        async fn load(
            &self,
            p: &str,
        ) -> Result<Option<eventsource::projection::Checkpoint>, StoreError> {
            self.inner.load(p).await
        }
        async fn save(&self, p: &str, position: u64, id: Option<Uuid>) -> Result<(), StoreError> {
            if *self.broken.lock().unwrap() {
                return Err(StoreError::backend("test", true, "checkpoint table locked"));
            }
            self.inner.save(p, position, id).await
        }
        async fn reset(&self, p: &str) -> Result<(), StoreError> {
            self.inner.reset(p).await
        }
        async fn list(&self) -> Result<Vec<eventsource::projection::Checkpoint>, StoreError> {
            self.inner.list().await
        }
    }

    #[tokio::test]
    async fn a_failing_checkpoint_write_never_runs_the_handler_again() {
        let store = Arc::new(InMemoryEventStore::new());
        create_orders(&store, 2).await;
        let checkpoints = Arc::new(BrokenCheckpoints {
            inner: InMemoryCheckpointRepository::new(),
            broken: Mutex::new(true),
        });
        let flaky = Flaky::default();
        let mut runner = runner(&store)
            .checkpoints(checkpoints.clone())
            .with(flaky.clone());
        let error = runner.catch_up().await.unwrap_err();
        assert!(matches!(error, ProjectionError::Store(_)), "{error}");
        *checkpoints.broken.lock().unwrap() = false;
        runner.catch_up().await.unwrap();
        assert_eq!(*flaky.handled.lock().unwrap(), [1, 2]);
        assert_eq!(
            checkpoints.load("flaky").await.unwrap().unwrap().position,
            2
        );
    }
}

mod subscriptions {
    use super::*;

    async fn wait_for(seen: &Arc<Mutex<Vec<u64>>>, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while seen.lock().unwrap().len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "saw {} of {n} events",
                seen.lock().unwrap().len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fifty_stored_and_twenty_five_appended_during_start_up_are_delivered_exactly_once_in_order()
     {
        let store = Arc::new(InMemoryEventStore::new());
        create_orders(&store, 50).await;
        let summaries = OrderSummaries::default();
        let handle = runner(&store)
            .batch_size(7)
            .poll_interval(Duration::from_secs(60))
            .with(summaries.clone())
            .start();
        // Appends race with the catch-up; the long poll interval means only the store's
        // append signal can wake the runner once it is idle.
        create_orders(&store, 25).await;
        wait_for(&summaries.seen, 75).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let runner = handle.stop().await.unwrap();
        assert_eq!(
            *summaries.seen.lock().unwrap(),
            (1..=75).collect::<Vec<u64>>()
        );
        assert_eq!(summaries.rows.lock().unwrap().len(), 75);
        assert_eq!(runner.status()[0].position, 75);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stopping_and_restarting_at_random_points_delivers_every_event_exactly_once() {
        let store = Arc::new(InMemoryEventStore::new());
        let checkpoints = Arc::new(InMemoryCheckpointRepository::new());
        let summaries = OrderSummaries::default();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut random = move |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        let mut total = 0;
        for _round in 0..12 {
            let handle = runner(&store)
                .checkpoints(checkpoints.clone())
                .batch_size(1 + random(5) as usize)
                .with(summaries.clone())
                .start();
            let burst = random(9) as usize;
            create_orders(&store, burst).await;
            total += burst;
            if random(2) == 0 {
                tokio::time::sleep(Duration::from_millis(random(4))).await;
            }
            handle.stop().await.unwrap();
        }
        let mut runner = runner(&store)
            .checkpoints(checkpoints.clone())
            .with(summaries.clone());
        runner.catch_up().await.unwrap();
        assert!(
            total > 20,
            "the seed produced a meaningful run ({total} events)"
        );
        assert_eq!(
            *summaries.seen.lock().unwrap(),
            (1..=total as u64).collect::<Vec<u64>>()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pause_resume_status_and_start_positions() {
        let store = Arc::new(InMemoryEventStore::new());
        create_orders(&store, 5).await;
        let summaries = OrderSummaries::default();
        let handle = runner(&store)
            .start_from(StartFrom::End)
            .with(summaries.clone())
            .start();
        tokio::time::sleep(Duration::from_millis(20)).await;
        handle.pause();
        tokio::time::sleep(Duration::from_millis(20)).await;
        create_orders(&store, 2).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            summaries.seen.lock().unwrap().is_empty(),
            "paused: nothing delivered, history skipped"
        );
        handle.resume();
        wait_for(&summaries.seen, 2).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let status = handle.status();
        assert_eq!(
            (status[0].position, status[0].lag, status[0].processed),
            (7, 0, 2)
        );
        handle.stop().await.unwrap();
        assert_eq!(*summaries.seen.lock().unwrap(), [6, 7]);

        let from_three = OrderSummaries::default();
        let mut runner = runner(&store)
            .start_from(StartFrom::Position(3))
            .with(from_three.clone());
        runner.catch_up().await.unwrap();
        assert_eq!(*from_three.seen.lock().unwrap(), [4, 5, 6, 7]);
    }

    #[tokio::test]
    async fn every_projection_gets_every_event_and_a_rebuild_replays_one() {
        let store = Arc::new(InMemoryEventStore::new());
        let ids = create_orders(&store, 3).await;
        ship(&store, ids[1], "T-1").await;
        let summaries = OrderSummaries::default();
        let flaky = Flaky::default();
        let mut runner = runner(&store).with(summaries.clone()).with(flaky.clone());
        runner.catch_up().await.unwrap();
        assert_eq!(*flaky.handled.lock().unwrap(), [1, 2, 3, 4]);
        let report = runner.rebuild("order-summaries").await.unwrap();
        assert_eq!((report.events_read, report.delivered), (4, 4));
        assert_eq!(summaries.rows.lock().unwrap()[&ids[1]].status, "shipped");
        assert_eq!(
            *flaky.handled.lock().unwrap(),
            [1, 2, 3, 4],
            "the other projection is untouched"
        );
        assert!(matches!(
            runner.rebuild("nope").await,
            Err(ProjectionError::UnknownProjection(_))
        ));
    }

    #[tokio::test]
    async fn events_a_projection_does_not_handle_are_skipped_without_error() {
        let store = Arc::new(InMemoryEventStore::new());
        let id = Uuid::now_v7();
        let other = eventsource_test::conformance::deposits(id, 0, 2);
        store
            .append("ConformanceAccount", id, ExpectedVersion::Any, &other)
            .await
            .unwrap();
        create_orders(&store, 1).await;
        let summaries = OrderSummaries::default();
        let mut runner = runner(&store).with(summaries.clone());
        let report = runner.catch_up().await.unwrap();
        assert_eq!((report.events_read, report.dead_lettered), (3, 0));
        assert_eq!(summaries.rows.lock().unwrap().len(), 1);
    }
}
