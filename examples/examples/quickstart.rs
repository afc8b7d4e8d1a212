//! The whole loop with no server: commands on an aggregate, events in a SQLite file, a
//! projection keeping a read model (in the same database) up to date with its checkpoint.
//! Run it twice: the second run continues from what the first one stored.
//!
//! ```text
//! cargo run -p eventsource-examples --example quickstart                 # ./eventsource-quickstart.sqlite
//! cargo run -p eventsource-examples --example quickstart -- --db /tmp/x.sqlite
//! cargo run -p eventsource-examples --features postgres --example quickstart -- \
//!     --postgres postgres://postgres@127.0.0.1:5432/test [--schema quickstart]
//! ```
//! (`EVENTSOURCE_QUICKSTART_DB` also sets the file, `EVENTSOURCE_QUICKSTART_POSTGRES` the
//! server.)

use std::sync::Arc;

use eventsource::projection::{CheckpointRepository, DlqRepository, ProjectionRunner, RetryPolicy};
use eventsource::{
    AggregateRepository, Event, EventStore, SqliteCheckpointRepository, SqliteDlqRepository,
    SqliteEventStore, projection,
};
use eventsource_examples::{Order, OrderCreated, OrderItemAdded, OrderShipped};
use sqlx::Row;
use uuid::Uuid;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The read model's database: the event store's own.
#[derive(Clone)]
enum Db {
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// Runs one statement with its parameters on either database (the SQL is written once:
/// `$n` parameters and `ON CONFLICT` mean the same in both).
macro_rules! execute {
    ($db:expr, $sql:expr $(, $bind:expr)*) => {
        match $db {
            Db::Sqlite(pool) => sqlx::query($sql)$(.bind($bind))*.execute(pool).await.map(|_| ()),
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => sqlx::query($sql)$(.bind($bind))*.execute(pool).await.map(|_| ()),
        }
    };
}

/// One row per order, in a table of the event store's database.
struct OrderSummaries {
    db: Db,
}

impl OrderSummaries {
    async fn create_table(db: &Db) -> Result<(), Error> {
        execute!(
            db,
            "CREATE TABLE IF NOT EXISTS order_summaries (
                order_id TEXT PRIMARY KEY, status TEXT NOT NULL, items BIGINT NOT NULL,
                total DOUBLE PRECISION NOT NULL, tracking TEXT)"
        )?;
        Ok(())
    }

    /// `(order id, status, items, total, tracking)` by order id.
    async fn rows(db: &Db) -> Result<Vec<(String, String, i64, f64, Option<String>)>, Error> {
        const SQL: &str = "SELECT order_id, status, items, total, tracking FROM order_summaries ORDER BY order_id";
        fn row<R: Row>(row: &R) -> Result<(String, String, i64, f64, Option<String>), sqlx::Error>
        where
            usize: sqlx::ColumnIndex<R>,
            for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        {
            Ok((
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
                row.try_get(4)?,
            ))
        }
        let rows = match db {
            Db::Sqlite(pool) => sqlx::query(SQL)
                .fetch_all(pool)
                .await?
                .iter()
                .map(row)
                .collect::<Result<_, _>>()?,
            #[cfg(feature = "postgres")]
            Db::Postgres(pool) => sqlx::query(SQL)
                .fetch_all(pool)
                .await?
                .iter()
                .map(row)
                .collect::<Result<_, _>>()?,
        };
        Ok(rows)
    }
}

#[projection(name = "order-summaries")]
impl OrderSummaries {
    #[handles(OrderCreated)]
    async fn on_created(&mut self, e: &Event<OrderCreated>) -> Result<(), sqlx::Error> {
        execute!(
            &self.db,
            "INSERT INTO order_summaries VALUES ($1, 'created', 0, $2, NULL) \
             ON CONFLICT (order_id) DO UPDATE SET status = 'created', items = 0, total = $2, tracking = NULL",
            e.aggregate_id().to_string(),
            e.total_amount
        )
    }

    #[handles(OrderItemAdded)]
    async fn on_item_added(&mut self, e: &Event<OrderItemAdded>) -> Result<(), sqlx::Error> {
        execute!(
            &self.db,
            "UPDATE order_summaries SET items = items + 1, total = total + $2 WHERE order_id = $1",
            e.aggregate_id().to_string(),
            f64::from(e.quantity) * e.unit_price
        )
    }

    #[handles(OrderShipped)]
    async fn on_shipped(&mut self, e: &Event<OrderShipped>) -> Result<(), sqlx::Error> {
        execute!(
            &self.db,
            "UPDATE order_summaries SET status = 'shipped', tracking = $2 WHERE order_id = $1",
            e.aggregate_id().to_string(),
            &e.tracking_number
        )
    }

    /// The table outlives the value, so a rebuild empties it here.
    #[reset]
    async fn clear(&mut self) -> Result<(), sqlx::Error> {
        execute!(&self.db, "DELETE FROM order_summaries")
    }
}

/// Where the events go: a SQLite file (the default) or a PostgreSQL schema.
enum Target {
    Sqlite(String),
    Postgres { url: String, schema: String },
}

fn target() -> Target {
    let mut args = std::env::args().skip(1);
    let (mut db, mut postgres, mut schema) = (None, None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--db" => db = args.next(),
            "--postgres" => postgres = args.next(),
            "--schema" => schema = args.next(),
            _ => {}
        }
    }
    match postgres.or_else(|| std::env::var("EVENTSOURCE_QUICKSTART_POSTGRES").ok()) {
        Some(url) => Target::Postgres {
            url,
            schema: schema.unwrap_or_else(|| "eventsource_quickstart".to_owned()),
        },
        None => Target::Sqlite(
            db.or_else(|| std::env::var("EVENTSOURCE_QUICKSTART_DB").ok())
                .unwrap_or_else(|| "eventsource-quickstart.sqlite".to_owned()),
        ),
    }
}

