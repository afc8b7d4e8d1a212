//! Testing for `eventsource`: a store conformance suite, fixtures and helpers.
//!
//! This crate's job is to fail tests with clear messages, so it panics where library code
//! returns errors.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

pub mod backend;
pub mod conformance;
