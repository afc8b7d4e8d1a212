//! SQLite event store (feature `sqlite`): the embedded default.
//!
//! One file, WAL mode, durable commits by default. Appends go through one dedicated writer
//! connection; an append is a single `INSERT` that reads, checks and extends the stream's
//! version itself and commits on its own, so positions are assigned in commit order and a
//! reader following the log never misses an event. Only a refused append (a version
//! conflict or a retried batch) takes a second look, in a `BEGIN IMMEDIATE` transaction.
//! Readers use their own connections and never see half an append.

use std::borrow::Cow;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use futures_util::future::MaybeDone;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row};
use tokio::sync::{Mutex, MutexGuard, Notify};
use uuid::Uuid;

use super::{
    AppendResult, BatchStream, EventPage, EventStore, EventStream, ExpectedVersion, ReadAll,
    StreamEvents, classify_stored, refuse_nul, validate_batch,
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

/// The columns an appended row gets, in the order the append statements give them.
macro_rules! insert_columns {
    () => {
        "INSERT INTO eventsource_events (event_id, event_name, schema_version, aggregate_type, aggregate_id, \
         aggregate_version, occurred_at, stored_at, tenant_id, correlation_id, causation_id, actor_id, metadata, payload) "
    };
}

/// The stream's current version, and whether it meets the expectation given as a kind
/// (0 any, 1 no stream, 2 an existing stream, 3 exactly) and a version, for the append
/// statements below (`$type`, `$id`, `$kind`, `$exact` are their parameter numbers).
macro_rules! current_version {
    ($type:literal, $id:literal, $kind:literal, $exact:literal) => {
        concat!(
            "(SELECT COALESCE(MAX(aggregate_version), 0) AS current FROM eventsource_events \
             WHERE aggregate_type = ?",
            $type,
            " AND aggregate_id = ?",
            $id,
            ") \
             WHERE CASE ?",
            $kind,
            " WHEN 0 THEN 1 WHEN 1 THEN current = 0 WHEN 2 THEN current > 0 \
             ELSE current = ?",
            $exact,
            " END"
        )
    };
}

/// Appends one event whose fields are bound one by one, if the stream's version meets
/// the expectation; returns its position and version (no row when the expectation
/// failed). One statement: SQLite commits it on its own, under the write lock it takes
/// before reading the version.
const APPEND_ONE: &str = concat!(
    insert_columns!(),
    "SELECT ?1, ?2, ?3, ?4, ?5, current + 1, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13 FROM ",
    current_version!("4", "5", "14", "15"),
    " RETURNING position, aggregate_version"
);

/// [`APPEND_ONE`] for a batch given as one JSON array, numbered in array order.
const APPEND_MANY: &str = concat!(
    insert_columns!(),
    "SELECT json_extract(value, '$.id'), json_extract(value, '$.name'), json_extract(value, '$.sv'), ?2, ?3, \
     current + key + 1, json_extract(value, '$.at'), ?4, json_extract(value, '$.tenant'), json_extract(value, '$.corr'), \
     json_extract(value, '$.caus'), json_extract(value, '$.actor'), json_extract(value, '$.meta'), \
     json_extract(value, '$.payload') FROM json_each(?1), ",
    current_version!("2", "3", "5", "6"),
    " ORDER BY key RETURNING position, aggregate_version"
);

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
/// WAL mode, durable commits by default ([`SqliteOptions::durable`]). Appends, the outbox,
/// checkpoints and dead letters go through one writer connection the store holds; an append
/// is one `INSERT` that checks the expected version and commits on its own. Reads use a
/// pool of read-only connections; [`read_all`](EventStore::read_all) reads one page ahead.
/// The guide is `docs/sqlite.md` in the repository.
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
    writer: Arc<Writer>,
    /// For the application's own tables ([`SqliteEventStore::pool`]); connects on first use.
    pool: SqlitePool,
    reader: SqlitePool,
    path: PathBuf,
    outbox: bool,
    appended: Arc<Notify>,
}

/// The one connection that writes: appends, the outbox, checkpoints and dead letters, one
/// call at a time in the order they ask. Held directly rather than in a pool, so a call is
/// its statements and nothing else (a pool checks a connection out and back in with a
/// round trip to the connection's thread each way).
struct Writer {
    connect: SqliteConnectOptions,
    slot: Mutex<WriterSlot>,
}

enum WriterSlot {
    Open(SqliteConnection),
    /// The connection's thread is gone; the next call connects again.
    Lost,
    /// [`SqliteEventStore::close`] was called.
    Closed,
}

/// The writer connection, held until dropped.
struct WriterGuard<'a>(MutexGuard<'a, WriterSlot>);

impl Writer {
    async fn connect(connect: SqliteConnectOptions) -> Result<Self, StoreError> {
        let connection = connect.connect().await.map_err(backend)?;
        Ok(Writer {
            connect,
            slot: Mutex::new(WriterSlot::Open(connection)),
        })
    }

    /// Waits for the connection (connecting again if it was lost).
    async fn lock(&self) -> Result<WriterGuard<'_>, StoreError> {
        let mut slot = self.slot.lock().await;
        match *slot {
            WriterSlot::Open(_) => {}
            WriterSlot::Lost => {
                *slot = WriterSlot::Open(self.connect.connect().await.map_err(backend)?);
            }
            WriterSlot::Closed => return Err(backend(sqlx::Error::PoolClosed)),
        }
        Ok(WriterGuard(slot))
    }

    async fn close(&self) {
        let mut slot = self.slot.lock().await;
        if let WriterSlot::Open(connection) = std::mem::replace(&mut *slot, WriterSlot::Closed) {
            // Closing flushes nothing that is not already committed; an error here
            // leaves nothing to undo.
            let _ = connection.close().await;
        }
    }
}

/// A statement with its arguments bound, for [`Writer`]'s one-statement calls.
type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

impl Writer {
    async fn fetch_optional(
        &self,
        query: SqliteQuery<'_>,
    ) -> Result<Option<SqliteRow>, StoreError> {
        let mut writer = self.lock().await?;
        let outcome = query
            .fetch_optional(writer.connection()?)
            .await
            .map_err(backend);
        writer.check(outcome)
    }

