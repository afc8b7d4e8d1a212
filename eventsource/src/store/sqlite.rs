//! SQLite event store (feature `sqlite`).
