//! Redis Streams event bus (feature `redis`).