/// The store, its checkpoint and dead-letter repositories, and the read model's database.
struct Backend {
    store: Arc<dyn EventStore>,
    checkpoints: Arc<dyn CheckpointRepository>,
    dead_letters: Arc<dyn DlqRepository>,
    db: Db,
}

async fn open(target: &Target) -> Result<Backend, Error> {
    match target {
        Target::Sqlite(path) => {
            let store = SqliteEventStore::open(path).await?;
            store.migrate().await?;
            let absolute =
                std::fs::canonicalize(path).map_or(path.clone(), |p| p.display().to_string());
            println!("Event store: {absolute} (SQLite, WAL, durable commits)");
            Ok(Backend {
                checkpoints: Arc::new(SqliteCheckpointRepository::new(&store)),
                dead_letters: Arc::new(SqliteDlqRepository::new(&store)),
                db: Db::Sqlite(store.pool().clone()),
                store: Arc::new(store),
            })
        }
        #[cfg(feature = "postgres")]
        Target::Postgres { url, schema } => {
            use eventsource::{
                PostgresCheckpointRepository, PostgresDlqRepository, PostgresEventStore,
            };
            let store = PostgresEventStore::connect(url, schema).await?;
            store.migrate().await?;
            // The read model's table goes next to the events, in the same schema.
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .after_connect({
                    let path = format!("SET search_path TO {schema}");
                    move |connection, _| {
                        let path = path.clone();
                        Box::pin(async move {
                            sqlx::Executor::execute(connection, sqlx::AssertSqlSafe(path))
                                .await
                                .map(|_| ())
                        })
                    }
                })
                .connect(url)
                .await?;
            println!("Event store: {url}, schema {schema} (PostgreSQL)");
            Ok(Backend {
                checkpoints: Arc::new(PostgresCheckpointRepository::new(&store)),
                dead_letters: Arc::new(PostgresDlqRepository::new(&store)),
                db: Db::Postgres(pool),
                store: Arc::new(store),
            })
        }
        #[cfg(not(feature = "postgres"))]
        Target::Postgres { url, schema } => Err(format!(
            "PostgreSQL ({url}, schema {schema}) needs the example built with `--features postgres`"
        )
        .into()),
    }
}

/// How many events the store holds, read page by page (positions are not counts: on
/// PostgreSQL they follow transaction ids).
async fn count_events(store: &dyn EventStore) -> Result<usize, eventsource::StoreError> {
    let (mut count, mut after) = (0, 0);
    loop {
        let page = store
            .read_all_batch(&eventsource::ReadAll::from_start(), after, 500)
            .await?;
        let Some(last) = page.last() else {
            return Ok(count);
        };
        after = last.position;
        count += page.len();
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let target = target();
    let Backend {
        store,
        checkpoints,
        dead_letters,
        db,
    } = open(&target).await?;
    OrderSummaries::create_table(&db).await?;
    println!(
        "It already holds {} events. {}\n",
        count_events(store.as_ref()).await?,
        match target {
            Target::Sqlite(_) => "Delete the file to start over.",
            Target::Postgres { .. } => "Drop the schema to start over.",
        }
    );

    let orders = AggregateRepository::<Order, _>::new(Arc::clone(&store));

    // Orders opened by an earlier run are rebuilt from their events and shipped now.
    let open: Vec<String> = OrderSummaries::rows(&db)
        .await?
        .into_iter()
        .filter(|row| row.1 == "created")
        .map(|row| row.0)
        .collect();
    for id in open {
        let id = Uuid::parse_str(&id)?;
        let mut order = orders.load(id).await?;
        println!(
            "Order {id} from an earlier run: rebuilt from {} events, total {:.2}.",
            order.version(),
            order.state().total_amount
        );
        let tracking = format!("TRACK-{}", &id.simple().to_string()[24..]);
        order.execute(|o| o.ship(&tracking))?;
        orders.save(&mut order).await?;
        println!(
            "  command ship -> event order.shipped ({tracking}), now at version {}",
            order.version()
        );
    }

    // A new order: three commands, three events, one append.
    let id = Uuid::now_v7();
    let mut order = orders.load_or_create(id).await?;
    order.execute(|o| o.create(Uuid::now_v7(), 0.0))?;
    order.execute(|o| o.add_item("Widget", 2, 15.0))?;
    order.execute(|o| o.add_item("Gadget", 1, 30.0))?;
    for event in order.uncommitted() {
        println!(
            "New order {id}: event {} (version {})",
            event.envelope.event_name, event.envelope.aggregate_version
        );
    }
    let saved = orders.save(&mut order).await?;
    println!(
        "  saved in one append, global positions up to {}\n",
        saved.global_position()
    );

    // The projection reads the log from its checkpoint: only what it has not seen yet.
    let before = checkpoints
        .load("order-summaries")
        .await?
        .map_or(0, |c| c.position);
    let mut runner = ProjectionRunner::new(Arc::clone(&store))
        .checkpoints(checkpoints)
        .dead_letters(dead_letters)
        .retry(RetryPolicy::immediate(3))
        .with(OrderSummaries { db: db.clone() });
    let report = runner.catch_up().await?;
    println!(
        "Projection order-summaries: checkpoint was at {before}, read {} new events, now at {}.",
        report.events_read, report.position
    );

    println!("Read model (table order_summaries):");
    for (id, status, items, total, tracking) in OrderSummaries::rows(&db).await? {
        println!(
            "  {id}  {status:<8} {items} items  {total:>7.2}  {}",
            tracking.as_deref().unwrap_or("-")
        );
    }
    println!("\nRun it again: the open order ships, and the projection picks up where it stopped.");
    Ok(())
}
