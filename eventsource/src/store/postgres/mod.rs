//! PostgreSQL event store (feature `postgres`), on sqlx without compile-time queries: see
//! [`PostgresEventStore`].

mod outbox;
mod projection;
mod read_ahead;

pub use outbox::{OutboxCounts, OutboxRelay, RelayBatch};
pub use projection::{
    PostgresCheckpointRepository, PostgresDlqRepository, PostgresProjection,
    TransactionalProjection,
};

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Row};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    AppendResult, ContextColumns, ContextReader, EventPage, EventStore, EventStream,
    ExpectedVersion, ReadAll, StreamEvents, classify_stored, refuse_nul, validate_batch,
};
use crate::error::{ConcurrencyError, StoreError};
use crate::event::{EventEnvelope, Payload, RecordedEvent, UncommittedEvent};

const BACKEND: &str = "postgres";

fn backend(error: sqlx::Error) -> StoreError {
    let transient = matches!(
        &error,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    ) || matches!(&error, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("08") || c == "40001" || c == "40P01" || c == "57P01"));
    StoreError::backend(BACKEND, transient, error)
}

fn corrupt(position: u64, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        position,
        reason: reason.into(),
    }
}

fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::backend(BACKEND, false, format!("{what} {value} exceeds bigint")))
}

/// The most events one transaction appends: positions are the transaction id times
/// 2^20 plus the event's place among them.
const MAX_EVENTS_PER_TRANSACTION: usize = (1 << 20) - 1;

/// The expected version for [`Sql::insert`]: `Some` for a non-empty batch with an `Exact`
/// or `NoStream` expectation whose versions fit a `bigint`, `None` for the rest (the
/// append function handles them).
fn insert_expectation(expected: ExpectedVersion, len: usize) -> Option<i64> {
    let after = match expected {
        ExpectedVersion::NoStream => 0,
        ExpectedVersion::Exact(version) => i64::try_from(version).ok()?,
        ExpectedVersion::Any | ExpectedVersion::StreamExists => return None,
    };
    let len = i64::try_from(len).ok()?;
    (len > 0 && len <= MAX_EVENTS_PER_TRANSACTION as i64 && after.checked_add(len).is_some())
        .then_some(after)
}

/// The SQL texts of one schema, built once.
struct Sql {
    /// The append function (every expectation, inside a caller's transaction, refusals).
    append: String,
    /// One `INSERT` for the common append (see [`PostgresEventStore::append`]), without
    /// and with outbox rows.
    insert: String,
    insert_outbox: String,
    /// The same for one event, with scalar parameters (no arrays to read, no `unnest`).
    insert_one: String,
    insert_one_outbox: String,
    by_ids: String,
    stream: String,
    version: String,
    page: String,
    head: String,
    exists: String,
    schema_ddl: Vec<String>,
}

/// The columns of an event, in the order [`decode_row`] reads them.
const COLUMNS: &str = "position, event_id, event_name, schema_version, aggregate_type, aggregate_id, \
    aggregate_version, occurred_at, stored_at, tenant_id, correlation_id, causation_id, actor_id, \
    metadata::text AS metadata, payload::text AS payload";

/// The `INSERT` of the common append: an `Exact` or `NoStream` expectation ($3: the
/// expected version) on a connection of the pool, so in a transaction of its own. One
/// statement, no function call: the insert checks the expectation (version $3 + 1 is unique
/// per stream, version $3 must be stored) and returns no rows when version $3 is missing; a
/// stream further along or a stored id fails it with a unique violation. Either way
/// [`PostgresEventStore::append`] then calls the append function, which tells a retry from
/// a conflict. Positions: the transaction's id times 2^20, plus the event's place in the
/// batch (the transaction appends nothing else).
fn insert_sql(schema: &str, outbox: bool) -> String {
    let outbox = if outbox {
        format!(
            ", outboxed AS (INSERT INTO {schema}.outbox (position) SELECT position FROM inserted)"
        )
    } else {
        String::new()
    };
    format!(
        "WITH inserted AS (\
            INSERT INTO {schema}.events (position, transaction_id, event_id, event_name, schema_version, \
                aggregate_type, aggregate_id, aggregate_version, occurred_at, stored_at, tenant_id, \
                correlation_id, causation_id, actor_id, metadata, payload) \
            SELECT (pg_current_xact_id()::text::bigint * 1048576) + e.ord, pg_current_xact_id(), e.id, e.name, \
                e.sv, $1, $2, $3 + e.ord, e.occ, statement_timestamp(), e.ten, e.corr, e.cause, e.act, \
                e.meta::jsonb, e.pay::jsonb \
            FROM unnest($4::uuid[], $5::text[], $6::int[], $7::timestamptz[], $8::text[], $9::uuid[], \
                $10::uuid[], $11::text[], $12::text[], $13::text[]) \
                WITH ORDINALITY AS e(id, name, sv, occ, ten, corr, cause, act, meta, pay, ord) \
            WHERE $3 = 0 OR EXISTS (SELECT 1 FROM {schema}.events WHERE aggregate_type = $1 \
                AND aggregate_id = $2 AND aggregate_version = $3) \
            RETURNING position, aggregate_version, stored_at){outbox} \
        SELECT 'inserted'::text, position, aggregate_version, stored_at, \
            pg_notify('{schema}_appended', '')::text \
        FROM inserted ORDER BY position"
    )
}

