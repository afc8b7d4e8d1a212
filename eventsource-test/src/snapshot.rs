//! Snapshot forms of event streams and event payloads, for `insta`.
//!
//! Use them through [`assert_events_snapshot!`](crate::assert_events_snapshot) and
//! [`assert_event_schemas_snapshot!`](crate::assert_event_schemas_snapshot); review
//! changes with `cargo insta review`.

use std::collections::HashMap;
use std::sync::Arc;

use eventsource::{
    Aggregate, DomainEvent, EventEnvelope, Payload, RecordedEvent, UncommittedEvent,
};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// An event with an envelope and a payload: what [`events_snapshot`] accepts.
pub trait SnapshotEvent {
    /// The envelope.
    fn envelope(&self) -> &EventEnvelope;
    /// The payload.
    fn payload(&self) -> &Payload;
}

impl SnapshotEvent for UncommittedEvent {
    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn payload(&self) -> &Payload {
        &self.payload
    }
}

impl SnapshotEvent for RecordedEvent {
    fn envelope(&self) -> &EventEnvelope {
        &self.envelope
    }
    fn payload(&self) -> &Payload {
        &self.payload
    }
}

impl<T: SnapshotEvent + ?Sized> SnapshotEvent for Arc<T> {
    fn envelope(&self) -> &EventEnvelope {
        (**self).envelope()
    }
    fn payload(&self) -> &Payload {
        (**self).payload()
    }
}

impl<T: SnapshotEvent + ?Sized> SnapshotEvent for &T {
    fn envelope(&self) -> &EventEnvelope {
        (**self).envelope()
    }
    fn payload(&self) -> &Payload {
        (**self).payload()
    }
}

/// Replaces UUIDs with labels in order of first appearance (`[id 1]`, `[id 2]`, ...), so
/// the same id keeps the same label and links between events stay visible.
#[derive(Default)]
struct Ids(HashMap<Uuid, usize>);

impl Ids {
    fn label(&mut self, id: Uuid) -> Value {
        let next = self.0.len() + 1;
        let n = *self.0.entry(id).or_insert(next);
        Value::String(format!("[id {n}]"))
    }

