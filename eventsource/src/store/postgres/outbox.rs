//! The transactional outbox and its relay: see [`OutboxRelay`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Row};

use super::{COLUMNS, PostgresEventStore, backend, decode_row};
use crate::bus::EventBus;
use crate::error::StoreError;
use crate::store::ContextReader;

/// What one [`OutboxRelay::relay_once`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayBatch {
    /// Rows published and marked so.
    pub published: usize,
    /// Rows whose publish failed and that will be retried.
    pub retrying: usize,
    /// Rows marked failed (attempts exhausted, or an event that cannot be decoded).
    pub failed: usize,
}

impl RelayBatch {
    /// Rows the batch claimed.
    pub fn claimed(&self) -> usize {
        self.published + self.retrying + self.failed
    }
}

/// Outbox rows by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Waiting to be published (including rows waiting for a retry).
    pub pending: u64,
    /// Published, not yet purged.
    pub published: u64,
    /// Given up on after `max_attempts`.
    pub failed: u64,
}

/// Publishes the outbox of a [`PostgresEventStore`] to an [`EventBus`].
///
/// With [`PostgresEventStore::with_outbox`], every append also inserts one outbox row per
/// event in the append's own transaction: an event is stored if and only if its outbox
/// row is. An [`OutboxRelay`] publishes pending rows to an [`EventBus`], oldest first.
///
/// # Delivery
///
/// A relay claims a batch with `SELECT ... FOR UPDATE SKIP LOCKED` and keeps the row
/// locks until the rows are marked published, so relays running at once (in one process
/// or many) never publish the same row twice. A relay that dies mid-publish releases its
/// locks when its connection drops; the rows are pending again and another relay
/// publishes them: delivery is at least once, as with any outbox, so handlers should be
/// idempotent (the event id is the key).
///
/// Rows are claimed only once every older transaction has ended (the same horizon as
/// the global log's readers), so a relay publishes in position order. A batch that fails
/// to publish is retried with exponential backoff; rows waiting for a retry do not hold
/// back younger rows. After `max_attempts` a row is marked `failed`: it stays, with its
/// last error, until [`OutboxRelay::requeue_failed`] or a purge.
///
/// The trade-off of holding row locks: the relay's transaction stays open while it
/// publishes one batch (bounded by [`OutboxRelay::publish_timeout`]), and readers of the
/// global log do not see events appended meanwhile until it ends.
///
/// ```no_run
/// # async fn demo(store: eventsource::PostgresEventStore) -> Result<(), eventsource::StoreError> {
/// use std::sync::Arc;
/// use eventsource::store::OutboxRelay;
/// use eventsource::InMemoryEventBus;
///
/// let relay = OutboxRelay::new(&store, Arc::new(InMemoryEventBus::new()));
/// let batch = relay.relay_once().await?;          // one batch, e.g. from a scheduler
/// let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
/// relay.run_until(stopped).await;                 // or relay until shutdown
/// # drop(shutdown);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OutboxRelay {
    store: PostgresEventStore,
    bus: Arc<dyn EventBus>,
    batch_size: usize,
    max_attempts: u32,
    backoff_base: Duration,
    backoff_max: Duration,
    publish_timeout: Duration,
    poll_interval: Duration,
    retain_published: Option<Duration>,
    sql: Arc<RelaySql>,
}

struct RelaySql {
    claim: String,
    published: String,
    retry: String,
    failed: String,
    counts: String,
    purge: String,
    requeue: String,
}

impl std::fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("schema", &self.store.schema())
            .field("batch_size", &self.batch_size)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

