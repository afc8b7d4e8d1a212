use eventsource::{aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Order")]
pub struct Created {
    pub n: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "sales.order", name = "order.shipped")]
pub struct Shipped {
    pub n: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "sales.order")]
struct Private {
    n: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "sales.order")]
pub struct Renamed {
    pub n: u32,
}

#[derive(Debug, Default)]
pub struct Order {
    pub n: u32,
}

#[aggregate(name = "sales.order", unhandled = "ignore", event_enum = "OrderEvents")]
impl Order {
    /// Handlers may carry docs and other attributes.
    #[handles(Shipped)]
    #[inline]
    fn on_shipped(&mut self, e: &Shipped) {
        self.n += e.n;
    }

    #[handles(Private)]
    fn on_private(&mut self, e: &Private) {
        self.n += e.n;
    }

    #[handles(Renamed)]
    fn on_renamed(&mut self, e: &Renamed) {
        self.n += e.n;
    }

    pub fn ship(&self, n: u32) -> Result<(Shipped, Option<Renamed>), String> {
        Ok((Shipped { n }, None))
    }
}

fn main() {
    use eventsource::Aggregate;
    assert_eq!(Order::TYPE, "sales.order");
    assert_eq!(Order::HANDLED, ["order.shipped", "Private", "Renamed"]);
    let mut order = eventsource::AggregateRoot::<Order>::new(uuid::Uuid::nil());
    order.execute(|o| o.ship(2)).unwrap();
    order.record(Private { n: 3 });
    order.record_event(OrderEvents::Renamed(Renamed { n: 4 }));
    assert_eq!(order.state().n, 9);
    assert_eq!(order.version(), 3);
    let _ = Created { n: 0 };
}
