//! An aggregate with several events: commands record them, the root replays them.
#![deny(unused_qualifications, deprecated, warnings)]

use eventsource::{aggregate, Aggregate, AggregateEvent, AggregateRoot, DomainEvent, Handles};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order", name = "order.created")]
pub struct OrderCreated {
    pub customer: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order", name = "order.item_added", version = 2)]
pub struct ItemAdded {
    pub sku: String,
    pub price: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
pub enum OrderClosed {
    Shipped { tracking: String },
    Cancelled,
}

#[derive(Debug, Default)]
pub struct Order {
    customer: Option<String>,
    total: u64,
    closed: bool,
}

#[aggregate]
impl Order {
    #[handles(OrderCreated)]
    fn on_created(&mut self, event: &OrderCreated) {
        self.customer = Some(event.customer.clone());
    }

    #[handles(ItemAdded)]
    fn on_item_added(&mut self, event: &ItemAdded) {
        self.total += event.price;
    }

    #[handles(OrderClosed)]
    fn on_closed(&mut self, _event: &OrderClosed) {
        self.closed = true;
    }

    /// Not a handler: left alone.
    pub fn total(&self) -> u64 {
        self.total
    }
}

fn main() {
    assert_eq!(Order::TYPE, "Order");
    assert_eq!(Order::HANDLED, ["order.created", "order.item_added", "OrderClosed"]);

    let mut root = AggregateRoot::<Order>::new(uuid::Uuid::now_v7());
    root.execute(|_| {
        Ok::<_, String>((
            OrderCreated { customer: "ada".into() },
            vec![ItemAdded { sku: "a".into(), price: 3 }, ItemAdded { sku: "b".into(), price: 4 }],
        ))
    })
    .unwrap();
    root.record(OrderClosed::Cancelled);
    assert_eq!(root.state().total(), 7);
    assert!(root.state().closed);
    assert_eq!(root.state().customer.as_deref(), Some("ada"));
    assert_eq!(root.version(), 4);

    let events = root.uncommitted_events().unwrap();
    assert_eq!(events[1], OrderEvent::ItemAdded(ItemAdded { sku: "a".into(), price: 3 }));
    assert_eq!(events[3].event_name(), "OrderClosed");
    assert_eq!(events[1].schema_version(), 2);
    assert_eq!(OrderEvent::from(OrderClosed::Cancelled), OrderEvent::OrderClosed(OrderClosed::Cancelled));

    let mut replayed = Order::default();
    for event in &events {
        replayed.apply_event(event);
    }
    assert_eq!(replayed.total(), 7);
    Handles::<ItemAdded>::handle(&mut replayed, &ItemAdded { sku: "c".into(), price: 1 });
    assert_eq!(replayed.total(), 8);
}
