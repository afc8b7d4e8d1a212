//! `--backend pg` (the `PostgresEventStore`) and `--backend pg-raw` (the database alone).
//!
//! Both connect once to `EVENTSOURCE_BENCH_POSTGRES_URL` and give each repetition a
//! fresh schema (`bench_<pid>_<rep>`, `bench_raw_<pid>_<rep>`), dropped afterwards.
//!
//! `pg-raw` measures the database-alone baselines of BENCH.md with plain sqlx, on a table
//! with the store's columns, keys and indexes (without the store's `transaction_id`
//! column, its append function and advisory lock), sending the same data:
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
use sqlx::{AssertSqlSafe, Connection, Executor};
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
        match args.backend {
            Backend::PgRaw => {
                let raw =
                    RawPg::create(self.pool.clone(), &format!("bench_raw_{pid}_{rep}")).await?;
                let outcome = run_rep(&raw, args, rep).await;
                let dropped = raw.drop_schema().await;
                outcome.and(dropped)
            }
            _ => {
                let schema = format!("bench_{pid}_{rep}");
                let store = PostgresEventStore::with_pool(self.pool.clone(), &schema)?;
                store.drop_schema().await?;
                store.migrate().await?;
                let target: Arc<dyn EventStore> = Arc::new(store.clone());
                let outcome = run_rep(&target, args, rep).await;
                let dropped = store.drop_schema().await.map_err(BoxError::from);
                outcome.and(dropped)
            }
        }
    }
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
    schema: String,
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
    async fn create(pool: PgPool, schema: &str) -> Result<Self, BoxError> {
        let events = format!("{schema}.events");
        let ddl = [
            format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
            format!("CREATE SCHEMA {schema}"),
            format!(
                "CREATE TABLE {events} (
                    position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
            format!("CREATE INDEX events_tenant ON {events} (tenant_id, position)"),
        ];
        for statement in ddl {
            pool.execute(AssertSqlSafe(statement)).await?;
        }
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
            metadata: serde_json::to_string(&event.envelope.metadata)?,
            payload: event.payload.to_json()?.into_owned(),
            pool,
            schema: schema.to_owned(),
        })
    }

    async fn drop_schema(&self) -> Result<(), BoxError> {
        let drop = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
        self.pool.execute(AssertSqlSafe(drop)).await?;
        Ok(())
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
    async fn appends_one_by_one(&self, aggregates: usize, per: usize) -> Result<u64, BoxError> {
        for _ in 0..aggregates {
            let id = Uuid::now_v7();
            for version in 1..=per as u64 {
                self.insert(id, version, 1).await?;
            }
        }
        Ok((aggregates * per) as u64)
    }

    async fn appends_in_batches(&self, aggregates: usize, per: usize) -> Result<u64, BoxError> {
        for _ in 0..aggregates {
            self.insert(Uuid::now_v7(), 1, per).await?;
        }
        Ok((aggregates * per) as u64)
    }

    async fn long_stream(&self, events: usize) -> Result<Uuid, BoxError> {
        let id = Uuid::now_v7();
        for chunk in 0..events / 100 {
            self.insert(id, chunk as u64 * 100 + 1, 100).await?;
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