impl OutboxRelay {
    /// A relay for `store`'s outbox: batches of 100, 10 attempts, backoff from 100 ms
    /// doubling up to 1 minute, a 10 s publish timeout, a 1 s poll, published rows purged
    /// after an hour.
    pub fn new(store: &PostgresEventStore, bus: Arc<dyn EventBus>) -> Self {
        let outbox = format!("{}.outbox", store.schema());
        let events = format!("{}.events", store.schema());
        OutboxRelay {
            store: store.clone(),
            bus,
            batch_size: 100,
            max_attempts: 10,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(60),
            publish_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            retain_published: Some(Duration::from_secs(3600)),
            sql: Arc::new(RelaySql {
                claim: format!(
                    "SELECT {COLUMNS}, o.id AS outbox_id FROM {outbox} o JOIN {events} USING (position) \
                     WHERE o.status = 'pending' AND o.next_attempt_at <= now() \
                     AND o.transaction_id < (SELECT pg_snapshot_xmin(pg_current_snapshot())) \
                     ORDER BY o.position LIMIT $1 FOR UPDATE OF o SKIP LOCKED"
                ),
                published: format!(
                    "UPDATE {outbox} SET status = 'published', attempts = attempts + 1, \
                     published_at = now(), last_error = NULL WHERE id = ANY($1)"
                ),
                retry: format!(
                    "UPDATE {outbox} SET attempts = attempts + 1, last_error = $2, \
                     status = CASE WHEN attempts + 1 >= $3 THEN 'failed' ELSE 'pending' END, \
                     next_attempt_at = now() + make_interval(secs => least($4 * power(2, attempts), $5)) \
                     WHERE id = ANY($1) RETURNING status"
                ),
                failed: format!(
                    "UPDATE {outbox} SET status = 'failed', attempts = attempts + 1, last_error = $2 \
                     WHERE id = $1"
                ),
                counts: format!("SELECT status, COUNT(*) AS n FROM {outbox} GROUP BY status"),
                purge: format!(
                    "DELETE FROM {outbox} WHERE status = 'published' \
                     AND published_at <= now() - make_interval(secs => $1)"
                ),
                requeue: format!(
                    "UPDATE {outbox} SET status = 'pending', attempts = 0, next_attempt_at = '-infinity' \
                     WHERE status = 'failed'"
                ),
            }),
        }
    }

