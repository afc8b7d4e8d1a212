//! Domain events, their envelope and their payload.

use std::any::Any;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::DecodeError;

/// A fact that happened to an aggregate, with a stable stored identity.
///
/// Implement it with `#[derive(DomainEvent)]`: the derive sets the stored
/// [`NAME`](DomainEvent::NAME) (the type's name unless `#[event(name = "...")]`
/// says otherwise), the schema [`VERSION`](DomainEvent::VERSION) (1 unless
/// `#[event(version = N)]`), the owning [`AGGREGATE_TYPE`](DomainEvent::AGGREGATE_TYPE)
/// and registers the type so that stored events decode by name.
///
/// ```
/// use eventsource::DomainEvent;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
/// #[event(aggregate = "Parcel", name = "parcel.shipped", version = 2)]
/// pub struct ParcelShipped {
///     pub tracking_number: String,
/// }
///
/// assert_eq!(ParcelShipped::NAME, "parcel.shipped");
/// assert_eq!(ParcelShipped::VERSION, 2);
/// assert_eq!(ParcelShipped::AGGREGATE_TYPE, "Parcel");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a domain event",
    label = "not a `DomainEvent`",
    note = "add `#[derive(DomainEvent)]` and `#[event(aggregate = \"...\")]` to `{Self}`"
)]
pub trait DomainEvent:
    Clone + fmt::Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The name the event is stored under. Never change it once events are stored.
    const NAME: &'static str;
    /// The schema version of the payload, starting at 1.
    const VERSION: u32;
    /// The type name of the aggregate that owns this event.
    const AGGREGATE_TYPE: &'static str;
}

/// Free-form metadata carried by every event.
pub type Metadata = BTreeMap<String, serde_json::Value>;

/// Everything known about an event besides its payload.
///
/// An envelope is stamped when an event is recorded on an
/// [`AggregateRoot`](crate::AggregateRoot); the store adds the global position and the
/// storage time (see [`RecordedEvent`]).
// Laid out in declaration order, so that what every read looks at (the id, the name,
// the schema version, the aggregate id) shares the first cache line instead of being
// spread over the struct by the compiler's size-based ordering; and in an order that
// needs no padding (112 bytes): every event is copied a few times on its way into a
// store.
#[derive(Debug, Clone, PartialEq)]
#[repr(C)]
pub struct EventEnvelope {
    /// Unique id of the event (UUID v7, time ordered). Appending an id that is already
    /// stored is an idempotent retry.
    pub event_id: Uuid,
    /// The stored name ([`DomainEvent::NAME`]).
    pub event_name: Cow<'static, str>,
    /// The schema version of the payload ([`DomainEvent::VERSION`] when it was written).
    pub schema_version: u32,
    /// The aggregate the event belongs to.
    pub aggregate_id: Uuid,
    /// When the event happened (UTC): the events of one command
    /// ([`AggregateRoot::execute`](crate::AggregateRoot::execute)) share one instant.
    pub occurred_at: DateTime<Utc>,
    /// The type of that aggregate ([`Aggregate::TYPE`](crate::Aggregate::TYPE)).
    pub aggregate_type: Cow<'static, str>,
    /// The aggregate's version after this event: 1 for the first event of a stream.
    pub aggregate_version: u64,
    /// Tenant, correlation, causation, actor and metadata, read and written as fields
    /// through [`SharedContext`] (`envelope.context.tenant_id`). The events recorded
    /// under one context share it (a write copies it first), and an empty context takes
    /// no allocation. Serialized as fields of the envelope itself.
    pub context: SharedContext,
}

/// The serialized form of an envelope: one flat struct (the context's fields beside the
/// others, in the order they have always had), so that formats without self-describing
/// maps can carry it too.
#[derive(Serialize)]
#[serde(rename = "EventEnvelope")]
struct EnvelopeFields<'a> {
    event_id: &'a Uuid,
    event_name: &'a str,
    schema_version: u32,
    aggregate_id: &'a Uuid,
    aggregate_type: &'a str,
    aggregate_version: u64,
    occurred_at: &'a DateTime<Utc>,
    tenant_id: &'a Option<String>,
    correlation_id: &'a Option<Uuid>,
    causation_id: &'a Option<Uuid>,
    actor_id: &'a Option<String>,
    metadata: &'a Metadata,
}

