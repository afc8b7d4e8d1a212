//! SQLite event store (feature `sqlite`): the embedded default.
//!
//! One file, WAL mode, durable commits by default. Appends go through a single writer
//! connection inside `BEGIN IMMEDIATE` transactions, so positions are assigned in commit
//! order and a reader following the log never misses an event; readers use their own
//! connections and never see half an append.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    AppendResult, EventStore, ExpectedVersion, ReadAll, StreamEvents, classify_stored,
    validate_batch,
};
use crate::error::{ConcurrencyError, StoreError};
use crate::event::{EventEnvelope, Payload, RecordedEvent, UncommittedEvent};

const BACKEND: &str = "sqlite";

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS eventsource_events (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        event_name TEXT NOT NULL,
        schema_version INTEGER NOT NULL,
        aggregate_type TEXT NOT NULL,
        aggregate_id TEXT NOT NULL,
        aggregate_version INTEGER NOT NULL,
        occurred_at INTEGER NOT NULL,
        stored_at INTEGER NOT NULL,
        tenant_id TEXT,
        correlation_id TEXT,
        causation_id TEXT,
        actor_id TEXT,
        metadata TEXT NOT NULL,
        payload TEXT NOT NULL,
        UNIQUE (aggregate_type, aggregate_id, aggregate_version)
    )",
    "CREATE INDEX IF NOT EXISTS eventsource_events_tenant ON eventsource_events (tenant_id, position)",
    "CREATE TABLE IF NOT EXISTS eventsource_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        position INTEGER NOT NULL UNIQUE REFERENCES eventsource_events (position),
        created_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        status TEXT NOT NULL DEFAULT 'pending'
    )",
    "CREATE INDEX IF NOT EXISTS eventsource_outbox_pending ON eventsource_outbox (status, id)",
    "CREATE TABLE IF NOT EXISTS eventsource_checkpoints (
        projection TEXT PRIMARY KEY,
        position INTEGER NOT NULL,
        event_id TEXT,
        updated_at INTEGER NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS eventsource_dead_letters (
        event_id TEXT NOT NULL,
        projection TEXT NOT NULL,
        event_name TEXT NOT NULL,
        position INTEGER NOT NULL,
        payload TEXT NOT NULL,
        error TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        first_failed_at INTEGER NOT NULL,
        last_failed_at INTEGER NOT NULL,
        status TEXT NOT NULL,
        resolved_by TEXT,
        resolved_at INTEGER,
        PRIMARY KEY (event_id, projection)
    )",
];

/// How a [`SqliteEventStore`] opens its file.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// `synchronous=FULL` (every commit reaches the disk; the default) when `true`,
    /// `synchronous=NORMAL` (a power loss may drop the last commits, never corrupt) when `false`.
    pub durable: bool,
    /// Connections for reads (at least 1).
    pub readers: u32,
    /// How long a connection waits for another process's lock.
    pub busy_timeout: Duration,
    /// Write an outbox row for every appended event, in the same transaction.
    pub outbox: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durable: true,
            readers: 4,
            busy_timeout: Duration::from_secs(5),
            outbox: false,
        }
    }
}

/// An [`EventStore`] in a SQLite file.
///
/// ```no_run
/// # async fn demo() -> Result<(), eventsource::StoreError> {
/// use eventsource::{EventStore, SqliteEventStore};
/// let store = SqliteEventStore::open("events.sqlite").await?;
/// store.migrate().await?; // creates the tables once; safe to call on every start
/// assert_eq!(store.current_position().await?, 0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteEventStore {
    writer: SqlitePool,
    reader: SqlitePool,
    path: PathBuf,
    outbox: bool,
    appended: Arc<Notify>,
}

impl std::fmt::Debug for SqliteEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteEventStore")
            .field("path", &self.path)
            .field("outbox", &self.outbox)
            .finish()
    }
}

fn backend(error: sqlx::Error) -> StoreError {
    let transient = match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLITE_BUSY / SQLITE_LOCKED: another process holds the lock.
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("5" | "6" | "517")),
        _ => false,
    };
    StoreError::backend(BACKEND, transient, error)
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn corrupt(position: u64, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        position,
        reason: reason.into(),
    }
}