    async fn fetch_one(&self, query: SqliteQuery<'_>) -> Result<SqliteRow, StoreError> {
        let mut writer = self.lock().await?;
        let outcome = query.fetch_one(writer.connection()?).await.map_err(backend);
        writer.check(outcome)
    }

    async fn fetch_all(&self, query: SqliteQuery<'_>) -> Result<Vec<SqliteRow>, StoreError> {
        let mut writer = self.lock().await?;
        let outcome = query.fetch_all(writer.connection()?).await.map_err(backend);
        writer.check(outcome)
    }

    /// Runs the statement; returns how many rows it changed.
    async fn execute(&self, query: SqliteQuery<'_>) -> Result<u64, StoreError> {
        let mut writer = self.lock().await?;
        let outcome = query.execute(writer.connection()?).await.map_err(backend);
        writer.check(outcome).map(|done| done.rows_affected())
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl WriterGuard<'_> {
    /// The connection; `Err` only if [`WriterGuard::check`] marked it lost.
    fn connection(&mut self) -> Result<&mut SqliteConnection, StoreError> {
        match &mut *self.0 {
            WriterSlot::Open(connection) => Ok(connection),
            WriterSlot::Lost => Err(backend(sqlx::Error::WorkerCrashed)),
            WriterSlot::Closed => Err(backend(sqlx::Error::PoolClosed)),
        }
    }

    /// Passes `outcome` through, marking the connection lost if its thread is gone.
    fn check<T>(&mut self, outcome: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Backend { source, .. }) = &outcome
            && matches!(
                source.downcast_ref::<sqlx::Error>(),
                Some(sqlx::Error::WorkerCrashed)
            )
        {
            *self.0 = WriterSlot::Lost;
        }
        outcome
    }
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
        // A closed store stays closed: retrying cannot help.
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        // SQLITE_BUSY / SQLITE_LOCKED and their extended codes (the primary code is the
        // low byte): another connection or process holds the lock.
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
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

/// An event row packed into text, so that a page of events is one value: the driver hands
/// every value over from its connection thread one by one, and a value per event would
/// cost a thread hand-off per event. First the position and the four integer columns in
/// decimal, and whether all four hold integers (`1`, else `0`: `%d` would print anything
/// else as a number), each followed by `,`; then every text column as `<bytes>:<text>`
/// (`-1:` for NULL), so no value can run into the next whatever it holds. [`Packed`] reads
/// it back. Nothing is converted or validated in the database: text comes out as stored
/// and is checked in [`decode_packed`].
macro_rules! packed_event {
    () => {
        "format('%d,%d,%d,%d,%d,%d,%d:%s%d:%s%d:%s%d:%s%d:%s%d:%s%d:%s%d:%s%d:%s%d:%s', \
         position, schema_version, aggregate_version, occurred_at, stored_at, \
         typeof(schema_version) = 'integer' AND typeof(aggregate_version) = 'integer' \
         AND typeof(occurred_at) = 'integer' AND typeof(stored_at) = 'integer', \
         coalesce(octet_length(event_id), -1), event_id, \
         coalesce(octet_length(event_name), -1), event_name, \
         coalesce(octet_length(aggregate_type), -1), aggregate_type, \
         coalesce(octet_length(aggregate_id), -1), aggregate_id, \
         coalesce(octet_length(tenant_id), -1), tenant_id, \
         coalesce(octet_length(correlation_id), -1), correlation_id, \
         coalesce(octet_length(causation_id), -1), causation_id, \
         coalesce(octet_length(actor_id), -1), actor_id, \
         coalesce(octet_length(metadata), -1), metadata, \
         coalesce(octet_length(payload), -1), payload)"
    };
}

/// The events the inner query selects (from `eventsource_events`, in the order it gives
/// them) as one text value (NULL when there are none), how many there are, and the
/// greatest `$key` among them (where the next page starts).
macro_rules! packed_page {
    ($key:literal, $inner:literal) => {
        concat!(
            "SELECT group_concat(",
            packed_event!(),
            ", ''), count(*), max(",
            $key,
            ") FROM (",
            $inner,
            ")"
        )
    };
}

/// Up to `?4` of a stream's events after a version, in version order (the unique index's
/// order: no sort).
const READ_STREAM: &str = packed_page!(
    "aggregate_version",
    "SELECT * FROM eventsource_events WHERE aggregate_type = ?1 AND aggregate_id = ?2 \
     AND aggregate_version > ?3 ORDER BY aggregate_version LIMIT ?4"
);

/// A page of the global log after a position, in position order (the table's own order:
/// no sort), filtered by a JSON array of aggregate types and a tenant when given.
const READ_PAGE: &str = packed_page!(
    "position",
    "SELECT * FROM eventsource_events WHERE position > ?1 \
     AND (?2 IS NULL OR aggregate_type IN (SELECT value FROM json_each(?2))) \
     AND (?3 IS NULL OR tenant_id = ?3) ORDER BY position LIMIT ?4"
);

/// The events stored with the ids of a JSON array.
const BY_IDS: &str = packed_page!(
    "position",
    "SELECT * FROM eventsource_events WHERE event_id IN (SELECT value FROM json_each(?1))"
);

/// The events of the oldest pending outbox rows.
const OUTBOX_PAGE: &str = packed_page!(
    "position",
    "SELECT * FROM eventsource_events WHERE position IN \
     (SELECT position FROM eventsource_outbox WHERE status = 'pending' ORDER BY id LIMIT ?1)"
);

/// How many events of a stream one query of [`EventStore::read_stream`] reads: the next
/// query is sent as soon as one arrives, so SQLite packs the next while this one is
/// decoded.
const STREAM_CHUNK: u64 = 1000;

/// Reads events packed by [`packed_event!`] one column at a time.
struct Packed<'a> {
    rest: &'a str,
    /// The event being read, for errors.
    position: u64,
}

impl<'a> Packed<'a> {
    fn error(&self, column: &str, reason: &str) -> StoreError {
        corrupt(self.position, format!("{column}: {reason}"))
    }

