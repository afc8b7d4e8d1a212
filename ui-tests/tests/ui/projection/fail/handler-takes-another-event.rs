use eventsource::{projection, DomainEvent, Event};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
pub struct Created {
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
pub struct Shipped {
    pub tracking: String,
}

#[derive(Debug, Default)]
pub struct Summary {
    pub shipped: bool,
}

#[projection]
impl Summary {
    #[handles(Created)]
    async fn on_shipped(&mut self, _: &Event<Shipped>) -> Result<(), std::io::Error> {
        self.shipped = true;
        Ok(())
    }
}

fn main() {}