/// [`EnvelopeFields`], read back.
#[derive(Deserialize)]
#[serde(rename = "EventEnvelope")]
struct OwnedEnvelopeFields {
    event_id: Uuid,
    event_name: String,
    schema_version: u32,
    aggregate_id: Uuid,
    aggregate_type: String,
    aggregate_version: u64,
    occurred_at: DateTime<Utc>,
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    correlation_id: Option<Uuid>,
    #[serde(default)]
    causation_id: Option<Uuid>,
    #[serde(default)]
    actor_id: Option<String>,
    #[serde(default)]
    metadata: Metadata,
}

impl Serialize for EventEnvelope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let context = &*self.context;
        EnvelopeFields {
            event_id: &self.event_id,
            event_name: &self.event_name,
            schema_version: self.schema_version,
            aggregate_id: &self.aggregate_id,
            aggregate_type: &self.aggregate_type,
            aggregate_version: self.aggregate_version,
            occurred_at: &self.occurred_at,
            tenant_id: &context.tenant_id,
            correlation_id: &context.correlation_id,
            causation_id: &context.causation_id,
            actor_id: &context.actor_id,
            metadata: &context.metadata,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for EventEnvelope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = OwnedEnvelopeFields::deserialize(deserializer)?;
        Ok(EventEnvelope {
            event_id: fields.event_id,
            event_name: fields.event_name.into(),
            schema_version: fields.schema_version,
            aggregate_id: fields.aggregate_id,
            occurred_at: fields.occurred_at,
            aggregate_type: fields.aggregate_type.into(),
            aggregate_version: fields.aggregate_version,
            context: SharedContext::new(EventContext {
                tenant_id: fields.tenant_id,
                correlation_id: fields.correlation_id,
                causation_id: fields.causation_id,
                actor_id: fields.actor_id,
                metadata: fields.metadata,
            }),
        })
    }
}

/// Context stamped on every event an [`AggregateRoot`](crate::AggregateRoot) records:
/// tenancy, tracing ids and metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventContext {
    /// The tenant that owns the event, if the application is multi-tenant.
    pub tenant_id: Option<String>,
    /// Groups every event caused, directly or not, by one request.
    pub correlation_id: Option<Uuid>,
    /// The id of the message (command or event) that caused this event.
    pub causation_id: Option<Uuid>,
    /// Who caused the event (a user, a service).
    pub actor_id: Option<String>,
    /// Anything else worth keeping with the event.
    pub metadata: Metadata,
}

/// The empty context every [`SharedContext`] without one reads as.
static EMPTY_CONTEXT: EventContext = EventContext {
    tenant_id: None,
    correlation_id: None,
    causation_id: None,
    actor_id: None,
    metadata: BTreeMap::new(),
};

