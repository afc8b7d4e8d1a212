//! Projection storage in PostgreSQL: checkpoints, dead letters, and projections whose
//! read model commits together with its checkpoint.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{AssertSqlSafe, PgConnection, Row};
use uuid::Uuid;

use super::{PostgresEventStore, backend, corrupt, to_i64};
use crate::error::{BoxError, StoreError};
use crate::event::RecordedEvent;
use crate::projection::{
    Checkpoint, CheckpointRepository, DeadLetterFilter, DeadLetterStatus, DlqRepository, DlqStats,
    FailedEvent, Projection,
};

/// Projection checkpoints in the store's schema (table created by
/// [`PostgresEventStore::migrate`]).
#[derive(Debug, Clone)]
pub struct PostgresCheckpointRepository {
    pool: PgPool,
    sql: std::sync::Arc<CheckpointSql>,
}

#[derive(Debug)]
struct CheckpointSql {
    load: String,
    save: String,
    reset: String,
    list: String,
}

impl PostgresCheckpointRepository {
    /// Checkpoints next to `store`'s events.
    pub fn new(store: &PostgresEventStore) -> Self {
        let table = format!("{}.checkpoints", store.schema());
        PostgresCheckpointRepository {
            pool: store.pool().clone(),
            sql: std::sync::Arc::new(CheckpointSql {
                load: format!("SELECT * FROM {table} WHERE projection = $1"),
                save: format!(
                    "INSERT INTO {table} (projection, position, event_id, updated_at) \
                     VALUES ($1, $2, $3, now()) ON CONFLICT (projection) DO UPDATE SET \
                     position = excluded.position, event_id = excluded.event_id, updated_at = excluded.updated_at"
                ),
                reset: format!("DELETE FROM {table} WHERE projection = $1"),
                list: format!("SELECT * FROM {table} ORDER BY projection"),
            }),
        }
    }

    /// Saves a checkpoint on the caller's connection or transaction, so it commits (or
    /// rolls back) with the read-model changes made there.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn save_in(
        &self,
        connection: &mut PgConnection,
        projection: &str,
        position: u64,
        event_id: Option<Uuid>,
    ) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(self.sql.save.clone()))
            .bind(projection)
            .bind(to_i64(position, "position")?)
            .bind(event_id)
            .execute(connection)
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// Removes a checkpoint on the caller's connection or transaction.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn reset_in(
        &self,
        connection: &mut PgConnection,
        projection: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(self.sql.reset.clone()))
            .bind(projection)
            .execute(connection)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

fn checkpoint_row(row: &PgRow) -> Result<Checkpoint, StoreError> {
    let position: i64 = row.try_get("position").map_err(backend)?;
    Ok(Checkpoint {
        projection: row.try_get("projection").map_err(backend)?,
        position: u64::try_from(position).map_err(|_| corrupt(0, "negative checkpoint"))?,
        event_id: row.try_get("event_id").map_err(backend)?,
        updated_at: row.try_get("updated_at").map_err(backend)?,
    })
}

#[async_trait]
impl CheckpointRepository for PostgresCheckpointRepository {
    async fn load(&self, projection: &str) -> Result<Option<Checkpoint>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(self.sql.load.clone()))
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
        let mut connection = self.pool.acquire().await.map_err(backend)?;
        self.save_in(&mut connection, projection, position, event_id)
            .await
    }

    async fn reset(&self, projection: &str) -> Result<(), StoreError> {
        let mut connection = self.pool.acquire().await.map_err(backend)?;
        self.reset_in(&mut connection, projection).await
    }

    async fn list(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(self.sql.list.clone()))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(checkpoint_row).collect()
    }
}

/// The projections' dead-letter queue in the store's schema (table created by
/// [`PostgresEventStore::migrate`]).
#[derive(Debug, Clone)]
pub struct PostgresDlqRepository {
    pool: PgPool,
    table: std::sync::Arc<str>,
}

impl PostgresDlqRepository {
    /// Dead letters next to `store`'s events.
    pub fn new(store: &PostgresEventStore) -> Self {
        PostgresDlqRepository {
            pool: store.pool().clone(),
            table: format!("{}.dead_letters", store.schema()).into(),
        }
    }
}