    /// Labels every string in `value` that is a UUID.
    fn redact(&mut self, value: Value) -> Value {
        match value {
            Value::String(text) => match Uuid::try_parse(&text) {
                Ok(id) => self.label(id),
                Err(_) => Value::String(text),
            },
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.redact(v)).collect())
            }
            Value::Object(fields) => Value::Object(
                fields
                    .into_iter()
                    .map(|(k, v)| (k, self.redact(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

/// Every UUID string in `value`, in order of appearance.
fn uuids_in(value: &Value) -> Vec<Uuid> {
    match value {
        Value::String(text) => Uuid::try_parse(text).into_iter().collect(),
        Value::Array(items) => items.iter().flat_map(uuids_in).collect(),
        Value::Object(fields) => fields.values().flat_map(uuids_in).collect(),
        _ => Vec::new(),
    }
}

const TIMESTAMP: &str = "[timestamp]";

/// One event in a snapshot, fields in reading order.
#[derive(Serialize)]
struct EventView {
    event: String,
    schema_version: u32,
    aggregate_type: String,
    aggregate_id: Value,
    version: u64,
    event_id: Value,
    occurred_at: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    causation_id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Value>,
    payload: Value,
}

/// The snapshot form of a sequence of events: for each, its name, schema version,
/// aggregate, version, context (when set) and JSON payload. Ids become `[id N]` labels by
/// first appearance (in the envelope and in payloads); timestamps become `[timestamp]`.
///
/// # Panics
/// When a payload does not serialize (the message names the event).
#[track_caller]
pub fn events_snapshot<I>(events: I) -> EventsSnapshot
where
    I: IntoIterator,
    I::Item: SnapshotEvent,
{
    let mut ids = Ids::default();
    let list = events
        .into_iter()
        .map(|event| {
            let envelope = event.envelope();
            let payload = match event.payload().to_json_value() {
                Ok(payload) => payload,
                Err(error) => panic!(
                    "event {} (version {}) does not serialize: {error}",
                    envelope.event_name, envelope.aggregate_version
                ),
            };
            EventView {
                event: envelope.event_name.to_string(),
                schema_version: envelope.schema_version,
                aggregate_type: envelope.aggregate_type.to_string(),
                aggregate_id: ids.label(envelope.aggregate_id),
                version: envelope.aggregate_version,
                event_id: ids.label(envelope.event_id),
                occurred_at: TIMESTAMP,
                tenant_id: envelope.context.tenant_id.clone(),
                correlation_id: envelope.context.correlation_id.map(|id| ids.label(id)),
                causation_id: envelope.context.causation_id.map(|id| ids.label(id)),
                actor_id: envelope.context.actor_id.clone(),
                metadata: (!envelope.context.metadata.is_empty()).then(|| {
                    let metadata =
                        serde_json::to_value(&envelope.context.metadata).unwrap_or(Value::Null);
                    ids.redact(metadata)
                }),
                payload: ids.redact(payload),
            }
        })
        .collect();
    EventsSnapshot(list)
}

/// The snapshot form of a sequence of events, made by [`events_snapshot`]: serialize it
/// (insta does) to see it.
#[derive(Serialize)]
#[serde(transparent)]
pub struct EventsSnapshot(Vec<EventView>);

impl EventsSnapshot {
    /// How many events it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds no event.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The serialized form of each event type, from a sample value of each: its stored name,
/// schema version, aggregate and JSON payload. Snapshot it with
/// [`assert_event_schemas_snapshot!`](crate::assert_event_schemas_snapshot) so that an
/// accidental change of the wire format (a renamed field, a new enum tagging) shows up in
/// review.
///
/// Each sample is also checked to decode back to itself, which catches fields that do
/// not survive serde (`#[serde(skip)]`, asymmetric custom serializers).
///
/// ```
/// # use eventsource_test::__doc_order::*;
/// use eventsource_test::EventSchemas;
///
/// let schemas = EventSchemas::for_aggregate::<Order>()
///     .sample(OrderCreated { customer: "ada".into(), total: 50.0 })
///     .sample(OrderItemAdded { product: "widget".into(), quantity: 2, unit_price: 15.0 })
///     .sample(OrderShipped { tracking: "TRACK-1".into() });
/// assert_eq!(schemas.names(), ["doc.order_created", "doc.order_item_added", "doc.order_shipped"]);
/// ```
#[derive(Debug, Default)]
pub struct EventSchemas {
    required: Option<(&'static str, &'static [&'static str])>,
    entries: Vec<SchemaView>,
}

/// One event type in a schema snapshot.
#[derive(Debug, Clone)]
struct SchemaView {
    event: &'static str,
    schema_version: u32,
    aggregate_type: &'static str,
    /// The JSON text exactly as stored (ids labelled).
    json: String,
}

impl EventSchemas {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// A list that must hold a sample of every event `A` handles.
    pub fn for_aggregate<A: Aggregate>() -> Self {
        EventSchemas {
            required: Some((A::TYPE, A::HANDLED)),
            ..Self::default()
        }
    }

    /// Adds the serialized form of `sample`.
    ///
    /// # Panics
    /// When `sample` does not serialize, or does not decode back to an equal value.
    #[track_caller]
    pub fn sample<E: DomainEvent>(mut self, sample: E) -> Self {
        let payload = match serde_json::to_value(&sample) {
            Ok(payload) => payload,
            Err(error) => panic!("the sample of `{}` does not serialize: {error}", E::NAME),
        };
        match serde_json::from_value::<E>(payload.clone()) {
            Ok(decoded) if decoded == sample => {}
            Ok(decoded) => panic!(
                "the sample of `{}` does not survive a serde round trip\n  sample:  {sample:?}\n  decoded: {decoded:?}",
                E::NAME
            ),
            Err(error) => panic!(
                "the serialized sample of `{}` does not decode back: {error}\n  json: {payload}",
                E::NAME
            ),
        }
        let mut json = match serde_json::to_string(&sample) {
            Ok(json) => json,
            Err(error) => panic!("the sample of `{}` does not serialize: {error}", E::NAME),
        };
        let mut ids = Ids::default();
        for id in uuids_in(&payload) {
            if let Value::String(label) = ids.label(id) {
                json = json.replace(&id.to_string(), &label);
            }
        }
        self.entries.push(SchemaView {
            event: E::NAME,
            schema_version: E::VERSION,
            aggregate_type: E::AGGREGATE_TYPE,
            json,
        });
        self
    }

    /// The stored names of the samples, in the order added.
    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|entry| entry.event).collect()
    }

    /// The snapshot form: one entry per sample, in the order added: the stored name,
    /// schema version and aggregate, then the JSON text exactly as stored (UUIDs
    /// labelled `[id N]`).
    ///
    /// ```text
    /// doc.order_shipped v1 (aggregate Order)
    ///   {"tracking":"TRACK-1"}
    /// ```
    ///
    /// # Panics
    /// For [`for_aggregate`](Self::for_aggregate) lists, when an event the aggregate
    /// handles has no sample.
    #[track_caller]
    pub fn to_snapshot(&self) -> String {
        if let Some((aggregate, handled)) = self.required {
            let missing: Vec<&str> = handled
                .iter()
                .copied()
                .filter(|name| !self.entries.iter().any(|entry| entry.event == *name))
                .collect();
            if !missing.is_empty() {
                panic!(
                    "`{aggregate}` handles events without a sample: {}; add `.sample(...)` for each",
                    missing.join(", ")
                );
            }
        }
        self.entries
            .iter()
            .map(|entry| {
                format!(
                    "{} v{} (aggregate {})\n  {}\n",
                    entry.event, entry.schema_version, entry.aggregate_type, entry.json
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Snapshots a sequence of events with insta (YAML), ids and timestamps redacted: see
/// [`events_snapshot`](crate::snapshot::events_snapshot) for the form. Accepts anything
/// iterable over `UncommittedEvent`, `RecordedEvent` or `Arc<RecordedEvent>` (or
/// references to them); an optional first argument names the snapshot.
///
/// ```no_run
/// # use eventsource_test::__doc_order::*;
/// use eventsource_test::{Scenario, assert_events_snapshot};
///
/// #[test]
/// fn shipping_records_the_tracking_number() {
///     let outcome = Scenario::<Order>::new()
///         .given(OrderCreated { customer: "ada".into(), total: 50.0 })
///         .when(|order| order.ship("TRACK-1"));
///     assert_events_snapshot!(outcome.uncommitted());
/// }
/// ```
#[macro_export]
macro_rules! assert_events_snapshot {
    ($events:expr $(,)?) => {{
        let events = $crate::snapshot::events_snapshot($events);
        $crate::__private::insta::assert_yaml_snapshot!(events)
    }};
    ($name:expr, $events:expr $(,)?) => {{
        let events = $crate::snapshot::events_snapshot($events);
        $crate::__private::insta::assert_yaml_snapshot!($name, events)
    }};
}

/// Snapshots the serialized form of event types from an
/// [`EventSchemas`](crate::EventSchemas) list with insta (text); an optional first
/// argument names the snapshot.
///
/// ```no_run
/// # use eventsource_test::__doc_order::*;
/// use eventsource_test::{EventSchemas, assert_event_schemas_snapshot};
///
/// #[test]
/// fn order_events_keep_their_wire_format() {
///     assert_event_schemas_snapshot!(
///         EventSchemas::for_aggregate::<Order>()
///             .sample(OrderCreated { customer: "ada".into(), total: 50.0 })
///             .sample(OrderItemAdded { product: "widget".into(), quantity: 2, unit_price: 15.0 })
///             .sample(OrderShipped { tracking: "TRACK-1".into() })
///     );
/// }
/// ```
#[macro_export]
macro_rules! assert_event_schemas_snapshot {
    ($schemas:expr $(,)?) => {{
        let event_schemas = $crate::EventSchemas::to_snapshot(&$schemas);
        $crate::__private::insta::assert_snapshot!(event_schemas)
    }};
    ($name:expr, $schemas:expr $(,)?) => {{
        let event_schemas = $crate::EventSchemas::to_snapshot(&$schemas);
        $crate::__private::insta::assert_snapshot!($name, event_schemas)
    }};
}
