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

/// A UUID v7 and a timestamp from one clock read (the system clock path of
/// `AggregateRoot`, which records many events per command).
pub(crate) fn now_with_id() -> (Uuid, DateTime<Utc>) {
    let now = Utc::now();
    let seconds = u64::try_from(now.timestamp()).unwrap_or(0);
    // A per-thread v7 context keeps a thread's ids monotonic within a millisecond without
    // the lock of uuid's process-wide one; ids of different threads differ in their
    // random bits.
    thread_local! {
        static CONTEXT: uuid::timestamp::context::ContextV7 = const { uuid::timestamp::context::ContextV7::new() };
    }
    let id = CONTEXT.with(|context| {
        Uuid::new_v7(uuid::Timestamp::from_unix(
            context,
            seconds,
            now.timestamp_subsec_nanos(),
        ))
    });
    (id, now)
}
