//! The whole loop with no server: commands on an aggregate, events in a SQLite file, a
//! projection keeping a read model (in the same file) up to date with its checkpoint.
//! Run it twice: the second run continues from what the first one stored.
//!
//! ```text
//! cargo run -p eventsource-examples --example quickstart                 # ./eventsource-quickstart.sqlite
//! cargo run -p eventsource-examples --example quickstart -- --db /tmp/x.sqlite
//! ```
//! (`EVENTSOURCE_QUICKSTART_DB` also sets the file.)

use std::sync::Arc;

use eventsource::projection::{CheckpointRepository, ProjectionRunner, RetryPolicy};
use eventsource::{
    AggregateRepository, Event, EventStore, SqliteCheckpointRepository, SqliteDlqRepository,
    SqliteEventStore, projection,
};
use eventsource_examples::{Order, OrderCreated, OrderItemAdded, OrderShipped};
use sqlx::{Row, SqlitePool};
use uuid::Uuid;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// One row per order, in a table of the same SQLite file.
struct OrderSummaries {
    pool: SqlitePool,
}

impl OrderSummaries {
    async fn create_table(pool: &SqlitePool) -> Result<(), Error> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS order_summaries (
                order_id TEXT PRIMARY KEY, status TEXT NOT NULL, items INTEGER NOT NULL,
                total REAL NOT NULL, tracking TEXT)",
        )
        .execute(pool)
        .await?;
        Ok(())
    }
}

#[projection(name = "order-summaries")]
impl OrderSummaries {
    #[handles(OrderCreated)]
    async fn on_created(&mut self, e: &Event<OrderCreated>) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT OR REPLACE INTO order_summaries VALUES (?1, 'created', 0, ?2, NULL)")
            .bind(e.aggregate_id().to_string())
            .bind(e.total_amount)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    #[handles(OrderItemAdded)]
    async fn on_item_added(&mut self, e: &Event<OrderItemAdded>) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE order_summaries SET items = items + 1, total = total + ?2 WHERE order_id = ?1",
        )
        .bind(e.aggregate_id().to_string())
        .bind(f64::from(e.quantity) * e.unit_price)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[handles(OrderShipped)]
    async fn on_shipped(&mut self, e: &Event<OrderShipped>) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE order_summaries SET status = 'shipped', tracking = ?2 WHERE order_id = ?1",
        )
        .bind(e.aggregate_id().to_string())
        .bind(&e.tracking_number)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The table outlives the value, so a rebuild empties it here.
    #[reset]
    async fn clear(&mut self) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM order_summaries")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn database_path() -> String {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--db"
            && let Some(path) = args.next()
        {
            return path;
        }
    }
    std::env::var("EVENTSOURCE_QUICKSTART_DB")
        .unwrap_or_else(|_| "eventsource-quickstart.sqlite".to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let path = database_path();
    let store = SqliteEventStore::open(&path).await?;
    store.migrate().await?;
    OrderSummaries::create_table(store.pool()).await?;
    let absolute = std::fs::canonicalize(&path).map_or(path.clone(), |p| p.display().to_string());
    println!("Event store: {absolute} (SQLite, WAL, durable commits)");
    println!(
        "It already holds {} events. Delete the file to start over.\n",
        store.current_position().await?
    );

    let orders = AggregateRepository::<Order, _>::new(store.clone());

    // Orders opened by an earlier run are rebuilt from their events and shipped now.
    let open: Vec<String> =
        sqlx::query("SELECT order_id FROM order_summaries WHERE status = 'created'")
            .fetch_all(store.pool())
            .await?
            .iter()
            .map(|row| row.get(0))
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
    let checkpoints = Arc::new(SqliteCheckpointRepository::new(&store));
    let before = checkpoints
        .load("order-summaries")
        .await?
        .map_or(0, |c| c.position);
    let mut runner = ProjectionRunner::new(Arc::new(store.clone()))
        .checkpoints(checkpoints)
        .dead_letters(Arc::new(SqliteDlqRepository::new(&store)))
        .retry(RetryPolicy::immediate(3))
        .with(OrderSummaries {
            pool: store.pool().clone(),
        });
    let report = runner.catch_up().await?;
    println!(
        "Projection order-summaries: checkpoint was at {before}, read {} new events, now at {}.",
        report.events_read, report.position
    );

    println!("Read model (table order_summaries):");
    for row in sqlx::query(
        "SELECT order_id, status, items, total, tracking FROM order_summaries ORDER BY order_id",
    )
    .fetch_all(store.pool())
    .await?
    {
        let tracking: Option<String> = row.get(4);
        println!(
            "  {}  {:<8} {} items  {:>7.2}  {}",
            row.get::<String, _>(0),
            row.get::<String, _>(1),
            row.get::<i64, _>(2),
            row.get::<f64, _>(3),
            tracking.as_deref().unwrap_or("-")
        );
    }
    println!("\nRun it again: the open order ships, and the projection picks up where it stopped.");
    store.close().await;
    Ok(())
}
