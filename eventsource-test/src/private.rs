//! What this crate's macros expand to. Not a public API.

use std::marker::PhantomData;

use eventsource::{AggregateEvent, DomainEvent, EventEnvelope, Handles, Payload};
use uuid::Uuid;

pub use eventsource::Aggregate;
pub use insta;

/// Converts an event `A` handles into `A`'s event enum (the form outcomes compare).
///
/// # Panics
/// When `A`'s event enum does not decode `E`, which a hand-written `Aggregate` with a
/// `Handles<E>` impl but no matching variant could cause.
#[track_caller]
pub fn expected<A: Handles<E>, E: DomainEvent>(event: E) -> A::Event {
    let envelope = EventEnvelope {
        event_id: Uuid::nil(),
        event_name: E::NAME.into(),
        schema_version: E::VERSION,
        aggregate_id: Uuid::nil(),
        aggregate_type: A::TYPE.into(),
        aggregate_version: 1,
        occurred_at: chrono::DateTime::UNIX_EPOCH,
        context: Default::default(),
    };
    match A::Event::from_stored(&envelope, &Payload::typed(event)) {
        Ok(event) => event,
        Err(error) => panic!(
            "`{}` handles `{}`, but its event enum does not hold it: {error}",
            A::TYPE,
            E::NAME
        ),
    }
}

/// Converts expected events for `A`; a method, so that an event `A` does not handle is
/// reported at the event.
pub struct Expected<A>(PhantomData<fn() -> A>);

impl<A: Aggregate> Expected<A> {
    /// The converter.
    pub const NEW: Self = Expected(PhantomData);

    /// See [`expected`].
    #[track_caller]
    pub fn event<E: DomainEvent>(&self, event: E) -> A::Event
    where
        A: Handles<E>,
    {
        expected::<A, E>(event)
    }
}

/// The replay check compares states with `PartialEq`.
#[diagnostic::on_unimplemented(
    message = "the replay check compares `{Self}` states, but `{Self}` is not `PartialEq`",
    label = "`{Self}` cannot be compared",
    note = "derive `PartialEq` for `{Self}`, or turn the check off with `replay_check: false,`"
)]
pub trait ComparableState: Aggregate + PartialEq {}

impl<A: Aggregate + PartialEq> ComparableState for A {}

/// `Scenario::new()` behind a bound with a message about the replay check.
pub fn replay_checked<A: ComparableState>() -> crate::Scenario<A> {
    crate::Scenario::new()
}

/// `Scenario::without_replay_check()`.
pub fn unchecked<A: Aggregate>() -> crate::Scenario<A> {
    crate::Scenario::without_replay_check()
}