fn uuid_column(row: &SqliteRow, column: &str, position: u64) -> Result<Option<Uuid>, StoreError> {
    let text: Option<String> = row.try_get(column).map_err(backend)?;
    text.map(|t| Uuid::parse_str(&t).map_err(|e| corrupt(position, format!("{column}: {e}"))))
        .transpose()
}

fn time_column(row: &SqliteRow, column: &str, position: u64) -> Result<DateTime<Utc>, StoreError> {
    let value: i64 = row.try_get(column).map_err(backend)?;
    DateTime::from_timestamp_micros(value)
        .ok_or_else(|| corrupt(position, format!("{column} out of range: {value}")))
}

fn decode_row(row: &SqliteRow) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.try_get("position").map_err(backend)?;
    let position =
        u64::try_from(position).map_err(|_| corrupt(0, format!("negative position {position}")))?;
    let required = |column: &str| -> Result<Uuid, StoreError> {
        uuid_column(row, column, position)?
            .ok_or_else(|| corrupt(position, format!("{column} is NULL")))
    };
    let metadata: String = row.try_get("metadata").map_err(backend)?;
    let schema_version: i64 = row.try_get("schema_version").map_err(backend)?;
    let version: i64 = row.try_get("aggregate_version").map_err(backend)?;
    let envelope = EventEnvelope {
        event_id: required("event_id")?,
        event_name: row
            .try_get::<String, _>("event_name")
            .map_err(backend)?
            .into(),
        schema_version: u32::try_from(schema_version)
            .map_err(|_| corrupt(position, "schema_version out of range"))?,
        aggregate_id: required("aggregate_id")?,
        aggregate_type: row
            .try_get::<String, _>("aggregate_type")
            .map_err(backend)?
            .into(),
        aggregate_version: u64::try_from(version)
            .map_err(|_| corrupt(position, "aggregate_version out of range"))?,
        occurred_at: time_column(row, "occurred_at", position)?,
        tenant_id: row.try_get("tenant_id").map_err(backend)?,
        correlation_id: uuid_column(row, "correlation_id", position)?,
        causation_id: uuid_column(row, "causation_id", position)?,
        actor_id: row.try_get("actor_id").map_err(backend)?,
        metadata: serde_json::from_str(&metadata)
            .map_err(|e| corrupt(position, format!("metadata: {e}")))?,
    };
    Ok(RecordedEvent {
        envelope,
        payload: Payload::Json(row.try_get("payload").map_err(backend)?),
        position,
        stored_at: time_column(row, "stored_at", position)?,
    })
}

fn decode_rows(rows: &[SqliteRow]) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
    rows.iter()
        .map(|row| decode_row(row).map(Arc::new))
        .collect()
}

/// One event as an element of the JSON array a page query returns.
#[derive(serde::Deserialize)]
struct PageRow<'a>(
    u64,
    Uuid,
    #[serde(borrow)] Cow<'a, str>,
    u32,
    #[serde(borrow)] Cow<'a, str>,
    Uuid,
    u64,
    i64,
    i64,
    Option<String>,
    Option<Uuid>,
    Option<Uuid>,
    Option<String>,
    Option<crate::event::Metadata>,
    #[serde(borrow)] Option<&'a serde_json::value::RawValue>,
);

/// Turns the rows the inner query selects into one JSON text: fetching one value instead
/// of a row per event saves the driver a thread hand-off per event. Invalid JSON in a
/// column becomes `null` and is reported as corrupt instead of failing the query.
macro_rules! page_query {
    ($inner:literal) => {
        concat!(
            "SELECT COALESCE(json_group_array(json_array(position, event_id, event_name, schema_version, \
             aggregate_type, aggregate_id, aggregate_version, occurred_at, stored_at, tenant_id, correlation_id, \
             causation_id, actor_id, CASE WHEN json_valid(metadata) THEN json(metadata) END, \
             CASE WHEN json_valid(payload) THEN json(payload) END) ORDER BY position), '[]') FROM (",
            $inner,
            ")"
        )
    };
}

