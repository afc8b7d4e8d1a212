//! What `#[projection]` generates, end to end through a `ProjectionRunner`: dispatch by
//! stored name across aggregates, unhandled events skipped, a handler's error retried and
//! dead-lettered, a payload that does not decode never skipped, both resets, and the
//! envelope as a handler sees it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use eventsource::projection::{
    DeadLetterFilter, DlqRepository, InMemoryCheckpointRepository, InMemoryDlqRepository,
    Projection, ProjectionError, ProjectionRunner, RetryPolicy,
};
use eventsource::{
    AggregateRepository, AggregateRoot, BoxError, DomainEvent, Event, EventContext, EventStore,
    ExpectedVersion, InMemoryEventStore, Payload, RecordedEvent, aggregate, projection,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
struct OrderCreated {
    total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order", name = "order.shipped")]
struct OrderShipped {
    tracking: String,
}

/// Stored for orders; no projection below handles it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
struct NoteAdded {
    note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Customer")]
struct CustomerRegistered {
    name: String,
}

#[derive(Debug, Default)]
struct Order;

#[aggregate(unhandled = "ignore")]
impl Order {
    #[handles(OrderCreated)]
    fn on_created(&mut self, _: &OrderCreated) {}
    #[handles(OrderShipped)]
    fn on_shipped(&mut self, _: &OrderShipped) {}
    #[handles(NoteAdded)]
    fn on_note(&mut self, _: &NoteAdded) {}
}

#[derive(Debug, Default)]
struct Customer;

#[aggregate]
impl Customer {
    #[handles(CustomerRegistered)]
    fn on_registered(&mut self, _: &CustomerRegistered) {}
}

#[derive(Debug)]
struct ReadModelOffline;

impl fmt::Display for ReadModelOffline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("read model offline")
    }
}

impl std::error::Error for ReadModelOffline {}

#[derive(Debug, Clone, PartialEq)]
struct Summary {
    status: &'static str,
    total: u64,
    tracking: Option<String>,
}

/// Everything a handler can read of the envelope.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    event_id: Uuid,
    name: String,
    schema_version: u32,
    aggregate_id: Uuid,
    aggregate_type: String,
    aggregate_version: u64,
    position: u64,
    stored_at: DateTime<Utc>,
    occurred_at: DateTime<Utc>,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
    actor_id: Option<String>,
    tenant_id: Option<String>,
    channel: Option<serde_json::Value>,
    recorded_position: u64,
}

impl Seen {
    fn of<E: Clone>(e: &Event<'_, E>) -> Self {
        Seen {
            event_id: e.event_id(),
            name: e.name().to_owned(),
            schema_version: e.schema_version(),
            aggregate_id: e.aggregate_id(),
            aggregate_type: e.aggregate_type().to_owned(),
            aggregate_version: e.aggregate_version(),
            position: e.position(),
            stored_at: e.stored_at(),
            occurred_at: e.occurred_at(),
            correlation_id: e.correlation_id(),
            causation_id: e.causation_id(),
            actor_id: e.actor_id().map(str::to_owned),
            tenant_id: e.tenant_id().map(str::to_owned),
            channel: e.metadata().get("channel").cloned(),
            recorded_position: e.recorded().position,
        }
    }
}

/// The seed's order summary read model, shared so the test can look at it.
#[derive(Clone, Default)]
struct OrderSummaries {
    rows: Arc<Mutex<HashMap<Uuid, Summary>>>,
    customers: Arc<Mutex<Vec<String>>>,
    /// (position, handler) for every call, in order.
    calls: Arc<Mutex<Vec<(u64, &'static str)>>>,
    envelopes: Arc<Mutex<Vec<Seen>>>,
    failing: Arc<AtomicBool>,
    resets: Arc<AtomicU32>,
}

#[projection(name = "order-summaries")]
impl OrderSummaries {
    #[handles(OrderCreated)]
    async fn on_created(&mut self, e: &Event<OrderCreated>) -> Result<(), ReadModelOffline> {
        self.calls.lock().unwrap().push((e.position(), "created"));
        if self.failing.load(Ordering::SeqCst) {
            return Err(ReadModelOffline);
        }
        self.envelopes.lock().unwrap().push(Seen::of(e));
        self.rows.lock().unwrap().insert(
            e.aggregate_id(),
            Summary {
                status: "created",
                total: e.total,
                tracking: None,
            },
        );
        Ok(())
    }

