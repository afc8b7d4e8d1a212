use eventsource::{aggregate, DomainEvent};
use eventsource_test::given_when_then;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
pub struct Created {
    pub total: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
pub struct Shipped {
    pub tracking: String,
}

#[derive(Debug, Default, PartialEq)]
pub struct Order {
    pub created: bool,
    pub shipped: bool,
}

#[aggregate]
impl Order {
    #[handles(Created)]
    fn on_created(&mut self, _: &Created) {
        self.created = true;
    }

    #[handles(Shipped)]
    fn on_shipped(&mut self, _: &Shipped) {
        self.shipped = true;
    }
}

#[derive(Debug, PartialEq)]
pub enum OrderError {
    NotCreated,
}

impl std::fmt::Display for OrderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("order must be created first")
    }
}

impl Order {
    pub fn ship(&self, tracking: &str) -> Result<Shipped, OrderError> {
        if !self.created || self.shipped {
            return Err(OrderError::NotCreated);
        }
        Ok(Shipped { tracking: tracking.into() })
    }
}

fn main() {
    given_when_then! {
        given: [Created { total: 1 }],
        when: |order| order.ship("T-1"),
        then: [Shipped { tracking: "T-1".into() }],
    }
}