/// [`insert_sql`] for one event: its columns as scalar parameters, the same checks.
fn insert_one_sql(schema: &str, outbox: bool) -> String {
    let insert = format!(
        "INSERT INTO {schema}.events (position, transaction_id, event_id, event_name, schema_version, \
            aggregate_type, aggregate_id, aggregate_version, occurred_at, stored_at, tenant_id, \
            correlation_id, causation_id, actor_id, metadata, payload) \
        SELECT (pg_current_xact_id()::text::bigint * 1048576) + 1, pg_current_xact_id(), $4::uuid, $5::text, \
            $6::int, $1, $2, $3 + 1, $7::timestamptz, statement_timestamp(), $8::text, $9::uuid, \
            $10::uuid, $11::text, $12::text::jsonb, $13::text::jsonb \
        WHERE $3 = 0 OR EXISTS (SELECT 1 FROM {schema}.events WHERE aggregate_type = $1 \
            AND aggregate_id = $2 AND aggregate_version = $3)"
    );
    let returned = "'inserted'::text, position, aggregate_version, stored_at";
    if outbox {
        format!(
            "WITH inserted AS ({insert} RETURNING position, aggregate_version, stored_at), \
             outboxed AS (INSERT INTO {schema}.outbox (position) SELECT position FROM inserted) \
             SELECT {returned}, pg_notify('{schema}_appended', '')::text FROM inserted"
        )
    } else {
        format!("{insert} RETURNING {returned}, pg_notify('{schema}_appended', '')::text")
    }
}

