//! Loading and saving aggregates through an event store.

use std::marker::PhantomData;
use std::sync::Arc;

use uuid::Uuid;

use crate::aggregate::{Aggregate, AggregateRoot};
use crate::bus::EventBus;
use crate::error::RepositoryError;
use crate::store::{AppendResult, EventStore, ExpectedVersion};

/// Loads aggregates by replaying their stream and saves the events recorded on them.
///
/// `S` is any [`EventStore`]: a concrete store, an `Arc` of one, or `Arc<dyn EventStore>`.
pub struct AggregateRepository<A, S> {
    store: S,
    bus: Option<Arc<dyn EventBus>>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A, S: Clone> Clone for AggregateRepository<A, S> {
    fn clone(&self) -> Self {
        AggregateRepository {
            store: self.store.clone(),
            bus: self.bus.clone(),
            _aggregate: PhantomData,
        }
    }
}

impl<A, S> std::fmt::Debug for AggregateRepository<A, S>
where
    A: Aggregate,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateRepository")
            .field("aggregate_type", &A::TYPE)
            .field("bus", &self.bus.is_some())
            .finish()
    }
}

impl<A: Aggregate, S: EventStore> AggregateRepository<A, S> {
    /// A repository over `store`, without a bus.
    pub fn new(store: S) -> Self {
        AggregateRepository {
            store,
            bus: None,
            _aggregate: PhantomData,
        }
    }

    /// Publishes saved events to `bus` after each successful append.
    pub fn with_bus(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Replays the aggregate's stream.
    ///
    /// # Errors
    /// [`RepositoryError::NotFound`] when the stream has no event; store and apply errors.
    pub async fn load(&self, id: Uuid) -> Result<AggregateRoot<A>, RepositoryError> {
        let root = self.load_or_create(id).await?;
        if root.version() == 0 {
            return Err(RepositoryError::NotFound {
                aggregate_type: A::TYPE,
                aggregate_id: id,
            });
        }
        Ok(root)
    }

    /// Replays the aggregate's stream, or returns a new aggregate at version 0.
    ///
    /// # Errors
    /// Store and apply errors.
    pub async fn load_or_create(&self, id: Uuid) -> Result<AggregateRoot<A>, RepositoryError> {
        let stream = self.store.read_stream(A::TYPE, id, 0).await?;
        let mut root = AggregateRoot::new(id);
        root.load_from_history(stream.events.iter().map(|event| &**event))?;
        tracing::trace!(aggregate_type = A::TYPE, %id, version = root.version(), "aggregate loaded");
        Ok(root)
    }

    /// Whether the aggregate has any event.
    ///
    /// # Errors
    /// Store errors.
    pub async fn exists(&self, id: Uuid) -> Result<bool, RepositoryError> {
        Ok(self.version(id).await? > 0)
    }

    /// The aggregate's stored version (0 when it does not exist).
    ///
    /// # Errors
    /// Store errors.
    pub async fn version(&self, id: Uuid) -> Result<u64, RepositoryError> {
        Ok(self.store.stream_version(A::TYPE, id).await?)
    }

    /// Appends the root's uncommitted events, expecting the stream to be at
    /// [`committed_version`](AggregateRoot::committed_version), then publishes them to the
    /// bus (if any) and clears them. With nothing uncommitted it does nothing.
    ///
    /// # Errors
    /// A [conflict](RepositoryError::is_conflict) when someone saved the aggregate in
    /// between (the root keeps its uncommitted events; reload and retry the command);
    /// other store errors; [`RepositoryError::Publish`] when the events were stored but
    /// the bus failed (the root is cleared then, as the events are stored).
    pub async fn save(&self, root: &mut AggregateRoot<A>) -> Result<AppendResult, RepositoryError> {
        if !root.has_uncommitted() {
            return Ok(AppendResult {
                new_version: root.version(),
                events: Vec::new(),
                already_stored: false,
            });
        }
        let expected = ExpectedVersion::Exact(root.committed_version());
        let events = root.uncommitted().to_vec();
        let result = self.store.append(A::TYPE, root.id(), expected, events).await?;
        root.mark_committed();
        tracing::debug!(
            aggregate_type = A::TYPE,
            id = %root.id(),
            version = result.new_version,
            position = result.global_position(),
            "aggregate saved"
        );
        if let Some(bus) = &self.bus {
            if let Err(source) = bus.publish(&result.events).await {
                return Err(RepositoryError::Publish {
                    last_position: result.global_position(),
                    source,
                });
            }
        }
        Ok(result)
    }
}
