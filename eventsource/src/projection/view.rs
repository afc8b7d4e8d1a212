//! [`Event`]: a recorded event seen as its payload type, with its envelope.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::DecodeError;
use crate::event::{DomainEvent, EventEnvelope, Metadata, RecordedEvent};

/// A recorded event as an `E`, with its envelope: what a `#[projection]` handler takes.
///
/// It borrows the [`RecordedEvent`] and holds the payload as a [`Cow`]: borrowed when the
/// store kept the typed value (in memory), decoded once when it kept JSON. Nothing of the
/// envelope is copied. It derefs to `E`, so `event.total` reads a field of the payload;
/// the accessors read the envelope.
///
/// ```
/// use eventsource::{DomainEvent, Event, RecordedEvent};
/// # use eventsource::{EventEnvelope, Payload};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
/// #[event(aggregate = "Order")]
/// struct OrderCreated { total: u64 }
///
/// # let id = uuid::Uuid::now_v7();
/// # let recorded = RecordedEvent {
/// #     envelope: EventEnvelope {
/// #         event_id: uuid::Uuid::now_v7(), event_name: OrderCreated::NAME.into(),
/// #         schema_version: 1, aggregate_id: id, aggregate_type: "Order".into(),
/// #         aggregate_version: 1, occurred_at: chrono::Utc::now(),
/// #         context: eventsource::EventContext::new().actor("ann").into(),
/// #     },
/// #     payload: Payload::json(r#"{"total":42}"#),
/// #     position: 7,
/// #     stored_at: chrono::Utc::now(),
/// # };
/// // `recorded`: an `OrderCreated` read back as JSON, at position 7, caused by "ann".
/// let event = Event::<OrderCreated>::from_recorded(&recorded)?.expect("an OrderCreated");
/// assert_eq!(event.total, 42); // the payload, through `Deref`
/// assert_eq!(event.position(), 7);
/// assert_eq!(event.actor_id(), Some("ann"));
/// assert_eq!(event.aggregate_id(), id);
/// # Ok::<(), eventsource::DecodeError>(())
/// ```
pub struct Event<'a, E: Clone> {
    recorded: &'a RecordedEvent,
    data: Cow<'a, E>,
}

impl<'a, E: DomainEvent> Event<'a, E> {
    /// `recorded` as an `E`; `Ok(None)` when it is another event (by stored name).
    ///
    /// # Errors
    /// [`DecodeError`] when it is an `E` but does not decode (a corrupt payload, another
    /// schema version).
    pub fn from_recorded(recorded: &'a RecordedEvent) -> Result<Option<Self>, DecodeError> {
        Ok(recorded
            .as_event::<E>()?
            .map(|data| Event { recorded, data }))
    }
}

impl<'a, E: Clone> Event<'a, E> {
    /// The payload.
    pub fn data(&self) -> &E {
        &self.data
    }

    /// The payload, borrowed from the recorded event when it was typed.
    pub fn into_data(self) -> Cow<'a, E> {
        self.data
    }

    /// The payload, owned (cloned when it was borrowed).
    pub fn into_owned(self) -> E {
        self.data.into_owned()
    }

    /// The recorded event: envelope, payload as stored, position.
    pub fn recorded(&self) -> &'a RecordedEvent {
        self.recorded
    }

    /// The envelope.
    pub fn envelope(&self) -> &'a EventEnvelope {
        &self.recorded.envelope
    }

    /// The event id.
    pub fn event_id(&self) -> Uuid {
        self.recorded.envelope.event_id
    }

    /// The stored event name.
    pub fn name(&self) -> &'a str {
        &self.recorded.envelope.event_name
    }

    /// The schema version the payload was written with.
    pub fn schema_version(&self) -> u32 {
        self.recorded.envelope.schema_version
    }

    /// The id of the aggregate the event happened to.
    pub fn aggregate_id(&self) -> Uuid {
        self.recorded.envelope.aggregate_id
    }

    /// The type name of that aggregate.
    pub fn aggregate_type(&self) -> &'a str {
        &self.recorded.envelope.aggregate_type
    }

    /// The aggregate's version after this event.
    pub fn aggregate_version(&self) -> u64 {
        self.recorded.envelope.aggregate_version
    }

    /// The position in the store's global log.
    pub fn position(&self) -> u64 {
        self.recorded.position
    }

    /// When the store accepted the event.
    pub fn stored_at(&self) -> DateTime<Utc> {
        self.recorded.stored_at
    }

    /// When the event was recorded on its aggregate.
    pub fn occurred_at(&self) -> DateTime<Utc> {
        self.recorded.envelope.occurred_at
    }

    /// The correlation id, if the command's context set one.
    pub fn correlation_id(&self) -> Option<Uuid> {
        self.recorded.envelope.context.correlation_id
    }

    /// The causation id, if the command's context set one.
    pub fn causation_id(&self) -> Option<Uuid> {
        self.recorded.envelope.context.causation_id
    }

    /// Who caused the event, if the command's context said.
    pub fn actor_id(&self) -> Option<&'a str> {
        self.recorded.envelope.context.actor_id.as_deref()
    }

    /// The tenant, if the command's context set one.
    pub fn tenant_id(&self) -> Option<&'a str> {
        self.recorded.envelope.context.tenant_id.as_deref()
    }

    /// The free-form metadata.
    pub fn metadata(&self) -> &'a Metadata {
        &self.recorded.envelope.context.metadata
    }
}

impl<E: Clone> Deref for Event<'_, E> {
    type Target = E;

    fn deref(&self) -> &E {
        &self.data
    }
}

impl<E: Clone> AsRef<E> for Event<'_, E> {
    fn as_ref(&self) -> &E {
        &self.data
    }
}

impl<E: Clone + fmt::Debug> fmt::Debug for Event<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("name", &self.name())
            .field("event_id", &self.event_id())
            .field("aggregate_id", &self.aggregate_id())
            .field("aggregate_version", &self.aggregate_version())
            .field("position", &self.position())
            .field("data", self.data())
            .finish_non_exhaustive()
    }
}