impl Sql {
    fn new(schema: &str) -> Self {
        let events = format!("{schema}.events");
        Sql {
            append: format!(
                "SELECT r_state, r_position, r_version, r_stored_at FROM {schema}.append_events(\
                 $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
            ),
            insert: insert_sql(schema, false),
            insert_outbox: insert_sql(schema, true),
            insert_one: insert_one_sql(schema, false),
            insert_one_outbox: insert_one_sql(schema, true),
            by_ids: format!(
                "SELECT {COLUMNS} FROM {events} WHERE event_id = ANY($1) ORDER BY position"
            ),
            stream: format!(
                "SELECT {COLUMNS} FROM {events} WHERE aggregate_type = $1 AND aggregate_id = $2 \
                 AND aggregate_version > $3 ORDER BY aggregate_version"
            ),
            version: format!(
                "SELECT COALESCE(MAX(aggregate_version), 0) FROM {events} WHERE aggregate_type = $1 AND aggregate_id = $2"
            ),
            page: format!(
                "SELECT {COLUMNS} FROM {events} WHERE position > $1 \
                 AND transaction_id < (SELECT pg_snapshot_xmin(pg_current_snapshot())) \
                 AND ($2::text[] IS NULL OR aggregate_type = ANY($2)) AND ($3::text IS NULL OR tenant_id = $3) \
                 ORDER BY position LIMIT $4"
            ),
            head: format!(
                "SELECT COALESCE(MAX(position), 0) FROM {events} \
                 WHERE transaction_id < (SELECT pg_snapshot_xmin(pg_current_snapshot()))"
            ),
            exists: format!("SELECT EXISTS (SELECT 1 FROM {events} WHERE event_id = $1)"),
            schema_ddl: vec![
                format!("CREATE SCHEMA IF NOT EXISTS {schema}"),
                format!(
                    "CREATE TABLE IF NOT EXISTS {events} (
                        position BIGINT PRIMARY KEY,
                        transaction_id xid8 NOT NULL,
                        event_id UUID NOT NULL UNIQUE,
                        event_name TEXT NOT NULL,
                        schema_version INT NOT NULL,
                        aggregate_type TEXT NOT NULL,
                        aggregate_id UUID NOT NULL,
                        aggregate_version BIGINT NOT NULL,
                        occurred_at TIMESTAMPTZ NOT NULL,
                        stored_at TIMESTAMPTZ NOT NULL,
                        tenant_id TEXT,
                        correlation_id UUID,
                        causation_id UUID,
                        actor_id TEXT,
                        metadata JSONB NOT NULL,
                        payload JSONB NOT NULL,
                        UNIQUE (aggregate_type, aggregate_id, aggregate_version)
                    )"
                ),
                format!(
                    "CREATE INDEX IF NOT EXISTS events_tenant ON {events} (tenant_id, position)"
                ),
                // A prepared statement keeps a generic plan made from the table's
                // statistics. Analyzed while it held a few rows, the table would get a
                // sequential scan for the append's stream probe and for stream reads, kept
                // until the next ANALYZE, however large the table grows meanwhile. Never
                // analyzed, it counts as at least ten pages, where index lookups win: so
                // autovacuum leaves its statistics alone until it has a thousand rows.
                format!("ALTER TABLE {events} SET (autovacuum_analyze_threshold = 1000)"),
                // Schemas made before positions came from transaction ids numbered
                // them with an identity column; its numbers are far below the new ones.
                // (Only then: an `ALTER TABLE` locks out every reader and writer.)
                format!(
                    "DO $do$ BEGIN
                        IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = '{events}'::regclass
                                AND attname = 'position' AND attidentity <> '') THEN
                            ALTER TABLE {events} ALTER COLUMN position DROP IDENTITY,
                                ALTER COLUMN transaction_id DROP DEFAULT;
                        END IF;
                    END $do$"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {schema}.outbox (
                        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                        position BIGINT NOT NULL REFERENCES {events} (position),
                        transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
                        status TEXT NOT NULL DEFAULT 'pending',
                        attempts INT NOT NULL DEFAULT 0,
                        next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
                        last_error TEXT,
                        published_at TIMESTAMPTZ
                    )"
                ),
                // Pending rows in position order (the order relays publish in).
                format!("DROP INDEX IF EXISTS {schema}.outbox_pending"),
                format!(
                    "CREATE INDEX IF NOT EXISTS outbox_pending_position ON {schema}.outbox (position) \
                     WHERE status = 'pending'"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {schema}.checkpoints (
                        projection TEXT PRIMARY KEY,
                        position BIGINT NOT NULL,
                        event_id UUID,
                        updated_at TIMESTAMPTZ NOT NULL
                    )"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {schema}.dead_letters (
                        event_id UUID NOT NULL,
                        projection TEXT NOT NULL,
                        event_name TEXT NOT NULL,
                        position BIGINT NOT NULL,
                        payload TEXT NOT NULL,
                        error TEXT NOT NULL,
                        attempts INT NOT NULL,
                        first_failed_at TIMESTAMPTZ NOT NULL,
                        last_failed_at TIMESTAMPTZ NOT NULL,
                        status TEXT NOT NULL,
                        resolved_by TEXT,
                        resolved_at TIMESTAMPTZ,
                        PRIMARY KEY (event_id, projection)
                    )"
                ),
                format!(
                    "CREATE INDEX IF NOT EXISTS dead_letters_by_status ON {schema}.dead_letters (status, projection)"
                ),
                // Earlier signatures: before outbox support (no `p_outbox`), before
                // appends inside the caller's transaction were told apart (no `p_in_tx`),
                // and while inserts took an advisory lock (`p_lock`).
                format!(
                    "DROP FUNCTION IF EXISTS {schema}.append_events(text, uuid, text, bigint, uuid[], text[], \
                     int[], timestamptz[], text[], uuid[], uuid[], text[], text[], text[], bigint)"
                ),
                format!(
                    "DROP FUNCTION IF EXISTS {schema}.append_events(text, uuid, text, bigint, uuid[], text[], \
                     int[], timestamptz[], text[], uuid[], uuid[], text[], text[], text[], bigint, boolean)"
                ),
                format!(
                    "DROP FUNCTION IF EXISTS {schema}.append_events(text, uuid, text, bigint, uuid[], text[], \
                     int[], timestamptz[], text[], uuid[], uuid[], text[], text[], text[], bigint, boolean, \
                     boolean)"
                ),
                format!(
                    r#"CREATE OR REPLACE FUNCTION {schema}.append_events(
                        p_type text, p_id uuid, p_kind text, p_exact bigint, p_ids uuid[], p_names text[],
                        p_versions int[], p_occurred timestamptz[], p_tenants text[], p_corrs uuid[],
                        p_causes uuid[], p_actors text[], p_metas text[], p_payloads text[],
                        p_outbox boolean, p_in_tx boolean)
                    RETURNS TABLE (r_state text, r_position bigint, r_version bigint, r_stored_at timestamptz)
                    LANGUAGE plpgsql
                    -- PL/pgSQL caches a generic plan per connection after a few calls; made
                    -- while the table is small (and before any ANALYZE) it would scan the
                    -- whole table on every append for the life of the connection. The
                    -- lookups below are only ever index lookups, so say so.
                    SET enable_seqscan = off
                    AS $fn$
                    DECLARE
                        v_actual bigint;
                        v_first bigint;
                        v_base bigint;
                        v_now timestamptz := statement_timestamp();
                        v_position bigint;
                        v_positions bigint[];
                        v_versions bigint[];
                    BEGIN
                        IF NOT p_in_tx AND (p_kind = 'no_stream'
                                OR (p_kind = 'exact' AND p_exact < 9223372036854775807)) THEN
                            -- The insert checks this expectation itself, with no lookup
                            -- before it: the version after the expected one is unique (a
                            -- stream that is further along refuses it), and the expected
                            -- one must be stored (one index probe, none for version 0).
                            v_first := CASE WHEN p_kind = 'exact' THEN p_exact + 1 ELSE 1 END;
                        ELSE
                            -- Looked up first, so that a refusal seen here writes nothing
                            -- and takes no transaction id: inside the caller's transaction
                            -- (`append_in`), a refused append leaves it as it found it. (One
                            -- refused by the insert below, after a concurrent append, has
                            -- taken an id, and still writes nothing.)
                            SELECT COALESCE(MAX(aggregate_version), 0) INTO v_actual FROM {events}
                                WHERE aggregate_type = p_type AND aggregate_id = p_id;
                            IF p_kind = 'any' OR (p_kind = 'exists' AND v_actual > 0)
                                    OR (p_kind = 'exact' AND v_actual = p_exact)
                                    OR (p_kind = 'no_stream' AND v_actual = 0) THEN
                                v_first := v_actual + 1;
                            ELSE
                                v_first := NULL;
                            END IF;
                        END IF;
                        IF v_first IS NOT NULL AND cardinality(p_ids) > 0 THEN
                            -- Positions follow transaction ids (see the module docs): the
                            -- transaction's id times 2^20, plus the event's place among
                            -- the events this transaction appended. A multiplication, not a
                            -- shift: past 2^43 ids it fails instead of wrapping.
                            v_base := pg_current_xact_id()::text::bigint * 1048576;
                            SELECT COALESCE(MAX(position), v_base) INTO v_base FROM {events}
                                WHERE position > v_base AND position < v_base + 1048576;
                            IF (v_base & 1048575) + cardinality(p_ids) > 1048575 THEN
                                RETURN QUERY SELECT 'full'::text, NULL::bigint, NULL::bigint, NULL::timestamptz;
                                RETURN;
                            END IF;
                            BEGIN
                                IF cardinality(p_ids) = 1 THEN
                                    -- One event (the common append): no unnest.
                                    INSERT INTO {events} (position, transaction_id, event_id, event_name,
                                        schema_version, aggregate_type, aggregate_id, aggregate_version,
                                        occurred_at, stored_at, tenant_id, correlation_id, causation_id, actor_id,
                                        metadata, payload)
                                    SELECT v_base + 1, pg_current_xact_id(), p_ids[1], p_names[1], p_versions[1],
                                        p_type, p_id, v_first, p_occurred[1], v_now, p_tenants[1], p_corrs[1],
                                        p_causes[1], p_actors[1], p_metas[1]::jsonb, p_payloads[1]::jsonb
                                    WHERE v_first = 1 OR EXISTS (SELECT 1 FROM {events} WHERE aggregate_type = p_type
                                        AND aggregate_id = p_id AND aggregate_version = v_first - 1)
                                    RETURNING position INTO v_position;
                                    IF v_position IS NOT NULL THEN
                                        v_positions := ARRAY[v_position];
                                        v_versions := ARRAY[v_first];
                                    END IF;
                                ELSE
                                    WITH inserted AS (
                                        INSERT INTO {events} (position, transaction_id, event_id, event_name,
                                            schema_version, aggregate_type, aggregate_id, aggregate_version,
                                            occurred_at, stored_at, tenant_id, correlation_id, causation_id,
                                            actor_id, metadata, payload)
                                        SELECT v_base + e.ord, pg_current_xact_id(), e.id, e.name, e.sv, p_type, p_id,
                                            v_first - 1 + e.ord, e.occ, v_now, e.ten, e.corr, e.cause, e.act,
                                            e.meta::jsonb, e.pay::jsonb
                                        FROM unnest(p_ids, p_names, p_versions, p_occurred, p_tenants, p_corrs, p_causes,
                                            p_actors, p_metas, p_payloads)
                                            WITH ORDINALITY AS e(id, name, sv, occ, ten, corr, cause, act, meta, pay, ord)
                                        WHERE v_first = 1 OR EXISTS (SELECT 1 FROM {events} WHERE aggregate_type = p_type
                                            AND aggregate_id = p_id AND aggregate_version = v_first - 1)
                                        ORDER BY e.ord
                                        RETURNING position, aggregate_version)
                                    SELECT array_agg(position ORDER BY aggregate_version), array_agg(aggregate_version ORDER BY aggregate_version)
                                        INTO v_positions, v_versions FROM inserted;
                                END IF;
                                IF p_outbox AND v_positions IS NOT NULL THEN
                                    INSERT INTO {schema}.outbox (position) SELECT unnest(v_positions);
                                END IF;
                            EXCEPTION
                                -- Another version of the stream or an id already stored.
                                WHEN unique_violation THEN
                                    v_positions := NULL;
                            END;
                        END IF;
                        IF v_positions IS NULL THEN
                            -- Refused, or nothing to insert: an idempotent retry, a conflict,
                            -- or an empty batch whose expectation holds.
                            IF EXISTS (SELECT 1 FROM {events} WHERE event_id = ANY(p_ids)) THEN
                                RETURN QUERY SELECT 'stored'::text, NULL::bigint, NULL::bigint, NULL::timestamptz;
                                RETURN;
                            END IF;
                            SELECT COALESCE(MAX(aggregate_version), 0) INTO v_actual FROM {events}
                                WHERE aggregate_type = p_type AND aggregate_id = p_id;
                            IF cardinality(p_ids) = 0 AND (p_kind = 'any' OR (p_kind = 'exists' AND v_actual > 0)
                                    OR v_first - 1 = v_actual) THEN
                                RETURN QUERY SELECT 'empty'::text, NULL::bigint, v_actual, NULL::timestamptz;
                            ELSE
                                RETURN QUERY SELECT 'conflict'::text, NULL::bigint, v_actual, NULL::timestamptz;
                            END IF;
                            RETURN;
                        END IF;
                        PERFORM pg_notify('{schema}_appended', '');
                        RETURN QUERY SELECT 'inserted'::text, unnest(v_positions), unnest(v_versions), v_now;
                    END
                    $fn$"#
                ),
            ],
        }
    }
}

