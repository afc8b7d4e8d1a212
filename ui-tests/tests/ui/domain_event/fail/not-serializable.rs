use eventsource::DomainEvent;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
pub struct Created {
    pub n: u32,
}

fn main() {}
