//! The wire format of a bus message: three stream fields.
//!
//! | field | content |
//! |---|---|
//! | `name` | the stored event name, so a consumer can skip events it does not handle without parsing anything |
//! | `meta` | JSON: `{"v":1,"envelope":{..every EventEnvelope field..},"position":N,"stored_at":"..."}` |
//! | `payload` | the event's JSON ([`Payload::to_json`]) |

use std::collections::HashMap;
use std::sync::Arc;

use ::redis::Value;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::BusError;
use crate::event::{EventEnvelope, Payload, RecordedEvent};

/// Field holding the event name.
pub(super) const NAME: &str = "name";
/// Field holding the envelope, position and storage time as JSON.
pub(super) const META: &str = "meta";
/// Field holding the payload JSON.
pub(super) const PAYLOAD: &str = "payload";

/// Version of the `meta` layout.
const META_VERSION: u8 = 1;

#[derive(Serialize)]
struct MetaRef<'a> {
    v: u8,
    envelope: &'a EventEnvelope,
    position: u64,
    stored_at: &'a DateTime<Utc>,
}

#[derive(Deserialize)]
struct Meta {
    v: u8,
    envelope: EventEnvelope,
    position: u64,
    stored_at: DateTime<Utc>,
}

/// One event, ready to be written as stream fields.
pub(super) struct Encoded<'a> {
    pub(super) name: &'a str,
    pub(super) meta: String,
    pub(super) payload: std::borrow::Cow<'a, str>,
}

/// Serializes an event's envelope and payload.
pub(super) fn encode(event: &Arc<RecordedEvent>) -> Result<Encoded<'_>, BusError> {
    let serialize_error = |source| BusError::Serialize {
        name: event.name().to_owned(),
        source,
    };
    let payload = event.payload.to_json().map_err(serialize_error)?;
    let meta = serde_json::to_string(&MetaRef {
        v: META_VERSION,
        envelope: &event.envelope,
        position: event.position,
        stored_at: &event.stored_at,
    })
    .map_err(serialize_error)?;
    Ok(Encoded {
        name: event.name(),
        meta,
        payload,
    })
}

/// A bus message that cannot be turned back into an event: a field is missing or does
/// not decode. Such messages are dead-lettered at once, since retrying cannot fix them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed bus message {id}: {reason}")]
pub struct MalformedMessage {
    /// The stream entry id.
    pub id: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Borrows a field's bytes.
pub(super) fn field<'a>(map: &'a HashMap<String, Value>, name: &str) -> Option<&'a [u8]> {
    match map.get(name)? {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

/// A field as text.
pub(super) fn text_field<'a>(map: &'a HashMap<String, Value>, name: &str) -> Option<&'a str> {
    field(map, name).and_then(|bytes| std::str::from_utf8(bytes).ok())
}

