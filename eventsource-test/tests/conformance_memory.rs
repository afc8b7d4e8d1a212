//! The in-memory store passes the store contract.
#![allow(missing_docs)]

eventsource_test::store_conformance_tests!(async { Some(eventsource::InMemoryEventStore::new()) });
