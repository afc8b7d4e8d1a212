//! Private event types and a private aggregate inside a module: the generated enum
//! must not leak them (no private-in-public error, no warning).
#![deny(warnings)]

mod inventory_domain {
    use eventsource::{aggregate, DomainEvent};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
    #[event(aggregate = "Stock")]
    struct Received {
        quantity: u32,
    }

    #[derive(Debug, Default)]
    struct Stock {
        quantity: u32,
    }

    #[aggregate]
    impl Stock {
        #[handles(Received)]
        fn on_received(&mut self, event: &Received) {
            self.quantity += event.quantity;
        }
    }

    pub fn run() -> u32 {
        let mut stock = eventsource::AggregateRoot::<Stock>::new(uuid::Uuid::now_v7());
        stock.record(Received { quantity: 5 });
        let replayed = stock.uncommitted_events().unwrap();
        assert_eq!(replayed, [StockEvent::Received(Received { quantity: 5 })]);
        stock.state().quantity
    }
}

fn main() {
    assert_eq!(inventory_domain::run(), 5);
}
