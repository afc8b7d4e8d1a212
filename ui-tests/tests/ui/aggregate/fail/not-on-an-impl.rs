use eventsource::{aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
struct OrderCreated {
    total: u64,
}

#[derive(Debug, Default)]
struct Order {
    total: u64,
}

#[aggregate]
struct Invoice {
    total: u64,
}

impl Order {
    fn total(&self) -> u64 {
        self.total
    }
}

fn main() {}