fn decode_page(text: &str) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
    let rows: Vec<PageRow<'_>> =
        serde_json::from_str(text).map_err(|e| corrupt(0, format!("page does not decode: {e}")))?;
    rows.into_iter()
        .map(|row| {
            let position = row.0;
            let time = |micros: i64, column: &str| {
                DateTime::from_timestamp_micros(micros)
                    .ok_or_else(|| corrupt(position, format!("{column} out of range: {micros}")))
            };
            let metadata = row
                .13
                .ok_or_else(|| corrupt(position, "metadata is not valid JSON"))?;
            let payload = row
                .14
                .ok_or_else(|| corrupt(position, "payload is not valid JSON"))?;
            let (event_name, aggregate_type) = super::stored_names(&row.2, &row.4);
            Ok(Arc::new(RecordedEvent {
                envelope: EventEnvelope {
                    event_id: row.1,
                    event_name,
                    schema_version: row.3,
                    aggregate_type,
                    aggregate_id: row.5,
                    aggregate_version: row.6,
                    occurred_at: time(row.7, "occurred_at")?,
                    tenant_id: row.9,
                    correlation_id: row.10,
                    causation_id: row.11,
                    actor_id: row.12,
                    metadata,
                },
                payload: Payload::Json(payload.get().to_owned()),
                position,
                stored_at: time(row.8, "stored_at")?,
            }))
        })
        .collect()
}

fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::backend(
            BACKEND,
            false,
            format!("{what} {value} exceeds SQLite's integer range"),
        )
    })
}