/// Decodes a row whose first columns are [`COLUMNS`], by index (no column-name lookups
/// on the read path) and without sqlx's per-value type check: the columns are this
/// module's own, from its own table, and a value of another type still fails to
/// decode. The check cost about a quarter of the client's time per row.
fn decode_row(row: &PgRow, contexts: &mut ContextReader) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.try_get_unchecked(0).map_err(backend)?;
    let position = u64::try_from(position).map_err(|_| corrupt(0, "negative position"))?;
    let schema_version: i32 = row.try_get_unchecked(3).map_err(backend)?;
    let version: i64 = row.try_get_unchecked(6).map_err(backend)?;
    let metadata: &str = row.try_get_unchecked(13).map_err(backend)?;
    let (event_name, aggregate_type) = super::stored_names(
        row.try_get_unchecked(2).map_err(backend)?,
        row.try_get_unchecked(4).map_err(backend)?,
    );
    Ok(RecordedEvent {
        envelope: EventEnvelope {
            event_id: row.try_get_unchecked(1).map_err(backend)?,
            event_name,
            schema_version: u32::try_from(schema_version)
                .map_err(|_| corrupt(position, "negative schema_version"))?,
            aggregate_type,
            aggregate_id: row.try_get_unchecked(5).map_err(backend)?,
            aggregate_version: u64::try_from(version)
                .map_err(|_| corrupt(position, "negative aggregate_version"))?,
            occurred_at: row.try_get_unchecked(7).map_err(backend)?,
            context: contexts
                .read(ContextColumns {
                    tenant_id: row.try_get_unchecked(9).map_err(backend)?,
                    correlation_id: row.try_get_unchecked(10).map_err(backend)?,
                    causation_id: row.try_get_unchecked(11).map_err(backend)?,
                    actor_id: row.try_get_unchecked(12).map_err(backend)?,
                    metadata,
                })
                .map_err(|e| corrupt(position, format!("metadata: {e}")))?,
        },
        payload: Payload::Json(row.try_get_unchecked(14).map_err(backend)?),
        position,
        stored_at: row.try_get_unchecked(8).map_err(backend)?,
    })
}

