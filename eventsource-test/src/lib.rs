//! Testing for `eventsource`: given/when/then scenarios, fixtures, a deterministic clock,
//! event snapshots and a store conformance suite.
//!
//! This crate's job is to fail tests with clear messages, so it panics where library code
//! returns errors; every assertion reports at the caller's line.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

pub mod backend;
mod clock;
pub mod conformance;
mod scenario;

pub use clock::DeterministicClock;
pub use scenario::{Outcome, Scenario, diff_events};
