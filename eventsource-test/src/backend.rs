//! Reaching real servers in tests: skip where they are absent, fail where they must be.

use std::fmt::Display;

/// The variable that turns an unreachable backend from a skip into a failure.
pub const REQUIRE_BACKENDS: &str = "EVENTSOURCE_TEST_REQUIRE_BACKENDS";

/// The PostgreSQL URL for tests: `EVENTSOURCE_TEST_POSTGRES_URL` or the local default.
pub fn postgres_url() -> String {
    std::env::var("EVENTSOURCE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The Redis URL for tests: `EVENTSOURCE_TEST_REDIS_URL` or the local default.
pub fn redis_url() -> String {
    std::env::var("EVENTSOURCE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Whether unreachable backends fail tests (`EVENTSOURCE_TEST_REQUIRE_BACKENDS=1`).
pub fn backends_required() -> bool {
    std::env::var(REQUIRE_BACKENDS).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Returns the connection, or `None` after printing `SKIPPED (<backend> not reachable at
/// <url>)` — unless backends are required, in which case it panics with the error.
///
/// # Panics
/// When the connection failed and `EVENTSOURCE_TEST_REQUIRE_BACKENDS=1`.
#[track_caller]
pub fn require_or_skip<T, E: Display>(
    backend: &str,
    url: &str,
    connection: Result<T, E>,
) -> Option<T> {
    match connection {
        Ok(connection) => Some(connection),
        Err(error) if backends_required() => {
            panic!("{backend} not reachable at {url}: {error} ({REQUIRE_BACKENDS}=1)")
        }
        Err(error) => {
            println!("SKIPPED ({backend} not reachable at {url}: {error})");
            None
        }
    }
}
