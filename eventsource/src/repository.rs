//! Loading and saving aggregates through an event store.

use std::marker::PhantomData;
use std::sync::Arc;

use uuid::Uuid;

use crate::aggregate::{Aggregate, AggregateRoot};
use crate::bus::EventBus;
use crate::error::RepositoryError;
use crate::snapshot::{Snapshot, SnapshotStore};
use crate::store::{AppendOutcome, EventStore, ExpectedVersion};

/// Loads aggregates by replaying their stream and saves the events recorded on them.
///
/// `S` is any [`EventStore`]: a concrete store, an `Arc` of one, or `Arc<dyn EventStore>`.
///
/// With [`with_snapshots`](Self::with_snapshots), loads start from the aggregate's latest
/// snapshot and replay only the events after it, and saves take a new snapshot every
/// `every` versions.
pub struct AggregateRepository<A, S> {
    store: S,
    bus: Option<Arc<dyn EventBus>>,
    snapshots: Option<Snapshots<A>>,
    _aggregate: PhantomData<fn() -> A>,
}

/// Snapshot settings, with the state's serde functions captured where `A: Serialize`.
struct Snapshots<A> {
    store: Arc<dyn SnapshotStore>,
    every: u64,
    state_version: u32,
    encode: fn(&A) -> Result<String, serde_json::Error>,
    decode: fn(&str) -> Result<A, serde_json::Error>,
}

impl<A> Clone for Snapshots<A> {
    fn clone(&self) -> Self {
        Snapshots {
            store: Arc::clone(&self.store),
            every: self.every,
            state_version: self.state_version,
            encode: self.encode,
            decode: self.decode,
        }
    }
}

impl<A, S: Clone> Clone for AggregateRepository<A, S> {
    fn clone(&self) -> Self {
        AggregateRepository {
            store: self.store.clone(),
            bus: self.bus.clone(),
            snapshots: self.snapshots.clone(),
            _aggregate: PhantomData,
        }
    }
}

impl<A, S> AggregateRepository<A, S>
where
    A: Aggregate + serde::Serialize + serde::de::DeserializeOwned,
    S: EventStore,
{
    /// Keeps a snapshot of the state in `store` every `every` versions (at least 1), and
    /// starts loads from it.
    ///
    /// `state_version` names the shape of `A`: bump it when `A` changes incompatibly and
    /// older snapshots are ignored. A snapshot that fails to decode is ignored too (the
    /// aggregate is replayed from its first event, and a warning logged): a snapshot is
    /// a cache, never the record.
    pub fn with_snapshots(
        mut self,
        store: Arc<dyn SnapshotStore>,
        every: u64,
        state_version: u32,
    ) -> Self {
        self.snapshots = Some(Snapshots {
            store,
            every: every.max(1),
            state_version,
            encode: |state| serde_json::to_string(state),
            decode: |text| serde_json::from_str(text),
        });
        self
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
            snapshots: None,
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
        let mut root = match &self.snapshots {
            Some(snapshots) => Self::from_snapshot(snapshots, id).await?,
            None => AggregateRoot::new(id),
        };
        let stream = self.store.read_stream(A::TYPE, id, root.version()).await?;
        root.load_from_history(stream.events.iter().map(|event| &**event))?;
        tracing::trace!(aggregate_type = A::TYPE, %id, version = root.version(), "aggregate loaded");
        Ok(root)
    }

    async fn from_snapshot(
        snapshots: &Snapshots<A>,
        id: Uuid,
    ) -> Result<AggregateRoot<A>, RepositoryError> {
        let Some(snapshot) = snapshots.store.load_snapshot(A::TYPE, id).await? else {
            return Ok(AggregateRoot::new(id));
        };
        if snapshot.state_version != snapshots.state_version {
            tracing::debug!(aggregate_type = A::TYPE, %id, "snapshot of another state version ignored");
            return Ok(AggregateRoot::new(id));
        }
        match (snapshots.decode)(&snapshot.state) {
            Ok(state) => Ok(AggregateRoot::from_state(id, snapshot.version, state)),
            Err(error) => {
                tracing::warn!(aggregate_type = A::TYPE, %id, %error, "undecodable snapshot ignored; replaying from the start");
                Ok(AggregateRoot::new(id))
            }
        }
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

    /// Saves a snapshot; a failure is logged, never returned (the events are stored).
    async fn take_snapshot(snapshots: &Snapshots<A>, root: &AggregateRoot<A>, version: u64) {
        let state = match (snapshots.encode)(root.state()) {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(aggregate_type = A::TYPE, id = %root.id(), %error, "snapshot not taken: state does not serialize");
                return;
            }
        };
        let snapshot = Snapshot {
            aggregate_type: A::TYPE.to_owned(),
            aggregate_id: root.id(),
            version,
            state_version: snapshots.state_version,
            state,
            taken_at: chrono::Utc::now(),
        };
        if let Err(error) = snapshots.store.save_snapshot(snapshot).await {
            tracing::warn!(aggregate_type = A::TYPE, id = %root.id(), %error, "snapshot not saved");
        }
    }

    /// Appends the root's uncommitted events, expecting the stream to be at
    /// [`committed_version`](AggregateRoot::committed_version), then publishes them to the
    /// bus (if any) and clears them. With nothing uncommitted it does nothing.
    ///
    /// Returns the [`AppendOutcome`]: the new version and the global positions of the
    /// events, not the stored events themselves. Without a bus the store does not hand
    /// them back at all, which spares a reference count per event; read them with
    /// [`EventStore::read_stream`] or follow the log when they are needed.
    ///
    /// # Errors
    /// A [conflict](RepositoryError::is_conflict) when someone saved the aggregate in
    /// between (the root keeps its uncommitted events; reload and retry the command);
    /// other store errors; [`RepositoryError::Publish`] when the events were stored but
    /// the bus failed (the root is cleared then, as the events are stored).
    pub async fn save(
        &self,
        root: &mut AggregateRoot<A>,
    ) -> Result<AppendOutcome, RepositoryError> {
        if !root.has_uncommitted() {
            return Ok(AppendOutcome {
                new_version: root.version(),
                ..AppendOutcome::default()
            });
        }
        let expected = ExpectedVersion::Exact(root.committed_version());
        let id = root.id();
        // Takes the events only once they are stored: on error the root keeps them. Only
        // a bus needs the stored events back.
        let (outcome, stored) = match &self.bus {
            Some(_) => {
                let result = self
                    .store
                    .append_taking(A::TYPE, id, expected, root.uncommitted_mut())
                    .await?;
                (result.outcome(), result.events)
            }
            None => {
                let outcome = self
                    .store
                    .append_taking_outcome(A::TYPE, id, expected, root.uncommitted_mut())
                    .await?;
                (outcome, Vec::new())
            }
        };
        if let Some(snapshots) = &self.snapshots {
            let previous = outcome.new_version.saturating_sub(outcome.count);
            if outcome.new_version / snapshots.every > previous / snapshots.every {
                Self::take_snapshot(snapshots, root, outcome.new_version).await;
            }
        }
        tracing::debug!(
            aggregate_type = A::TYPE,
            id = %root.id(),
            version = outcome.new_version,
            position = outcome.global_position(),
            "aggregate saved"
        );
        if let Some(bus) = &self.bus
            && let Err(source) = bus.publish(&stored).await
        {
            return Err(RepositoryError::Publish {
                last_position: outcome.global_position(),
                source,
            });
        }
        Ok(outcome)
    }
}
