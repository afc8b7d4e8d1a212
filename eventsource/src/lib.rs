//! Event sourcing for Rust.
//!
//! Annotate events with `#[derive(DomainEvent)]` and an aggregate's impl block with
//! `#[aggregate]`; record events from commands on an [`AggregateRoot`]; save and load it
//! through an [`AggregateRepository`] over any [`EventStore`]. Read models are
//! `#[projection]` impl blocks fed by a [`ProjectionRunner`](projection::ProjectionRunner).
//!
//! ```
//! use eventsource::{aggregate, AggregateRepository, DomainEvent, InMemoryEventStore};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
//! #[event(aggregate = "Account")]
//! struct Deposited { amount: u64 }
//!
//! #[derive(Debug, Default)]
//! struct Account { balance: u64 }
//!
//! #[aggregate]
//! impl Account {
//!     #[handles(Deposited)]
//!     fn on_deposited(&mut self, e: &Deposited) { self.balance += e.amount; }
//! }
//!
//! impl Account {
//!     fn deposit(&self, amount: u64) -> Result<Deposited, &'static str> {
//!         if amount == 0 { return Err("deposit something"); }
//!         Ok(Deposited { amount })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let accounts = AggregateRepository::<Account, _>::new(InMemoryEventStore::new());
//! let id = uuid::Uuid::now_v7();
//! let mut account = accounts.load_or_create(id).await?;
//! account.execute(|a| a.deposit(40))?;
//! account.execute(|a| a.deposit(2))?;
//! accounts.save(&mut account).await?;
//!
//! let account = accounts.load(id).await?;
//! assert_eq!(account.state().balance, 42);
//! assert_eq!(account.version(), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `macros` | yes | `#[derive(DomainEvent)]`, `#[aggregate]`, `#[projection]`, `#[handles]` |
//! | `sqlite` | no | `SqliteEventStore`: the embedded store (bundled SQLite) |
//! | `redis` | no | `RedisEventBus`: a bus on Redis Streams with consumer groups, reclaim and dead letters |
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod aggregate;
pub mod bus;
mod clock;
mod error;
mod event;
pub mod projection;

/// Re-exported for implementing [`Projection`](projection::Projection), [`EventStore`] and [`EventHandler`] without a direct dependency.
pub use async_trait::async_trait;
mod registry;
mod repository;
mod snapshot;
pub mod store;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use aggregate::{
    Aggregate, AggregateEvent, AggregateRoot, EventOf, Handles, IntoEvents, Unhandled,
};
#[cfg(feature = "redis")]
pub use bus::{
    ConsumerStats, DeadLetter, MalformedMessage, RedisConsumerBuilder, RedisConsumerHandle,
    RedisEventBus, RedisEventBusBuilder, StartFrom,
};
pub use bus::{EventBus, EventHandler, InMemoryEventBus};
pub use clock::{Clock, SystemClock};
pub use error::{
    AggregateError, ApplyError, BoxError, BusError, ConcurrencyError, DecodeError, ErrorKind,
    HandlerFailure, RegistryError, RepositoryError, StoreError,
};
pub use event::{
    DomainEvent, ErasedEvent, ErasedEvents, EventContext, EventEnvelope, Metadata, Payload,
    RecordedEvent, SharedContext, SharedEvent, UncommittedEvent,
};
pub use projection::Event;
pub use registry::{EventRegistration, EventRegistry, check_registry};
pub use repository::AggregateRepository;
pub use snapshot::{InMemorySnapshotStore, Snapshot, SnapshotStore};
pub use store::{
    AppendOutcome, AppendResult, EventPage, EventStore, ExpectedVersion, InMemoryEventStore,
    ReadAll, StreamEvents,
};
#[cfg(feature = "postgres")]
pub use store::{
    OutboxRelay, PostgresCheckpointRepository, PostgresDlqRepository, PostgresEventStore,
    PostgresProjection, TransactionalProjection,
};
#[cfg(feature = "sqlite")]
pub use store::{SqliteCheckpointRepository, SqliteDlqRepository, SqliteEventStore, SqliteOptions};

#[cfg(feature = "macros")]
pub use eventsource_macros::{DomainEvent, aggregate, handles, projection};

// Generated code names these through `::eventsource::…`; inside this crate's own tests
// and doctests that path must resolve too.
extern crate self as eventsource;

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