impl SqliteEventStore {
    /// Opens (creating if missing) the database file with [`SqliteOptions::default`].
    /// Call [`migrate`](Self::migrate) before first use.
    ///
    /// # Errors
    /// When the file cannot be opened.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// Opens the database file with explicit options.
    ///
    /// # Errors
    /// When the file cannot be opened.
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let connect = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if options.durable {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect.clone())
            .await
            .map_err(backend)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.readers.max(1))
            .connect_with(connect.read_only(true))
            .await
            .map_err(backend)?;
        Ok(SqliteEventStore {
            writer,
            reader,
            path,
            outbox: options.outbox,
            appended: Arc::new(Notify::new()),
        })
    }

    /// Creates the tables and indexes if they do not exist. Idempotent.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await.map_err(backend)?;
        for statement in SCHEMA {
            sqlx::query(*statement)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The writer pool (one connection), for read models that want to live in the same file.
    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }

    /// Publishes up to `limit` pending outbox rows, oldest first, to `bus`, and marks them
    /// published. When the bus fails, the rows stay pending with the error and their attempt
    /// count; after `max_attempts` they are marked failed (and reported by
    /// [`outbox_counts`](Self::outbox_counts)). Returns how many rows were published.
    /// Call it in a loop (or on the store's append signal) to relay continuously.
    ///
    /// The outbox is written only when the store was opened with [`SqliteOptions::outbox`].
    ///
    /// # Errors
    /// Backend errors.
    pub async fn relay_outbox(
        &self,
        bus: &dyn crate::bus::EventBus,
        limit: usize,
        max_attempts: u32,
    ) -> Result<usize, StoreError> {
        let page: String = sqlx::query_scalar(page_query!(
            "SELECT e.* FROM eventsource_outbox o JOIN eventsource_events e ON e.position = o.position \
             WHERE o.status = 'pending' ORDER BY o.id LIMIT ?1"
        ))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_one(&self.writer)
        .await
        .map_err(backend)?;
        let events = decode_page(&page)?;
        if events.is_empty() {
            return Ok(0);
        }
        let positions = serde_json::to_string(
            &events.iter().map(|e| e.position).collect::<Vec<_>>(),
        )
        .map_err(|source| StoreError::Serialize {
            name: "outbox".into(),
            source,
        })?;
        match bus.publish(&events).await {
            Ok(()) => {
                sqlx::query(
                    "UPDATE eventsource_outbox SET status = 'published', attempts = attempts + 1 \
                     WHERE position IN (SELECT value FROM json_each(?1))",
                )
                .bind(&positions)
                .execute(&self.writer)
                .await
                .map_err(backend)?;
                Ok(events.len())
            }
            Err(error) => {
                tracing::warn!(%error, rows = events.len(), "outbox relay: publish failed");
                sqlx::query(
                    "UPDATE eventsource_outbox SET attempts = attempts + 1, last_error = ?2, \
                     status = CASE WHEN attempts + 1 >= ?3 THEN 'failed' ELSE 'pending' END \
                     WHERE position IN (SELECT value FROM json_each(?1))",
                )
                .bind(&positions)
                .bind(error.to_string())
                .bind(i64::from(max_attempts))
                .execute(&self.writer)
                .await
                .map_err(backend)?;
                Ok(0)
            }
        }
    }

    /// Outbox rows by status (`pending`, `published`, `failed`).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn outbox_counts(
        &self,
    ) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) FROM eventsource_outbox GROUP BY status")
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|row| {
                let count: i64 = row.try_get(1).map_err(backend)?;
                Ok((
                    row.try_get(0).map_err(backend)?,
                    u64::try_from(count).unwrap_or(0),
                ))
            })
            .collect()
    }

    /// Deletes published outbox rows; returns how many.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn purge_published_outbox(&self) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM eventsource_outbox WHERE status = 'published'")
            .execute(&self.writer)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    /// Closes every connection (after which the store fails every call).
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    async fn stored_with_ids(
        tx: &mut Transaction<'static, Sqlite>,
        ids_json: &str,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        let rows = sqlx::query(
            "SELECT position, event_id, event_name, schema_version, aggregate_type, aggregate_id, \
             aggregate_version, occurred_at, stored_at, tenant_id, correlation_id, causation_id, actor_id, metadata, payload \
             FROM eventsource_events WHERE event_id IN (SELECT value FROM json_each(?1)) ORDER BY position",
        )
        .bind(ids_json)
        .fetch_all(&mut **tx)
        .await
        .map_err(backend)?;
        decode_rows(&rows)
    }

    async fn version_in(
        tx: &mut Transaction<'static, Sqlite>,
        aggregate_type: &str,
        id: &str,
    ) -> Result<u64, StoreError> {
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(aggregate_version), 0) FROM eventsource_events WHERE aggregate_type = ?1 AND aggregate_id = ?2",
        )
        .bind(aggregate_type)
        .bind(id)
        .fetch_one(&mut **tx)
        .await
        .map_err(backend)?;
        Ok(u64::try_from(version).unwrap_or(0))
    }

    /// The batch as one JSON array, inserted with a single statement whatever its size.
    fn batch_json(events: &[UncommittedEvent]) -> Result<String, StoreError> {
        let rows = events
            .iter()
            .map(|event| {
                let envelope = &event.envelope;
                let payload = event
                    .payload
                    .to_json()
                    .map_err(|source| StoreError::Serialize {
                        name: envelope.event_name.to_string(),
                        source,
                    })?;
                let metadata = serde_json::to_string(&envelope.metadata).map_err(|source| {
                    StoreError::Serialize {
                        name: envelope.event_name.to_string(),
                        source,
                    }
                })?;
                Ok(serde_json::json!({
                    "id": envelope.event_id.to_string(),
                    "name": envelope.event_name,
                    "sv": envelope.schema_version,
                    "at": micros(envelope.occurred_at),
                    "tenant": envelope.tenant_id,
                    "corr": envelope.correlation_id.map(|id| id.to_string()),
                    "caus": envelope.causation_id.map(|id| id.to_string()),
                    "actor": envelope.actor_id,
                    "meta": metadata,
                    "payload": payload,
                }))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        serde_json::to_string(&rows).map_err(|source| StoreError::Serialize {
            name: "batch".into(),
            source,
        })
    }
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        events: &[UncommittedEvent],
    ) -> Result<AppendResult, StoreError> {
        validate_batch(aggregate_type, aggregate_id, events)?;
        let batch = Self::batch_json(events)?;
        let ids = serde_json::to_string(
            &events
                .iter()
                .map(|e| e.envelope.event_id.to_string())
                .collect::<Vec<_>>(),
        )
        .map_err(|source| StoreError::Serialize {
            name: "batch".into(),
            source,
        })?;
        let id = aggregate_id.to_string();

        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let actual = Self::version_in(&mut tx, aggregate_type, &id).await?;
        if !events.is_empty() {
            let stored = Self::stored_with_ids(&mut tx, &ids).await?;
            let retry = classify_stored(aggregate_type, aggregate_id, events, |event_id| {
                stored.iter().find(|e| e.event_id() == event_id).cloned()
            })?;
            if let Some(stored) = retry {
                tx.rollback().await.map_err(backend)?;
                return Ok(AppendResult {
                    new_version: actual,
                    events: stored,
                    already_stored: true,
                });
            }
        }
        if !expected.matches(actual) {
            tx.rollback().await.map_err(backend)?;
            return Err(ConcurrencyError {
                aggregate_type: aggregate_type.to_owned(),
                aggregate_id,
                expected,
                actual,
            }
            .into());
        }
        if events.is_empty() {
            tx.rollback().await.map_err(backend)?;
            return Ok(AppendResult {
                new_version: actual,
                events: Vec::new(),
                already_stored: false,
            });
        }
        let stored_at = Utc::now();
        let rows = sqlx::query(
            "INSERT INTO eventsource_events (event_id, event_name, schema_version, aggregate_type, aggregate_id, \
             aggregate_version, occurred_at, stored_at, tenant_id, correlation_id, causation_id, actor_id, metadata, payload) \
             SELECT json_extract(value, '$.id'), json_extract(value, '$.name'), json_extract(value, '$.sv'), ?2, ?3, \
             ?4 + key + 1, json_extract(value, '$.at'), ?5, json_extract(value, '$.tenant'), json_extract(value, '$.corr'), \
             json_extract(value, '$.caus'), json_extract(value, '$.actor'), json_extract(value, '$.meta'), \
             json_extract(value, '$.payload') \
             FROM json_each(?1) ORDER BY key \
             RETURNING position, aggregate_version",
        )
        .bind(&batch)
        .bind(aggregate_type)
        .bind(&id)
        .bind(to_i64(actual, "version")?)
        .bind(micros(stored_at))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        if self.outbox {
            sqlx::query(
                "INSERT INTO eventsource_outbox (position, created_at) \
                 SELECT position, ?3 FROM eventsource_events WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND aggregate_version > ?4",
            )
            .bind(aggregate_type)
            .bind(&id)
            .bind(micros(stored_at))
            .bind(to_i64(actual, "version")?)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        self.appended.notify_waiters();

        let mut positions = vec![0u64; events.len()];
        for row in &rows {
            let position: i64 = row.try_get(0).map_err(backend)?;
            let version: i64 = row.try_get(1).map_err(backend)?;
            let index = usize::try_from(version - to_i64(actual, "version")? - 1)
                .ok()
                .filter(|i| *i < positions.len())
                .ok_or_else(|| corrupt(0, format!("insert returned version {version}")))?;
            positions[index] =
                u64::try_from(position).map_err(|_| corrupt(0, "negative position"))?;
        }
        let recorded = events
            .iter()
            .zip(positions)
            .enumerate()
            .map(|(i, (event, position))| {
                let mut envelope = event.envelope.clone();
                envelope.aggregate_version = actual + i as u64 + 1;
                Arc::new(RecordedEvent {
                    envelope,
                    payload: event.payload.clone(),
                    position,
                    stored_at,
                })
            })
            .collect();
        Ok(AppendResult {
            new_version: actual + events.len() as u64,
            events: recorded,
            already_stored: false,
        })
    }

    async fn read_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        after_version: u64,
    ) -> Result<StreamEvents, StoreError> {
        let page: String = sqlx::query_scalar(page_query!(
            "SELECT * FROM eventsource_events WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND aggregate_version > ?3"
        ))
        .bind(aggregate_type)
        .bind(aggregate_id.to_string())
        .bind(to_i64(after_version, "version")?)
        .fetch_one(&self.reader)
        .await
        .map_err(backend)?;
        let events = decode_page(&page)?;
        let version = match events.last() {
            Some(last) => last.aggregate_version(),
            None => self.stream_version(aggregate_type, aggregate_id).await?,
        };
        Ok(StreamEvents { events, version })
    }

    async fn read_all_batch(
        &self,
        query: &ReadAll,
        after: u64,
        max: usize,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        let types = (!query.aggregate_types.is_empty())
            .then(|| serde_json::to_string(&query.aggregate_types))
            .transpose()
            .map_err(|source| StoreError::Serialize {
                name: "filter".into(),
                source,
            })?;
        let page: String = sqlx::query_scalar(page_query!(
            "SELECT * FROM eventsource_events WHERE position > ?1 \
             AND (?2 IS NULL OR aggregate_type IN (SELECT value FROM json_each(?2))) \
             AND (?3 IS NULL OR tenant_id = ?3) \
             ORDER BY position LIMIT ?4"
        ))
        .bind(to_i64(after, "position")?)
        .bind(types)
        .bind(query.tenant_id.as_deref())
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_one(&self.reader)
        .await
        .map_err(backend)?;
        decode_page(&page)
    }

    async fn stream_version(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<u64, StoreError> {
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(aggregate_version), 0) FROM eventsource_events WHERE aggregate_type = ?1 AND aggregate_id = ?2",
        )
        .bind(aggregate_type)
        .bind(aggregate_id.to_string())
        .fetch_one(&self.reader)
        .await
        .map_err(backend)?;
        Ok(u64::try_from(version).unwrap_or(0))
    }

    async fn current_position(&self) -> Result<u64, StoreError> {
        let position: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM eventsource_events")
                .fetch_one(&self.reader)
                .await
                .map_err(backend)?;
        Ok(u64::try_from(position).unwrap_or(0))
    }

    async fn event_exists(&self, event_id: Uuid) -> Result<bool, StoreError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM eventsource_events WHERE event_id = ?1")
                .bind(event_id.to_string())
                .fetch_optional(&self.reader)
                .await
                .map_err(backend)?;
        Ok(found.is_some())
    }

    fn append_signal(&self) -> Option<Arc<Notify>> {
        Some(Arc::clone(&self.appended))
    }
}