    /// A decimal integer up to `end` (consumed).
    fn number(&mut self, column: &str, end: u8) -> Result<i64, StoreError> {
        let bytes = self.rest.as_bytes();
        let (negative, start) = match bytes.first() {
            Some(b'-') => (true, 1),
            _ => (false, 0),
        };
        let mut value: i64 = 0;
        let mut index = start;
        loop {
            match bytes.get(index) {
                Some(digit @ b'0'..=b'9') => {
                    value = value
                        .checked_mul(10)
                        .and_then(|value| value.checked_sub(i64::from(digit - b'0')))
                        .ok_or_else(|| self.error(column, "integer out of range"))?;
                }
                Some(byte) if *byte == end && index > start => break,
                Some(_) => return Err(self.error(column, "not an integer")),
                None => return Err(self.error(column, "the page ends inside the event")),
            }
            index += 1;
        }
        // Accumulated negated, so that i64::MIN fits.
        let value = if negative {
            value
        } else {
            value
                .checked_neg()
                .ok_or_else(|| self.error(column, "integer out of range"))?
        };
        self.rest = self.rest.get(index + 1..).unwrap_or_default();
        Ok(value)
    }

    /// The position of the next event and whether its integer columns hold integers, if
    /// there is one more event.
    fn next_event(&mut self) -> Result<Option<u64>, StoreError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let position = self.number("position", b',')?;
        self.position = u64::try_from(position).map_err(|_| self.error("position", "negative"))?;
        Ok(Some(self.position))
    }

    /// The next text column: its stored text, `None` for NULL.
    fn optional(&mut self, column: &str) -> Result<Option<&'a str>, StoreError> {
        let length = self.number(column, b':')?;
        let Ok(length) = usize::try_from(length) else {
            return Ok(None);
        };
        let (value, rest) = self
            .rest
            .split_at_checked(length)
            .ok_or_else(|| self.error(column, "the page ends inside the value"))?;
        self.rest = rest;
        Ok(Some(value))
    }

    fn text(&mut self, column: &str) -> Result<&'a str, StoreError> {
        self.optional(column)?
            .ok_or_else(|| self.error(column, "NULL"))
    }

    fn uuid(&mut self, column: &str) -> Result<Option<Uuid>, StoreError> {
        self.optional(column)?
            .map(|text| {
                Uuid::parse_str(text).map_err(|error| self.error(column, &error.to_string()))
            })
            .transpose()
    }

    fn time(&self, column: &str, micros: i64) -> Result<DateTime<Utc>, StoreError> {
        DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| self.error(column, &format!("out of range: {micros}")))
    }
}

/// The events of a page packed by [`packed_page!`], ordered by position. Every column is
/// checked: a NULL where a value is required, an integer column holding something else
/// or out of range, text that is not a UUID, metadata or a payload that is not JSON, all
/// make a [`StoreError::Corrupt`] naming the event's position and the column.
fn decode_packed(page: Option<&str>) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
    let Some(page) = page else {
        return Ok(Vec::new());
    };
    let mut packed = Packed {
        rest: page,
        position: 0,
    };
    let mut events = Vec::new();
    let mut contexts = super::ContextReader::default();
    while let Some(position) = packed.next_event()? {
        let schema_version = packed.number("schema_version", b',')?;
        let aggregate_version = packed.number("aggregate_version", b',')?;
        let occurred_at = packed.number("occurred_at", b',')?;
        let stored_at = packed.number("stored_at", b',')?;
        if packed.number("integer columns", b',')? != 1 {
            return Err(packed.error(
                "schema_version, aggregate_version, occurred_at or stored_at",
                "not an integer",
            ));
        }
        let event_id = packed
            .uuid("event_id")?
            .ok_or_else(|| packed.error("event_id", "NULL"))?;
        let event_name = packed.text("event_name")?;
        let (event_name, aggregate_type) =
            super::stored_names(event_name, packed.text("aggregate_type")?);
        let aggregate_id = packed
            .uuid("aggregate_id")?
            .ok_or_else(|| packed.error("aggregate_id", "NULL"))?;
        let context = super::ContextColumns {
            tenant_id: packed.optional("tenant_id")?,
            correlation_id: packed.uuid("correlation_id")?,
            causation_id: packed.uuid("causation_id")?,
            actor_id: packed.optional("actor_id")?,
            metadata: packed.text("metadata")?,
        };
        let context = contexts
            .read(context)
            .map_err(|error| packed.error("metadata", &error.to_string()))?;
        let payload = packed.text("payload")?;
        // Checked here, with the position at hand, rather than when a handler decodes it.
        serde_json::from_str::<serde::de::IgnoredAny>(payload)
            .map_err(|error| packed.error("payload", &format!("not valid JSON: {error}")))?;
        events.push(Arc::new(RecordedEvent {
            envelope: EventEnvelope {
                event_id,
                event_name,
                schema_version: u32::try_from(schema_version)
                    .map_err(|_| packed.error("schema_version", "out of range"))?,
                aggregate_type,
                aggregate_id,
                aggregate_version: u64::try_from(aggregate_version)
                    .map_err(|_| packed.error("aggregate_version", "out of range"))?,
                occurred_at: packed.time("occurred_at", occurred_at)?,
                context,
            },
            payload: Payload::Json(payload.to_owned()),
            position,
            stored_at: packed.time("stored_at", stored_at)?,
        }));
    }
    // The pages' inner queries give the rows in position order and the aggregate keeps
    // the order it is given, which SQLite does not promise: put it right if it did not.
    if !events.is_sorted_by_key(|event| event.position) {
        events.sort_unstable_by_key(|event| event.position);
    }
    Ok(events)
}

/// A page as SQLite returned it, not decoded yet.
struct RawPage {
    row: SqliteRow,
    /// How many events it holds.
    events: u64,
    /// The page's greatest key (position or version); `None` when it is empty.
    last: Option<u64>,
}

impl RawPage {
    /// Whether a page asked for `max` events is the last (shorter than asked).
    fn is_last(&self, max: u64) -> bool {
        self.events < max || self.last.is_none()
    }