impl EventContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.tenant_id.is_none()
            && self.correlation_id.is_none()
            && self.causation_id.is_none()
            && self.actor_id.is_none()
            && self.metadata.is_empty()
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant_id.into());
        self
    }

    /// Sets the correlation id.
    pub fn correlation(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Sets the causation id.
    pub fn causation(mut self, id: Uuid) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// Sets the actor.
    pub fn actor(mut self, actor_id: impl Into<String>) -> Self {
        self.actor_id = Some(actor_id.into());
        self
    }

    /// Adds one metadata entry.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// An [`EventContext`] shared by the envelopes stamped with it: cloning one is a
/// reference count, and an empty context is no allocation at all. It reads as the
/// context itself (`envelope.context.tenant_id`); writing through it (`envelope.context
/// .tenant_id = ...`, or [`make_mut`](Self::make_mut)) first copies a context other
/// envelopes share, so they keep theirs.
///
/// ```
/// use eventsource::{EventContext, SharedContext};
///
/// let empty = SharedContext::default();
/// assert!(empty.tenant_id.is_none() && empty.is_empty());
///
/// let context = SharedContext::new(EventContext::new().tenant("acme").meta("ip", "10.0.0.1"));
/// assert_eq!(context.tenant_id.as_deref(), Some("acme"));
///
/// let mut changed = context.clone();
/// changed.tenant_id = Some("globex".into());
/// assert_eq!(changed.tenant_id.as_deref(), Some("globex"));
/// assert_eq!(context.tenant_id.as_deref(), Some("acme"));
/// assert_eq!(context, EventContext::new().tenant("acme").meta("ip", "10.0.0.1"));
/// ```
#[derive(Clone, Default)]
pub struct SharedContext(Option<Arc<EventContext>>);

impl SharedContext {
    /// Shares `context` (an empty one is not allocated).
    pub fn new(context: EventContext) -> Self {
        if context.is_empty() {
            SharedContext(None)
        } else {
            SharedContext(Some(Arc::new(context)))
        }
    }

    /// Whether `self` and `other` are one allocation (not merely equal).
    #[cfg(test)]
    pub(crate) fn shares_with(&self, other: &SharedContext) -> bool {
        matches!((&self.0, &other.0), (Some(a), Some(b)) if Arc::ptr_eq(a, b))
    }

    /// Whether the context is allocated (an empty one never is, unless written to).
    #[cfg(test)]
    pub(crate) fn is_allocated(&self) -> bool {
        self.0.is_some()
    }

    /// The context, to change it: copied first if other envelopes share it.
    pub fn make_mut(&mut self) -> &mut EventContext {
        Arc::make_mut(self.0.get_or_insert_with(Arc::default))
    }
}

impl std::ops::Deref for SharedContext {
    type Target = EventContext;

    #[inline]
    fn deref(&self) -> &EventContext {
        self.0.as_deref().unwrap_or(&EMPTY_CONTEXT)
    }
}

impl std::ops::DerefMut for SharedContext {
    /// [`make_mut`](SharedContext::make_mut): copies a shared context first.
    fn deref_mut(&mut self) -> &mut EventContext {
        self.make_mut()
    }
}

impl PartialEq<EventContext> for SharedContext {
    fn eq(&self, other: &EventContext) -> bool {
        **self == *other
    }
}

impl From<EventContext> for SharedContext {
    fn from(context: EventContext) -> Self {
        SharedContext::new(context)
    }
}

impl PartialEq for SharedContext {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(left), Some(right)) if Arc::ptr_eq(left, right) => true,
            _ => **self == **other,
        }
    }
}

impl fmt::Debug for SharedContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl Serialize for SharedContext {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SharedContext {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        EventContext::deserialize(deserializer).map(SharedContext::new)
    }
}

/// An event value with its type erased, as kept in memory.
///
/// Every [`DomainEvent`] is an `ErasedEvent`; you rarely name this trait yourself.
pub trait ErasedEvent: Any + Send + Sync + fmt::Debug {
    /// [`DomainEvent::NAME`] of the concrete type.
    fn event_name(&self) -> &'static str;
    /// [`DomainEvent::VERSION`] of the concrete type.
    fn schema_version(&self) -> u32;
    /// The Rust type name, for error messages.
    fn rust_type(&self) -> &'static str;
    /// Serializes the value to JSON text.
    fn to_json(&self) -> Result<String, serde_json::Error>;
    /// Upcast to `Any`, to downcast to the concrete type.
    fn as_any(&self) -> &dyn Any;
}