    #[handles(OrderShipped)]
    async fn on_shipped(&mut self, e: &Event<OrderShipped>) -> Result<(), BoxError> {
        self.calls.lock().unwrap().push((e.position(), "shipped"));
        let mut rows = self.rows.lock().unwrap();
        let row = rows
            .get_mut(&e.aggregate_id())
            .ok_or("shipped before created")?;
        row.status = "shipped";
        row.tracking = Some(e.data().tracking.clone());
        Ok(())
    }

    /// An event of another aggregate.
    #[handles(CustomerRegistered)]
    async fn on_registered(
        &mut self,
        e: &Event<'_, CustomerRegistered>,
    ) -> Result<(), ReadModelOffline> {
        self.calls
            .lock()
            .unwrap()
            .push((e.position(), "registered"));
        self.customers.lock().unwrap().push(e.name.clone());
        Ok(())
    }

    #[reset]
    async fn clear(&mut self) -> Result<(), ReadModelOffline> {
        self.resets.fetch_add(1, Ordering::SeqCst);
        self.rows.lock().unwrap().clear();
        self.customers.lock().unwrap().clear();
        self.calls.lock().unwrap().clear();
        Ok(())
    }

    /// Not a handler: `#[projection]` leaves it alone.
    fn rows(&self) -> HashMap<Uuid, Summary> {
        self.rows.lock().unwrap().clone()
    }
}

/// Reset by `Default`: no `#[reset]` method, the name is the type's.
#[derive(Debug, Default, PartialEq)]
struct Revenue {
    orders: u64,
    total: u64,
}

#[projection]
impl Revenue {
    #[handles(OrderCreated)]
    async fn on_created(&mut self, e: &Event<OrderCreated>) -> Result<(), ReadModelOffline> {
        self.orders += 1;
        self.total += e.total;
        Ok(())
    }
}

fn runner(store: &Arc<InMemoryEventStore>) -> ProjectionRunner {
    ProjectionRunner::new(Arc::clone(store) as Arc<dyn EventStore>).retry(RetryPolicy::immediate(3))
}

async fn create_order(store: &Arc<InMemoryEventStore>, total: u64) -> Uuid {
    let orders = AggregateRepository::<Order, _>::new(Arc::clone(store));
    let mut order = AggregateRoot::<Order>::new(Uuid::now_v7());
    order.record(OrderCreated { total });
    orders.save(&mut order).await.unwrap();
    order.id()
}

async fn record_on_order(store: &Arc<InMemoryEventStore>, id: Uuid, event: impl Into<OrderEvent>) {
    let orders = AggregateRepository::<Order, _>::new(Arc::clone(store));
    let mut order = orders.load(id).await.unwrap();
    order.record_event(event.into());
    orders.save(&mut order).await.unwrap();
}

async fn register_customer(store: &Arc<InMemoryEventStore>, name: &str) {
    let customers = AggregateRepository::<Customer, _>::new(Arc::clone(store));
    let mut customer = AggregateRoot::<Customer>::new(Uuid::now_v7());
    customer.record(CustomerRegistered { name: name.into() });
    customers.save(&mut customer).await.unwrap();
}

/// Appends an `OrderCreated` whose stored payload is `json`, as a database would return it.
async fn append_json_order(store: &Arc<InMemoryEventStore>, json: &str) -> Uuid {
    let mut order = AggregateRoot::<Order>::new(Uuid::now_v7());
    order.record(OrderCreated { total: 0 });
    let mut events = order.take_uncommitted();
    events[0].payload = Payload::json(json);
    store
        .append("Order", order.id(), ExpectedVersion::NoStream, &events)
        .await
        .unwrap();
    order.id()
}

#[test]
fn the_name_is_the_type_s_unless_given() {
    assert_eq!(OrderSummaries::default().name(), "order-summaries");
    assert_eq!(Revenue::default().name(), "Revenue");
}

#[tokio::test]
async fn handles_a_sequence_across_aggregates_and_skips_what_it_does_not_handle() {
    let store = Arc::new(InMemoryEventStore::new());
    let id = create_order(&store, 40).await;
    record_on_order(
        &store,
        id,
        NoteAdded {
            note: "fragile".into(),
        },
    )
    .await;
    record_on_order(
        &store,
        id,
        OrderShipped {
            tracking: "TRACK-123".into(),
        },
    )
    .await;
    register_customer(&store, "ann").await;

    let summaries = OrderSummaries::default();
    let mut runner = runner(&store).with(summaries.clone());
    let report = runner.catch_up().await.unwrap();
    assert_eq!((report.events_read, report.dead_lettered), (4, 0));
    assert_eq!(
        *summaries.calls.lock().unwrap(),
        [(1, "created"), (3, "shipped"), (4, "registered")]
    );
    assert_eq!(
        summaries.rows()[&id],
        Summary {
            status: "shipped",
            total: 40,
            tracking: Some("TRACK-123".into()),
        }
    );
    assert_eq!(*summaries.customers.lock().unwrap(), ["ann"]);
}

#[tokio::test]
async fn a_handler_error_is_retried_then_dead_lettered_with_its_message() {
    let store = Arc::new(InMemoryEventStore::new());
    create_order(&store, 1).await;
    let summaries = OrderSummaries::default();
    summaries.failing.store(true, Ordering::SeqCst);
    let dlq = Arc::new(InMemoryDlqRepository::new());
    let mut runner = runner(&store)
        .dead_letters(dlq.clone())
        .with(summaries.clone());

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
    assert!(error.to_string().contains("read model offline"), "{error}");
    assert_eq!(summaries.calls.lock().unwrap().len(), 3);
    let failed = dlq.list(&DeadLetterFilter::default()).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].projection, "order-summaries");
    assert_eq!(failed[0].event_name, "OrderCreated");
    assert_eq!(failed[0].error, "read model offline");
}