/// Projection checkpoints in the store's SQLite file (tables created by
/// [`SqliteEventStore::migrate`]).
#[derive(Debug, Clone)]
pub struct SqliteCheckpointRepository {
    pool: SqlitePool,
}

impl SqliteCheckpointRepository {
    /// Checkpoints next to `store`'s events.
    pub fn new(store: &SqliteEventStore) -> Self {
        SqliteCheckpointRepository {
            pool: store.writer.clone(),
        }
    }
}

fn checkpoint_row(row: &SqliteRow) -> Result<crate::projection::Checkpoint, StoreError> {
    let position: i64 = row.try_get("position").map_err(backend)?;
    let position = u64::try_from(position).map_err(|_| corrupt(0, "negative checkpoint"))?;
    Ok(crate::projection::Checkpoint {
        projection: row.try_get("projection").map_err(backend)?,
        position,
        event_id: uuid_column(row, "event_id", position)?,
        updated_at: time_column(row, "updated_at", position)?,
    })
}

#[async_trait]
impl crate::projection::CheckpointRepository for SqliteCheckpointRepository {
    async fn load(
        &self,
        projection: &str,
    ) -> Result<Option<crate::projection::Checkpoint>, StoreError> {
        let row = sqlx::query("SELECT * FROM eventsource_checkpoints WHERE projection = ?1")
            .bind(projection)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(checkpoint_row).transpose()
    }