impl<E: DomainEvent> ErasedEvent for E {
    fn event_name(&self) -> &'static str {
        E::NAME
    }

    fn schema_version(&self) -> u32 {
        E::VERSION
    }

    fn rust_type(&self) -> &'static str {
        std::any::type_name::<E>()
    }

    fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The body of an event: a typed value in memory (one of its own, or one of the events a
/// command decided together), or JSON text read from a database.
///
/// In-process paths (recording on an aggregate, the in-memory store, the in-memory bus)
/// never serialize: the typed value is shared. Database backends write
/// [`Payload::to_json`] and read back [`Payload::Json`]. Either way
/// [`Payload::with`] hands a handler a `&E` without boxing.
#[derive(Clone)]
#[non_exhaustive]
pub enum Payload {
    /// A typed value, shared.
    Typed(Arc<dyn ErasedEvent>),
    /// One of the events of one type that a command returned together (a `Vec`): they
    /// share that vector, behind one allocation.
    Shared(SharedEvent),
    /// JSON text as stored.
    Json(String),
}

mod sealed {
    pub trait Sealed {}
}

/// The events of one type that a command decided together, type-erased: what a
/// [`SharedEvent`] points into. Implemented for every `Vec` of a [`DomainEvent`], and
/// sealed: nothing else is one.
pub trait ErasedEvents: sealed::Sealed + Any + Send + Sync + fmt::Debug {
    /// The event at `index`.
    fn get(&self, index: usize) -> Option<&dyn ErasedEvent>;
    /// How many events there are.
    fn count(&self) -> usize;
}

impl<E: DomainEvent> sealed::Sealed for Vec<E> {}

impl<E: DomainEvent> ErasedEvents for Vec<E> {
    #[inline]
    fn get(&self, index: usize) -> Option<&dyn ErasedEvent> {
        self.as_slice()
            .get(index)
            .map(|event| event as &dyn ErasedEvent)
    }

    fn count(&self) -> usize {
        self.len()
    }
}

/// One of the events of one type that a command returned together (see
/// [`Payload::Shared`]): a reference count on the command's vector and the event's place
/// in it. Every such event keeps the whole vector alive.
#[derive(Clone)]
pub struct SharedEvent {
    events: Arc<dyn ErasedEvents>,
    index: usize,
}

impl SharedEvent {
    /// The event at `index` of `events` (a place the caller knows is in range).
    pub(crate) fn new(events: Arc<dyn ErasedEvents>, index: usize) -> Self {
        SharedEvent { events, index }
    }

    /// The event.
    #[inline]
    pub fn value(&self) -> Option<&dyn ErasedEvent> {
        self.events.get(self.index)
    }

    /// Its place among the command's events.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether `other` is one of the same command's events (the same vector).
    pub fn shares_events_with(&self, other: &SharedEvent) -> bool {
        Arc::ptr_eq(&self.events, &other.events)
    }

    /// The value as `&E`: one type check of the vector, as for a single value, then
    /// the index. Out of line, so that [`Payload::typed_ref`]'s path for a single value
    /// needs no more registers than before.
    #[inline(never)]
    fn typed_ref<E: DomainEvent>(&self) -> Option<&E> {
        let all: &dyn Any = &*self.events;
        all.downcast_ref::<Vec<E>>()?.as_slice().get(self.index)
    }

    /// Why the value is missing (not reached: the crate makes shared events only for
    /// places in range).
    #[cold]
    fn missing(&self) -> String {
        format!(
            "no event at index {} of the {} its command decided",
            self.index,
            self.events.count()
        )
    }
}

impl fmt::Debug for SharedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value() {
            Some(value) => fmt::Debug::fmt(value, f),
            None => f.write_str(&self.missing()),
        }
    }
}

impl Payload {
    /// Wraps a typed event.
    pub fn typed<E: DomainEvent>(event: E) -> Self {
        Payload::Typed(Arc::new(event))
    }

    /// Wraps stored JSON text.
    pub fn json(text: impl Into<String>) -> Self {
        Payload::Json(text.into())
    }

    /// The typed value, whichever way it is held; `None` for JSON text.
    #[inline]
    pub fn typed_value(&self) -> Option<&dyn ErasedEvent> {
        match self {
            Payload::Typed(value) => Some(&**value),
            Payload::Shared(shared) => shared.value(),
            Payload::Json(_) => None,
        }
    }

