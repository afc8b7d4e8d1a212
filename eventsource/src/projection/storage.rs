//! Where projections keep their progress and their failures: checkpoints and the
//! dead-letter queue.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::StoreError;
use crate::event::RecordedEvent;

/// How far a projection has read the global log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The projection's name.
    pub projection: String,
    /// The position of the last event the projection is done with.
    pub position: u64,
    /// That event's id.
    pub event_id: Option<Uuid>,
    /// When the checkpoint was written.
    pub updated_at: DateTime<Utc>,
}

/// Stores one checkpoint per projection.
///
/// Contract: `save` replaces the projection's checkpoint; `load` of an unknown projection
/// is `None`; `reset` removes it (the next run starts from the beginning).
#[async_trait]
pub trait CheckpointRepository: Send + Sync {
    /// The projection's checkpoint, if any.
    ///
    /// # Errors
    /// Backend errors.
    async fn load(&self, projection: &str) -> Result<Option<Checkpoint>, StoreError>;
    /// Records that the projection is done with the event at `position`.
    ///
    /// # Errors
    /// Backend errors.
    async fn save(
        &self,
        projection: &str,
        position: u64,
        event_id: Option<Uuid>,
    ) -> Result<(), StoreError>;
    /// Forgets the projection's checkpoint.
    ///
    /// # Errors
    /// Backend errors.
    async fn reset(&self, projection: &str) -> Result<(), StoreError>;
    /// Every checkpoint, by projection name.
    ///
    /// # Errors
    /// Backend errors.
    async fn list(&self) -> Result<Vec<Checkpoint>, StoreError>;
}

/// Checkpoints in memory.
#[derive(Debug, Default)]
pub struct InMemoryCheckpointRepository {
    checkpoints: Mutex<BTreeMap<String, Checkpoint>>,
}

impl InMemoryCheckpointRepository {
    /// No checkpoint.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl CheckpointRepository for InMemoryCheckpointRepository {
    async fn load(&self, projection: &str) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self
            .checkpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(projection)
            .cloned())
    }

    async fn save(
        &self,
        projection: &str,
        position: u64,
        event_id: Option<Uuid>,
    ) -> Result<(), StoreError> {
        let checkpoint = Checkpoint {
            projection: projection.to_owned(),
            position,
            event_id,
            updated_at: Utc::now(),
        };
        self.checkpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(projection.to_owned(), checkpoint);
        Ok(())
    }

    async fn reset(&self, projection: &str) -> Result<(), StoreError> {
        self.checkpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(projection);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Checkpoint>, StoreError> {
        Ok(self
            .checkpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect())
    }
}

/// Where a dead letter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeadLetterStatus {
    /// Every attempt failed; waiting for someone.
    Failed,
    /// Being re-delivered.
    Retrying,
    /// Dealt with (re-delivered successfully, or resolved by hand).
    Resolved,
}

impl DeadLetterStatus {
    /// `"failed"`, `"retrying"` or `"resolved"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterStatus::Failed => "failed",
            DeadLetterStatus::Retrying => "retrying",
            DeadLetterStatus::Resolved => "resolved",
        }
    }

    /// Parses [`as_str`](Self::as_str).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "failed" => Some(DeadLetterStatus::Failed),
            "retrying" => Some(DeadLetterStatus::Retrying),
            "resolved" => Some(DeadLetterStatus::Resolved),
            _ => None,
        }
    }
}

/// An event a projection could not handle, with why and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedEvent {
    /// The event.
    pub event_id: Uuid,
    /// The projection that failed on it.
    pub projection: String,
    /// The stored event name.
    pub event_name: String,
    /// The event's global position.
    pub position: u64,
    /// The payload as JSON text.
    pub payload: String,
    /// The last error message.
    pub error: String,
    /// Attempts made in all (across failures).
    pub attempts: u32,
    /// When it first failed.
    pub first_failed_at: DateTime<Utc>,
    /// When it last failed.
    pub last_failed_at: DateTime<Utc>,
    /// Where it stands.
    pub status: DeadLetterStatus,
    /// Who resolved it.
    pub resolved_by: Option<String>,
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Which dead letters to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// Only this projection's.
    pub projection: Option<String>,
    /// Only in this status.
    pub status: Option<DeadLetterStatus>,
}

/// Counts of dead letters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DlqStats {
    /// By status.
    pub by_status: BTreeMap<&'static str, u64>,
    /// By projection.
    pub by_projection: BTreeMap<String, u64>,
}