    fn decode(&self) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        let page: Option<&str> = self
            .row
            .try_get(0)
            .map_err(|error| corrupt(0, format!("a page of events: {error}")))?;
        let events = decode_packed(page)?;
        // group_concat leaves out a NULL, so a row it could not pack would go missing.
        if events.len() as u64 != self.events {
            return Err(corrupt(
                events.first().map_or(0, |event| event.position),
                format!(
                    "a page of {} events packed {} of them",
                    self.events,
                    events.len()
                ),
            ));
        }
        Ok(events)
    }
}

/// Runs a [`packed_page!`] query.
async fn fetch_raw<'c, E>(query: SqliteQuery<'_>, executor: E) -> Result<RawPage, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    let row = query.fetch_one(executor).await.map_err(backend)?;
    let events: i64 = row.try_get(1).map_err(backend)?;
    let last: Option<i64> = row.try_get(2).map_err(backend)?;
    Ok(RawPage {
        events: u64::try_from(events).unwrap_or(0),
        last: last.map(|last| u64::try_from(last).unwrap_or(0)),
        row,
    })
}

/// The events of a [`packed_page!`] query.
async fn fetch_events<'c, E>(
    query: SqliteQuery<'_>,
    executor: E,
) -> Result<Vec<Arc<RecordedEvent>>, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    fetch_raw(query, executor).await?.decode()
}

/// A page being fetched, polled once at the start so that its query is sent at once.
type Fetch<'a> = MaybeDone<Pin<Box<dyn Future<Output = Result<RawPage, StoreError>> + Send + 'a>>>;

/// Polls `fetch` once, so SQLite works on it while the caller does something else.
fn send(fetch: &mut Fetch<'_>, cx: &mut Context<'_>) {
    // Pending is expected; a finished fetch keeps its outcome until it is taken.
    let _ = Pin::new(fetch).poll(cx);
}

