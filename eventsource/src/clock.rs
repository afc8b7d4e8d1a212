//! Where event ids and timestamps come from.

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use uuid::Uuid;

/// Source of event ids and timestamps for an [`AggregateRoot`](crate::AggregateRoot).
///
/// The default is the system clock with UUID v7 ids. Tests install a deterministic one
/// (`eventsource-test` ships one) so that recorded streams are reproducible.
///
/// The root asks for [`now`](Clock::now) once per command
/// ([`execute`](crate::AggregateRoot::execute)), and once per event recorded outside a
/// command; it asks for a [`new_event_id`](Clock::new_event_id) per event.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
    /// A fresh, unique event id.
    fn new_event_id(&self) -> Uuid;
}

/// The system clock and UUID v7 ids.
///
/// Below its millisecond timestamp, an id is a counter seeded at random on the first id
/// of each millisecond and incremented for each further id of that millisecond on the
/// thread (RFC 9562, section 6.2, method 2): a thread's ids strictly increase, ids of
/// different threads differ in their random seeds.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        utc_now()
    }

    fn new_event_id(&self) -> Uuid {
        v7_at(read_now().0)
    }
}

/// The current time, from one read of the system clock.
///
/// Same value as `Utc::now()`, cheaper: the calendar date is computed once per day and
/// thread rather than on every call.
pub(crate) fn utc_now() -> DateTime<Utc> {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since_epoch) => utc_from_unix(since_epoch),
        // A clock set before 1970: chrono handles negative timestamps.
        Err(_) => Utc::now(),
    }
}

/// `since_epoch` as a UTC date and time, with the date of the day cached per thread.
fn utc_from_unix(since_epoch: Duration) -> DateTime<Utc> {
    thread_local! {
        static DAY: Cell<Option<(u64, NaiveDate)>> = const { Cell::new(None) };
    }
    let seconds = since_epoch.as_secs();
    let day = seconds / SECONDS_PER_DAY;
    let date = DAY.with(|cached| match cached.get() {
        Some((cached_day, date)) if cached_day == day => Some(date),
        _ => {
            let midnight = i64::try_from(day * SECONDS_PER_DAY).ok()?;
            let date = DateTime::from_timestamp(midnight, 0)?.date_naive();
            cached.set(Some((day, date)));
            Some(date)
        }
    });
    let second_of_day = u32::try_from(seconds % SECONDS_PER_DAY).ok();
    let time = second_of_day.and_then(|second| {
        NaiveTime::from_num_seconds_from_midnight_opt(second, since_epoch.subsec_nanos())
    });
    match (date, time) {
        (Some(date), Some(time)) => date.and_time(time).and_utc(),
        // Beyond chrono's range; let it decide.
        _ => Utc::now(),
    }
}

const SECONDS_PER_DAY: u64 = 86_400;

/// One read of the system clock as Unix milliseconds (for [`v7_at`]) and the instant
/// (the system clock path of `AggregateRoot`, which stamps the events of a command).
pub(crate) fn read_now() -> (u64, DateTime<Utc>) {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since_epoch) => {
            let millis = u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX);
            (millis, utc_from_unix(since_epoch))
        }
        // A clock set before 1970: ids at millisecond 0.
        Err(_) => (0, Utc::now()),
    }
}

/// Bits of a v7 id below its timestamp that are ours: `rand_a` (12) and `rand_b` (62).
const COUNTER_BITS: u32 = 74;
const RAND_B_BITS: u32 = 62;

