//! Error types, one per area, each with a classification callers can branch on.

use std::error::Error as StdError;
use std::fmt;

use uuid::Uuid;

use crate::store::ExpectedVersion;

/// A boxed error from a user's handler or a backend driver.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A stored event could not be turned back into its Rust type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// No registered [`DomainEvent`](crate::DomainEvent) has this stored name.
    #[error("unknown event name `{name}`; known events: {known}")]
    UnknownEvent {
        /// The stored name.
        name: String,
        /// The registered names, comma separated.
        known: String,
    },
    /// The JSON payload does not fit the Rust type.
    #[error("stored payload of `{name}` does not decode as `{rust_type}`: {source}")]
    Payload {
        /// The stored name.
        name: String,
        /// The Rust type it was decoded into.
        rust_type: &'static str,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// The event was stored with another schema version than the Rust type has.
    #[error(
        "event `{name}` was stored with schema version {stored}, but the type is at version {expected}; add an upcaster or keep the old version decodable"
    )]
    SchemaVersion {
        /// The stored name.
        name: &'static str,
        /// The version in the store.
        stored: u32,
        /// [`DomainEvent::VERSION`](crate::DomainEvent::VERSION) of the type.
        expected: u32,
    },
    /// A typed payload holds another type than the one asked for.
    #[error("payload of `{name}` holds a `{actual}`, not a `{expected}`")]
    TypeMismatch {
        /// The stored name.
        name: String,
        /// The type asked for.
        expected: &'static str,
        /// The type held.
        actual: &'static str,
    },
    /// The event is another event than the one asked for.
    #[error("expected a `{expected}` event, found `{actual}`")]
    WrongEvent {
        /// The name asked for.
        expected: &'static str,
        /// The stored name.
        actual: String,
    },
    /// The event registry is inconsistent (see [`RegistryError`]).
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Two event types claim the same stored name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two Rust types are registered under one stored name.
    #[error(
        "event name `{name}` is claimed by both `{first}` and `{second}`; give one of them `#[event(name = \"...\")]`"
    )]
    DuplicateName {
        /// The stored name.
        name: &'static str,
        /// One type.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
}

/// An event could not be applied to an aggregate's state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The aggregate has no `#[handles]` method for the event (and was not declared with
    /// `#[aggregate(unhandled = "ignore")]`).
    #[error(
        "aggregate `{aggregate_type}` has no handler for event `{event_name}`; add a `#[handles(...)]` method or declare `#[aggregate(unhandled = \"ignore\")]`"
    )]
    Unhandled {
        /// The aggregate type.
        aggregate_type: &'static str,
        /// The stored name.
        event_name: String,
    },
    /// The payload did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// An [`AggregateRoot`](crate::AggregateRoot) refused an event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AggregateError {
    /// The event belongs to another aggregate instance.
    #[error("event for aggregate {actual} cannot be applied to aggregate {expected}")]
    WrongAggregate {
        /// This aggregate's id.
        expected: Uuid,
        /// The event's aggregate id.
        actual: Uuid,
    },
    /// The event belongs to another aggregate type.
    #[error("event for aggregate type `{actual}` cannot be applied to a `{expected}`")]
    WrongAggregateType {
        /// This aggregate's type.
        expected: &'static str,
        /// The event's aggregate type.
        actual: String,
    },
    /// The event's version is not the next one.
    #[error("aggregate {aggregate_id} is at version {current}: the next event must be version {}, got {actual}", current + 1)]
    UnexpectedVersion {
        /// The aggregate id.
        aggregate_id: Uuid,
        /// The aggregate's current version.
        current: u64,
        /// The event's version.
        actual: u64,
    },
    /// The event could not be applied.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// The stream is not at the version the writer expected: someone else wrote first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "concurrency conflict on {aggregate_type} {aggregate_id}: expected {expected}, stream is at version {actual}"
)]
pub struct ConcurrencyError {
    /// The stream's aggregate type.
    pub aggregate_type: String,
    /// The stream's aggregate id.
    pub aggregate_id: Uuid,
    /// What the writer expected.
    pub expected: ExpectedVersion,
    /// The stream's version when the append was refused.
    pub actual: u64,
}

/// What kind of failure a [`StoreError`] is, to branch on without matching every variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Optimistic concurrency: reload and retry the command.
    Conflict,
    /// The input is invalid (a malformed batch, a bad name); retrying will not help.
    InvalidInput,
    /// A payload could not be serialized or a stored one could not be decoded.
    Data,
    /// The backend is unreachable or timed out; retrying later may help.
    Unavailable,
    /// Anything else the backend reported.
    Backend,
}

