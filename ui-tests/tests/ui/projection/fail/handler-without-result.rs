use eventsource::{projection, DomainEvent, Event};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
pub struct Created {
    pub total: u64,
}

#[derive(Debug, Default)]
pub struct Summary {
    pub total: u64,
}

#[projection]
impl Summary {
    #[handles(Created)]
    async fn on_created(&mut self, e: &Event<Created>) {
        self.total += e.total;
    }
}

fn main() {}
