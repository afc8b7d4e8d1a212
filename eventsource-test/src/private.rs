//! What this crate's macros expand to. Not a public API.

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
        tenant_id: None,
        correlation_id: None,
        causation_id: None,
        actor_id: None,
        metadata: Default::default(),
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
