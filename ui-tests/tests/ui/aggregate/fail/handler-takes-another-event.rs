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
#[event(aggregate = "Order")]
struct OrderPaid {
    amount: u64,
}

#[aggregate]
impl Order {
    #[handles(OrderCreated)]
    fn on_created(&mut self, event: &OrderPaid) {
        self.total = event.amount;
    }
}

fn main() {}
