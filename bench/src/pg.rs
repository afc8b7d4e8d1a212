//! `--backend pg` (the `PostgresEventStore`) and `--backend pg-raw` (the database alone).
//!
//! Both connect once to `EVENTSOURCE_BENCH_POSTGRES_URL` and give each repetition a
//! fresh schema (`bench_<pid>_<rep>`, `bench_raw_<pid>_<rep>`), dropped afterwards.
//!
//! `pg-raw` measures the database-alone baselines of BENCH.md with plain sqlx, on the
//! store's own table (created by `PostgresEventStore::migrate`, then given an identity
//! `position` and a default `transaction_id`, so that a plain `INSERT` fills both), without
//! the store's checks, position arithmetic and `NOTIFY`, sending the same data:
//!
//! | workload | database alone |
//! |---|---|
//! | W5 | one `INSERT` of one row per transaction (autocommit), no version check |
//! | W6 | one multi-row `INSERT ... VALUES` of 100 client-sent rows per transaction |
//! | W7 | the store's stream query: 10,000 rows fetched, not decoded |
//! | W8 | every row in position order in one streamed query: fetched, not decoded |

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use eventsource::{AggregateRoot, EventStore, PostgresEventStore};
use eventsource_bench::Counter;
use futures_util::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection};
use uuid::Uuid;

use crate::{Args, Backend, BoxError, Target, run_rep};

/// Where the server is read from.
const URL_VAR: &str = "EVENTSOURCE_BENCH_POSTGRES_URL";
/// The server when `URL_VAR` is not set.
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The connected server.
pub(crate) struct Server {
    pool: PgPool,
}

impl Server {
    /// Connects to `EVENTSOURCE_BENCH_POSTGRES_URL` (or the default).
    ///
    /// # Errors
    /// A sentence naming the server (password hidden) when it cannot be reached.
    pub(crate) async fn connect() -> Result<Self, BoxError> {
        let url = std::env::var(URL_VAR).unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let unreachable = |e: &dyn std::fmt::Display| {
            format!(
                "cannot connect to PostgreSQL at {} (set {URL_VAR}): {e}",
                redact(&url)
            )
        };
        let options = PgConnectOptions::from_str(&url).map_err(|e| unreachable(&e))?;
        // One connection first: the pool would only report a timeout, not why.
        let first = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| unreachable(&format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| unreachable(&e))?;
        first.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| unreachable(&e))?;
        Ok(Server { pool })
    }

    /// One repetition on a fresh schema, dropped afterwards (also when the repetition fails).
    pub(crate) async fn run_rep(&self, args: &Args, rep: usize) -> Result<(), BoxError> {
        let pid = std::process::id();
        let (outcome, store) = match args.backend {
            Backend::PgRaw => {
                let raw = RawPg::create(&self.pool, &format!("bench_raw_{pid}_{rep}")).await?;
                (run_rep(&raw, args, rep).await, raw.store)
            }
            _ => {
                let store = fresh_schema(&self.pool, &format!("bench_{pid}_{rep}")).await?;
                let target: Arc<dyn EventStore> = Arc::new(store.clone());
                (run_rep(&target, args, rep).await, store)
            }
        };
        let dropped = store.drop_schema().await.map_err(BoxError::from);
        outcome.and(dropped)
    }
}

/// A store on a new, empty `schema` (dropped first if a previous run left it behind).
async fn fresh_schema(pool: &PgPool, schema: &str) -> Result<PostgresEventStore, BoxError> {
    let store = PostgresEventStore::with_pool(pool.clone(), schema)?;
    store.drop_schema().await?;
    store.migrate().await?;
    Ok(store)
}

/// `url` with its password replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The columns the store selects (`eventsource/src/store/postgres.rs`).
const COLUMNS: &str = "position, event_id, event_name, schema_version, aggregate_type, aggregate_id, \
    aggregate_version, occurred_at, stored_at, tenant_id, correlation_id, causation_id, actor_id, \
    metadata::text AS metadata, payload::text AS payload";

/// Parameters per inserted row.
const ROW_PARAMS: usize = 9;

/// The database alone: a table like the store's, written and read with plain sqlx.
struct RawPg {
    pool: PgPool,
    /// Only for its table (and dropping it).
    store: PostgresEventStore,
    /// `INSERT` of one row.
    insert_one: String,
    /// `INSERT` of 100 rows.
    insert_100: String,
    stream: String,
    all: String,
    /// The JSON the store sends for the event's metadata and payload.
    metadata: String,
    payload: String,
}

