//! What generated code needs. Not a public API: anything here may change in any release.

pub use inventory;

use crate::error::{ApplyError, BoxError, DecodeError};
use crate::event::{DomainEvent, EventEnvelope, Payload, RecordedEvent, check_identity};
use crate::projection::Event;
pub use crate::registry::EventRegistration;

/// Decodes `payload` as `E` (checking the schema version) and calls `f` with it.
///
/// What the generated dispatch calls for each handled event: the same path as a
/// hand-written `match` calling [`Payload::with`], plus the schema version check, whose
/// error is built out of line.
#[inline(always)]
pub fn decode_with<E: DomainEvent, R>(
    envelope: &EventEnvelope,
    payload: &Payload,
    f: impl FnOnce(&E) -> R,
) -> Result<R, ApplyError> {
    if envelope.schema_version != E::VERSION {
        return Err(identity_error::<E>(envelope));
    }
    Ok(payload.with(&envelope.event_name, f)?)
}

/// The error for an envelope that does not name `E` at its current schema version.
#[cold]
#[inline(never)]
fn identity_error<E: DomainEvent>(envelope: &EventEnvelope) -> ApplyError {
    match check_identity::<E>(envelope) {
        Err(error) => error.into(),
        // Not reached: the caller saw another schema version.
        Ok(()) => DecodeError::SchemaVersion {
            name: E::NAME,
            stored: envelope.schema_version,
            expected: E::VERSION,
        }
        .into(),
    }
}

/// Decodes `payload` as an owned `E` (checking the schema version).
#[inline]
pub fn decode_owned<E: DomainEvent>(
    envelope: &EventEnvelope,
    payload: &Payload,
) -> Result<E, ApplyError> {
    if envelope.schema_version != E::VERSION {
        check_identity::<E>(envelope)?;
    }
    Ok(payload.decode(&envelope.event_name)?)
}

/// The outcome of replaying an event an aggregate has no handler for.
#[cold]
pub fn unhandled(
    aggregate_type: &'static str,
    event_name: &str,
    ignore: bool,
) -> Result<(), ApplyError> {
    if ignore {
        Ok(())
    } else {
        Err(ApplyError::Unhandled {
            aggregate_type,
            event_name: event_name.to_owned(),
        })
    }
}

/// The error for decoding an event that is not a variant of an aggregate's event enum.
#[cold]
pub fn not_a_variant(aggregate_type: &'static str, event_name: &str) -> ApplyError {
    ApplyError::Unhandled {
        aggregate_type,
        event_name: event_name.to_owned(),
    }
}

/// `a == b`, usable in constants (compile-time checks in generated code).
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// `Clone` for a variant of a generated event enum (bounded on `DomainEvent`, so a type
/// that is not an event reports that, not a missing `Clone`).
#[inline]
pub fn clone_event<E: DomainEvent>(event: &E) -> E {
    event.clone()
}

/// `Debug` for a variant of a generated event enum.
#[inline]
pub fn debug_event<E: DomainEvent>(event: &E) -> &dyn core::fmt::Debug {
    event
}

/// `PartialEq` for a variant of a generated event enum.
#[inline]
pub fn eq_event<E: DomainEvent>(a: &E, b: &E) -> bool {
    a == b
}

/// Asserts at compile time that `T` is a [`DomainEvent`]; generated with the user's span.
pub const fn assert_domain_event<T: DomainEvent>() {}

/// Registers an event type in the global registry.
#[macro_export]
#[doc(hidden)]
macro_rules! __register_event {
    ($ty:ty) => {
        $crate::__private::inventory::submit! {
            $crate::__private::EventRegistration::of::<$ty>(::core::concat!(
                ::core::module_path!(),
                "::",
                ::core::stringify!($ty)
            ))
        }
    };
}

pub use crate::__register_event as register_event;

/// `recorded`, whose stored name is `E::NAME`, as an `E` for a `#[projection]` handler.
/// A payload that does not decode is an error (retried, then dead-lettered), never a skip.
#[inline]
pub fn projection_event<E: DomainEvent>(
    recorded: &RecordedEvent,
) -> Result<Event<'_, E>, BoxError> {
    match Event::from_recorded(recorded)? {
        Some(event) => Ok(event),
        None => Err(Box::new(DecodeError::WrongEvent {
            expected: E::NAME,
            actual: recorded.name().to_owned(),
        })),
    }
}

/// A `#[projection]` handler's (or `#[reset]` method's) result, its error boxed.
#[inline]
pub fn handler_result<Error: Into<BoxError>>(result: Result<(), Error>) -> Result<(), BoxError> {
    result.map_err(Into::into)
}

/// The reset of a `#[projection]` without a `#[reset]` method: the read model becomes
/// `Default::default()`. Generated with the span of the projection's type, so a type that
/// is not `Default` is reported there, with this function's name as the reason.
#[inline]
pub fn projection_without_reset_needs_default<P: Default>(projection: &mut P) {
    *projection = P::default();
}
