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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order", name = "OrderCreated", version = 2)]
struct OrderCreatedV2 {
    total: u64,
    currency: String,
}

#[aggregate]
impl Order {
    #[handles(OrderCreated)]
    fn on_created(&mut self, event: &OrderCreated) {
        self.total = event.total;
    }

    #[handles(OrderCreatedV2)]
    fn on_created_v2(&mut self, event: &OrderCreatedV2) {
        self.total = event.total;
    }
}

fn main() {}
