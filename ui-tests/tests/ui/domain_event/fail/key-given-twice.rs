use eventsource::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order", name = "a", name = "b")]
pub struct Created {
    pub n: u32,
}

fn main() {}
