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

#[derive(Debug, Default)]
struct Cart<T> {
    items: Vec<T>,
}

#[aggregate]
impl<T> Cart<T> {
    #[handles(OrderCreated)]
    fn on_created(&mut self, _event: &OrderCreated) {
        self.items.clear();
    }
}

fn main() {}
