//! `crate = "..."` roots the generated paths elsewhere, for crates that re-export
//! `eventsource` under another name.

mod framework {
    pub use eventsource as es;
}

use framework::es;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, es::DomainEvent)]
#[event(aggregate = "Lamp", crate = "crate::framework::es")]
struct Switched {
    on: bool,
}

#[derive(Debug, Default)]
struct Lamp {
    on: bool,
}

#[es::aggregate(crate = "crate::framework::es")]
impl Lamp {
    #[handles(Switched)]
    fn on_switched(&mut self, event: &Switched) {
        self.on = event.on;
    }
}

fn main() {
    let mut lamp = es::AggregateRoot::<Lamp>::new(uuid::Uuid::now_v7());
    lamp.record(Switched { on: true });
    assert!(lamp.state().on);
    assert_eq!(<Lamp as es::Aggregate>::TYPE, "Lamp");
}
