//! Building event streams for tests without writing ids, versions or positions by hand.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use eventsource::{
    Aggregate, AggregateRoot, Clock, DomainEvent, EventEnvelope, EventStore, ExpectedVersion,
    IntoEvents, Payload, RecordedEvent, SharedContext, StoreError, UncommittedEvent,
};
use uuid::Uuid;

use crate::clock::TestClock;

/// Builds the event stream of one aggregate: each event gets the next version, an id and
/// a timestamp from the builder's clock (a fresh [`TestClock`] unless you pass one), and
/// is applied to the aggregate's state as it would be by a command.
///
/// ```
/// # use eventsource_test::__doc_order::*;
/// use eventsource::AggregateRoot;
/// use eventsource_test::EventBuilder;
///
/// let builder = EventBuilder::<Order>::new()
///     .event(OrderCreated { customer: "ada".into(), total: 0.0 })
///     .event(OrderItemAdded { product: "widget".into(), quantity: 2, unit_price: 15.0 })
///     .event(OrderItemAdded { product: "gadget".into(), quantity: 1, unit_price: 30.0 });
/// assert_eq!(builder.version(), 3);
/// assert_eq!(builder.state().total, 60.0);
///
/// // As a database would return them: versions 1..=3, positions 1..=3.
/// let history = builder.recorded();
/// let mut order = AggregateRoot::<Order>::new(builder.aggregate_id());
/// order.load_from_history(&history)?;
/// assert_eq!(order.version(), 3);
/// assert_eq!(order.state().items, 2);
/// # Ok::<(), eventsource::AggregateError>(())
/// ```
pub struct EventBuilder<A: Aggregate> {
    root: AggregateRoot<A>,
    after_position: u64,
}

impl<A: Aggregate> Default for EventBuilder<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Aggregate + std::fmt::Debug> std::fmt::Debug for EventBuilder<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBuilder")
            .field("root", &self.root)
            .field("after_position", &self.after_position)
            .finish()
    }
}

impl<A: Aggregate> EventBuilder<A> {
    /// A builder for a new aggregate with a fresh random id.
    pub fn new() -> Self {
        Self::for_aggregate(Uuid::now_v7())
    }

    /// A builder for the aggregate `id`.
    pub fn for_aggregate(id: Uuid) -> Self {
        let mut root = AggregateRoot::new(id);
        root.set_clock(Arc::new(TestClock::new()));
        EventBuilder {
            root,
            after_position: 0,
        }
    }

    /// Takes event ids and timestamps from `clock` (share one clock between builders to
    /// keep ids unique across aggregates).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.root.set_clock(clock);
        self
    }

    /// Stamps `context` (tenant, correlation, actor, metadata) on events added from now on
    /// (an [`EventContext`](eventsource::EventContext), or a [`SharedContext`] to share one allocation).
    pub fn with_context(mut self, context: impl Into<SharedContext>) -> Self {
        self.root.set_context(context);
        self
    }

    /// Numbers [`recorded`](Self::recorded) positions from `position + 1` instead of 1.
    pub fn after_position(mut self, position: u64) -> Self {
        self.after_position = position;
        self
    }

    /// Adds events (one event, the aggregate's event enum, or a `Vec`, `Option` or tuple
    /// of those) and applies them to the state.
    pub fn event(mut self, events: impl IntoEvents<A>) -> Self {
        events.record_into(&mut self.root);
        self
    }

    /// Like [`event`](Self::event), through a mutable reference.
    pub fn push(&mut self, events: impl IntoEvents<A>) -> &mut Self {
        events.record_into(&mut self.root);
        self
    }

    /// The aggregate id.
    pub fn aggregate_id(&self) -> Uuid {
        self.root.id()
    }

    /// The version of the last event added (0 before the first).
    pub fn version(&self) -> u64 {
        self.root.version()
    }

    /// The state after every event added so far.
    pub fn state(&self) -> &A {
        self.root.state()
    }

    /// The events as recorded on an aggregate, ready to append to a store.
    pub fn uncommitted(&self) -> Vec<UncommittedEvent> {
        self.root.uncommitted().to_vec()
    }

    /// The events as a store returns them: positions follow the versions (from
    /// [`after_position`](Self::after_position)` + 1`) and `stored_at` is `occurred_at`.
    pub fn recorded(&self) -> Vec<RecordedEvent> {
        self.root
            .uncommitted()
            .iter()
            .zip(self.after_position + 1..)
            .map(|(event, position)| {
                let stored_at = event.envelope.occurred_at;
                RecordedEvent::from_uncommitted(event.clone(), position, stored_at)
            })
            .collect()
    }

    /// An aggregate root loaded with these events as its history (nothing uncommitted),
    /// as a repository would return it.
    pub fn into_root(mut self) -> AggregateRoot<A> {
        self.root.mark_committed();
        self.root
    }
}

