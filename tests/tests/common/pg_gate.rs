//! One PostgreSQL test at a time, across test processes.
//!
//! Readers of the global log never see an event while a lower position may still
//! commit, so a transaction open anywhere on the server (another test's append, relay
//! or `append_in`) briefly holds back every reader: the documented trade-off of the
//! ordering. A test that reads right after writing would then see its own events a
//! moment late. `cargo test` runs a file's tests as threads of one process and a mutex
//! would do; `cargo nextest` runs each test in a process of its own, hence a lock on the
//! server.

use sqlx::{Connection, PgConnection};

/// The advisory lock key every PostgreSQL test takes.
const KEY: i64 = 0x6576_656e_7473;

/// Holds the lock until dropped (the session ends with the connection).
pub struct PgGate {
    _session: PgConnection,
}

/// Waits for the lock. `None` when the server cannot be reached: the test's own
/// connection then reports it (skipped, or failed when backends are required).
pub async fn pg_gate(url: &str) -> Option<PgGate> {
    let locked = async {
        let mut session = PgConnection::connect(url).await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(KEY)
            .execute(&mut session)
            .await?;
        Ok::<_, sqlx::Error>(session)
    };
    match locked.await {
        Ok(session) => Some(PgGate { _session: session }),
        Err(error) => {
            eprintln!("note: running without the PostgreSQL test gate ({error})");
            None
        }
    }
}