    /// The payload as JSON text (serializing a typed value).
    pub fn to_json(&self) -> Result<Cow<'_, str>, serde_json::Error> {
        match self {
            Payload::Json(text) => Ok(Cow::Borrowed(text)),
            Payload::Typed(value) => value.to_json().map(Cow::Owned),
            Payload::Shared(shared) => match shared.value() {
                Some(value) => value.to_json().map(Cow::Owned),
                None => Err(serde::ser::Error::custom(shared.missing())),
            },
        }
    }

    /// The payload as a JSON value.
    pub fn to_json_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(&self.to_json()?)
    }

    /// The typed value as `&E`: `None` for JSON text or a value of another type.
    #[inline]
    pub(crate) fn typed_ref<E: DomainEvent>(&self) -> Option<&E> {
        match self {
            Payload::Typed(value) => {
                let value: &dyn Any = &**value;
                value.downcast_ref::<E>()
            }
            Payload::Shared(shared) => shared.typed_ref(),
            Payload::Json(_) => None,
        }
    }

    /// [`typed_ref`](Self::typed_ref) out of line, for [`with`](Self::with): in a loop
    /// over events (a replay), a call that returns the pointer in a register keeps the
    /// type id (returned through memory by the virtual call) out of the loop.
    #[inline(never)]
    fn typed_ref_outlined<E: DomainEvent>(&self) -> Option<&E> {
        self.typed_ref()
    }

    /// Calls `f` with the payload as `&E`: a downcast for a typed payload, a decode for
    /// JSON. `name` is the stored event name, used in errors.
    ///
    /// # Errors
    /// [`DecodeError::Payload`] when the JSON does not fit `E`,
    /// [`DecodeError::TypeMismatch`] when a typed payload holds another type.
    #[inline]
    pub fn with<E: DomainEvent, R>(
        &self,
        name: &str,
        f: impl FnOnce(&E) -> R,
    ) -> Result<R, DecodeError> {
        match self.typed_ref_outlined::<E>() {
            Some(event) => Ok(f(event)),
            None => self.with_decoded(name, f),
        }
    }

    /// [`with`](Self::with) for JSON text (decoded here) and typed values of another
    /// type, out of line so that the typed path stays small where it is inlined.
    #[inline(never)]
    fn with_decoded<E: DomainEvent, R>(
        &self,
        name: &str,
        f: impl FnOnce(&E) -> R,
    ) -> Result<R, DecodeError> {
        match self {
            Payload::Json(text) => match serde_json::from_str::<E>(text) {
                Ok(event) => Ok(f(&event)),
                Err(source) => Err(DecodeError::Payload {
                    name: name.to_owned(),
                    rust_type: std::any::type_name::<E>(),
                    source,
                }),
            },
            Payload::Typed(_) | Payload::Shared(_) => Err(self.mismatch::<E>(name)),
        }
    }

    /// The payload as an owned `E` (a clone for a typed payload, a decode for JSON).
    ///
    /// # Errors
    /// As [`Payload::with`].
    pub fn decode<E: DomainEvent>(&self, name: &str) -> Result<E, DecodeError> {
        match self {
            Payload::Json(text) => {
                serde_json::from_str::<E>(text).map_err(|source| DecodeError::Payload {
                    name: name.to_owned(),
                    rust_type: std::any::type_name::<E>(),
                    source,
                })
            }
            Payload::Typed(_) | Payload::Shared(_) => self.with(name, E::clone),
        }
    }

    /// The error for a typed payload that is not an `E`.
    #[cold]
    fn mismatch<E: DomainEvent>(&self, name: &str) -> DecodeError {
        DecodeError::TypeMismatch {
            name: name.to_owned(),
            expected: std::any::type_name::<E>(),
            actual: match self {
                Payload::Typed(value) => value.rust_type(),
                Payload::Shared(shared) => shared
                    .value()
                    .map_or("nothing (not reached: see SharedEvent)", |value| {
                        value.rust_type()
                    }),
                Payload::Json(_) => "JSON text",
            },
        }
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Typed(value) => fmt::Debug::fmt(value, f),
            Payload::Shared(shared) => fmt::Debug::fmt(shared, f),
            Payload::Json(text) => write!(f, "Json({text})"),
        }
    }
}

/// An event recorded on an aggregate and not yet stored.
#[derive(Debug, Clone)]
pub struct UncommittedEvent {
    /// Identity, position in the stream and context.
    pub envelope: EventEnvelope,
    /// The event itself.
    pub payload: Payload,
}

/// An event as stored: the envelope, the payload, its global position and when it was
/// stored.
#[derive(Debug, Clone)]
pub struct RecordedEvent {
    /// Identity, position in the stream and context.
    pub envelope: EventEnvelope,
    /// The event itself.
    pub payload: Payload,
    /// Position in the store's global log: 1 for the first event ever stored, strictly
    /// increasing in the order readers see events.
    pub position: u64,
    /// When the store accepted the event.
    pub stored_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// The stored event name.
    pub fn name(&self) -> &str {
        &self.envelope.event_name
    }

    /// The event id.
    pub fn event_id(&self) -> Uuid {
        self.envelope.event_id
    }

