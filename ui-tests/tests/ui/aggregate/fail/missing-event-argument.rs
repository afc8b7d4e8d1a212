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
impl Order {
    #[handles(OrderCreated)]
    fn on_created(&mut self) {
        self.total = 1;
    }
}

fn main() {}