    async fn save(
        &self,
        projection: &str,
        position: u64,
        event_id: Option<Uuid>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO eventsource_checkpoints (projection, position, event_id, updated_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (projection) DO UPDATE SET position = excluded.position, event_id = excluded.event_id, \
             updated_at = excluded.updated_at",
        )
        .bind(projection)
        .bind(to_i64(position, "position")?)
        .bind(event_id.map(|id| id.to_string()))
        .bind(micros(Utc::now()))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn reset(&self, projection: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM eventsource_checkpoints WHERE projection = ?1")
            .bind(projection)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<crate::projection::Checkpoint>, StoreError> {
        let rows = sqlx::query("SELECT * FROM eventsource_checkpoints ORDER BY projection")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(checkpoint_row).collect()
    }
}

/// The projections' dead-letter queue in the store's SQLite file (tables created by
/// [`SqliteEventStore::migrate`]).
#[derive(Debug, Clone)]
pub struct SqliteDlqRepository {
    pool: SqlitePool,
}

impl SqliteDlqRepository {
    /// Dead letters next to `store`'s events.
    pub fn new(store: &SqliteEventStore) -> Self {
        SqliteDlqRepository {
            pool: store.writer.clone(),
        }
    }
}

fn dead_letter_row(row: &SqliteRow) -> Result<crate::projection::FailedEvent, StoreError> {
    use crate::projection::{DeadLetterStatus, FailedEvent};
    let position: i64 = row.try_get("position").map_err(backend)?;
    let position = u64::try_from(position).map_err(|_| corrupt(0, "negative position"))?;
    let status: String = row.try_get("status").map_err(backend)?;
    let attempts: i64 = row.try_get("attempts").map_err(backend)?;
    let resolved_at: Option<i64> = row.try_get("resolved_at").map_err(backend)?;
    Ok(FailedEvent {
        event_id: uuid_column(row, "event_id", position)?
            .ok_or_else(|| corrupt(position, "event_id is NULL"))?,
        projection: row.try_get("projection").map_err(backend)?,
        event_name: row.try_get("event_name").map_err(backend)?,
        position,
        payload: row.try_get("payload").map_err(backend)?,
        error: row.try_get("error").map_err(backend)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| corrupt(position, "attempts out of range"))?,
        first_failed_at: time_column(row, "first_failed_at", position)?,
        last_failed_at: time_column(row, "last_failed_at", position)?,
        status: DeadLetterStatus::parse(&status)
            .ok_or_else(|| corrupt(position, format!("unknown status {status}")))?,
        resolved_by: row.try_get("resolved_by").map_err(backend)?,
        resolved_at: resolved_at
            .map(|m| {
                DateTime::from_timestamp_micros(m)
                    .ok_or_else(|| corrupt(position, "resolved_at out of range"))
            })
            .transpose()?,
    })
}

#[async_trait]
impl crate::projection::DlqRepository for SqliteDlqRepository {
    async fn record_failure(
        &self,
        event: &RecordedEvent,
        projection: &str,
        error: &str,
        attempts: u32,
    ) -> Result<crate::projection::FailedEvent, StoreError> {
        let payload = crate::projection::payload_text(event)?;
        let now = micros(Utc::now());
        let row = sqlx::query(
            "INSERT INTO eventsource_dead_letters (event_id, projection, event_name, position, payload, error, attempts, \
             first_failed_at, last_failed_at, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 'failed') \
             ON CONFLICT (event_id, projection) DO UPDATE SET error = excluded.error, \
             attempts = eventsource_dead_letters.attempts + excluded.attempts, last_failed_at = excluded.last_failed_at, \
             status = 'failed', resolved_by = NULL, resolved_at = NULL \
             RETURNING *",
        )
        .bind(event.event_id().to_string())
        .bind(projection)
        .bind(event.name())
        .bind(to_i64(event.position, "position")?)
        .bind(payload)
        .bind(error)
        .bind(i64::from(attempts))
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        dead_letter_row(&row)
    }