/// Decodes a message back into a [`RecordedEvent`] with a [`Payload::Json`] payload,
/// taking the payload bytes out of `map` without copying them.
pub(super) fn decode(
    id: &str,
    map: &mut HashMap<String, Value>,
) -> Result<RecordedEvent, MalformedMessage> {
    let malformed = |reason: String| MalformedMessage {
        id: id.to_owned(),
        reason,
    };
    let meta = field(map, META).ok_or_else(|| malformed(format!("no `{META}` field")))?;
    let meta: Meta = serde_json::from_slice(meta)
        .map_err(|error| malformed(format!("`{META}` does not decode: {error}")))?;
    if meta.v != META_VERSION {
        return Err(malformed(format!(
            "`{META}` has layout version {}, this build reads version {META_VERSION}",
            meta.v
        )));
    }
    if let Some(name) = text_field(map, NAME)
        && name != meta.envelope.event_name
    {
        return Err(malformed(format!(
            "`{NAME}` says `{name}` but the envelope says `{}`",
            meta.envelope.event_name
        )));
    }
    let payload = match map.remove(PAYLOAD) {
        Some(Value::BulkString(bytes)) => match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => {
                let reason = format!("`{PAYLOAD}` is not UTF-8: {}", error.utf8_error());
                // Leave the message whole: it goes to the dead letters as it was.
                map.insert(PAYLOAD.to_owned(), Value::BulkString(error.into_bytes()));
                return Err(malformed(reason));
            }
        },
        Some(Value::SimpleString(text)) => text,
        other => {
            if let Some(value) = other {
                map.insert(PAYLOAD.to_owned(), value);
            }
            return Err(malformed(format!("no `{PAYLOAD}` field")));
        }
    };
    Ok(RecordedEvent {
        envelope: meta.envelope,
        payload: Payload::Json(payload),
        position: meta.position,
        stored_at: meta.stored_at,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use uuid::Uuid;

    fn fields(encoded: &Encoded<'_>) -> HashMap<String, Value> {
        HashMap::from([
            (
                NAME.to_owned(),
                Value::BulkString(encoded.name.as_bytes().to_vec()),
            ),
            (
                META.to_owned(),
                Value::BulkString(encoded.meta.clone().into_bytes()),
            ),
            (
                PAYLOAD.to_owned(),
                Value::BulkString(encoded.payload.as_bytes().to_vec()),
            ),
        ])
    }

    fn event() -> Arc<RecordedEvent> {
        Arc::new(RecordedEvent {
            envelope: EventEnvelope {
                event_id: Uuid::now_v7(),
                event_name: "thing.happened".into(),
                schema_version: 3,
                aggregate_id: Uuid::now_v7(),
                aggregate_type: "Thing".into(),
                aggregate_version: 7,
                occurred_at: Utc::now(),
                context: crate::EventContext {
                    tenant_id: Some("acme".into()),
                    correlation_id: Some(Uuid::now_v7()),
                    causation_id: Some(Uuid::now_v7()),
                    actor_id: Some("alice".into()),
                    metadata: [("ip".to_owned(), serde_json::json!("10.0.0.1"))].into(),
                }
                .into(),
            },
            payload: Payload::json(r#"{"n":1}"#),
            position: 42,
            stored_at: Utc::now(),
        })
    }

    #[test]
    fn every_envelope_field_position_and_storage_time_survive_the_round_trip() {
        let event = event();
        let encoded = encode(&event).unwrap();
        let decoded = decode("1-0", &mut fields(&encoded)).unwrap();
        assert_eq!(decoded.envelope, event.envelope);
        assert_eq!(decoded.position, 42);
        assert_eq!(decoded.stored_at, event.stored_at);
        assert!(matches!(decoded.payload, Payload::Json(ref text) if text == r#"{"n":1}"#));
    }

    #[test]
    fn a_message_without_payload_is_malformed() {
        let event = event();
        let encoded = encode(&event).unwrap();
        let mut map = fields(&encoded);
        map.remove(PAYLOAD);
        let error = decode("5-1", &mut map).unwrap_err();
        assert_eq!(error.id, "5-1");
        assert!(error.reason.contains("payload"), "{error}");
    }

    #[test]
    fn a_name_that_contradicts_the_envelope_is_malformed() {
        let event = event();
        let encoded = encode(&event).unwrap();
        let mut map = fields(&encoded);
        map.insert(NAME.to_owned(), Value::BulkString(b"other".to_vec()));
        let error = decode("5-1", &mut map).unwrap_err();
        assert!(error.reason.contains("other"), "{error}");
    }

    #[test]
    fn a_payload_that_is_not_utf8_is_malformed_and_kept_for_the_dead_letter() {
        let event = event();
        let encoded = encode(&event).unwrap();
        let mut map = fields(&encoded);
        map.insert(PAYLOAD.to_owned(), Value::BulkString(vec![0xff, 0xfe]));
        assert!(
            decode("1-1", &mut map)
                .unwrap_err()
                .reason
                .contains("UTF-8")
        );
        assert_eq!(field(&map, PAYLOAD), Some(&[0xff, 0xfe][..]));
    }

    #[test]
    fn garbage_meta_is_malformed() {
        let mut map = HashMap::from([
            (NAME.to_owned(), Value::BulkString(b"x".to_vec())),
            (META.to_owned(), Value::BulkString(b"{not json".to_vec())),
            (PAYLOAD.to_owned(), Value::BulkString(b"{}".to_vec())),
        ]);
        assert!(decode("1-1", &mut map).unwrap_err().reason.contains("meta"));
    }
}
