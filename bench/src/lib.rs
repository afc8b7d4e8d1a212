//! The benchmark domain and workloads shared by every backend.
//!
//! Every event is `Incremented { amount: 1, note: <32 bytes> }`; an aggregate is a
//! UUID-identified counter whose state `(count, sum)` is rebuilt through the generated
//! dispatch.

use eventsource::{DomainEvent, aggregate};
use serde::{Deserialize, Serialize};

/// The one event of every workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Counter")]
pub struct Incremented {
    /// Always 1.
    pub amount: u64,
    /// A 32-byte string.
    pub note: String,
}

/// The 32-byte note every event carries.
pub const NOTE: &str = "abcdefghijklmnopqrstuvwxyz012345";

impl Incremented {
    /// The workload's event.
    pub fn sample() -> Self {
        Incremented {
            amount: 1,
            note: NOTE.to_owned(),
        }
    }
}

/// A counter: how many events and the sum of their amounts.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counter {
    /// Events applied.
    pub count: u64,
    /// Sum of amounts.
    pub sum: u64,
}

#[aggregate]
impl Counter {
    #[handles(Incremented)]
    fn on_incremented(&mut self, event: &Incremented) {
        self.count += 1;
        self.sum += event.amount;
    }
}

impl Counter {
    /// The command: always increments by one.
    pub fn increment(&self) -> Result<Incremented, std::convert::Infallible> {
        Ok(Incremented::sample())
    }

    /// The batch command: `n` increments by one, decided at once (one append when saved).
    pub fn increment_many(&self, n: usize) -> Result<Vec<Incremented>, std::convert::Infallible> {
        Ok((0..n).map(|_| Incremented::sample()).collect())
    }
}
