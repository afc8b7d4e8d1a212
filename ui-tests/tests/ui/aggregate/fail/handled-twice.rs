use eventsource::{aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
pub struct Created {
    pub n: u32,
}

#[derive(Debug, Default)]
pub struct Order {
    pub n: u32,
}

#[aggregate]
impl Order {
    #[handles(Created)]
    fn on_created(&mut self, e: &Created) {
        self.n += e.n;
    }

    #[handles(Created)]
    fn on_created_again(&mut self, e: &Created) {
        self.n += e.n;
    }
}

fn main() {}