/// The global log of several aggregates, in the order events are added: each event gets
/// the next version of its own stream and the next global position.
///
/// This is the "given" of scenarios that span aggregates (read models, process
/// managers): build the history, then feed [`events`](Self::events) to what you test, or
/// [`append_to`](Self::append_to) a store.
///
/// ```
/// # use eventsource_test::__doc_order::*;
/// use eventsource_test::History;
/// use uuid::Uuid;
///
/// let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
/// let history = History::new()
///     .event(a, OrderCreated { customer: "ada".into(), total: 10.0 })
///     .event(b, OrderCreated { customer: "bob".into(), total: 20.0 })
///     .event(a, OrderShipped { tracking: "T-1".into() });
/// let shipped = &history.events()[2];
/// assert_eq!((shipped.aggregate_id(), shipped.aggregate_version(), shipped.position), (a, 2, 3));
/// assert_eq!(history.version_of("Order", b), 1);
/// ```
#[derive(Debug)]
pub struct History {
    clock: Arc<dyn Clock>,
    context: SharedContext,
    events: Vec<RecordedEvent>,
    versions: HashMap<(Cow<'static, str>, Uuid), u64>,
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    /// An empty history with a fresh [`TestClock`].
    pub fn new() -> Self {
        History {
            clock: Arc::new(TestClock::new()),
            context: SharedContext::default(),
            events: Vec::new(),
            versions: HashMap::new(),
        }
    }

    /// Takes event ids and timestamps from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Stamps `context` on events added from now on (an [`EventContext`](eventsource::EventContext), or a
    /// [`SharedContext`] to share one allocation).
    pub fn with_context(mut self, context: impl Into<SharedContext>) -> Self {
        self.context = context.into();
        self
    }

    /// Adds `event` to the stream of aggregate `aggregate_id` (of type
    /// [`E::AGGREGATE_TYPE`](DomainEvent::AGGREGATE_TYPE)).
    pub fn event<E: DomainEvent>(mut self, aggregate_id: Uuid, event: E) -> Self {
        self.push(aggregate_id, event);
        self
    }

    /// Like [`event`](Self::event), through a mutable reference.
    pub fn push<E: DomainEvent>(&mut self, aggregate_id: Uuid, event: E) -> &mut Self {
        let version = self
            .versions
            .entry((Cow::Borrowed(E::AGGREGATE_TYPE), aggregate_id))
            .or_insert(0);
        *version += 1;
        let occurred_at = self.clock.now();
        let envelope = EventEnvelope {
            event_id: self.clock.new_event_id(),
            event_name: Cow::Borrowed(E::NAME),
            schema_version: E::VERSION,
            aggregate_id,
            aggregate_type: Cow::Borrowed(E::AGGREGATE_TYPE),
            aggregate_version: *version,
            occurred_at,
            context: self.context.clone(),
        };
        let position = self.events.len() as u64 + 1;
        self.events.push(RecordedEvent {
            envelope,
            payload: Payload::typed(event),
            position,
            stored_at: occurred_at,
        });
        self
    }

    /// Every event, in global order (positions 1, 2, ...).
    pub fn events(&self) -> &[RecordedEvent] {
        &self.events
    }

    /// The events, each in an `Arc` as stores return them.
    pub fn to_shared(&self) -> Vec<Arc<RecordedEvent>> {
        self.events.iter().cloned().map(Arc::new).collect()
    }

    /// The events of one stream, oldest first.
    pub fn stream(&self, aggregate_type: &str, aggregate_id: Uuid) -> Vec<&RecordedEvent> {
        self.events
            .iter()
            .filter(|e| {
                e.aggregate_id() == aggregate_id && e.envelope.aggregate_type == aggregate_type
            })
            .collect()
    }

    /// The version of a stream (0 when it has no event).
    pub fn version_of(&self, aggregate_type: &str, aggregate_id: Uuid) -> u64 {
        self.versions
            .get(&(Cow::Borrowed(aggregate_type), aggregate_id))
            .copied()
            .unwrap_or(0)
    }

    /// Appends every event to `store` in order, one batch per run of consecutive events
    /// of one stream, each expecting the stream at the version before it. Returns the
    /// store's position after the last append (the store assigns its own positions).
    ///
    /// # Errors
    /// What the store returns (a conflict if the store already holds one of the streams).
    pub async fn append_to<S: EventStore + ?Sized>(&self, store: &S) -> Result<u64, StoreError> {
        let mut position = 0;
        let mut rest = self.events.as_slice();
        while let Some(first) = rest.first() {
            let same_stream = |e: &RecordedEvent| {
                e.aggregate_id() == first.aggregate_id()
                    && e.envelope.aggregate_type == first.envelope.aggregate_type
            };
            let run = rest.iter().take_while(|e| same_stream(e)).count();
            let batch: Vec<UncommittedEvent> = rest[..run]
                .iter()
                .map(|e| UncommittedEvent {
                    envelope: e.envelope.clone(),
                    payload: e.payload.clone(),
                })
                .collect();
            let expected = ExpectedVersion::Exact(first.aggregate_version() - 1);
            let result = store
                .append(
                    &first.envelope.aggregate_type,
                    first.aggregate_id(),
                    expected,
                    &batch,
                )
                .await?;
            position = result.global_position();
            rest = &rest[run..];
        }
        Ok(position)
    }
}
