//! Projections: read models fed from the global log, with checkpoints, retries, a
//! dead-letter queue and subscriptions that catch up, then follow live.
//!
//! A [`ProjectionRunner`] reads the store's global log once for all its projections and
//! hands each event to every projection that has not seen it yet. Each projection has its
//! own checkpoint. Catching up and following live are the same loop (read the next page
//! after the projection's position; when there is none, wait for the store's append
//! signal or a poll interval), so there is no switch-over at which an event could be
//! skipped or delivered twice.
//!
//! Failure handling never drops an event silently: a failing handler is retried per the
//! [`RetryPolicy`]; when attempts run out the event goes to the [`DlqRepository`] and,
//! unless the policy says [`OnExhausted::Continue`], the projection stops at that event
//! (its checkpoint does not move past it) and the error is surfaced.

mod runner;
mod storage;
mod view;

use std::borrow::Cow;
use std::time::Duration;

use async_trait::async_trait;

pub use runner::{CatchUpReport, ProjectionRunner, ProjectionStatus, RunnerHandle, StartFrom};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use storage::payload_text;
#[cfg(feature = "sqlite")]
pub(crate) use storage::stats_of;
pub use storage::{
    Checkpoint, CheckpointRepository, DeadLetterFilter, DeadLetterStatus, DlqRepository, DlqStats,
    FailedEvent, InMemoryCheckpointRepository, InMemoryDlqRepository,
};
pub use view::Event;

use crate::error::{BoxError, DecodeError, StoreError};
use crate::event::{DomainEvent, RecordedEvent};

/// A read model built from events.
///
/// `handle` sees every event of the log in order (with its envelope, position and
/// metadata) and ignores those it does not care about by returning `Ok(())`.
///
/// Write it with `#[projection]` on the read model's impl block: one
/// `#[handles(Event)] async fn` per event it reads (of any aggregate), taking an
/// [`&Event<E>`](Event) (the payload, through `Deref`, and the envelope) and returning a
/// `Result` whose error converts into [`BoxError`]. The name defaults to the type's
/// (`#[projection(name = "...")]` sets it; `crate = "..."` renames the `eventsource`
/// path). A payload that does not decode is an error, retried and then dead-lettered like
/// a handler's.
///
/// `reset` (run before a rebuild) is the method marked `#[reset]`; without one, the value
/// becomes `Default::default()`, so the type must implement `Default`. Mark a method
/// `#[reset]` when the read model lives outside the value (a table, a connection pool).
///
/// ```
/// use eventsource::projection::Projection;
/// use eventsource::{DomainEvent, Event, projection};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
/// #[event(aggregate = "Order")]
/// struct OrderPlaced { total: u64 }
///
/// #[derive(Debug)]
/// struct NegativeTotal;
/// impl std::fmt::Display for NegativeTotal {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("a total cannot be negative")
///     }
/// }
/// impl std::error::Error for NegativeTotal {}
///
/// #[derive(Default)]
/// struct Revenue { orders: u64, total: u64 }
///
/// #[projection(name = "revenue")]
/// impl Revenue {
///     #[handles(OrderPlaced)]
///     async fn on_placed(&mut self, e: &Event<OrderPlaced>) -> Result<(), NegativeTotal> {
///         self.orders += 1;
///         self.total += e.total;
///         Ok(())
///     }
/// }
///
/// assert_eq!(Revenue::default().name(), "revenue");
/// ```
///
/// By hand, `handle` reads the [`RecordedEvent`] itself:
///
/// ```
/// use eventsource::projection::Projection;
/// use eventsource::{BoxError, RecordedEvent};
///
/// #[derive(Default)]
/// struct EventCounter { seen: u64 }
///
/// #[async_trait::async_trait]
/// impl Projection for EventCounter {
///     fn name(&self) -> &str { "event-counter" }
///     async fn handle(&mut self, _event: &RecordedEvent) -> Result<(), BoxError> {
///         self.seen += 1;
///         Ok(())
///     }
///     async fn reset(&mut self) -> Result<(), BoxError> {
///         self.seen = 0;
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait Projection: Send {
    /// A stable name: checkpoints and dead letters are kept under it.
    fn name(&self) -> &str;

    /// Applies one event.
    ///
    /// # Errors
    /// Any error: the runner retries, then dead-letters.
    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError>;

    /// Truncates the read model (before a rebuild).
    ///
    /// # Errors
    /// Any error; the rebuild is then abandoned.
    async fn reset(&mut self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl RecordedEvent {
    /// The payload as `&E` when it is an `E`: borrowed for a typed payload, decoded for
    /// JSON. `Ok(None)` for another event.
    ///
    /// # Errors
    /// [`DecodeError`] when the event is an `E` but does not decode (corrupt payload, other
    /// schema version).
    #[inline]
    pub fn as_event<E: DomainEvent>(&self) -> Result<Option<Cow<'_, E>>, DecodeError> {
        if !self.is::<E>() {
            return Ok(None);
        }
        if self.envelope.schema_version == E::VERSION
            && let Some(event) = self.payload.typed_ref::<E>()
        {
            return Ok(Some(Cow::Borrowed(event)));
        }
        self.decode::<E>().map(|event| Some(Cow::Owned(event)))
    }
}

/// What happens when every attempt at an event failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExhausted {
    /// The projection stops at the event (its checkpoint stays before it) and the error is
    /// returned; fix the cause, then retry the dead letter or restart.
    Stop,
    /// The dead letter is the record; the projection moves on.
    Continue,
}