/// An event store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Optimistic concurrency check failed.
    #[error(transparent)]
    Conflict(#[from] ConcurrencyError),
    /// An event id in the batch is already stored in another stream, or only part of a
    /// batch was stored before (an idempotent retry must resend the same batch).
    #[error("event {event_id} is already stored: {reason}")]
    DuplicateEvent {
        /// The offending id.
        event_id: Uuid,
        /// Why the append is not a plain retry.
        reason: &'static str,
    },
    /// The append is malformed.
    #[error("invalid append to {aggregate_type} {aggregate_id}: {reason}")]
    InvalidAppend {
        /// The stream's aggregate type.
        aggregate_type: String,
        /// The stream's aggregate id.
        aggregate_id: Uuid,
        /// What is wrong.
        reason: String,
    },
    /// A payload could not be serialized.
    #[error("event `{name}` could not be serialized: {source}")]
    Serialize {
        /// The stored name.
        name: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// A stored event could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A stored row is corrupt (a missing column, an impossible value).
    #[error("corrupt stored event at position {position}: {reason}")]
    Corrupt {
        /// The position of the row.
        position: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend failed.
    #[error("{backend} error: {source}")]
    Backend {
        /// `"postgres"`, `"sqlite"`, ...
        backend: &'static str,
        /// Whether retrying later may succeed (a dropped connection, a timeout).
        transient: bool,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Conflict(_) => ErrorKind::Conflict,
            StoreError::DuplicateEvent { .. } | StoreError::InvalidAppend { .. } => {
                ErrorKind::InvalidInput
            }
            StoreError::Serialize { .. } | StoreError::Decode(_) | StoreError::Corrupt { .. } => {
                ErrorKind::Data
            }
            StoreError::Backend {
                transient: true, ..
            } => ErrorKind::Unavailable,
            StoreError::Backend { .. } => ErrorKind::Backend,
        }
    }

    /// Whether this is an optimistic concurrency conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict(_))
    }

    /// The conflict, if this is one.
    pub fn as_conflict(&self) -> Option<&ConcurrencyError> {
        match self {
            StoreError::Conflict(conflict) => Some(conflict),
            _ => None,
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        self.kind() == ErrorKind::Unavailable
    }

    /// Wraps a backend error.
    pub fn backend(backend: &'static str, transient: bool, source: impl Into<BoxError>) -> Self {
        StoreError::Backend {
            backend,
            transient,
            source: source.into(),
        }
    }
}

/// One handler's failure while an event was published.
#[derive(Debug)]
pub struct HandlerFailure {
    /// The handler's name.
    pub handler: String,
    /// The event id.
    pub event_id: Uuid,
    /// The stored event name.
    pub event_name: String,
    /// What the handler returned.
    pub error: BoxError,
}

impl fmt::Display for HandlerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "handler `{}` failed on `{}` ({}): {}",
            self.handler, self.event_name, self.event_id, self.error
        )
    }
}

/// Publishing to an event bus failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// Every event was delivered to every other handler, but these handlers failed.
    #[error("{} handler failure(s); first: {}", failures.len(), failures.first().map(ToString::to_string).unwrap_or_default())]
    HandlerFailed {
        /// Each failure, in delivery order.
        failures: Vec<HandlerFailure>,
    },
    /// The event could not be serialized for the transport.
    #[error("event `{name}` could not be serialized: {source}")]
    Serialize {
        /// The stored name.
        name: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// The broker failed.
    #[error("{backend} error: {source}")]
    Backend {
        /// `"redis"`, ...
        backend: &'static str,
        /// Whether retrying later may succeed.
        transient: bool,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
}

/// Loading or saving an aggregate failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryError {
    /// No event is stored for the aggregate.
    #[error("{aggregate_type} {aggregate_id} not found")]
    NotFound {
        /// The aggregate type.
        aggregate_type: &'static str,
        /// The aggregate id.
        aggregate_id: Uuid,
    },
    /// The store failed (including concurrency conflicts: see [`RepositoryError::is_conflict`]).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event could not be applied.
    #[error(transparent)]
    Aggregate(#[from] AggregateError),
    /// The events were stored, but publishing them to the bus failed. Nothing is lost:
    /// they are in the store at the positions given, and subscriptions read them from there.
    #[error("events stored up to position {last_position}, but publishing them failed: {source}")]
    Publish {
        /// Position of the last stored event.
        last_position: u64,
        /// What the bus said.
        #[source]
        source: BusError,
    },
}

impl RepositoryError {
    /// Whether this is an optimistic concurrency conflict (reload and retry).
    pub fn is_conflict(&self) -> bool {
        matches!(self, RepositoryError::Store(StoreError::Conflict(_)))
    }

    /// The conflict, if this is one.
    pub fn as_conflict(&self) -> Option<&ConcurrencyError> {
        match self {
            RepositoryError::Store(error) => error.as_conflict(),
            _ => None,
        }
    }

    /// Whether this is [`RepositoryError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, RepositoryError::NotFound { .. })
    }
}
