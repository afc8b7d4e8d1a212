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

#[aggregate(name = "Order", name = "sales.Order")]
impl Order {
    #[handles(OrderCreated)]
    fn on_created(&mut self, event: &OrderCreated) {
        self.total = event.total;
    }
}

fn main() {}