/// Runs `query` and decodes its rows as they arrive (decoding overlaps the server's
/// work and the transfer instead of following them).
async fn fetch_events<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    pool: &PgPool,
    expected: usize,
) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
    use futures_util::TryStreamExt;
    let mut rows = query.fetch(pool);
    let mut events = Vec::with_capacity(expected);
    let mut contexts = ContextReader::default();
    while let Some(row) = rows.try_next().await.map_err(backend)? {
        events.push(Arc::new(decode_row(&row, &mut contexts)?));
    }
    Ok(events)
}

fn decode_rows(rows: &[PgRow]) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
    let mut contexts = ContextReader::default();
    rows.iter()
        .map(|row| decode_row(row, &mut contexts).map(Arc::new))
        .collect()
}

/// Checks a schema name: lowercase letters, digits and `_`, starting with a letter or
/// `_`, at most 63 bytes. Names are put into SQL text, so nothing else is accepted.
fn validate_schema(schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let valid = schema.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(StoreError::backend(
            BACKEND,
            false,
            format!(
                "invalid schema name {schema:?}: use lowercase letters, digits and `_` (at most 63)"
            ),
        ))
    }
}

/// An [`EventStore`] in PostgreSQL.
///
/// # Global order that never skips
///
/// Each row records the id of the transaction that wrote it (`pg_current_xact_id()`), and
/// readers of the global log only return rows whose transaction is older than every
/// transaction still running (`transaction_id < pg_snapshot_xmin(pg_current_snapshot())`).
/// Positions are made from that id: the transaction id times 2^20, plus the event's place
/// among the events its transaction appended. Every row a reader cannot see yet belongs to
/// a transaction at least as young as the oldest one running, so it has a higher position
/// than every row the reader can see: a reader never passes a position that could still be
/// committed. No lock is taken: appends to different streams never wait for each other.
///
/// Positions therefore increase but are far apart (they are not counts), and one
/// transaction appends at most 2^20 - 1 events. They fit a `bigint` for 2^43 transaction
/// ids of the whole server (subtransactions that write draw ids too); past that an append
/// fails with an error, positions never wrap.
///
/// The trade-off: any transaction that stays open on the database (even one that has
/// nothing to do with events) holds readers back until it ends; appends are not
/// delayed. [`PostgresEventStore::reader_horizon`] shows how far readers are held back.
///
/// Each append is one round trip. The common one (a repository's save: `Exact` or
/// `NoStream`) is a single `INSERT` (`... SELECT FROM unnest(...)` for a batch, plain
/// parameters for one event) that checks the expectation itself: the next version is unique per stream, and the expected one must be
/// stored. The other expectations, appends inside your transaction
/// ([`PostgresEventStore::append_in`]) and the batches that single insert refused go
/// through a PL/pgSQL function created by [`PostgresEventStore::migrate`], which tells an
/// idempotent retry from a version conflict. The SQL texts are fixed, whatever the batch
/// size.
///
/// Next to the events, [`PostgresEventStore::migrate`] creates the tables of
/// [`PostgresCheckpointRepository`], [`PostgresDlqRepository`] and the transactional
/// outbox that [`OutboxRelay`] publishes.
///
/// ```no_run
/// # async fn demo() -> Result<(), eventsource::StoreError> {
/// use eventsource::PostgresEventStore;
/// let store = PostgresEventStore::connect("postgres://postgres@127.0.0.1/app", "eventsource").await?;
/// store.migrate().await?; // explicit: creates the schema, table and append function once
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresEventStore {
    pool: PgPool,
    schema: String,
    sql: Arc<Sql>,
    lock_key: i64,
    appended: Arc<Notify>,
    outbox: bool,
}

impl std::fmt::Debug for PostgresEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEventStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresEventStore {
    /// Connects a pool to `url` for the tables in `schema`. Nothing is created: call
    /// [`migrate`](Self::migrate).
    ///
    /// # Errors
    /// An invalid schema name; a connection failure.
    pub async fn connect(url: &str, schema: &str) -> Result<Self, StoreError> {
        validate_schema(schema)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect(url)
            .await
            .map_err(backend)?;
        Self::with_pool(pool, schema)
    }

    /// Uses an existing pool.
    ///
    /// # Errors
    /// An invalid schema name.
    pub fn with_pool(pool: PgPool, schema: &str) -> Result<Self, StoreError> {
        validate_schema(schema)?;
        // One advisory lock key per schema (FNV-1a of the name), for migrations.
        let key = schema.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Ok(PostgresEventStore {
            pool,
            schema: schema.to_owned(),
            sql: Arc::new(Sql::new(schema)),
            lock_key: i64::from_ne_bytes(key.to_ne_bytes()),
            appended: Arc::new(Notify::new()),
            outbox: false,
        })
    }