impl RawPg {
    async fn create(pool: &PgPool, schema: &str) -> Result<Self, BoxError> {
        let store = fresh_schema(pool, schema).await?;
        let events = format!("{schema}.events");
        // Positions as a plain table numbers rows: an identity column.
        sqlx::query(AssertSqlSafe(format!(
            "ALTER TABLE {events} ALTER COLUMN position ADD GENERATED ALWAYS AS IDENTITY, \
             ALTER COLUMN transaction_id SET DEFAULT pg_current_xact_id()"
        )))
        .execute(pool)
        .await?;
        let insert = |rows: usize| {
            let values: Vec<String> = (0..rows)
                .map(|row| {
                    let p = |i: usize| row * ROW_PARAMS + i;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${}, clock_timestamp(), ${}::jsonb, ${}::jsonb)",
                        p(1),
                        p(2),
                        p(3),
                        p(4),
                        p(5),
                        p(6),
                        p(7),
                        p(8),
                        p(9),
                    )
                })
                .collect();
            format!(
                "INSERT INTO {events} (event_id, event_name, schema_version, aggregate_type, \
                 aggregate_id, aggregate_version, occurred_at, stored_at, metadata, payload) VALUES {}",
                values.join(", ")
            )
        };
        // One sample event, encoded as the store encodes it.
        let mut root = AggregateRoot::<Counter>::new(Uuid::now_v7());
        root.execute(Counter::increment)?;
        let sample = root.take_uncommitted();
        let event = sample.first().ok_or("no sample event")?;
        Ok(RawPg {
            insert_one: insert(1),
            insert_100: insert(100),
            stream: format!(
                "SELECT {COLUMNS} FROM {events} WHERE aggregate_type = $1 AND aggregate_id = $2 \
                 AND aggregate_version > $3 ORDER BY aggregate_version"
            ),
            all: format!("SELECT {COLUMNS} FROM {events} ORDER BY position"),
            metadata: serde_json::to_string(&event.envelope.context.metadata)?,
            payload: event.payload.to_json()?.into_owned(),
            pool: pool.clone(),
            store,
        })
    }

    /// Inserts versions `first..first + count` of `id`, one statement (one transaction).
    async fn insert(&self, id: Uuid, first: u64, count: usize) -> Result<(), BoxError> {
        let sql = match count {
            1 => &self.insert_one,
            100 => &self.insert_100,
            other => return Err(format!("no insert statement for {other} rows").into()),
        };
        let mut query = sqlx::query(AssertSqlSafe(sql.as_str()));
        let occurred_at = Utc::now();
        for version in first..first + count as u64 {
            query = query
                .bind(Uuid::now_v7())
                .bind("Incremented")
                .bind(1_i32)
                .bind("Counter")
                .bind(id)
                .bind(i64::try_from(version)?)
                .bind(occurred_at)
                .bind(self.metadata.as_str())
                .bind(self.payload.as_str());
        }
        query.execute(&self.pool).await?;
        Ok(())
    }
}

impl Target for RawPg {
    async fn appends(
        &self,
        aggregates: usize,
        per: usize,
        per_call: usize,
    ) -> Result<Uuid, BoxError> {
        let mut id = Uuid::nil();
        for _ in 0..aggregates {
            id = Uuid::now_v7();
            for first in (1..=per).step_by(per_call) {
                self.insert(id, first as u64, per_call.min(per + 1 - first))
                    .await?;
            }
        }
        Ok(id)
    }

    async fn load(&self, id: Uuid, events: u64) -> Result<(), BoxError> {
        let rows = sqlx::query(AssertSqlSafe(self.stream.as_str()))
            .bind("Counter")
            .bind(id)
            .bind(0_i64)
            .fetch_all(&self.pool)
            .await?;
        if rows.len() as u64 != events {
            return Err(format!("fetched {} rows, expected {events}", rows.len()).into());
        }
        Ok(())
    }

    async fn project_all(&self) -> Result<u64, BoxError> {
        let mut rows = sqlx::query(AssertSqlSafe(self.all.as_str())).fetch(&self.pool);
        let mut count = 0u64;
        while rows.try_next().await?.is_some() {
            count += 1;
        }
        Ok(count)
    }

    fn store(&self) -> Option<&Arc<dyn EventStore>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }
}