/// Waits for `fetch` and takes its outcome.
fn finish(fetch: &mut Fetch<'_>, cx: &mut Context<'_>) -> Poll<Result<RawPage, StoreError>> {
    let mut fetch = Pin::new(fetch);
    ready!(fetch.as_mut().poll(cx));
    Poll::Ready(
        fetch
            .take_output()
            .unwrap_or_else(|| Err(backend(sqlx::Error::WorkerCrashed))),
    )
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
        let writer = Writer::connect(connect.clone()).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(connect.clone());
        // No ping on checkout: a read-ahead must send its query on its first poll, and a
        // SQLite connection has no server to lose (a dead connection thread fails the
        // query itself, and the pool replaces the connection).
        let reader = SqlitePoolOptions::new()
            .max_connections(options.readers.max(1))
            .test_before_acquire(false)
            .connect_with(connect.read_only(true))
            .await
            .map_err(backend)?;
        Ok(SqliteEventStore {
            writer: Arc::new(writer),
            pool,
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
        let mut writer = self.writer.lock().await?;
        let outcome = Self::create_schema(writer.connection()?).await;
        writer.check(outcome)
    }

    async fn create_schema(connection: &mut SqliteConnection) -> Result<(), StoreError> {
        let mut tx = connection.begin().await.map_err(backend)?;
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

    /// A pool of one connection to the file, for read models that want to live in the same
    /// file. It is not the connection appends use: its writes and the store's take turns
    /// through SQLite's lock, waiting up to [`SqliteOptions::busy_timeout`] for it.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
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
        let events = {
            let mut writer = self.writer.lock().await?;
            let page = fetch_events(
                sqlx::query(OUTBOX_PAGE).bind(i64::try_from(limit).unwrap_or(i64::MAX)),
                writer.connection()?,
            )
            .await;
            writer.check(page)?
        };
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
        // The writer is not held while the bus works: appends go on meanwhile.
        let published = bus.publish(&events).await;
        let update = match &published {
            Ok(()) => sqlx::query(
                "UPDATE eventsource_outbox SET status = 'published', attempts = attempts + 1 \
                 WHERE position IN (SELECT value FROM json_each(?1))",
            )
            .bind(&positions),
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
            }
        };
        let mut writer = self.writer.lock().await?;
        let done = update.execute(writer.connection()?).await.map_err(backend);
        writer.check(done)?;
        Ok(if published.is_ok() { events.len() } else { 0 })
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
        let mut writer = self.writer.lock().await?;
        let done = sqlx::query("DELETE FROM eventsource_outbox WHERE status = 'published'")
            .execute(writer.connection()?)
            .await
            .map_err(backend);
        Ok(writer.check(done)?.rows_affected())
    }

    /// Closes every connection (after which the store fails every call).
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
        self.reader.close().await;
    }

    /// The events stored with any of `events`' ids, oldest first.
    async fn stored_with_ids(
        connection: &mut SqliteConnection,
        events: &[UncommittedEvent],
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
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
        fetch_events(sqlx::query(BY_IDS).bind(ids), connection).await
    }

    async fn version_on(
        connection: &mut SqliteConnection,
        aggregate_type: &str,
        id: &str,
    ) -> Result<u64, StoreError> {
        let version: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(aggregate_version), 0) FROM eventsource_events WHERE aggregate_type = ?1 AND aggregate_id = ?2",
        )
        .bind(aggregate_type)
        .bind(id)
        .fetch_one(&mut *connection)
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
                Ok(serde_json::json!({
                    "id": envelope.event_id.to_string(),
                    "name": envelope.event_name,
                    "sv": envelope.schema_version,
                    "at": micros(envelope.occurred_at),
                    "tenant": envelope.context.tenant_id,
                    "corr": envelope.context.correlation_id.map(|id| id.to_string()),
                    "caus": envelope.context.causation_id.map(|id| id.to_string()),
                    "actor": envelope.context.actor_id,
                    "meta": metadata_json(event)?,
                    "payload": payload_json(event)?,
                }))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        serde_json::to_string(&rows).map_err(|source| StoreError::Serialize {
            name: "batch".into(),
            source,
        })
    }

    /// Runs the append statement: one `INSERT` that reads the stream's version, checks it
    /// against `expected` and numbers the events after it, returning each new row's
    /// position and version. No row means the expectation did not hold; a unique
    /// violation, that an id is already stored.
    async fn insert(
        connection: &mut SqliteConnection,
        aggregate_type: &str,
        id: &str,
        expected: ExpectedVersion,
        events: &[UncommittedEvent],
        stored_at: i64,
    ) -> Result<Result<Vec<SqliteRow>, sqlx::Error>, StoreError> {
        let (kind, exact) = match expected {
            ExpectedVersion::Any => (0, 0),
            ExpectedVersion::NoStream => (1, 0),
            ExpectedVersion::StreamExists => (2, 0),
            ExpectedVersion::Exact(version) => (3, to_i64(version, "version")?),
        };
        let query = match events {
            [event] => {
                let envelope = &event.envelope;
                sqlx::query(APPEND_ONE)
                    .bind(envelope.event_id.to_string())
                    .bind(envelope.event_name.as_ref())
                    .bind(i64::from(envelope.schema_version))
                    .bind(aggregate_type)
                    .bind(id)
                    .bind(micros(envelope.occurred_at))
                    .bind(stored_at)
                    .bind(envelope.context.tenant_id.as_deref())
                    .bind(envelope.context.correlation_id.map(|id| id.to_string()))
                    .bind(envelope.context.causation_id.map(|id| id.to_string()))
                    .bind(envelope.context.actor_id.as_deref())
                    .bind(metadata_json(event)?)
                    .bind(payload_json(event)?.into_owned())
                    .bind(kind)
                    .bind(exact)
            }
            _ => sqlx::query(APPEND_MANY)
                .bind(Self::batch_json(events)?)
                .bind(aggregate_type)
                .bind(id)
                .bind(stored_at)
                .bind(kind)
                .bind(exact),
        };
        Ok(query.fetch_all(connection).await)
    }

    /// Why an append the statement refused was refused, looked at under the write lock:
    /// `Ok(Some(_))` for an idempotent retry, `Err` for a conflict or a duplicate id,
    /// `Ok(None)` when neither holds any more (the stream moved on between the two looks).
    async fn refusal(
        connection: &mut SqliteConnection,
        aggregate_type: &str,
        aggregate_id: Uuid,
        id: &str,
        expected: ExpectedVersion,
        events: &[UncommittedEvent],
    ) -> Result<Option<AppendResult>, StoreError> {
        let actual = Self::version_on(connection, aggregate_type, id).await?;
        let stored = Self::stored_with_ids(connection, events).await?;
        let retry = classify_stored(aggregate_type, aggregate_id, events, |event_id| {
            stored.iter().find(|e| e.event_id() == event_id).cloned()
        })?;
        if let Some(stored) = retry {
            return Ok(Some(AppendResult::retried(actual, stored)));
        }
        if !expected.matches(actual) {
            return Err(ConcurrencyError {
                aggregate_type: aggregate_type.to_owned(),
                aggregate_id,
                expected,
                actual,
            }
            .into());
        }
        Ok(None)
    }

    /// The append on the writer connection: the statement alone when it succeeds (and no
    /// outbox row is due), otherwise a `BEGIN IMMEDIATE` transaction that finds out why it
    /// was refused, or inserts with the outbox rows.
    async fn append_on(
        &self,
        connection: &mut SqliteConnection,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        events: &[UncommittedEvent],
    ) -> Result<AppendResult, StoreError> {
        let id = aggregate_id.to_string();
        if events.is_empty() {
            let actual = Self::version_on(connection, aggregate_type, &id).await?;
            if !expected.matches(actual) {
                return Err(ConcurrencyError {
                    aggregate_type: aggregate_type.to_owned(),
                    aggregate_id,
                    expected,
                    actual,
                }
                .into());
            }
            return Ok(AppendResult {
                new_version: actual,
                events: Vec::new(),
                already_stored: false,
            });
        }
        let stored_at = Utc::now();
        if !self.outbox {
            match Self::insert(
                connection,
                aggregate_type,
                &id,
                expected,
                events,
                micros(stored_at),
            )
            .await?
            {
                Ok(rows) if !rows.is_empty() => {
                    self.appended.notify_waiters();
                    return recorded(events, &rows, stored_at);
                }
                Ok(_) => {}
                Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {}
                Err(error) => return Err(backend(error)),
            }
        }
        let mut tx = connection
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        if let Some(retried) =
            Self::refusal(&mut tx, aggregate_type, aggregate_id, &id, expected, events).await?
        {
            tx.rollback().await.map_err(backend)?;
            return Ok(retried);
        }
        // Under the write lock nothing moves: the expectation holds and no id is stored.
        let rows = Self::insert(
            &mut tx,
            aggregate_type,
            &id,
            ExpectedVersion::Any,
            events,
            micros(stored_at),
        )
        .await?
        .map_err(backend)?;
        if self.outbox {
            let positions = rows
                .iter()
                .map(|row| row.try_get::<i64, _>(0))
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            let positions =
                serde_json::to_string(&positions).map_err(|source| StoreError::Serialize {
                    name: "outbox".into(),
                    source,
                })?;
            sqlx::query(
                "INSERT INTO eventsource_outbox (position, created_at) SELECT value, ?2 FROM json_each(?1)",
            )
            .bind(positions)
            .bind(micros(stored_at))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        self.appended.notify_waiters();
        recorded(events, &rows, stored_at)
    }
}

/// One event's metadata as JSON text.
fn metadata_json(event: &UncommittedEvent) -> Result<String, StoreError> {
    serde_json::to_string(&event.envelope.context.metadata).map_err(|source| {
        StoreError::Serialize {
            name: event.envelope.event_name.to_string(),
            source,
        }
    })
}

/// One event's payload as JSON text.
fn payload_json(event: &UncommittedEvent) -> Result<Cow<'_, str>, StoreError> {
    event
        .payload
        .to_json()
        .map_err(|source| StoreError::Serialize {
            name: event.envelope.event_name.to_string(),
            source,
        })
}