    /// Also writes an outbox row for every appended event, in the append's transaction
    /// (a rolled-back append leaves none); an [`OutboxRelay`] publishes them.
    #[must_use]
    pub fn with_outbox(mut self, enabled: bool) -> Self {
        self.outbox = enabled;
        self
    }

    /// Whether appends write outbox rows.
    pub fn outbox_enabled(&self) -> bool {
        self.outbox
    }

    /// Creates the schema, the events table, its indexes and the append function.
    /// Idempotent.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // Serialize concurrent migrations of the same schema.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(self.lock_key ^ 1)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        for statement in &self.sql.schema_ddl {
            sqlx::query(AssertSqlSafe(statement.clone()))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    /// Drops the schema and everything in it.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn drop_schema(&self) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            self.schema
        )))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    /// The pool, for read models in the same database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// How many stored events readers cannot see yet because an older transaction is
    /// still open (0 when nothing holds readers back).
    ///
    /// # Errors
    /// Backend errors.
    pub async fn reader_horizon(&self) -> Result<u64, StoreError> {
        let sql = format!(
            "SELECT COUNT(*) FROM {}.events WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot())",
            self.schema
        );
        let held: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(u64::try_from(held).unwrap_or(0))
    }

    /// Wakes followers of the log ([`EventStore::append_signal`]) on appends made by
    /// other processes, through `LISTEN`/`NOTIFY`. Appends from this process wake them
    /// anyway. Runs until the pool closes; reconnects after a dropped connection.
    ///
    /// # Errors
    /// When the first `LISTEN` fails.
    pub async fn listen(&self) -> Result<tokio::task::JoinHandle<()>, StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool)
            .await
            .map_err(backend)?;
        let channel = format!("{}_appended", self.schema);
        listener.listen(&channel).await.map_err(backend)?;
        let notify = Arc::clone(&self.appended);
        Ok(tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(_)) => notify.notify_waiters(),
                    // The connection dropped and was re-established: something may have
                    // been appended meanwhile.
                    Ok(None) => notify.notify_waiters(),
                    Err(error) => {
                        tracing::warn!(%error, "event notifications stopped");
                        break;
                    }
                }
            }
        }))
    }

    /// Calls the append function (see [`Sql::append`]).
    async fn append_rows<'c, X>(
        &self,
        executor: X,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        events: &[UncommittedEvent],
        in_caller_transaction: bool,
    ) -> Result<Vec<PgRow>, StoreError>
    where
        X: sqlx::Executor<'c, Database = sqlx::Postgres>,
    {
        let (kind, exact) = match expected {
            ExpectedVersion::Any => ("any", 0),
            ExpectedVersion::NoStream => ("no_stream", 0),
            ExpectedVersion::StreamExists => ("exists", 0),
            ExpectedVersion::Exact(version) => ("exact", to_i64(version, "version")?),
        };
        let columns = Columns::of(events)?;
        let query = sqlx::query(AssertSqlSafe(self.sql.append.as_str()))
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(kind)
            .bind(exact);
        columns
            .bind(query)
            .bind(self.outbox)
            .bind(in_caller_transaction)
            .fetch_all(executor)
            .await
            .map_err(backend)
    }

    /// The common append in one statement ([`Sql::insert`]): `Some(rows)` when it stored
    /// the batch; `None` when it did not (the expected version is not the stream's, or an
    /// id is stored), which the append function then sorts out.
    async fn insert_rows(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        after: i64,
        events: &[UncommittedEvent],
    ) -> Result<Option<Vec<PgRow>>, StoreError> {
        let outcome = match events {
            [event] => {
                let e = &event.envelope;
                let serialize = |source| StoreError::Serialize {
                    name: e.event_name.to_string(),
                    source,
                };
                let metadata = serde_json::to_string(&e.context.metadata).map_err(serialize)?;
                let payload = event.payload.to_json().map_err(serialize)?;
                let sql = if self.outbox {
                    &self.sql.insert_one_outbox
                } else {
                    &self.sql.insert_one
                };
                sqlx::query(AssertSqlSafe(sql.as_str()))
                    .bind(aggregate_type)
                    .bind(aggregate_id)
                    .bind(after)
                    .bind(e.event_id)
                    .bind(e.event_name.as_ref())
                    .bind(
                        i32::try_from(e.schema_version)
                            .map_err(|_| corrupt(0, "schema_version exceeds int"))?,
                    )
                    .bind(e.occurred_at)
                    .bind(e.context.tenant_id.as_deref())
                    .bind(e.context.correlation_id)
                    .bind(e.context.causation_id)
                    .bind(e.context.actor_id.as_deref())
                    .bind(metadata.as_str())
                    .bind(payload.as_ref())
                    .fetch_all(&self.pool)
                    .await
            }
            _ => {
                let columns = Columns::of(events)?;
                let sql = if self.outbox {
                    &self.sql.insert_outbox
                } else {
                    &self.sql.insert
                };
                let query = sqlx::query(AssertSqlSafe(sql.as_str()))
                    .bind(aggregate_type)
                    .bind(aggregate_id)
                    .bind(after);
                columns.bind(query).fetch_all(&self.pool).await
            }
        };
        match outcome {
            Ok(rows) if rows.len() == events.len() => Ok(Some(rows)),
            // The insert is all or nothing: no rows means version `after` is missing.
            Ok(_) => Ok(None),
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("23505") => {
                Ok(None)
            }
            Err(error) => Err(backend(error)),
        }
    }
}