    /// The aggregate id.
    pub fn aggregate_id(&self) -> Uuid {
        self.envelope.aggregate_id
    }

    /// The aggregate's version after this event.
    pub fn aggregate_version(&self) -> u64 {
        self.envelope.aggregate_version
    }

    /// Whether the event is an `E` (by stored name).
    #[inline]
    pub fn is<E: DomainEvent>(&self) -> bool {
        is_name(&self.envelope.event_name, E::NAME)
    }

    /// Decodes the payload as `E`, checking name and schema version first.
    ///
    /// # Errors
    /// [`DecodeError`] when the event is not an `E`, was written with another schema
    /// version, or its payload does not decode.
    pub fn decode<E: DomainEvent>(&self) -> Result<E, DecodeError> {
        check_identity::<E>(&self.envelope)?;
        self.payload.decode(&self.envelope.event_name)
    }

    /// Builds the stored form of an uncommitted event.
    pub fn from_uncommitted(
        event: UncommittedEvent,
        position: u64,
        stored_at: DateTime<Utc>,
    ) -> Self {
        RecordedEvent {
            envelope: event.envelope,
            payload: event.payload,
            position,
            stored_at,
        }
    }
}

/// `name == expected`, without comparing the bytes when `name` is `expected` itself (the
/// usual case for an event recorded in this process, whose name borrows the constant).
#[inline]
pub(crate) fn is_name(name: &str, expected: &'static str) -> bool {
    name.len() == expected.len()
        && (std::ptr::eq(name.as_ptr(), expected.as_ptr()) || name == expected)
}

/// Whether `a` and `b` are the same string in memory (same address and length): equal
/// without comparing their bytes. `false` says nothing.
#[inline]
pub(crate) fn same_str(a: &str, b: &str) -> bool {
    a.len() == b.len() && std::ptr::eq(a.as_ptr(), b.as_ptr())
}