/// The append's result from the rows the statement returned (position and version of
/// each new row, in no particular order).
fn recorded(
    events: &[UncommittedEvent],
    rows: &[SqliteRow],
    stored_at: DateTime<Utc>,
) -> Result<AppendResult, StoreError> {
    let unexpected = |what: String| StoreError::backend(BACKEND, false, what);
    if rows.len() != events.len() {
        return Err(unexpected(format!(
            "the append returned {} rows for {} events",
            rows.len(),
            events.len()
        )));
    }
    let returned = rows
        .iter()
        .map(|row| {
            let position: i64 = row.try_get(0).map_err(backend)?;
            let version: i64 = row.try_get(1).map_err(backend)?;
            match (u64::try_from(position), u64::try_from(version)) {
                // Versions start at 1: a 0 means the stream held a corrupt version.
                (Ok(position), Ok(version)) if version >= 1 => Ok((position, version)),
                _ => Err(unexpected(format!(
                    "the append returned position {position}, version {version}"
                ))),
            }
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    // The batch took the versions after the stream's: the least returned is the first.
    let first = returned
        .iter()
        .map(|(_, version)| *version)
        .min()
        .unwrap_or(1);
    let mut slots = vec![None; events.len()];
    for (position, version) in returned {
        let slot = usize::try_from(version - first)
            .ok()
            .and_then(|index| slots.get_mut(index))
            .filter(|slot| slot.is_none())
            .ok_or_else(|| {
                unexpected(format!(
                    "the append returned version {version} twice or out of range"
                ))
            })?;
        *slot = Some((position, version));
    }
    let events = events
        .iter()
        .zip(slots)
        .map(|(event, slot)| {
            let (position, version) =
                slot.ok_or_else(|| unexpected("the append left a version out".into()))?;
            let mut envelope = event.envelope.clone();
            envelope.aggregate_version = version;
            Ok(Arc::new(RecordedEvent {
                envelope,
                payload: event.payload.clone(),
                position,
                stored_at,
            }))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(AppendResult {
        new_version: first - 1 + events.len() as u64,
        events,
        already_stored: false,
    })
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
        refuse_nul(aggregate_type, aggregate_id, events)?;
        let mut writer = self.writer.lock().await?;
        let outcome = self
            .append_on(
                writer.connection()?,
                aggregate_type,
                aggregate_id,
                expected,
                events,
            )
            .await;
        writer.check(outcome)
    }

    async fn read_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        after_version: u64,
    ) -> Result<StreamEvents, StoreError> {
        let id = aggregate_id.to_string();
        let chunk = |after: u64| -> Fetch<'_> {
            let query = to_i64(after, "version").map(|after| {
                sqlx::query(READ_STREAM)
                    .bind(aggregate_type.to_owned())
                    .bind(id.clone())
                    .bind(after)
                    .bind(STREAM_CHUNK as i64)
            });
            MaybeDone::Future(Box::pin(
                async move { fetch_raw(query?, &self.reader).await },
            ))
        };
        let mut events = Vec::new();
        let mut next = chunk(after_version);
        loop {
            let raw = std::future::poll_fn(|cx| finish(&mut next, cx)).await?;
            let last = raw.last.filter(|_| !raw.is_last(STREAM_CHUNK));
            if let Some(last) = last {
                // The next chunk is packed while this one is decoded.
                next = chunk(last);
                std::future::poll_fn(|cx| {
                    send(&mut next, cx);
                    Poll::Ready(())
                })
                .await;
            }
            events.extend(raw.decode()?);
            if last.is_none() {
                break;
            }
        }
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
    ) -> Result<EventPage, StoreError> {
        let types = types_filter(query)?;
        let page = sqlx::query(READ_PAGE)
            .bind(to_i64(after, "position")?)
            .bind(types)
            .bind(query.tenant_id.clone())
            .bind(i64::try_from(max).unwrap_or(i64::MAX));
        fetch_events(page, &self.reader).await.map(EventPage::from)
    }

    fn read_all_batches(&self, query: ReadAll) -> BatchStream<'_> {
        Box::pin(Pages::new(self, query))
    }

    fn read_all(&self, query: ReadAll) -> EventStream<'_> {
        Box::pin(
            Pages::new(self, query)
                .map_ok(|page| futures_util::stream::iter(page.into_iter().map(Ok)))
                .try_flatten(),
        )
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

/// The aggregate-type filter of `query` as the JSON array the page query takes.
fn types_filter(query: &ReadAll) -> Result<Option<String>, StoreError> {
    (!query.aggregate_types.is_empty())
        .then(|| serde_json::to_string(&query.aggregate_types))
        .transpose()
        .map_err(|source| StoreError::Serialize {
            name: "filter".into(),
            source,
        })
}

/// The global log as pages, one page ahead: the next page's query is sent as soon as a
/// page arrives, before it is decoded, so SQLite packs page *n + 1* while page *n* is
/// decoded and used. Pages are keyset pages of `query.batch_size` events, as in the
/// default [`EventStore::read_all_batches`]; at most two are held. The log is exhausted at
/// the first page shorter than asked for; after an error the stream ends.
struct Pages {
    reader: SqlitePool,
    /// The aggregate-type filter as the page query binds it.
    types: Option<String>,
    tenant: Option<String>,
    batch_size: usize,
    /// Events still to read under `query.limit`.
    remaining: Option<u64>,
    /// The next page and the page size it asked for.
    next: Option<(Ahead, u64)>,
    /// A filter that cannot be bound: the stream's one item.
    failed: Option<StoreError>,
}

/// A page fetch that owns what it needs, so it can run on its own task.
type PageFetch = Pin<Box<dyn Future<Output = Result<RawPage, StoreError>> + Send>>;

/// The next page of [`Pages`].
enum Ahead {
    /// Not started yet (the first page, or outside a Tokio runtime): fetched when polled.
    Waiting(PageFetch),
    /// Finished on the poll that sent its query.
    Done(Option<Result<RawPage, StoreError>>),
    /// Sent from the caller's task, then moved to a task of its own: it gives its reader
    /// connection back as soon as the page is in, even while the caller is busy elsewhere
    /// (with a handler that reads the store through the only reader connection, say).
    Running(tokio::task::JoinHandle<Result<RawPage, StoreError>>),
}

impl Ahead {
    /// Sends the query now (one poll on the caller's task, so it goes out before the
    /// caller gets on with the current page), and lets it finish on its own task.
    fn start(mut fetch: PageFetch, cx: &mut Context<'_>) -> Self {
        match fetch.as_mut().poll(cx) {
            Poll::Ready(outcome) => Ahead::Done(Some(outcome)),
            Poll::Pending => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => Ahead::Running(runtime.spawn(fetch)),
                Err(_) => Ahead::Waiting(fetch),
            },
        }
    }

    fn poll_page(&mut self, cx: &mut Context<'_>) -> Poll<Result<RawPage, StoreError>> {
        match self {
            Ahead::Waiting(fetch) => fetch.as_mut().poll(cx),
            Ahead::Done(outcome) => Poll::Ready(
                outcome
                    .take()
                    .unwrap_or_else(|| Err(backend(sqlx::Error::WorkerCrashed))),
            ),
            Ahead::Running(task) => Pin::new(task).poll(cx).map(|joined| {
                joined.unwrap_or_else(|error| Err(StoreError::backend(BACKEND, false, error)))
            }),
        }
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        // A page nobody will read: stop fetching it.
        if let Ahead::Running(task) = self {
            task.abort();
        }
    }
}

