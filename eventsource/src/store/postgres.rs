//! PostgreSQL event store (feature `postgres`).