fn dead_letter_row(row: &PgRow) -> Result<FailedEvent, StoreError> {
    let position: i64 = row.try_get("position").map_err(backend)?;
    let position = u64::try_from(position).map_err(|_| corrupt(0, "negative position"))?;
    let status: String = row.try_get("status").map_err(backend)?;
    let attempts: i32 = row.try_get("attempts").map_err(backend)?;
    Ok(FailedEvent {
        event_id: row.try_get("event_id").map_err(backend)?,
        projection: row.try_get("projection").map_err(backend)?,
        event_name: row.try_get("event_name").map_err(backend)?,
        position,
        payload: row.try_get("payload").map_err(backend)?,
        error: row.try_get("error").map_err(backend)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| corrupt(position, "attempts out of range"))?,
        first_failed_at: row.try_get("first_failed_at").map_err(backend)?,
        last_failed_at: row.try_get("last_failed_at").map_err(backend)?,
        status: DeadLetterStatus::parse(&status)
            .ok_or_else(|| corrupt(position, format!("unknown dead-letter status {status:?}")))?,
        resolved_by: row.try_get("resolved_by").map_err(backend)?,
        resolved_at: row
            .try_get::<Option<DateTime<Utc>>, _>("resolved_at")
            .map_err(backend)?,
    })
}

#[async_trait]
impl DlqRepository for PostgresDlqRepository {
    async fn record_failure(
        &self,
        event: &RecordedEvent,
        projection: &str,
        error: &str,
        attempts: u32,
    ) -> Result<FailedEvent, StoreError> {
        let payload = crate::projection::payload_text(event)?;
        let table = &self.table;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {table} (event_id, projection, event_name, position, payload, error, attempts, \
             first_failed_at, last_failed_at, status) VALUES ($1, $2, $3, $4, $5, $6, $7, now(), now(), 'failed') \
             ON CONFLICT (event_id, projection) DO UPDATE SET error = excluded.error, \
             attempts = {table}.attempts + excluded.attempts, last_failed_at = excluded.last_failed_at, \
             status = 'failed', resolved_by = NULL, resolved_at = NULL RETURNING *"
        )))
        .bind(event.event_id())
        .bind(projection)
        .bind(event.name())
        .bind(to_i64(event.position, "position")?)
        .bind(payload)
        .bind(error)
        .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        dead_letter_row(&row)
    }

    async fn list(&self, filter: &DeadLetterFilter) -> Result<Vec<FailedEvent>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT * FROM {} WHERE ($1::text IS NULL OR projection = $1) \
             AND ($2::text IS NULL OR status = $2) ORDER BY position, projection",
            self.table
        )))
        .bind(filter.projection.as_deref())
        .bind(filter.status.map(DeadLetterStatus::as_str))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(dead_letter_row).collect()
    }

    async fn get(
        &self,
        event_id: Uuid,
        projection: &str,
    ) -> Result<Option<FailedEvent>, StoreError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT * FROM {} WHERE event_id = $1 AND projection = $2",
            self.table
        )))
        .bind(event_id)
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
        status: DeadLetterStatus,
        by: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET status = $3, \
             resolved_by = CASE WHEN $4 THEN $5 ELSE resolved_by END, \
             resolved_at = CASE WHEN $4 THEN now() ELSE resolved_at END \
             WHERE event_id = $1 AND projection = $2",
            self.table
        )))
        .bind(event_id)
        .bind(projection)
        .bind(status.as_str())
        .bind(status == DeadLetterStatus::Resolved)
        .bind(by)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn stats(&self) -> Result<DlqStats, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT status, projection, COUNT(*) AS n FROM {} GROUP BY status, projection",
            self.table
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let mut stats = DlqStats::default();
        for row in &rows {
            let status: String = row.try_get("status").map_err(backend)?;
            let status = DeadLetterStatus::parse(&status)
                .ok_or_else(|| corrupt(0, format!("unknown dead-letter status {status:?}")))?;
            let count: i64 = row.try_get("n").map_err(backend)?;
            let count = u64::try_from(count).unwrap_or(0);
            *stats.by_status.entry(status.as_str()).or_default() += count;
            *stats
                .by_projection
                .entry(row.try_get("projection").map_err(backend)?)
                .or_default() += count;
        }
        Ok(stats)
    }

    async fn delete_resolved(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {} WHERE status = 'resolved'",
            self.table
        )))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }
}