impl Pages {
    fn new(store: &SqliteEventStore, query: ReadAll) -> Self {
        let mut pages = Pages {
            reader: store.reader.clone(),
            types: None,
            tenant: query.tenant_id.clone(),
            batch_size: query.batch_size.max(1),
            remaining: query.limit,
            next: None,
            failed: None,
        };
        match types_filter(&query) {
            Ok(types) => {
                pages.types = types;
                pages.next = pages
                    .fetch_after(query.after)
                    .map(|(fetch, max)| (Ahead::Waiting(fetch), max));
            }
            Err(error) => pages.failed = Some(error),
        }
        pages
    }

    /// The fetch of the page after `position`; `None` once the limit is reached.
    fn fetch_after(&self, position: u64) -> Option<(PageFetch, u64)> {
        let max = match self.remaining {
            Some(0) => return None,
            Some(left) => left.min(self.batch_size as u64),
            None => self.batch_size as u64,
        };
        let reader = self.reader.clone();
        let (types, tenant) = (self.types.clone(), self.tenant.clone());
        let fetch: PageFetch = Box::pin(async move {
            let page = sqlx::query(READ_PAGE)
                .bind(to_i64(position, "position")?)
                .bind(types)
                .bind(tenant)
                .bind(to_i64(max, "limit")?);
            fetch_raw(page, &reader).await
        });
        Some((fetch, max))
    }
}

impl futures_core::Stream for Pages {
    type Item = Result<EventPage, StoreError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(error) = this.failed.take() {
            return Poll::Ready(Some(Err(error)));
        }
        let Some((next, asked)) = &mut this.next else {
            return Poll::Ready(None);
        };
        let asked = *asked;
        let outcome = ready!(next.poll_page(cx));
        this.next = None;
        let raw = match outcome {
            Ok(raw) => raw,
            Err(error) => return Poll::Ready(Some(Err(error))),
        };
        this.remaining = this.remaining.map(|left| left.saturating_sub(raw.events));
        if let Some(last) = raw.last.filter(|_| !raw.is_last(asked)) {
            this.next = this
                .fetch_after(last)
                .map(|(fetch, max)| (Ahead::start(fetch, cx), max));
        }
        match raw.decode() {
            Ok(page) if page.is_empty() => Poll::Ready(None),
            Ok(page) => Poll::Ready(Some(Ok(page.into()))),
            Err(error) => {
                this.next = None;
                Poll::Ready(Some(Err(error)))
            }
        }
    }
}

/// Projection checkpoints in the store's SQLite file (tables created by
/// [`SqliteEventStore::migrate`]).
#[derive(Debug, Clone)]
pub struct SqliteCheckpointRepository {
    writer: Arc<Writer>,
}

impl SqliteCheckpointRepository {
    /// Checkpoints next to `store`'s events.
    pub fn new(store: &SqliteEventStore) -> Self {
        SqliteCheckpointRepository {
            writer: Arc::clone(&store.writer),
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
        let row = self
            .writer
            .fetch_optional(
                sqlx::query("SELECT * FROM eventsource_checkpoints WHERE projection = ?1")
                    .bind(projection),
            )
            .await?;
        row.as_ref().map(checkpoint_row).transpose()
    }

    async fn save(
        &self,
        projection: &str,
        position: u64,
        event_id: Option<Uuid>,
    ) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO eventsource_checkpoints (projection, position, event_id, updated_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (projection) DO UPDATE SET position = excluded.position, event_id = excluded.event_id, \
             updated_at = excluded.updated_at",
        )
        .bind(projection)
        .bind(to_i64(position, "position")?)
        .bind(event_id.map(|id| id.to_string()))
        .bind(micros(Utc::now()));
        self.writer.execute(query).await?;
        Ok(())
    }

