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

#[derive(Default)]
struct SwitchCount {
    count: u64,
}

#[es::projection(crate = "crate::framework::es")]
impl SwitchCount {
    #[handles(Switched)]
    async fn on_switched(&mut self, _: &es::Event<Switched>) -> Result<(), es::BoxError> {
        self.count += 1;
        Ok(())
    }
}

fn main() {
    let counter = SwitchCount::default();
    assert_eq!(es::projection::Projection::name(&counter), "SwitchCount");
    assert_eq!(counter.count, 0);
}
