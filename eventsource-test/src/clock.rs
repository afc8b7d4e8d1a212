//! A deterministic clock: reproducible event ids and timestamps.

use std::sync::Mutex;

use chrono::{DateTime, Duration, TimeZone, Utc};
use eventsource::Clock;
use uuid::Uuid;

/// Ids `…-7000-8000-000000000001`, `…02`, … and timestamps from 2026-01-01T00:00:00Z,
/// one millisecond apart. Install it with `AggregateRoot::set_clock` so recorded streams
/// are the same on every run.
#[derive(Debug)]
pub struct DeterministicClock {
    state: Mutex<(u64, DateTime<Utc>)>,
    step: Duration,
}

impl Default for DeterministicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl DeterministicClock {
    /// Starts at 2026-01-01T00:00:00Z with a 1 ms step.
    pub fn new() -> Self {
        let start = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        Self::starting_at(start, Duration::milliseconds(1))
    }

    /// Starts at `start`, advancing `step` per reading.
    pub fn starting_at(start: DateTime<Utc>, step: Duration) -> Self {
        DeterministicClock {
            state: Mutex::new((0, start)),
            step,
        }
    }

    /// The id the `n`th call of [`Clock::new_event_id`] returns (1-based).
    pub fn id(n: u64) -> Uuid {
        uuid::Builder::from_u128(u128::from(n))
            .with_version(uuid::Version::SortRand)
            .with_variant(uuid::Variant::RFC4122)
            .into_uuid()
    }
}

impl Clock for DeterministicClock {
    fn now(&self) -> DateTime<Utc> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = state.1;
        state.1 = now + self.step;
        now
    }

    fn new_event_id(&self) -> Uuid {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.0 += 1;
        Self::id(state.0)
    }
}
