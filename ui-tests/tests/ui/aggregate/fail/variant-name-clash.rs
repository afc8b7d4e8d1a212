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

mod sales {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
    #[event(aggregate = "Order", name = "sales.OrderCreated")]
    pub struct OrderCreated {
        pub total: u64,
    }
}

#[aggregate]
impl Order {
    #[handles(OrderCreated)]
    fn on_created(&mut self, event: &OrderCreated) {
        self.total = event.total;
    }

    #[handles(sales::OrderCreated)]
    fn on_sales_created(&mut self, event: &sales::OrderCreated) {
        self.total += event.total;
    }
}

fn main() {}