/// The per-event columns of a batch, one array each, in the order both append
/// statements take them.
struct Columns<'a> {
    ids: Vec<Uuid>,
    names: Vec<&'a str>,
    versions: Vec<i32>,
    occurred: Vec<DateTime<Utc>>,
    tenants: Vec<Option<&'a str>>,
    corrs: Vec<Option<Uuid>>,
    causes: Vec<Option<Uuid>>,
    actors: Vec<Option<&'a str>>,
    metas: Vec<String>,
    payloads: Vec<String>,
}

impl<'a> Columns<'a> {
    fn of(events: &'a [UncommittedEvent]) -> Result<Self, StoreError> {
        let n = events.len();
        let mut columns = Columns {
            ids: Vec::with_capacity(n),
            names: Vec::with_capacity(n),
            versions: Vec::with_capacity(n),
            occurred: Vec::with_capacity(n),
            tenants: Vec::with_capacity(n),
            corrs: Vec::with_capacity(n),
            causes: Vec::with_capacity(n),
            actors: Vec::with_capacity(n),
            metas: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
        };
        for event in events {
            let e = &event.envelope;
            let serialize = |source| StoreError::Serialize {
                name: e.event_name.to_string(),
                source,
            };
            columns.ids.push(e.event_id);
            columns.names.push(e.event_name.as_ref());
            columns.versions.push(
                i32::try_from(e.schema_version)
                    .map_err(|_| corrupt(0, "schema_version exceeds int"))?,
            );
            columns.occurred.push(e.occurred_at);
            columns.tenants.push(e.context.tenant_id.as_deref());
            columns.corrs.push(e.context.correlation_id);
            columns.causes.push(e.context.causation_id);
            columns.actors.push(e.context.actor_id.as_deref());
            columns
                .metas
                .push(serde_json::to_string(&e.context.metadata).map_err(serialize)?);
            columns
                .payloads
                .push(event.payload.to_json().map_err(serialize)?.into_owned());
        }
        Ok(columns)
    }

    fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.ids)
            .bind(&self.names)
            .bind(&self.versions)
            .bind(&self.occurred)
            .bind(&self.tenants)
            .bind(&self.corrs)
            .bind(&self.causes)
            .bind(&self.actors)
            .bind(&self.metas)
            .bind(&self.payloads)
    }
}

impl PostgresEventStore {
    /// One keyset page of the global log (see [`EventStore::read_all_batch`]).
    async fn fetch_page<'q, T, N>(
        &self,
        after: u64,
        types: Option<T>,
        tenant: Option<N>,
        max: usize,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError>
    where
        T: sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + 'q,
        N: sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + 'q,
    {
        let page = sqlx::query(AssertSqlSafe(self.sql.page.clone()))
            .bind(to_i64(after, "position")?)
            .bind(types)
            .bind(tenant)
            .bind(i64::try_from(max).unwrap_or(i64::MAX));
        fetch_events(page, &self.pool, max).await
    }

    /// Appends inside the caller's transaction (or on a connection): the events commit or
    /// roll back with whatever else the transaction writes. Followers of the log see them
    /// only after the commit, and are woken then by `NOTIFY` (see
    /// [`listen`](Self::listen)) or at their next poll.
    ///
    /// The transaction may write other rows before or after, and append more than once:
    /// positions follow its transaction id (see [`PostgresEventStore`]), so readers of the
    /// log cannot pass them while it is open. A refused append (a version conflict) writes
    /// nothing and leaves the transaction usable.
    ///
    /// # Errors
    /// As [`EventStore::append`]; [`StoreError::InvalidAppend`] when the transaction's
    /// appends would exceed 2^20 - 1 events.
    pub async fn append_in(
        &self,
        connection: &mut sqlx::PgConnection,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        events: &[UncommittedEvent],
    ) -> Result<AppendResult, StoreError> {
        validate_batch(aggregate_type, aggregate_id, events)?;
        refuse_nul(aggregate_type, aggregate_id, events)?;
        let rows = self
            .append_rows(
                &mut *connection,
                aggregate_type,
                aggregate_id,
                expected,
                events,
                true,
            )
            .await?;
        self.append_outcome(rows, aggregate_type, aggregate_id, expected, events, false)
            .await
    }