    /// Rows claimed per batch (at least 1).
    #[must_use]
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows.max(1);
        self
    }

    /// Publish attempts per row before it is marked failed (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Delay before the first retry of a row, doubled for each further one up to `max`.
    #[must_use]
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max.max(base);
        self
    }

    /// A publish that takes longer fails (and is retried). Also bounds how long a relay
    /// holds back readers of the global log.
    #[must_use]
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// How long [`run_until`](Self::run_until) sleeps when the outbox is empty and no
    /// append woke it.
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long [`run_until`](Self::run_until) keeps published rows before purging them;
    /// `None` keeps them.
    #[must_use]
    pub fn retain_published(mut self, retain: Option<Duration>) -> Self {
        self.retain_published = retain;
        self
    }

    /// Claims one batch of due pending rows, publishes it and records the outcome.
    ///
    /// # Errors
    /// Backend errors (the claimed rows stay pending). A failing bus is not an error
    /// here: it is recorded on the rows and counted in [`RelayBatch::retrying`] /
    /// [`RelayBatch::failed`].
    pub async fn relay_once(&self) -> Result<RelayBatch, StoreError> {
        let mut tx = self.store.pool().begin().await.map_err(backend)?;
        let rows: Vec<PgRow> = sqlx::query(AssertSqlSafe(self.sql.claim.clone()))
            .bind(i64::try_from(self.batch_size).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        if rows.is_empty() {
            tx.rollback().await.map_err(backend)?;
            return Ok(RelayBatch::default());
        }
        let mut batch = RelayBatch::default();
        let mut ids = Vec::with_capacity(rows.len());
        let mut events = Vec::with_capacity(rows.len());
        let mut contexts = ContextReader::default();
        for row in &rows {
            let id: i64 = row.try_get("outbox_id").map_err(backend)?;
            match decode_row(row, &mut contexts) {
                Ok(event) => {
                    ids.push(id);
                    events.push(Arc::new(event));
                }
                Err(error) => {
                    // Never published, never dropped: the row records why.
                    tracing::error!(outbox_id = id, %error, "outbox relay: event cannot be decoded");
                    sqlx::query(AssertSqlSafe(self.sql.failed.clone()))
                        .bind(id)
                        .bind(error.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?;
                    batch.failed += 1;
                }
            }
        }
        if !events.is_empty() {
            let outcome = tokio::time::timeout(self.publish_timeout, self.bus.publish(&events))
                .await
                .map_err(|_| format!("publish timed out after {:?}", self.publish_timeout))
                .and_then(|published| published.map_err(|error| error.to_string()));
            match outcome {
                Ok(()) => {
                    sqlx::query(AssertSqlSafe(self.sql.published.clone()))
                        .bind(&ids)
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?;
                    batch.published = ids.len();
                }
                Err(error) => {
                    tracing::warn!(%error, rows = ids.len(), "outbox relay: publish failed");
                    let statuses: Vec<String> =
                        sqlx::query_scalar(AssertSqlSafe(self.sql.retry.clone()))
                            .bind(&ids)
                            .bind(&error)
                            .bind(i32::try_from(self.max_attempts).unwrap_or(i32::MAX))
                            .bind(seconds(self.backoff_base))
                            .bind(seconds(self.backoff_max))
                            .fetch_all(&mut *tx)
                            .await
                            .map_err(backend)?;
                    let failed = statuses.iter().filter(|s| *s == "failed").count();
                    batch.failed += failed;
                    batch.retrying += statuses.len() - failed;
                }
            }
        }
        tx.commit().await.map_err(backend)?;
        Ok(batch)
    }

    /// Relays until `stop` completes: a batch after another while there is work, else
    /// waits for an append (this process's, or another's with
    /// [`PostgresEventStore::listen`]) or the poll interval; purges published rows per
    /// [`retain_published`](Self::retain_published). Backend errors are logged and
    /// retried after the poll interval; nothing is lost (rows stay pending). Returns
    /// what it relayed in all.
    pub async fn run_until(&self, stop: impl Future<Output = impl Sized>) -> RelayBatch {
        let mut total = RelayBatch::default();
        let signal = Arc::clone(&self.store.appended);
        let mut last_purge = tokio::time::Instant::now();
        tokio::pin!(stop);
        loop {
            // Register for the next append before looking, so none is missed.
            let woken = signal.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let outcome = tokio::select! {
                biased;
                _ = &mut stop => return total,
                outcome = self.relay_once() => outcome,
            };
            let idle = match outcome {
                Ok(batch) => {
                    total.published += batch.published;
                    total.retrying += batch.retrying;
                    total.failed += batch.failed;
                    batch.claimed() < self.batch_size
                }
                Err(error) => {
                    tracing::warn!(%error, "outbox relay: batch failed, retrying");
                    true
                }
            };
            if let Some(retain) = self.retain_published
                && last_purge.elapsed() >= retain.min(Duration::from_secs(60))
            {
                if let Err(error) = self.purge_published(retain).await {
                    tracing::warn!(%error, "outbox relay: purge failed");
                }
                last_purge = tokio::time::Instant::now();
            }
            if idle {
                tokio::select! {
                    biased;
                    _ = &mut stop => return total,
                    () = &mut woken => {}
                    () = tokio::time::sleep(self.poll_interval) => {}
                }
            }
        }
    }

    /// Outbox rows by status.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn counts(&self) -> Result<OutboxCounts, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(self.sql.counts.clone()))
            .fetch_all(self.store.pool())
            .await
            .map_err(backend)?;
        let mut counts = OutboxCounts::default();
        for row in &rows {
            let status: String = row.try_get("status").map_err(backend)?;
            let n: i64 = row.try_get("n").map_err(backend)?;
            let n = u64::try_from(n).unwrap_or(0);
            match status.as_str() {
                "pending" => counts.pending += n,
                "published" => counts.published += n,
                "failed" => counts.failed += n,
                other => {
                    return Err(StoreError::Corrupt {
                        position: 0,
                        reason: format!("unknown outbox status {other:?}"),
                    });
                }
            }
        }
        Ok(counts)
    }

    /// Deletes rows published at least `older_than` ago; returns how many.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn purge_published(&self, older_than: Duration) -> Result<u64, StoreError> {
        let done = sqlx::query(AssertSqlSafe(self.sql.purge.clone()))
            .bind(seconds(older_than))
            .execute(self.store.pool())
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    /// Makes every failed row pending again with a fresh attempt count (after the cause
    /// was fixed); returns how many.
    ///
    /// # Errors
    /// Backend errors.
    pub async fn requeue_failed(&self) -> Result<u64, StoreError> {
        let done = sqlx::query(AssertSqlSafe(self.sql.requeue.clone()))
            .execute(self.store.pool())
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }
}