/// The dead-letter queue of projections.
///
/// Contract: rows are keyed by (event id, projection). `record_failure` upserts: a second
/// failure of the same event in the same projection updates the error, adds the attempts,
/// moves `last_failed_at`, sets the status back to failed and keeps `first_failed_at`.
#[async_trait]
pub trait DlqRepository: Send + Sync {
    /// Records that `projection` failed on `event` after `attempts` attempts.
    ///
    /// # Errors
    /// Backend errors; a payload that cannot be serialized.
    async fn record_failure(
        &self,
        event: &RecordedEvent,
        projection: &str,
        error: &str,
        attempts: u32,
    ) -> Result<FailedEvent, StoreError>;
    /// Dead letters matching `filter`, oldest position first.
    ///
    /// # Errors
    /// Backend errors.
    async fn list(&self, filter: &DeadLetterFilter) -> Result<Vec<FailedEvent>, StoreError>;
    /// One dead letter.
    ///
    /// # Errors
    /// Backend errors.
    async fn get(
        &self,
        event_id: Uuid,
        projection: &str,
    ) -> Result<Option<FailedEvent>, StoreError>;
    /// Moves a dead letter to `status` (`by` is recorded when resolving). `false` when
    /// there is no such row.
    ///
    /// # Errors
    /// Backend errors.
    async fn set_status(
        &self,
        event_id: Uuid,
        projection: &str,
        status: DeadLetterStatus,
        by: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Counts by status and by projection.
    ///
    /// # Errors
    /// Backend errors.
    async fn stats(&self) -> Result<DlqStats, StoreError>;
    /// Deletes resolved rows; returns how many.
    ///
    /// # Errors
    /// Backend errors.
    async fn delete_resolved(&self) -> Result<u64, StoreError>;
}

/// The dead-letter queue in memory.
#[derive(Debug, Default)]
pub struct InMemoryDlqRepository {
    rows: Mutex<BTreeMap<(Uuid, String), FailedEvent>>,
}

impl InMemoryDlqRepository {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The payload of a dead letter as JSON text.
pub(crate) fn payload_text(event: &RecordedEvent) -> Result<String, StoreError> {
    event
        .payload
        .to_json()
        .map(|text| text.into_owned())
        .map_err(|source| StoreError::Serialize {
            name: event.name().to_owned(),
            source,
        })
}

/// Counts rows into stats.
pub(crate) fn stats_of<'a>(rows: impl Iterator<Item = &'a FailedEvent>) -> DlqStats {
    let mut stats = DlqStats::default();
    for row in rows {
        *stats.by_status.entry(row.status.as_str()).or_default() += 1;
        *stats
            .by_projection
            .entry(row.projection.clone())
            .or_default() += 1;
    }
    stats
}

#[async_trait]
impl DlqRepository for InMemoryDlqRepository {
    async fn record_failure(
        &self,
        event: &RecordedEvent,
        projection: &str,
        error: &str,
        attempts: u32,
    ) -> Result<FailedEvent, StoreError> {
        let payload = payload_text(event)?;
        let now = Utc::now();
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        let row = rows
            .entry((event.event_id(), projection.to_owned()))
            .and_modify(|row| {
                row.error = error.to_owned();
                row.attempts += attempts;
                row.last_failed_at = now;
                row.status = DeadLetterStatus::Failed;
                row.resolved_by = None;
                row.resolved_at = None;
            })
            .or_insert_with(|| FailedEvent {
                event_id: event.event_id(),
                projection: projection.to_owned(),
                event_name: event.name().to_owned(),
                position: event.position,
                payload,
                error: error.to_owned(),
                attempts,
                first_failed_at: now,
                last_failed_at: now,
                status: DeadLetterStatus::Failed,
                resolved_by: None,
                resolved_at: None,
            });
        Ok(row.clone())
    }

    async fn list(&self, filter: &DeadLetterFilter) -> Result<Vec<FailedEvent>, StoreError> {
        let rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        let mut found: Vec<FailedEvent> = rows
            .values()
            .filter(|row| {
                filter
                    .projection
                    .as_ref()
                    .is_none_or(|p| *p == row.projection)
            })
            .filter(|row| filter.status.is_none_or(|s| s == row.status))
            .cloned()
            .collect();
        found.sort_by(|a, b| {
            a.position
                .cmp(&b.position)
                .then_with(|| a.projection.cmp(&b.projection))
        });
        Ok(found)
    }

    async fn get(
        &self,
        event_id: Uuid,
        projection: &str,
    ) -> Result<Option<FailedEvent>, StoreError> {
        Ok(self
            .rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(event_id, projection.to_owned()))
            .cloned())
    }

    async fn set_status(
        &self,
        event_id: Uuid,
        projection: &str,
        status: DeadLetterStatus,
        by: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(row) = rows.get_mut(&(event_id, projection.to_owned())) else {
            return Ok(false);
        };
        row.status = status;
        if status == DeadLetterStatus::Resolved {
            row.resolved_by = by.map(str::to_owned);
            row.resolved_at = Some(Utc::now());
        }
        Ok(true)
    }

    async fn stats(&self) -> Result<DlqStats, StoreError> {
        Ok(stats_of(
            self.rows
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values(),
        ))
    }

    async fn delete_resolved(&self) -> Result<u64, StoreError> {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        let before = rows.len();
        rows.retain(|_, row| row.status != DeadLetterStatus::Resolved);
        Ok((before - rows.len()) as u64)
    }
}
