//! An aggregate's repository over a fresh in-memory store, with a deterministic clock.

use std::sync::Arc;

use eventsource::{
    Aggregate, AggregateEvent, AggregateRepository, AggregateRoot, AppendOutcome, ApplyError,
    InMemoryEventStore, RecordedEvent, RepositoryError, StoreError,
};
use uuid::Uuid;

use crate::builder::History;
use crate::clock::TestClock;

/// Everything a test of one aggregate type needs: an [`InMemoryEventStore`], an
/// [`AggregateRepository`] over it, and a [`TestClock`] stamped on every aggregate it
/// creates or loads, so ids and timestamps are reproducible.
///
/// ```
/// # use eventsource_test::__doc_order::*;
/// use eventsource_test::AggregateTestHelper;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), eventsource::RepositoryError> {
/// let orders = AggregateTestHelper::<Order>::new();
/// let mut order = orders.create();
/// order.execute(|o| o.create("ada", 50.0)).unwrap();
/// orders.save(&mut order).await?;
///
/// let names: Vec<_> = orders.events(order.id()).iter().map(|e| e.name().to_owned()).collect();
/// assert_eq!(names, ["doc.order_created"]);
/// let loaded = orders.load(order.id()).await?;
/// assert_eq!(loaded.version(), 1);
/// orders.clear();
/// assert!(orders.events(order.id()).is_empty());
/// # Ok(())
/// # }
/// ```
pub struct AggregateTestHelper<A: Aggregate> {
    store: Arc<InMemoryEventStore>,
    repository: AggregateRepository<A, Arc<InMemoryEventStore>>,
    clock: Arc<TestClock>,
}

impl<A: Aggregate> Default for AggregateTestHelper<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Aggregate> std::fmt::Debug for AggregateTestHelper<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateTestHelper")
            .field("aggregate_type", &A::TYPE)
            .field("store", &self.store)
            .finish()
    }
}

impl<A: Aggregate> AggregateTestHelper<A> {
    /// A helper over an empty store with a fresh [`TestClock`].
    pub fn new() -> Self {
        Self::with_clock(Arc::new(TestClock::new()))
    }

    /// A helper whose aggregates take ids and timestamps from `clock`.
    pub fn with_clock(clock: Arc<TestClock>) -> Self {
        let store = Arc::new(InMemoryEventStore::new());
        AggregateTestHelper {
            repository: AggregateRepository::new(Arc::clone(&store)),
            store,
            clock,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<InMemoryEventStore> {
        &self.store
    }

    /// The repository.
    pub fn repository(&self) -> &AggregateRepository<A, Arc<InMemoryEventStore>> {
        &self.repository
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<TestClock> {
        &self.clock
    }

    /// Appends a [`History`] (events of any number of aggregates, of any type) to the
    /// store: the "given" of a test that loads several aggregates. Returns the store's
    /// position after it.
    ///
    /// # Errors
    /// What the store returns (a conflict if one of the streams already has events).
    pub async fn given(&self, history: &History) -> Result<u64, StoreError> {
        history.append_to(&*self.store).await
    }

    /// A new aggregate (version 0) with an id from the clock.
    pub fn create(&self) -> AggregateRoot<A> {
        self.create_with_id(eventsource::Clock::new_event_id(&*self.clock))
    }

    /// A new aggregate (version 0) with the given id.
    pub fn create_with_id(&self, id: Uuid) -> AggregateRoot<A> {
        let mut root = AggregateRoot::new(id);
        root.set_clock(self.clock.clone());
        root
    }

    /// Saves the aggregate's uncommitted events.
    ///
    /// # Errors
    /// As [`AggregateRepository::save`] (a conflict when the stream moved on).
    pub async fn save(
        &self,
        root: &mut AggregateRoot<A>,
    ) -> Result<AppendOutcome, RepositoryError> {
        self.repository.save(root).await
    }

    /// Loads the aggregate from its events.
    ///
    /// # Errors
    /// As [`AggregateRepository::load`] ([`RepositoryError::NotFound`] without events).
    pub async fn load(&self, id: Uuid) -> Result<AggregateRoot<A>, RepositoryError> {
        let mut root = self.repository.load(id).await?;
        root.set_clock(self.clock.clone());
        Ok(root)
    }

    /// The stored events of aggregate `id` (of this helper's type), oldest first.
    pub fn events(&self, id: Uuid) -> Vec<Arc<RecordedEvent>> {
        self.store
            .all_events()
            .into_iter()
            .filter(|e| e.aggregate_id() == id && e.envelope.aggregate_type == A::TYPE)
            .collect()
    }

    /// The stored events of aggregate `id` as the aggregate's event enum.
    ///
    /// # Errors
    /// [`ApplyError`] when a stored event is not one the aggregate handles.
    pub fn typed_events(&self, id: Uuid) -> Result<Vec<A::Event>, ApplyError> {
        self.events(id)
            .iter()
            .map(|e| A::Event::from_stored(&e.envelope, &e.payload))
            .collect()
    }

    /// Removes every stored event and restarts the clock.
    pub fn clear(&self) {
        self.store.clear();
        self.clock.reset();
    }
}