    async fn reset(&self, projection: &str) -> Result<(), StoreError> {
        self.writer
            .execute(
                sqlx::query("DELETE FROM eventsource_checkpoints WHERE projection = ?1")
                    .bind(projection),
            )
            .await?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<crate::projection::Checkpoint>, StoreError> {
        let rows = self
            .writer
            .fetch_all(sqlx::query(
                "SELECT * FROM eventsource_checkpoints ORDER BY projection",
            ))
            .await?;
        rows.iter().map(checkpoint_row).collect()
    }
}

/// The projections' dead-letter queue in the store's SQLite file (tables created by
/// [`SqliteEventStore::migrate`]).
#[derive(Debug, Clone)]
pub struct SqliteDlqRepository {
    writer: Arc<Writer>,
}

impl SqliteDlqRepository {
    /// Dead letters next to `store`'s events.
    pub fn new(store: &SqliteEventStore) -> Self {
        SqliteDlqRepository {
            writer: Arc::clone(&store.writer),
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
        let query = sqlx::query(
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
        .bind(now);
        dead_letter_row(&self.writer.fetch_one(query).await?)
    }

    async fn list(
        &self,
        filter: &crate::projection::DeadLetterFilter,
    ) -> Result<Vec<crate::projection::FailedEvent>, StoreError> {
        let query = sqlx::query(
            "SELECT * FROM eventsource_dead_letters WHERE (?1 IS NULL OR projection = ?1) AND (?2 IS NULL OR status = ?2) \
             ORDER BY position, projection",
        )
        .bind(filter.projection.as_deref())
        .bind(filter.status.map(|s| s.as_str()));
        let rows = self.writer.fetch_all(query).await?;
        rows.iter().map(dead_letter_row).collect()
    }

    async fn get(
        &self,
        event_id: Uuid,
        projection: &str,
    ) -> Result<Option<crate::projection::FailedEvent>, StoreError> {
        let query = sqlx::query(
            "SELECT * FROM eventsource_dead_letters WHERE event_id = ?1 AND projection = ?2",
        )
        .bind(event_id.to_string())
        .bind(projection);
        let row = self.writer.fetch_optional(query).await?;
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
        let query = sqlx::query(
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
        .bind(micros(Utc::now()));
        Ok(self.writer.execute(query).await? > 0)
    }

    async fn stats(&self) -> Result<crate::projection::DlqStats, StoreError> {
        let all = self
            .list(&crate::projection::DeadLetterFilter::default())
            .await?;
        Ok(crate::projection::stats_of(all.iter()))
    }

    async fn delete_resolved(&self) -> Result<u64, StoreError> {
        self.writer
            .execute(sqlx::query(
                "DELETE FROM eventsource_dead_letters WHERE status = 'resolved'",
            ))
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// One event packed as `packed_event!` packs it, from its columns' texts.
    fn packed(position: i64, integers: &str, texts: [Option<&str>; 10]) -> String {
        let mut row = format!("{position},{integers},");
        for text in texts {
            match text {
                Some(text) => row.push_str(&format!("{}:{text}", text.len())),
                None => row.push_str("-1:"),
            }
        }
        row
    }

    const EVENT: &str = "0190a4a0-0000-7000-8000-000000000001";
    const STREAM: &str = "0190a4a0-0000-7000-8000-0000000000aa";

    fn texts<'a>(payload: &'a str, tenant: Option<&'a str>) -> [Option<&'a str>; 10] {
        [
            Some(EVENT),
            Some("Deposited"),
            Some("Account"),
            Some(STREAM),
            tenant,
            None,
            None,
            None,
            Some("{}"),
            Some(payload),
        ]
    }

    #[test]
    fn a_packed_page_decodes_every_column() {
        let page = [
            packed(
                7,
                "1,3,-5,1700000000000000,1",
                texts(r#"{"a":"1:2,3"}"#, Some("é:t")),
            ),
            packed(9, "2,4,0,1700000000000001,1", texts("[]", None)),
        ]
        .concat();
        let events = decode_packed(Some(&page)).unwrap();
        assert_eq!(events.len(), 2);
        let first = &events[0];
        assert_eq!(first.position, 7);
        assert_eq!(first.envelope.event_id.to_string(), EVENT);
        assert_eq!(first.envelope.event_name, "Deposited");
        assert_eq!(first.envelope.aggregate_type, "Account");
        assert_eq!(first.envelope.aggregate_id.to_string(), STREAM);
        assert_eq!(first.envelope.schema_version, 1);
        assert_eq!(first.envelope.aggregate_version, 3);
        assert_eq!(first.envelope.occurred_at.timestamp_micros(), -5);
        assert_eq!(first.stored_at.timestamp_micros(), 1_700_000_000_000_000);
        assert_eq!(first.envelope.context.tenant_id.as_deref(), Some("é:t"));
        assert!(matches!(&first.payload, Payload::Json(text) if text == r#"{"a":"1:2,3"}"#));
        assert_eq!(events[1].envelope.context.tenant_id, None);
        assert_eq!(decode_packed(None).unwrap().len(), 0);
    }

    #[test]
    fn rows_out_of_order_come_back_in_position_order() {
        let page = [
            packed(9, "1,2,0,0,1", texts("1", None)),
            packed(7, "1,1,0,0,1", texts("2", None)),
        ]
        .concat();
        let positions: Vec<u64> = decode_packed(Some(&page))
            .unwrap()
            .iter()
            .map(|e| e.position)
            .collect();
        assert_eq!(positions, [7, 9]);
    }

    #[test]
    fn every_kind_of_damage_is_a_corrupt_error_naming_the_column() {
        let good = packed(5, "1,1,0,0,1", texts("{}", None));
        let cases = [
            (packed(5, "1,1,0,0,0", texts("{}", None)), "not an integer"),
            (
                packed(5, "1,x,0,0,1", texts("{}", None)),
                "aggregate_version",
            ),
            (packed(5, "-1,1,0,0,1", texts("{}", None)), "schema_version"),
            (
                packed(5, "1,1,99999999999999999999,0,1", texts("{}", None)),
                "occurred_at",
            ),
            (
                packed(5, "1,1,0,9223372036854775807,1", texts("{}", None)),
                "stored_at",
            ),
            (packed(5, "1,1,0,0,1", texts("{not json", None)), "payload"),
            (
                good.replace(EVENT, "not-a-uuid-but-thirty-six-characters"),
                "event_id",
            ),
            (good.replace("2:{}", "2:{]"), "metadata"),
            (good.replace("9:Deposited", "-1:"), "event_name"),
            (
                good.replacen("36:0190a4a0", "999:0190a4a0", 1),
                "the page ends",
            ),
            (good[..good.len() - 1].to_owned(), "the page ends"),
            (good.replacen("5,", "-5,", 1), "position"),
        ];
        for (page, expected) in cases {
            let error = decode_packed(Some(&page)).unwrap_err();
            assert!(
                matches!(error, StoreError::Corrupt { .. }),
                "{page}: {error}"
            );
            assert!(error.to_string().contains(expected), "{page}: {error}");
        }
    }
}
