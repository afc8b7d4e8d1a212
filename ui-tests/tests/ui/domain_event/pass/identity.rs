use eventsource::{aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
pub struct Created {
    pub n: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order", name = "order.shipped", version = 3)]
pub struct Shipped {
    pub n: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order", crate = "::eventsource")]
pub enum Cancelled {
    ByCustomer,
    ByShop { reason: String },
}

fn main() {
    assert_eq!(Created::NAME, "Created");
    assert_eq!(Created::VERSION, 1);
    assert_eq!(Shipped::NAME, "order.shipped");
    assert_eq!(Shipped::VERSION, 3);
    assert_eq!(Cancelled::AGGREGATE_TYPE, "Order");
    let registry = eventsource::EventRegistry::global().unwrap();
    assert!(registry.get("order.shipped").is_some());
}
