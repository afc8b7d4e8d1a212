//! Testing for `eventsource`: a store conformance suite, fixtures and helpers.

pub mod backend;
pub mod conformance;