    async fn append_outcome(
        &self,
        rows: Vec<PgRow>,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        events: &[UncommittedEvent],
        committed: bool,
    ) -> Result<AppendResult, StoreError> {
        let state: String = rows
            .first()
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(backend)?
            .unwrap_or_default();
        match state.as_str() {
            "stored" => {
                let ids: Vec<Uuid> = events.iter().map(|e| e.envelope.event_id).collect();
                let found = sqlx::query(AssertSqlSafe(self.sql.by_ids.clone()))
                    .bind(&ids)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(backend)?;
                let stored = decode_rows(&found)?;
                let retry = classify_stored(aggregate_type, aggregate_id, events, |id| {
                    stored.iter().find(|e| e.event_id() == id).cloned()
                })?;
                match retry {
                    Some(stored) => Ok(AppendResult {
                        new_version: self.stream_version(aggregate_type, aggregate_id).await?,
                        events: stored,
                        already_stored: true,
                    }),
                    // Stored concurrently and gone? Not possible: events are never deleted.
                    None => Err(corrupt(0, "append reported stored ids that cannot be read")),
                }
            }
            "conflict" => {
                let actual: i64 = rows[0].try_get(2).map_err(backend)?;
                Err(ConcurrencyError {
                    aggregate_type: aggregate_type.to_owned(),
                    aggregate_id,
                    expected,
                    actual: u64::try_from(actual).unwrap_or(0),
                }
                .into())
            }
            "full" => Err(StoreError::InvalidAppend {
                aggregate_type: aggregate_type.to_owned(),
                aggregate_id,
                reason: format!(
                    "a transaction appends at most {} events",
                    MAX_EVENTS_PER_TRANSACTION
                ),
            }),
            "empty" => {
                let actual: i64 = rows[0].try_get(2).map_err(backend)?;
                Ok(AppendResult {
                    new_version: u64::try_from(actual).unwrap_or(0),
                    events: Vec::new(),
                    already_stored: false,
                })
            }
            "inserted" => {
                if committed {
                    self.appended.notify_waiters();
                }
                let mut recorded = Vec::with_capacity(events.len());
                for (row, event) in rows.iter().zip(events) {
                    let position: i64 = row.try_get(1).map_err(backend)?;
                    let version: i64 = row.try_get(2).map_err(backend)?;
                    let stored_at: DateTime<Utc> = row.try_get(3).map_err(backend)?;
                    let mut envelope = event.envelope.clone();
                    envelope.aggregate_version =
                        u64::try_from(version).map_err(|_| corrupt(0, "negative version"))?;
                    recorded.push(Arc::new(RecordedEvent {
                        envelope,
                        payload: event.payload.clone(),
                        position: u64::try_from(position)
                            .map_err(|_| corrupt(0, "negative position"))?,
                        stored_at,
                    }));
                }
                let new_version = recorded.last().map_or(0, |e| e.aggregate_version());
                Ok(AppendResult {
                    new_version,
                    events: recorded,
                    already_stored: false,
                })
            }
            other => Err(corrupt(
                0,
                format!("append function returned state {other:?}"),
            )),
        }
    }
}

#[async_trait]
impl EventStore for PostgresEventStore {
    async fn append(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        events: &[UncommittedEvent],
    ) -> Result<AppendResult, StoreError> {
        validate_batch(aggregate_type, aggregate_id, events)?;
        refuse_nul(aggregate_type, aggregate_id, events)?;
        if let Some(after) = insert_expectation(expected, events.len())
            && let Some(rows) = self
                .insert_rows(aggregate_type, aggregate_id, after, events)
                .await?
        {
            return self
                .append_outcome(rows, aggregate_type, aggregate_id, expected, events, true)
                .await;
        }
        let rows = self
            .append_rows(
                &self.pool,
                aggregate_type,
                aggregate_id,
                expected,
                events,
                false,
            )
            .await?;
        self.append_outcome(rows, aggregate_type, aggregate_id, expected, events, true)
            .await
    }

    async fn read_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        after_version: u64,
    ) -> Result<StreamEvents, StoreError> {
        let query = sqlx::query(AssertSqlSafe(self.sql.stream.clone()))
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(to_i64(after_version, "version")?);
        let events = fetch_events(query, &self.pool, 0).await?;
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
        let types = (!query.aggregate_types.is_empty()).then_some(&query.aggregate_types);
        self.fetch_page(after, types, query.tenant_id.as_deref(), max)
            .await
            .map(EventPage::from)
    }

    /// Reads ahead: the next page is requested as soon as the current one has arrived,
    /// so the server works on it while the caller handles the current one.
    fn read_all(&self, query: ReadAll) -> EventStream<'_> {
        Box::pin(read_ahead::ReadAhead::new(self, query))
    }

    async fn stream_version(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<u64, StoreError> {
        let version: i64 = sqlx::query_scalar(AssertSqlSafe(self.sql.version.clone()))
            .bind(aggregate_type)
            .bind(aggregate_id)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(u64::try_from(version).unwrap_or(0))
    }

    async fn current_position(&self) -> Result<u64, StoreError> {
        let position: i64 = sqlx::query_scalar(AssertSqlSafe(self.sql.head.clone()))
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(u64::try_from(position).unwrap_or(0))
    }

    async fn event_exists(&self, event_id: Uuid) -> Result<bool, StoreError> {
        sqlx::query_scalar(AssertSqlSafe(self.sql.exists.clone()))
            .bind(event_id)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)
    }

    fn append_signal(&self) -> Option<Arc<Notify>> {
        Some(Arc::clone(&self.appended))
    }
}

#[cfg(test)]
mod tests {
    use super::{ExpectedVersion, MAX_EVENTS_PER_TRANSACTION, insert_expectation};

    #[test]
    fn only_non_empty_exact_and_no_stream_appends_take_the_single_insert() {
        assert_eq!(insert_expectation(ExpectedVersion::NoStream, 1), Some(0));
        assert_eq!(insert_expectation(ExpectedVersion::Exact(7), 100), Some(7));
        assert_eq!(insert_expectation(ExpectedVersion::Exact(7), 0), None);
        assert_eq!(insert_expectation(ExpectedVersion::Any, 1), None);
        assert_eq!(insert_expectation(ExpectedVersion::StreamExists, 1), None);
        // Versions past a bigint, and batches over a transaction's limit, go to the
        // function, which refuses them with a typed answer.
        assert_eq!(
            insert_expectation(ExpectedVersion::Exact(u64::MAX), 1),
            None
        );
        assert_eq!(
            insert_expectation(ExpectedVersion::Exact(i64::MAX as u64), 1),
            None
        );
        assert_eq!(
            insert_expectation(ExpectedVersion::NoStream, MAX_EVENTS_PER_TRANSACTION + 1),
            None
        );
        assert_eq!(
            insert_expectation(ExpectedVersion::NoStream, MAX_EVENTS_PER_TRANSACTION),
            Some(0)
        );
    }
}
