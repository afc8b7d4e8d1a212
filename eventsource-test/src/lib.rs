//! Testing for `eventsource`: scenarios that read like specifications and fail like a
//! good diff, fixtures that number events for you, event snapshots, and the store
//! conformance suite every backend runs.
//!
//! ```
//! # use eventsource_test::__doc_order::*;
//! use eventsource_test::given_when_then;
//!
//! given_when_then! {
//!     aggregate: Order,
//!     given: [OrderCreated { customer: "ada".into(), total: 50.0 }],
//!     when: |order| order.ship("TRACK-123"),
//!     then: [OrderShipped { tracking: "TRACK-123".into() }],
//! }
//! ```
//!
//! | item | what it is for |
//! |---|---|
//! | [`given_when_then!`] / [`Scenario`] | one command on one aggregate: given events, when a command, then events, an error or a state; with a replay check |
//! | [`EventBuilder`] | the stream of one aggregate without hand-written ids or versions |
//! | [`ProjectionScenario`], `given_when_then! { projection: .. }` | a read model: given events of any aggregates, then its state |
//! | [`History`] | the global log of several aggregates (the "given" of read-model tests) |
//! | [`AggregateTestHelper`] | an aggregate's repository over a fresh in-memory store |
//! | [`TestClock`] | deterministic timestamps and ids, so streams are reproducible |
//! | [`assert_events_snapshot!`], [`assert_event_schemas_snapshot!`] | insta snapshots of events and of each event type's wire format |
//! | [`conformance`], [`store_conformance_tests!`] | the [`EventStore`](eventsource::EventStore) contract as tests |
//! | [`RecordingBus`] | an event bus that records what is published and fails on demand |
//! | [`backend`] | reaching real servers in tests: skip or fail when they are absent |
//! | [`block_on`] | run async code from a synchronous test, in or out of a runtime |
//!
//! Assertions in this crate panic: that is how a test fails. They are `#[track_caller]`
//! (or expand at your macro call), so the failure points at your test's line.
#![allow(clippy::panic)]

pub mod backend;
mod builder;
mod bus;
mod clock;
pub mod conformance;
mod diff;
mod helper;
mod macros;
mod projection;
mod runtime;
mod scenario;
pub mod snapshot;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

#[doc(hidden)]
#[path = "doc_order.rs"]
pub mod __doc_order;

pub use builder::{EventBuilder, History};
pub use bus::RecordingBus;
pub use clock::TestClock;
pub use helper::AggregateTestHelper;
pub use projection::{ProjectionOutcome, ProjectionScenario};
pub use runtime::block_on;
pub use scenario::{Outcome, Scenario, StateEq};
pub use snapshot::EventSchemas;