/// Checks that an envelope names `E` at its current schema version.
pub(crate) fn check_identity<E: DomainEvent>(envelope: &EventEnvelope) -> Result<(), DecodeError> {
    if envelope.event_name != E::NAME {
        return Err(DecodeError::WrongEvent {
            expected: E::NAME,
            actual: envelope.event_name.to_string(),
        });
    }
    if envelope.schema_version != E::VERSION {
        return Err(DecodeError::SchemaVersion {
            name: E::NAME,
            stored: envelope.schema_version,
            expected: E::VERSION,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn envelope(context: SharedContext) -> EventEnvelope {
        EventEnvelope {
            event_id: Uuid::from_u128(7),
            event_name: "Deposited".into(),
            schema_version: 1,
            aggregate_id: Uuid::from_u128(9),
            aggregate_type: "Account".into(),
            aggregate_version: 3,
            occurred_at: DateTime::UNIX_EPOCH,
            context,
        }
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Noted {
        n: u32,
    }

    impl DomainEvent for Noted {
        const NAME: &'static str = "noted";
        const VERSION: u32 = 1;
        const AGGREGATE_TYPE: &'static str = "Notebook";
    }

    fn shared(events: Vec<Noted>, index: usize) -> Payload {
        Payload::Shared(SharedEvent::new(Arc::new(events), index))
    }

    #[test]
    fn a_shared_payload_reads_its_own_event_of_the_vector() {
        let payload = shared(vec![Noted { n: 1 }, Noted { n: 2 }], 1);
        assert_eq!(payload.typed_ref::<Noted>(), Some(&Noted { n: 2 }));
        assert_eq!(payload.decode::<Noted>("noted").unwrap(), Noted { n: 2 });
        assert_eq!(payload.to_json().unwrap(), r#"{"n":2}"#);
        assert_eq!(format!("{payload:?}"), "Noted { n: 2 }");
        let other: Result<Deposited, _> = payload.decode("noted");
        assert!(matches!(other, Err(DecodeError::TypeMismatch { .. })));
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Deposited {
        amount: u32,
    }

    impl DomainEvent for Deposited {
        const NAME: &'static str = "deposited";
        const VERSION: u32 = 1;
        const AGGREGATE_TYPE: &'static str = "Notebook";
    }

    #[test]
    fn a_shared_payload_past_its_vector_is_an_error_not_a_panic() {
        let payload = shared(vec![Noted { n: 1 }], 5);
        assert_eq!(payload.typed_ref::<Noted>(), None);
        assert!(payload.typed_value().is_none());
        let error = payload.with::<Noted, _>("noted", |_| ()).unwrap_err();
        assert!(matches!(error, DecodeError::TypeMismatch { .. }), "{error}");
        let error = payload.to_json().unwrap_err();
        assert!(
            error
                .to_string()
                .contains("no event at index 5 of the 1 its command decided"),
            "{error}"
        );
        assert_eq!(
            format!("{payload:?}"),
            "no event at index 5 of the 1 its command decided"
        );
    }

    #[test]
    fn the_context_serializes_as_fields_of_the_envelope_and_round_trips() {
        let context = EventContext::new()
            .tenant("acme")
            .correlation(Uuid::from_u128(1))
            .actor("alice")
            .meta("ip", "10.0.0.1");
        let written = envelope(context.into());
        let json = serde_json::to_value(&written).unwrap();
        assert_eq!(json["tenant_id"], "acme");
        assert_eq!(json["correlation_id"], Uuid::from_u128(1).to_string());
        assert_eq!(json["causation_id"], serde_json::Value::Null);
        assert_eq!(json["actor_id"], "alice");
        assert_eq!(json["metadata"]["ip"], "10.0.0.1");
        assert!(json.get("context").is_none(), "{json}");
        // One flat struct, its fields in their historical order.
        let text = serde_json::to_string(&written).unwrap();
        let order = [
            "event_id",
            "event_name",
            "schema_version",
            "aggregate_id",
            "aggregate_type",
            "aggregate_version",
            "occurred_at",
            "tenant_id",
            "correlation_id",
            "causation_id",
            "actor_id",
            "metadata",
        ];
        let at: Vec<usize> = order
            .iter()
            .map(|field| text.find(&format!("\"{field}\":")).unwrap())
            .collect();
        assert!(at.is_sorted(), "{text}");
        let read: EventEnvelope = serde_json::from_value(json).unwrap();
        assert_eq!(read, written);

        // The same fields as a sequence (the form of formats without field names) read
        // back the same envelope: the reading side keeps the writing side's order.
        let fields = serde_json::to_value(&written).unwrap();
        let sequence: Vec<serde_json::Value> = order.iter().map(|f| fields[*f].clone()).collect();
        let read: EventEnvelope = serde_json::from_value(sequence.into()).unwrap();
        assert_eq!(read, written);
        // Context fields left out read as empty, as does a context on its own.
        let mut sparse = fields.clone();
        for field in [
            "tenant_id",
            "correlation_id",
            "causation_id",
            "actor_id",
            "metadata",
        ] {
            sparse.as_object_mut().unwrap().remove(field);
        }
        let read: EventEnvelope = serde_json::from_value(sparse).unwrap();
        assert!(read.context.is_empty());
        let context: SharedContext =
            serde_json::from_value(serde_json::json!({"tenant_id": "acme"})).unwrap();
        assert_eq!(context, EventContext::new().tenant("acme"));

        let empty = envelope(SharedContext::default());
        let read: EventEnvelope =
            serde_json::from_value(serde_json::to_value(&empty).unwrap()).unwrap();
        assert_eq!(read, empty);
        assert!(
            read.context.0.is_none(),
            "an empty context is not allocated"
        );
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_envelope_has_no_padding() {
        // Its fields: two ids (16 each), two names (24 each), the version (8), the
        // schema version (4), the time (12) and the context (8).
        assert_eq!(size_of::<EventEnvelope>(), 112);
    }

    #[test]
    fn envelopes_share_a_context_and_changing_one_copies_it() {
        let shared = SharedContext::new(EventContext::new().tenant("acme"));
        let mut first = envelope(shared.clone());
        let second = envelope(shared);
        assert_eq!(first, second);
        first.context.tenant_id = Some("globex".into());
        assert_eq!(first.context.tenant_id.as_deref(), Some("globex"));
        assert_eq!(second.context.tenant_id.as_deref(), Some("acme"));
        assert_ne!(first, second);
        assert!(SharedContext::new(EventContext::new()).0.is_none());
    }
}