/// A projection whose read model lives in the event store's database: each event is
/// applied in a transaction that also moves the projection's checkpoint, so the read
/// model and its checkpoint never disagree, whatever crashes when. Wrap it in a
/// [`TransactionalProjection`] to run it.
///
/// ```no_run
/// use eventsource::store::{PostgresProjection, TransactionalProjection};
/// use eventsource::{BoxError, PostgresEventStore, RecordedEvent};
/// use sqlx::PgConnection;
///
/// struct EventsPerAggregate;
///
/// #[eventsource::async_trait]
/// impl PostgresProjection for EventsPerAggregate {
///     fn name(&self) -> &str { "events-per-aggregate" }
///     async fn handle(&mut self, tx: &mut PgConnection, event: &RecordedEvent) -> Result<(), BoxError> {
///         sqlx::query("INSERT INTO counts (aggregate_id, n) VALUES ($1, 1) \
///                      ON CONFLICT (aggregate_id) DO UPDATE SET n = counts.n + 1")
///             .bind(event.aggregate_id())
///             .execute(tx)
///             .await?;
///         Ok(())
///     }
///     async fn reset(&mut self, tx: &mut PgConnection) -> Result<(), BoxError> {
///         sqlx::query("TRUNCATE counts").execute(tx).await?;
///         Ok(())
///     }
/// }
///
/// # fn demo(store: &PostgresEventStore) {
/// let projection = TransactionalProjection::new(store, EventsPerAggregate);
/// # }
/// ```
#[async_trait]
pub trait PostgresProjection: Send {
    /// A stable name: checkpoints and dead letters are kept under it.
    fn name(&self) -> &str;

    /// Applies one event inside `tx` (do not commit it).
    ///
    /// # Errors
    /// Any error: the transaction rolls back and the runner retries, then dead-letters.
    async fn handle(
        &mut self,
        tx: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), BoxError>;

    /// Truncates the read model inside `tx` (the checkpoint is removed in the same
    /// transaction).
    ///
    /// # Errors
    /// Any error; the reset rolls back.
    async fn reset(&mut self, tx: &mut PgConnection) -> Result<(), BoxError>;
}

/// Runs a [`PostgresProjection`] as a [`Projection`]: one transaction per event holds
/// the read-model changes and the checkpoint.
///
/// Give the [`ProjectionRunner`](crate::projection::ProjectionRunner) a
/// [`PostgresCheckpointRepository`] on the same store, so it starts where the committed
/// read model is. The runner also records the checkpoint after each event; that second
/// write is redundant but harmless (choose `checkpoint_every_batch` to make it rare).
#[derive(Debug)]
pub struct TransactionalProjection<P> {
    inner: P,
    pool: PgPool,
    checkpoints: PostgresCheckpointRepository,
}

impl<P: PostgresProjection> TransactionalProjection<P> {
    /// Runs `projection` against `store`'s database.
    pub fn new(store: &PostgresEventStore, projection: P) -> Self {
        TransactionalProjection {
            inner: projection,
            pool: store.pool().clone(),
            checkpoints: PostgresCheckpointRepository::new(store),
        }
    }

    /// The wrapped projection.
    pub fn get_ref(&self) -> &P {
        &self.inner
    }

    /// Unwraps the projection.
    pub fn into_inner(self) -> P {
        self.inner
    }
}

#[async_trait]
impl<P: PostgresProjection> Projection for TransactionalProjection<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        self.inner.handle(&mut tx, event).await?;
        self.checkpoints
            .save_in(
                &mut tx,
                self.inner.name(),
                event.position,
                Some(event.event_id()),
            )
            .await?;
        tx.commit().await.map_err(backend)?;
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), BoxError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        self.inner.reset(&mut tx).await?;
        self.checkpoints
            .reset_in(&mut tx, self.inner.name())
            .await?;
        tx.commit().await.map_err(backend)?;
        Ok(())
    }
}
