use eventsource::DomainEvent;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
pub struct Created<T> {
    pub n: T,
}

fn main() {}