#[tokio::test]
async fn a_payload_that_does_not_decode_is_an_error_not_a_skip() {
    let store = Arc::new(InMemoryEventStore::new());
    append_json_order(&store, r#"{"total": "forty"}"#).await;
    let summaries = OrderSummaries::default();
    let dlq = Arc::new(InMemoryDlqRepository::new());
    let mut runner = runner(&store)
        .dead_letters(dlq.clone())
        .with(summaries.clone());

    let error = runner.catch_up().await.unwrap_err();
    assert!(
        matches!(&error, ProjectionError::HandlerFailed { attempts: 3, .. }),
        "{error}"
    );
    // The handler never saw it; the dead letter says why.
    assert!(summaries.calls.lock().unwrap().is_empty());
    let failed = dlq.list(&DeadLetterFilter::default()).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0].error.contains("OrderCreated"),
        "{}",
        failed[0].error
    );

    // Called directly, too.
    let recorded = store.all_events()[0].clone();
    let mut summaries = OrderSummaries::default();
    assert!(summaries.handle(&recorded).await.is_err());
}

#[tokio::test]
async fn a_json_payload_is_decoded_and_a_typed_one_borrowed() {
    let store = Arc::new(InMemoryEventStore::new());
    let from_json = append_json_order(&store, r#"{"total": 7}"#).await;
    let typed = create_order(&store, 8).await;
    let summaries = OrderSummaries::default();
    runner(&store)
        .with(summaries.clone())
        .catch_up()
        .await
        .unwrap();
    let rows = summaries.rows();
    assert_eq!((rows[&from_json].total, rows[&typed].total), (7, 8));

    let events = store.all_events();
    let json = Event::<OrderCreated>::from_recorded(&events[0])
        .unwrap()
        .unwrap();
    assert!(matches!(
        json.into_data(),
        Cow::Owned(OrderCreated { total: 7 })
    ));
    let borrowed = Event::<OrderCreated>::from_recorded(&events[1])
        .unwrap()
        .unwrap();
    assert!(matches!(
        borrowed.into_data(),
        Cow::Borrowed(OrderCreated { total: 8 })
    ));
    assert!(
        Event::<OrderShipped>::from_recorded(&events[1])
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn the_handler_sees_the_whole_envelope() {
    let store = Arc::new(InMemoryEventStore::new());
    let (correlation, causation) = (Uuid::now_v7(), Uuid::now_v7());
    let orders = AggregateRepository::<Order, _>::new(Arc::clone(&store));
    let mut order = AggregateRoot::<Order>::new(Uuid::now_v7());
    order.set_context(
        EventContext::new()
            .correlation(correlation)
            .causation(causation)
            .actor("ann")
            .tenant("acme")
            .meta("channel", "web"),
    );
    order.record(OrderCreated { total: 3 });
    orders.save(&mut order).await.unwrap();

    let summaries = OrderSummaries::default();
    runner(&store)
        .with(summaries.clone())
        .catch_up()
        .await
        .unwrap();
    let stored: Arc<RecordedEvent> = store.all_events()[0].clone();
    let envelope = &stored.envelope;
    assert_eq!(
        summaries.envelopes.lock().unwrap()[..],
        [Seen {
            event_id: envelope.event_id,
            name: OrderCreated::NAME.to_owned(),
            schema_version: 1,
            aggregate_id: order.id(),
            aggregate_type: "Order".to_owned(),
            aggregate_version: 1,
            position: 1,
            stored_at: stored.stored_at,
            occurred_at: envelope.occurred_at,
            correlation_id: Some(correlation),
            causation_id: Some(causation),
            actor_id: Some("ann".to_owned()),
            tenant_id: Some("acme".to_owned()),
            channel: Some("web".into()),
            recorded_position: 1,
        }]
    );
}

#[tokio::test]
async fn reset_runs_the_reset_method_and_the_rebuild_replays() {
    let store = Arc::new(InMemoryEventStore::new());
    let id = create_order(&store, 5).await;
    let summaries = OrderSummaries::default();
    let checkpoints = Arc::new(InMemoryCheckpointRepository::new());
    let mut runner = runner(&store)
        .checkpoints(checkpoints.clone())
        .with(summaries.clone());
    runner.catch_up().await.unwrap();
    assert_eq!(summaries.rows().len(), 1);

    runner.reset("order-summaries").await.unwrap();
    assert_eq!(summaries.resets.load(Ordering::SeqCst), 1);
    assert!(summaries.rows().is_empty());

    runner.rebuild("order-summaries").await.unwrap();
    assert_eq!(summaries.resets.load(Ordering::SeqCst), 2);
    assert_eq!(summaries.rows()[&id].total, 5);
    assert_eq!(*summaries.calls.lock().unwrap(), [(1, "created")]);
}

#[tokio::test]
async fn without_a_reset_method_reset_restores_the_default() {
    let store = Arc::new(InMemoryEventStore::new());
    create_order(&store, 2).await;
    create_order(&store, 3).await;
    let mut revenue = Revenue::default();
    for event in store.all_events() {
        revenue.handle(&event).await.unwrap();
    }
    assert_eq!(
        revenue,
        Revenue {
            orders: 2,
            total: 5
        }
    );
    revenue.reset().await.unwrap();
    assert_eq!(revenue, Revenue::default());
}
