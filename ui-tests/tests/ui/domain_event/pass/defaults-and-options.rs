//! Defaults (name = the type's name, version 1) and explicit options, on structs and enums.
#![deny(unused_qualifications, deprecated, warnings)]

use eventsource::{DomainEvent, EventRegistry};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
pub struct OrderCreated {
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order", name = "order.shipped", version = 2)]
pub struct OrderShipped(pub String);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(version = 3)]
#[event(aggregate = "Order")]
pub enum OrderClosed {
    Delivered,
    Lost { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
pub struct OrderArchived;

fn main() {
    assert_eq!(
        (OrderCreated::NAME, OrderCreated::VERSION, OrderCreated::AGGREGATE_TYPE),
        ("OrderCreated", 1, "Order")
    );
    assert_eq!((OrderShipped::NAME, OrderShipped::VERSION), ("order.shipped", 2));
    assert_eq!((OrderClosed::NAME, OrderClosed::VERSION), ("OrderClosed", 3));
    assert_eq!(OrderArchived::NAME, "OrderArchived");

    let registry = EventRegistry::global().unwrap();
    let names: Vec<_> = registry.names().collect();
    assert_eq!(names, ["OrderArchived", "OrderClosed", "OrderCreated", "order.shipped"]);
    let shipped = registry.get("order.shipped").unwrap();
    assert_eq!((shipped.version, shipped.aggregate_type), (2, "Order"));
    assert!(shipped.rust_type.ends_with("OrderShipped"));
}
