//! Snapshots: an aggregate's state at a version, so loads replay only what came after.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::StoreError;

/// An aggregate's serialized state at a version.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: Uuid,
    /// The version of the last event folded into `state`.
    pub version: u64,
    /// The version of the state's shape; a snapshot of another shape is ignored.
    pub state_version: u32,
    /// The state as JSON text.
    pub state: String,
    /// When it was taken.
    pub taken_at: DateTime<Utc>,
}

/// Where snapshots are kept. At most one snapshot per aggregate: saving replaces it.
#[async_trait]
pub trait SnapshotStore: Send + Sync {
    /// The aggregate's snapshot, if any.
    ///
    /// # Errors
    /// Backend errors.
    async fn load_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<Option<Snapshot>, StoreError>;

    /// Stores `snapshot`, replacing an older one (a snapshot never replaces a newer one).
    ///
    /// # Errors
    /// Backend errors.
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError>;

    /// Removes the aggregate's snapshot.
    ///
    /// # Errors
    /// Backend errors.
    async fn delete_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<(), StoreError>;
}

/// Snapshots in memory.
#[derive(Debug, Default)]
pub struct InMemorySnapshotStore {
    snapshots: RwLock<HashMap<(String, Uuid), Snapshot>>,
}

impl InMemorySnapshotStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many snapshots are kept.
    pub fn len(&self) -> usize {
        self.snapshots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no snapshot is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl SnapshotStore for InMemorySnapshotStore {
    async fn load_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<Option<Snapshot>, StoreError> {
        Ok(self
            .snapshots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(aggregate_type.to_owned(), aggregate_id))
            .cloned())
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let mut snapshots = self
            .snapshots
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (snapshot.aggregate_type.clone(), snapshot.aggregate_id);
        if snapshots
            .get(&key)
            .is_none_or(|old| old.version <= snapshot.version)
        {
            snapshots.insert(key, snapshot);
        }
        Ok(())
    }

    async fn delete_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<(), StoreError> {
        self.snapshots
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(aggregate_type.to_owned(), aggregate_id));
        Ok(())
    }
}