    async fn list(
        &self,
        filter: &crate::projection::DeadLetterFilter,
    ) -> Result<Vec<crate::projection::FailedEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM eventsource_dead_letters WHERE (?1 IS NULL OR projection = ?1) AND (?2 IS NULL OR status = ?2) \
             ORDER BY position, projection",
        )
        .bind(filter.projection.as_deref())
        .bind(filter.status.map(|s| s.as_str()))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(dead_letter_row).collect()
    }

    async fn get(
        &self,
        event_id: Uuid,
        projection: &str,
    ) -> Result<Option<crate::projection::FailedEvent>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM eventsource_dead_letters WHERE event_id = ?1 AND projection = ?2",
        )
        .bind(event_id.to_string())
        .bind(projection)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(dead_letter_row).transpose()
    }

    async fn set_status(
        &self,
        event_id: Uuid,
        projection: &str,
        status: crate::projection::DeadLetterStatus,
        by: Option<&str>,
    ) -> Result<bool, StoreError> {
        let resolved = status == crate::projection::DeadLetterStatus::Resolved;
        let done = sqlx::query(
            "UPDATE eventsource_dead_letters SET status = ?3, \
             resolved_by = CASE WHEN ?4 THEN ?5 ELSE resolved_by END, \
             resolved_at = CASE WHEN ?4 THEN ?6 ELSE resolved_at END \
             WHERE event_id = ?1 AND projection = ?2",
        )
        .bind(event_id.to_string())
        .bind(projection)
        .bind(status.as_str())
        .bind(resolved)
        .bind(by)
        .bind(micros(Utc::now()))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn stats(&self) -> Result<crate::projection::DlqStats, StoreError> {
        let all = self
            .list(&crate::projection::DeadLetterFilter::default())
            .await?;
        Ok(crate::projection::stats_of(all.iter()))
    }

    async fn delete_resolved(&self) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM eventsource_dead_letters WHERE status = 'resolved'")
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }
}
