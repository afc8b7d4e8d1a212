//! A deterministic clock and id generator, so recorded streams are reproducible.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, TimeZone, Utc};
use eventsource::Clock;
use uuid::Uuid;

/// A [`Clock`] for tests: time starts at a fixed instant and advances by a fixed step on
/// every reading; ids are handed out in sequence. An `AggregateRoot` reads the time once
/// per command, so the events of one command share an instant and the next command's are
/// one step later.
///
/// Two runs of the same test record the same ids and timestamps, so failure messages
/// and snapshots are stable. Ids are valid UUID v7 values whose timestamp is the clock's
/// start and whose low bits count up; [`id`](Self::id) predicts the `n`th one.
///
/// ```
/// use eventsource::Clock;
/// use eventsource_test::TestClock;
///
/// let clock = TestClock::new();
/// assert_eq!(clock.now().to_rfc3339(), "2024-01-01T00:00:00+00:00");
/// assert_eq!(clock.now().to_rfc3339(), "2024-01-01T00:00:01+00:00");
/// assert_eq!(clock.new_event_id(), clock.id(1));
/// assert_eq!(clock.new_event_id(), clock.id(2));
/// assert!(clock.id(1) < clock.id(2));
/// ```
#[derive(Debug)]
pub struct TestClock {
    start: DateTime<Utc>,
    step: Duration,
    namespace: u16,
    ticks: AtomicU64,
    ids: AtomicU64,
}

impl Default for TestClock {
    fn default() -> Self {
        Self::new()
    }
}

impl TestClock {
    /// The instant every default clock starts at: 2024-01-01T00:00:00Z.
    pub fn default_start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    /// A clock starting at [`default_start`](Self::default_start), one second per reading.
    pub fn new() -> Self {
        Self::starting_at(Self::default_start())
    }

    /// A clock starting at `start`, one second per reading.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        TestClock {
            start,
            step: Duration::seconds(1),
            namespace: 0,
            ticks: AtomicU64::new(0),
            ids: AtomicU64::new(0),
        }
    }

    /// Advances by `step` per reading instead of one second.
    pub fn with_step(mut self, step: Duration) -> Self {
        self.step = step;
        self
    }

    /// Puts `namespace` into every id, so clocks with different namespaces never hand
    /// out the same id (the default namespace is 0).
    pub fn with_namespace(mut self, namespace: u16) -> Self {
        self.namespace = namespace;
        self
    }

    /// The `n`th id this clock hands out (the first is `id(1)`).
    pub fn id(&self, n: u64) -> Uuid {
        let millis = u64::try_from(self.start.timestamp_millis()).unwrap_or(0);
        let mut tail = [0u8; 10];
        tail[..2].copy_from_slice(&self.namespace.to_be_bytes());
        tail[2..].copy_from_slice(&n.to_be_bytes());
        uuid::Builder::from_unix_timestamp_millis(millis, &tail).into_uuid()
    }

    /// The time of the `n`th reading (the first is `time(1)`, the start).
    pub fn time(&self, n: u64) -> DateTime<Utc> {
        let steps = i32::try_from(n.saturating_sub(1)).unwrap_or(i32::MAX);
        self.start + self.step * steps
    }

    /// How many ids were handed out.
    pub fn ids_issued(&self) -> u64 {
        self.ids.load(Ordering::SeqCst)
    }

    /// Starts again from the first instant and the first id.
    pub fn reset(&self) {
        self.ticks.store(0, Ordering::SeqCst);
        self.ids.store(0, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        self.time(self.ticks.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn new_event_id(&self) -> Uuid {
        self.id(self.ids.fetch_add(1, Ordering::SeqCst) + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_advance_by_the_step_and_ids_count_up() {
        let clock = TestClock::new().with_step(Duration::milliseconds(250));
        let times: Vec<_> = (0..3).map(|_| clock.now()).collect();
        assert_eq!(times[1] - times[0], Duration::milliseconds(250));
        assert_eq!(times[2], clock.time(3));
        let ids: Vec<_> = (0..3).map(|_| clock.new_event_id()).collect();
        assert_eq!(ids, [clock.id(1), clock.id(2), clock.id(3)]);
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "ids sort in issue order"
        );
        assert_eq!(ids[0].get_version_num(), 7);
        assert_eq!(clock.ids_issued(), 3);
        clock.reset();
        assert_eq!(clock.new_event_id(), ids[0]);
        assert_eq!(clock.now(), times[0]);
    }

    #[test]
    fn namespaces_keep_ids_apart() {
        let a = TestClock::new();
        let b = TestClock::new().with_namespace(1);
        assert_ne!(a.new_event_id(), b.new_event_id());
        assert_eq!(TestClock::new().new_event_id(), TestClock::new().id(1));
    }
}
