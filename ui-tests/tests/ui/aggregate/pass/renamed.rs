//! `name` sets the stored aggregate type, `event_enum` the generated enum's name; events
//! may be named by path.

use eventsource::{aggregate, Aggregate, AggregateEvent, AggregateRoot, DomainEvent};

mod events {
    use eventsource::DomainEvent;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
    #[event(aggregate = "billing.Invoice", name = "billing.invoice_issued")]
    pub struct Issued {
        pub amount: u64,
    }
}

#[derive(Debug, Default)]
struct Invoice {
    amount: u64,
}

#[aggregate(name = "billing.Invoice", event_enum = "InvoiceHistory")]
impl Invoice {
    #[eventsource::handles(events::Issued)]
    fn on_issued(&mut self, event: &events::Issued) {
        self.amount = event.amount;
    }
}

fn main() {
    assert_eq!(Invoice::TYPE, "billing.Invoice");
    let mut root = AggregateRoot::<Invoice>::new(uuid::Uuid::now_v7());
    root.execute(|_| Ok::<_, ()>(InvoiceHistory::Issued(events::Issued { amount: 9 })))
        .unwrap();
    assert_eq!(root.state().amount, 9);
    assert_eq!(root.uncommitted()[0].envelope.aggregate_type, "billing.Invoice");
    let event = &root.uncommitted_events().unwrap()[0];
    assert_eq!(event.event_name(), <events::Issued as DomainEvent>::NAME);
}
