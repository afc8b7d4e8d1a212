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
use serde_json::{Map, Value, json};
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

const TIMESTAMP: &str = "[timestamp]";

/// The snapshot form of a sequence of events: for each, its name, schema version,
/// aggregate, version, context (when set) and JSON payload. Ids become `[id N]` labels by
/// first appearance (in the envelope and in payloads); timestamps become `[timestamp]`.
///
/// # Panics
/// When a payload does not serialize (the message names the event).
#[track_caller]
pub fn events_snapshot<I>(events: I) -> Value
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
            let mut out = Map::new();
            out.insert("event".into(), json!(envelope.event_name));
            out.insert("schema_version".into(), json!(envelope.schema_version));
            out.insert("aggregate_type".into(), json!(envelope.aggregate_type));
            out.insert("aggregate_id".into(), ids.label(envelope.aggregate_id));
            out.insert("version".into(), json!(envelope.aggregate_version));
            out.insert("event_id".into(), ids.label(envelope.event_id));
            out.insert("occurred_at".into(), json!(TIMESTAMP));
            if let Some(tenant) = &envelope.tenant_id {
                out.insert("tenant_id".into(), json!(tenant));
            }
            if let Some(id) = envelope.correlation_id {
                out.insert("correlation_id".into(), ids.label(id));
            }
            if let Some(id) = envelope.causation_id {
                out.insert("causation_id".into(), ids.label(id));
            }
            if let Some(actor) = &envelope.actor_id {
                out.insert("actor_id".into(), json!(actor));
            }
            if !envelope.metadata.is_empty() {
                let metadata = serde_json::to_value(&envelope.metadata).unwrap_or(Value::Null);
                out.insert("metadata".into(), ids.redact(metadata));
            }
            out.insert("payload".into(), ids.redact(payload));
            Value::Object(out)
        })
        .collect();
    Value::Array(list)
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
/// assert_eq!(schemas.to_snapshot()[2]["event"], "doc.order_shipped");
/// ```
#[derive(Debug, Default)]
pub struct EventSchemas {
    required: Option<(&'static str, &'static [&'static str])>,
    names: Vec<&'static str>,
    entries: Vec<Value>,
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
        self.names.push(E::NAME);
        self.entries.push(json!({
            "event": E::NAME,
            "schema_version": E::VERSION,
            "aggregate_type": E::AGGREGATE_TYPE,
            "payload": Ids::default().redact(payload),
        }));
        self
    }

    /// The snapshot form: one entry per sample, in the order added.
    ///
    /// # Panics
    /// For [`for_aggregate`](Self::for_aggregate) lists, when an event the aggregate
    /// handles has no sample.
    #[track_caller]
    pub fn to_snapshot(&self) -> Value {
        if let Some((aggregate, handled)) = self.required {
            let missing: Vec<&str> = handled
                .iter()
                .copied()
                .filter(|name| !self.names.contains(name))
                .collect();
            if !missing.is_empty() {
                panic!(
                    "`{aggregate}` handles events without a sample: {}; add `.sample(...)` for each",
                    missing.join(", ")
                );
            }
        }
        Value::Array(self.entries.clone())
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
    ($events:expr $(,)?) => {
        $crate::__private::insta::assert_yaml_snapshot!($crate::snapshot::events_snapshot($events))
    };
    ($name:expr, $events:expr $(,)?) => {
        $crate::__private::insta::assert_yaml_snapshot!(
            $name,
            $crate::snapshot::events_snapshot($events)
        )
    };
}

/// Snapshots the serialized form of event types from an
/// [`EventSchemas`](crate::EventSchemas) list with insta (YAML); an optional first
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
    ($schemas:expr $(,)?) => {
        $crate::__private::insta::assert_yaml_snapshot!(($schemas).to_snapshot())
    };
    ($name:expr, $schemas:expr $(,)?) => {
        $crate::__private::insta::assert_yaml_snapshot!($name, ($schemas).to_snapshot())
    };
}
