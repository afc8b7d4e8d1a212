use eventsource::{aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
pub struct Created {
    pub n: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
pub struct Shipped {
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
}

fn main() {
    let mut order = eventsource::AggregateRoot::<Order>::new(uuid::Uuid::nil());
    order.record(Shipped { n: 1 });
}