/// A UUID v7 for `millis` (Unix time in milliseconds).
///
/// The 74 bits below the timestamp are a randomly seeded counter (RFC 9562, section 6.2,
/// method 2): seeded from the random number generator on the first id of a millisecond,
/// incremented by one for each further id of that millisecond on this thread. Ids of one
/// thread are therefore strictly increasing, also when the clock steps back (the last
/// timestamp is kept until the clock passes it); ids of different threads differ in
/// their random seeds. Drawing randomness once per millisecond rather than per id is
/// what makes this cheaper than `Uuid::now_v7`.
#[inline]
pub(crate) fn v7_at(millis: u64) -> Uuid {
    thread_local! {
        /// The millisecond of the thread's last id and its counter (`None` before the
        /// thread's first id, which is always seeded, whatever the clock says).
        static LAST: Cell<Option<(u64, u128)>> = const { Cell::new(None) };
    }
    let (millis, counter) = LAST.with(|last| {
        let next = match last.get() {
            Some((last_millis, last_counter)) if millis <= last_millis => {
                match last_counter.checked_add(1) {
                    Some(counter) if counter >> COUNTER_BITS == 0 => (last_millis, counter),
                    // 2^73 ids in one millisecond: borrow the next one.
                    _ => (last_millis.saturating_add(1), random_seed()),
                }
            }
            _ => (millis, random_seed()),
        };
        last.set(Some(next));
        next
    });
    let rand_a = counter >> RAND_B_BITS;
    let rand_b = counter & ((1 << RAND_B_BITS) - 1);
    let timestamp = u128::from(millis & 0xffff_ffff_ffff);
    Uuid::from_u128((timestamp << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b)
}

/// 73 random bits: a counter seed whose top bit is clear, so that it can count on.
#[cold]
#[inline(never)]
fn random_seed() -> u128 {
    // A v7 id without a context is random below its timestamp.
    let random = Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, 0, 0)).as_u128();
    let rand_a = (random >> 64) & 0xfff;
    let rand_b = random & ((1 << RAND_B_BITS) - 1);
    ((rand_a << RAND_B_BITS) | rand_b) >> 1
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn utc_now_agrees_with_chrono() {
        let before = Utc::now();
        let now = utc_now();
        let after = Utc::now();
        assert!(
            before <= now && now <= after,
            "{before} <= {now} <= {after}"
        );
    }

    #[test]
    fn utc_from_unix_builds_the_calendar_date() {
        for seconds in [0, 86_399, 86_400, 951_782_400, 1_709_251_199, 4_102_444_800] {
            let since_epoch = Duration::new(seconds, 123_456_789);
            let expected = DateTime::from_timestamp(i64::try_from(seconds).unwrap(), 123_456_789);
            assert_eq!(Some(utc_from_unix(since_epoch)), expected, "{seconds}");
        }
    }

    #[test]
    fn ids_are_v7_stamped_with_the_millisecond() {
        let millis = 1_700_000_000_123;
        let id = v7_at(millis);
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        let (seconds, nanos) = id.get_timestamp().map(|ts| ts.to_unix()).unwrap();
        assert_eq!(seconds * 1000 + u64::from(nanos) / 1_000_000, millis);
    }

    #[test]
    fn ids_of_a_thread_increase_within_a_millisecond_and_when_the_clock_steps_back() {
        let millis = 1_800_000_000_000;
        let mut previous = v7_at(millis);
        for step in [0, 0, 0, 1, 1, 0] {
            // 0: the same millisecond; a stepped-back clock repeats an older one.
            let at = if step == 0 { millis } else { millis - 5 };
            let id = v7_at(at);
            assert!(id > previous, "{id} after {previous}");
            previous = id;
        }
        let later = v7_at(millis + 1);
        assert!(later > previous);
    }

    #[test]
    fn a_threads_first_id_is_seeded_even_at_the_epoch() {
        // A clock before 1970 reads as millisecond 0: the first ids of two threads must
        // still be random below the timestamp, not a counter from zero.
        let first_at_epoch = || std::thread::spawn(|| v7_at(0)).join().unwrap();
        let (a, b) = (first_at_epoch(), first_at_epoch());
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 7);
    }

    #[test]
    fn ids_of_different_threads_differ() {
        let millis = 1_900_000_000_000;
        let here: Vec<Uuid> = (0..100).map(|_| v7_at(millis)).collect();
        let there = std::thread::spawn(move || (0..100).map(|_| v7_at(millis)).collect::<Vec<_>>())
            .join()
            .unwrap();
        let mut all: Vec<Uuid> = here.into_iter().chain(there).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 200);
    }
}
