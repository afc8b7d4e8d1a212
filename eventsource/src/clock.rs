//! Where event ids and timestamps come from.

use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Source of event ids and timestamps for an [`AggregateRoot`](crate::AggregateRoot).
///
/// The default is the system clock with UUID v7 ids. Tests install a deterministic one
/// (`eventsource-test` ships one) so that recorded streams are reproducible.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
    /// A fresh, unique event id.
    fn new_event_id(&self) -> Uuid;
}

/// The system clock and random UUID v7 ids.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn new_event_id(&self) -> Uuid {
        Uuid::now_v7()
    }
}