/// How often and how patiently a failing handler is retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Calls in all, the first included (3 means the first call and two retries).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one.
    pub backoff_base: Duration,
    /// The longest delay.
    pub backoff_max: Duration,
    /// Adds up to 50% random jitter to each delay.
    pub jitter: bool,
    /// What to do when attempts run out.
    pub on_exhausted: OnExhausted,
    /// A handler that takes longer fails with a timeout (and is retried like any failure).
    pub timeout: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            jitter: true,
            on_exhausted: OnExhausted::Stop,
            timeout: Some(Duration::from_secs(30)),
        }
    }
}

impl RetryPolicy {
    /// `max_attempts` calls, no delay: for tests.
    pub fn immediate(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            backoff_base: Duration::ZERO,
            jitter: false,
            ..Self::default()
        }
    }

    /// The delay before attempt `attempt + 1` (`attempt` is 1 after the first failure).
    pub fn delay(&self, attempt: u32) -> Duration {
        let doubled = self.backoff_base.saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let delay = doubled.min(self.backoff_max);
        if self.jitter && !delay.is_zero() {
            // Cheap jitter without a random crate: the clock's nanoseconds.
            let nanos = u64::from(chrono::Utc::now().timestamp_subsec_nanos());
            delay + delay.mul_f64((nanos % 500) as f64 / 1000.0)
        } else {
            delay
        }
    }
}

/// A projection run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// A handler failed on every attempt; the event is in the dead-letter queue.
    #[error(
        "projection `{projection}` failed on `{event_name}` at position {position} after {attempts} attempt(s): {source}"
    )]
    HandlerFailed {
        /// The projection.
        projection: String,
        /// The event's stored name.
        event_name: String,
        /// The event's position.
        position: u64,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        source: BoxError,
    },
    /// Reading the log, or writing a checkpoint or a dead letter, failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `reset` failed during a rebuild.
    #[error("projection `{projection}` could not be reset: {source}")]
    Reset {
        /// The projection.
        projection: String,
        /// What it said.
        #[source]
        source: BoxError,
    },
    /// No projection with that name is registered.
    #[error("no projection named `{0}`")]
    UnknownProjection(String),
    /// No dead letter for that event and projection.
    #[error("no dead letter for event {event_id} in projection `{projection}`")]
    UnknownDeadLetter {
        /// The event.
        event_id: uuid::Uuid,
        /// The projection.
        projection: String,
    },
}
