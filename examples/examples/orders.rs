//! The order domain end to end, in memory: commands, business rules, the event store, a
//! bus feeding a read model, a concurrency conflict, and the history of one order.
//!
//! ```text
//! cargo run -p eventsource-examples --example orders
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use eventsource::{
    AggregateRepository, DomainEvent, InMemoryEventBus, InMemoryEventStore, RecordedEvent,
};
use eventsource_examples::{Order, OrderCreated, OrderItemAdded, OrderShipped};
use uuid::Uuid;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A read model: one line per order, kept up to date from published events.
#[derive(Default)]
struct OrderSummaries {
    rows: Mutex<HashMap<Uuid, String>>,
}

impl OrderSummaries {
    fn apply(&self, event: &RecordedEvent) -> Result<(), Error> {
        let mut rows = self.rows.lock().map_err(|_| "read model lock poisoned")?;
        let id = event.aggregate_id();
        let line = if event.is::<OrderCreated>() {
            let created: OrderCreated = event.decode()?;
            format!("created for customer {}", created.customer_id)
        } else if event.is::<OrderItemAdded>() {
            let added: OrderItemAdded = event.decode()?;
            let before = rows.get(&id).cloned().unwrap_or_default();
            format!("{before}; +{} x {}", added.quantity, added.product_name)
        } else if event.is::<OrderShipped>() {
            let shipped: OrderShipped = event.decode()?;
            let before = rows.get(&id).cloned().unwrap_or_default();
            format!("{before}; shipped ({})", shipped.tracking_number)
        } else {
            return Ok(());
        };
        rows.insert(id, line);
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let store = Arc::new(InMemoryEventStore::new());
    let bus = Arc::new(InMemoryEventBus::new());
    let summaries = Arc::new(OrderSummaries::default());
    let read_model = Arc::clone(&summaries);
    bus.subscribe_fn("order-summaries", move |event| read_model.apply(event));
    let orders = AggregateRepository::<Order, _>::new(Arc::clone(&store)).with_bus(bus);

    // Commands decide; events change state.
    let order_id = Uuid::now_v7();
    let mut order = orders.load_or_create(order_id).await?;
    order.execute(|o| o.create(Uuid::now_v7(), 0.0))?;
    order.execute(|o| o.add_item("Widget", 2, 15.0))?;
    order.execute(|o| o.add_item("Gadget", 1, 30.0))?;
    println!(
        "order {order_id}: {} uncommitted events",
        order.uncommitted().len()
    );
    let saved = orders.save(&mut order).await?;
    println!(
        "saved at version {} (global position {})",
        saved.new_version,
        saved.global_position()
    );

    // Business rules are ordinary errors.
    let mut order = orders.load(order_id).await?;
    match order.execute(|o| o.create(Uuid::now_v7(), 1.0)) {
        Err(error) => println!("create again refused: {error}"),
        Ok(()) => return Err("creating twice must be refused".into()),
    }

    // Two writers load the same version; the second save is a conflict.
    let mut first = orders.load(order_id).await?;
    let mut second = orders.load(order_id).await?;
    first.execute(|o| o.ship("TRACK-123"))?;
    orders.save(&mut first).await?;
    second.execute(|o| o.add_item("Late item", 1, 5.0))?;
    match orders.save(&mut second).await {
        Err(error) if error.is_conflict() => println!("concurrent change refused: {error}"),
        other => return Err(format!("expected a conflict, got {other:?}").into()),
    }

    // State is rebuilt from history.
    let order = orders.load(order_id).await?;
    let state = order.state();
    println!(
        "order is {:?} at version {}: {} items, total {:.2}, tracking {}",
        state.status,
        order.version(),
        state.items.len(),
        state.total_amount,
        state.tracking_number.as_deref().unwrap_or("-")
    );
    assert_eq!(order.version(), 4);
    assert_eq!(state.total_amount, 60.0);

    println!("history:");
    for event in store.all_events() {
        println!(
            "  #{} v{} {} {}",
            event.position,
            event.aggregate_version(),
            event.name(),
            event.payload.to_json()?
        );
    }
    let rows = summaries
        .rows
        .lock()
        .map_err(|_| "read model lock poisoned")?;
    println!(
        "read model: {}",
        rows.get(&order_id).map(String::as_str).unwrap_or("(none)")
    );
    println!(
        "{} is stored as `{}`",
        std::any::type_name::<OrderShipped>(),
        OrderShipped::NAME
    );
    Ok(())
}
