//! The event store contract as executable checks.
//!
//! Every backend runs the same cases (see [`store_conformance_tests!`](crate::store_conformance_tests)),
//! so "passes conformance" means the same thing for memory, SQLite and PostgreSQL. Each
//! case takes a fresh, empty store and panics with a message naming the broken rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use eventsource::projection::{
    CheckpointRepository, DeadLetterFilter, DeadLetterStatus, DlqRepository,
};
use eventsource::{
    AggregateRoot, AppendOutcome, DomainEvent, EventContext, EventStore, ExpectedVersion, ReadAll,
    RecordedEvent, StoreError, UncommittedEvent, aggregate,
};
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Money in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "ConformanceAccount", name = "conformance.deposited")]
pub struct Deposited {
    /// How much.
    pub amount: u64,
    /// A free-text note, so payloads have a string to round-trip.
    pub note: String,
}

/// Money out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "ConformanceAccount", name = "conformance.withdrawn")]
pub struct Withdrawn {
    /// How much.
    pub amount: u64,
}

/// The fixture aggregate of the conformance cases.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ConformanceAccount {
    /// Deposits minus withdrawals.
    pub balance: i64,
    /// How many deposits were made.
    pub deposits: u32,
}

#[aggregate]
impl ConformanceAccount {
    #[handles(Deposited)]
    fn on_deposited(&mut self, e: &Deposited) {
        self.balance += e.amount as i64;
        self.deposits += 1;
    }

    #[handles(Withdrawn)]
    fn on_withdrawn(&mut self, e: &Withdrawn) {
        self.balance -= e.amount as i64;
    }
}

const TYPE: &str = "ConformanceAccount";
/// A second aggregate type, for the cases about streams of different types.
const LEDGER: &str = "ConformanceLedger";

/// The same events, re-labelled as belonging to another aggregate type.
fn of_type(
    aggregate_type: &'static str,
    mut events: Vec<UncommittedEvent>,
) -> Vec<UncommittedEvent> {
    for event in &mut events {
        event.envelope.aggregate_type = aggregate_type.into();
    }
    events
}

/// `n` new events for `id`, numbered from `after + 1`.
pub fn deposits(id: Uuid, after: u64, n: usize) -> Vec<UncommittedEvent> {
    deposits_with(id, after, n, EventContext::default())
}

fn deposits_with(id: Uuid, after: u64, n: usize, context: EventContext) -> Vec<UncommittedEvent> {
    let mut root =
        AggregateRoot::<ConformanceAccount>::from_state(id, after, ConformanceAccount::default());
    root.set_context(context);
    for i in 0..n {
        root.record(Deposited {
            amount: i as u64 + 1,
            note: format!("deposit {}", after + i as u64 + 1),
        });
    }
    root.take_uncommitted()
}

async fn append<S: EventStore>(
    store: &S,
    id: Uuid,
    expected: ExpectedVersion,
    events: &[UncommittedEvent],
) -> eventsource::AppendResult {
    store
        .append(TYPE, id, expected, events)
        .await
        .unwrap_or_else(|e| panic!("append to {id} with {expected} failed: {e}"))
}

async fn read_all<S: EventStore>(store: &S, query: ReadAll) -> Vec<Arc<RecordedEvent>> {
    store
        .read_all(query)
        .try_collect()
        .await
        .expect("read_all failed")
}

fn versions(events: &[Arc<RecordedEvent>]) -> Vec<u64> {
    events.iter().map(|e| e.aggregate_version()).collect()
}

/// The ids of uncommitted events, in order.
fn event_ids(events: &[UncommittedEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.envelope.event_id).collect()
}

fn positions(events: &[Arc<RecordedEvent>]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

#[track_caller]
fn expect_conflict<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    id: Uuid,
    expected: ExpectedVersion,
    actual: u64,
) {
    expect_conflict_of(result, TYPE, id, expected, actual);
}

#[track_caller]
fn expect_conflict_of<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    aggregate_type: &str,
    id: Uuid,
    expected: ExpectedVersion,
    actual: u64,
) {
    match result {
        Err(StoreError::Conflict(conflict)) => {
            assert_eq!(
                conflict.aggregate_id, id,
                "the conflict names the aggregate"
            );
            assert_eq!(
                conflict.aggregate_type, aggregate_type,
                "the conflict names the aggregate type"
            );
            assert_eq!(
                conflict.expected, expected,
                "the conflict carries the expected version"
            );
            assert_eq!(
                conflict.actual, actual,
                "the conflict carries the actual version"
            );
        }
        other => {
            panic!("expected a conflict (expected {expected}, actual {actual}), got {other:?}")
        }
    }
}

/// Appending returns the new version and positions; reading returns the events as written.
pub async fn append_and_read_back<S: EventStore>(store: &S) {
    let id = Uuid::now_v7();
    let events = deposits(id, 0, 3);
    let result = append(store, id, ExpectedVersion::NoStream, &events).await;
    assert_eq!(result.new_version, 3);
    assert!(!result.already_stored);
    assert_eq!(versions(&result.events), [1, 2, 3]);
    assert!(
        result
            .events
            .windows(2)
            .all(|w| w[0].position < w[1].position),
        "positions increase within a batch"
    );

    let stream = store.read_stream(TYPE, id, 0).await.unwrap();
    assert_eq!(stream.version, 3);
    assert_eq!(versions(&stream.events), [1, 2, 3]);
    for (read, written) in stream.events.iter().zip(&events) {
        assert_eq!(read.event_id(), written.envelope.event_id);
        assert_eq!(read.name(), Deposited::NAME);
        assert_eq!(
            read.decode::<Deposited>().unwrap(),
            written
                .payload
                .decode::<Deposited>(Deposited::NAME)
                .unwrap()
        );
    }
    assert_eq!(positions(&stream.events), positions(&result.events));
    assert_eq!(store.stream_version(TYPE, id).await.unwrap(), 3);
    assert_eq!(
        store.stream_version(TYPE, Uuid::now_v7()).await.unwrap(),
        0,
        "a missing stream is at version 0"
    );
    assert!(
        store
            .read_stream(TYPE, Uuid::now_v7(), 0)
            .await
            .unwrap()
            .events
            .is_empty()
    );
}

/// Every envelope field survives storage.
pub async fn envelope_round_trip<S: EventStore>(store: &S) {
    let id = Uuid::now_v7();
    let context = EventContext::new()
        .tenant("tenant-a")
        .correlation(Uuid::now_v7())
        .causation(Uuid::now_v7())
        .actor("user:42")
        .meta("ip", "10.0.0.1")
        .meta("attempt", 2)
        .meta("nested", serde_json::json!({"a": [1, 2]}));
    let events = deposits_with(id, 0, 1, context);
    append(store, id, ExpectedVersion::Any, &events).await;
    let read = &store.read_stream(TYPE, id, 0).await.unwrap().events[0];
    let (stored, written) = (&read.envelope, &events[0].envelope);
    assert_eq!(stored.event_id, written.event_id);
    assert_eq!(stored.event_name, written.event_name);
    assert_eq!(stored.schema_version, written.schema_version);
    assert_eq!(stored.aggregate_id, written.aggregate_id);
    assert_eq!(stored.aggregate_type, written.aggregate_type);
    assert_eq!(stored.aggregate_version, 1);
    assert_eq!(
        stored.occurred_at.timestamp_micros(),
        written.occurred_at.timestamp_micros(),
        "occurred_at survives to the microsecond"
    );
    assert_eq!(stored.context.tenant_id, written.context.tenant_id);
    assert_eq!(
        stored.context.correlation_id,
        written.context.correlation_id
    );
    assert_eq!(stored.context.causation_id, written.context.causation_id);
    assert_eq!(stored.context.actor_id, written.context.actor_id);
    assert_eq!(stored.context.metadata, written.context.metadata);
    let expected: BTreeMap<String, serde_json::Value> = written.context.metadata.clone();
    assert_eq!(expected.len(), 3);
    assert!(
        read.stored_at >= written.occurred_at - chrono::Duration::seconds(60),
        "stored_at is set"
    );
}

/// `read_stream` after version 1 returns versions 2 onwards.
pub async fn read_stream_after_a_version<S: EventStore>(store: &S) {
    let id = Uuid::now_v7();
    append(store, id, ExpectedVersion::NoStream, &deposits(id, 0, 3)).await;
    let rest = store.read_stream(TYPE, id, 1).await.unwrap();
    assert_eq!(versions(&rest.events), [2, 3]);
    assert_eq!(
        rest.version, 3,
        "the stream version is reported even when reading a tail"
    );
    let none = store.read_stream(TYPE, id, 3).await.unwrap();
    assert!(none.events.is_empty());
    assert_eq!(none.version, 3);
}

/// The store numbers events from the stream's version + 1.
pub async fn versions_continue_across_appends<S: EventStore>(store: &S) {
    let id = Uuid::now_v7();
    append(store, id, ExpectedVersion::Exact(0), &deposits(id, 0, 2)).await;
    let second = append(store, id, ExpectedVersion::Exact(2), &deposits(id, 2, 2)).await;
    assert_eq!(second.new_version, 4);
    assert_eq!(versions(&second.events), [3, 4]);
    // With `Any` the store renumbers whatever the batch says.
    let third = append(store, id, ExpectedVersion::Any, &deposits(id, 0, 1)).await;
    assert_eq!(versions(&third.events), [5]);
    assert_eq!(
        versions(&store.read_stream(TYPE, id, 0).await.unwrap().events),
        [1, 2, 3, 4, 5]
    );
}

/// Each expectation is checked, and a conflict carries the stream and both versions.
pub async fn expected_versions_are_enforced<S: EventStore>(store: &S) {
    let id = Uuid::now_v7();
    expect_conflict(
        store
            .append(TYPE, id, ExpectedVersion::StreamExists, &deposits(id, 0, 1))
            .await,
        id,
        ExpectedVersion::StreamExists,
        0,
    );
    expect_conflict(
        store
            .append(TYPE, id, ExpectedVersion::Exact(3), &deposits(id, 3, 1))
            .await,
        id,
        ExpectedVersion::Exact(3),
        0,
    );
    append(store, id, ExpectedVersion::NoStream, &deposits(id, 0, 1)).await;
    expect_conflict(
        store
            .append(TYPE, id, ExpectedVersion::NoStream, &deposits(id, 1, 1))
            .await,
        id,
        ExpectedVersion::NoStream,
        1,
    );
    expect_conflict(
        store
            .append(TYPE, id, ExpectedVersion::Exact(0), &deposits(id, 0, 1))
            .await,
        id,
        ExpectedVersion::Exact(0),
        1,
    );
    expect_conflict(
        store
            .append(TYPE, id, ExpectedVersion::Exact(2), &deposits(id, 2, 1))
            .await,
        id,
        ExpectedVersion::Exact(2),
        1,
    );
    append(
        store,
        id,
        ExpectedVersion::StreamExists,
        &deposits(id, 1, 1),
    )
    .await;
    append(store, id, ExpectedVersion::Exact(2), &deposits(id, 2, 1)).await;
    append(store, id, ExpectedVersion::Any, &deposits(id, 3, 1)).await;
    assert_eq!(store.stream_version(TYPE, id).await.unwrap(), 4);
}

/// Batches of several events and empty batches obey the expectation like single events:
/// a batch expecting a version the stream has not reached, or expecting no stream, is a
/// conflict naming the actual version; an empty batch succeeds only when it would have.
pub async fn batches_and_empty_batches_obey_the_expectation<S: EventStore>(store: &S) {
    let id = Uuid::now_v7();
    append(store, id, ExpectedVersion::NoStream, &deposits(id, 0, 2)).await;
    let before = store.current_position().await.unwrap();
    for expected in [
        ExpectedVersion::Exact(5),
        ExpectedVersion::Exact(1),
        ExpectedVersion::NoStream,
    ] {
        expect_conflict(
            store.append(TYPE, id, expected, &deposits(id, 2, 3)).await,
            id,
            expected,
            2,
        );
    }
    assert_eq!(store.current_position().await.unwrap(), before);
    for expected in [
        ExpectedVersion::Exact(2),
        ExpectedVersion::Any,
        ExpectedVersion::StreamExists,
    ] {
        let empty = append(store, id, expected, &[]).await;
        assert_eq!(empty.new_version, 2, "{expected:?}");
        assert!(empty.events.is_empty());
    }
    for expected in [ExpectedVersion::Exact(3), ExpectedVersion::NoStream] {
        expect_conflict(store.append(TYPE, id, expected, &[]).await, id, expected, 2);
    }
    let other = Uuid::now_v7();
    expect_conflict(
        store
            .append(TYPE, other, ExpectedVersion::StreamExists, &[])
            .await,
        other,
        ExpectedVersion::StreamExists,
        0,
    );
    let result = append(store, id, ExpectedVersion::Exact(2), &deposits(id, 2, 3)).await;
    assert_eq!(result.new_version, 5);
    assert_eq!(versions(&result.events), [3, 4, 5]);
    // Positions increase; a database may skip numbers a refused insert had drawn.
    let positions = positions(&result.events);
    assert!(positions[0] > before && positions.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(store.current_position().await.unwrap(), positions[2]);
}

/// `append_taking` stores like `append` and takes the events only when they are stored:
/// the vector is emptied on success and on an idempotent retry, left whole on a refusal.
pub async fn append_taking_takes_the_events_only_once_stored<S: EventStore>(store: &S) {
    let id = Uuid::now_v7();
    let batch = deposits(id, 0, 3);
    let mut events = batch.clone();
    let stored = store
        .append_taking(TYPE, id, ExpectedVersion::NoStream, &mut events)
        .await
        .unwrap();
    assert!(events.is_empty(), "stored events are taken");
    assert_eq!(stored.new_version, 3);
    assert_eq!(versions(&stored.events), [1, 2, 3]);
    let ids: Vec<Uuid> = stored.events.iter().map(|e| e.event_id()).collect();
    let sent = event_ids(&batch);
    assert_eq!(ids, sent);

    let mut refused = deposits(id, 0, 2);
    let before = event_ids(&refused);
    expect_conflict(
        store
            .append_taking(TYPE, id, ExpectedVersion::Exact(0), &mut refused)
            .await,
        id,
        ExpectedVersion::Exact(0),
        3,
    );
    assert_eq!(
        event_ids(&refused),
        before,
        "a refused batch is left to the caller"
    );

    let mut retry = batch.clone();
    let again = store
        .append_taking(TYPE, id, ExpectedVersion::NoStream, &mut retry)
        .await
        .unwrap();
    assert!(again.already_stored);
    assert!(
        retry.is_empty(),
        "a retry that is already stored is taken too"
    );
    assert_eq!(store.stream_version(TYPE, id).await.unwrap(), 3);
    let read = store.read_stream(TYPE, id, 0).await.unwrap();
    assert_eq!(versions(&read.events), [1, 2, 3]);
}

/// `append_taking_outcome` stores like `append_taking` and reports the new version and the
/// positions without handing the events back: the outcome matches what reading the stream
/// gives, for a first append, an idempotent retry and an empty batch; a refused batch is
/// left to the caller.
pub async fn append_taking_outcome_reports_what_was_stored<S: EventStore>(store: &S) {
    // Another stream first, so that positions are not the versions.
    let other = Uuid::now_v7();
    append(
        store,
        other,
        ExpectedVersion::NoStream,
        &deposits(other, 0, 1),
    )
    .await;
    let id = Uuid::now_v7();
    let batch = deposits(id, 0, 3);
    let mut events = batch.clone();
    let outcome = store
        .append_taking_outcome(TYPE, id, ExpectedVersion::NoStream, &mut events)
        .await
        .unwrap();
    assert!(events.is_empty(), "stored events are taken");
    let read = store.read_stream(TYPE, id, 0).await.unwrap();
    assert_eq!(versions(&read.events), [1, 2, 3]);
    let stored = positions(&read.events);
    assert_eq!(
        outcome,
        AppendOutcome {
            new_version: 3,
            count: 3,
            first_position: stored[0],
            last_position: stored[2],
            already_stored: false,
        }
    );
    assert_eq!(outcome.global_position(), stored[2]);
    assert_eq!(store.current_position().await.unwrap(), stored[2]);

    let mut refused = deposits(id, 0, 2);
    let before = event_ids(&refused);
    expect_conflict(
        store
            .append_taking_outcome(TYPE, id, ExpectedVersion::Exact(0), &mut refused)
            .await,
        id,
        ExpectedVersion::Exact(0),
        3,
    );
    assert_eq!(
        event_ids(&refused),
        before,
        "a refused batch is left to the caller"
    );

    let mut retry = batch.clone();
    let again = store
        .append_taking_outcome(TYPE, id, ExpectedVersion::NoStream, &mut retry)
        .await
        .unwrap();
    assert!(
        retry.is_empty(),
        "a retry that is already stored is taken too"
    );
    assert_eq!(
        again,
        AppendOutcome {
            already_stored: true,
            ..outcome
        },
        "a retry reports the positions stored before"
    );

    let empty = store
        .append_taking_outcome(TYPE, id, ExpectedVersion::Exact(3), &mut Vec::new())
        .await
        .unwrap();
    assert_eq!(
        empty,
        AppendOutcome {
            new_version: 3,
            ..AppendOutcome::default()
        }
    );
    assert_eq!(
        store.current_position().await.unwrap(),
        stored[2],
        "neither the retry nor the empty batch wrote anything"
    );
}

/// A refused batch writes nothing at all.
pub async fn a_refused_batch_writes_nothing<S: EventStore>(store: &S) {
    let id = Uuid::now_v7();
    append(store, id, ExpectedVersion::NoStream, &deposits(id, 0, 1)).await;
    let before = store.current_position().await.unwrap();
    let batch = deposits(id, 0, 5);
    assert!(
        store
            .append(TYPE, id, ExpectedVersion::Exact(0), &batch)
            .await
            .is_err()
    );
    assert_eq!(store.stream_version(TYPE, id).await.unwrap(), 1);
    assert_eq!(store.current_position().await.unwrap(), before);
    for event in &batch {
        assert!(
            !store.event_exists(event.envelope.event_id).await.unwrap(),
            "no event of a refused batch is stored"
        );
    }
}

/// Re-sending a stored batch is an idempotent retry, with `Any` or the original `Exact`.
pub async fn retrying_a_stored_batch_is_idempotent<S: EventStore>(store: &S) {
    let id = Uuid::now_v7();
    let batch = deposits(id, 0, 2);
    let first = append(store, id, ExpectedVersion::Exact(0), &batch).await;
    let position = store.current_position().await.unwrap();
    for expected in [
        ExpectedVersion::Exact(0),
        ExpectedVersion::Any,
        ExpectedVersion::NoStream,
    ] {
        let retry = append(store, id, expected, &batch).await;
        assert!(
            retry.already_stored,
            "a retry with {expected} is recognised"
        );
        assert_eq!(retry.new_version, 2);
        assert_eq!(
            positions(&retry.events),
            positions(&first.events),
            "a retry reports the stored positions"
        );
    }
    assert_eq!(
        store.current_position().await.unwrap(),
        position,
        "a retry writes nothing"
    );
    assert_eq!(
        store.read_stream(TYPE, id, 0).await.unwrap().events.len(),
        2
    );
}

/// Partially stored batches, ids stored elsewhere and repeated ids are refused.
pub async fn duplicate_ids_that_are_not_a_retry_are_refused<S: EventStore>(store: &S) {
    let id = Uuid::now_v7();
    let batch = deposits(id, 0, 2);
    append(store, id, ExpectedVersion::NoStream, &batch[..1]).await;

    // Only the first event was stored: resending both is not a retry.
    let error = store
        .append(TYPE, id, ExpectedVersion::Any, &batch)
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::DuplicateEvent { .. }),
        "partial retry: {error:?}"
    );
    assert!(
        !store
            .event_exists(batch[1].envelope.event_id)
            .await
            .unwrap()
    );

    // An id stored in another stream.
    let other = Uuid::now_v7();
    let mut stolen = deposits(other, 0, 1);
    stolen[0].envelope.event_id = batch[0].envelope.event_id;
    let error = store
        .append(TYPE, other, ExpectedVersion::Any, &stolen)
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::DuplicateEvent { .. }),
        "id of another stream: {error:?}"
    );
    assert_eq!(store.stream_version(TYPE, other).await.unwrap(), 0);

    // The same id twice in one batch.
    let mut twice = deposits(other, 0, 2);
    twice[1].envelope.event_id = twice[0].envelope.event_id;
    let error = store
        .append(TYPE, other, ExpectedVersion::Any, &twice)
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::InvalidAppend { .. }),
        "repeated id: {error:?}"
    );
    assert_eq!(store.stream_version(TYPE, other).await.unwrap(), 0);
}

/// Events of another stream in a batch are refused; an empty batch changes nothing.
pub async fn malformed_batches_are_refused<S: EventStore>(store: &S) {
    let id = Uuid::now_v7();
    let foreign = deposits(Uuid::now_v7(), 0, 1);
    let error = store
        .append(TYPE, id, ExpectedVersion::Any, &foreign)
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::InvalidAppend { .. }),
        "foreign aggregate id: {error:?}"
    );
    let error = store
        .append("OtherType", id, ExpectedVersion::Any, &deposits(id, 0, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::InvalidAppend { .. }),
        "foreign aggregate type: {error:?}"
    );
    let empty = append(store, id, ExpectedVersion::Any, &[]).await;
    assert_eq!(empty.new_version, 0);
    assert!(empty.events.is_empty());
    assert_eq!(store.current_position().await.unwrap(), 0);
}

/// One id with two aggregate types is two streams.
pub async fn streams_are_keyed_by_type_and_id<S: EventStore>(store: &S) {
    let id = Uuid::now_v7();
    append(store, id, ExpectedVersion::NoStream, &deposits(id, 0, 2)).await;
    let other_type = of_type(LEDGER, deposits(id, 0, 1));
    let result = store
        .append(LEDGER, id, ExpectedVersion::NoStream, &other_type)
        .await
        .unwrap();
    assert_eq!(result.new_version, 1, "the other type's stream starts at 1");
    assert_eq!(store.stream_version(TYPE, id).await.unwrap(), 2);
    assert_eq!(store.stream_version(LEDGER, id).await.unwrap(), 1);
    assert_eq!(
        versions(&store.read_stream(TYPE, id, 0).await.unwrap().events),
        [1, 2]
    );
    let ledger = store.read_stream(LEDGER, id, 0).await.unwrap();
    assert_eq!(ledger.events.len(), 1);
    assert_eq!(ledger.events[0].event_id(), other_type[0].envelope.event_id);
    expect_conflict_of(
        store
            .append(
                LEDGER,
                id,
                ExpectedVersion::Exact(2),
                &of_type(LEDGER, deposits(id, 2, 1)),
            )
            .await,
        LEDGER,
        id,
        ExpectedVersion::Exact(2),
        1,
    );
}

/// The global log is read in append order, from a position (exclusive), with limits,
/// filters and pages smaller than the result.
pub async fn read_all_in_global_order<S: EventStore>(store: &S) {
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    append(store, a, ExpectedVersion::NoStream, &deposits(a, 0, 3)).await;
    append(
        store,
        b,
        ExpectedVersion::NoStream,
        &deposits_with(b, 0, 2, EventContext::new().tenant("t2")),
    )
    .await;
    append(store, a, ExpectedVersion::Exact(3), &deposits(a, 3, 2)).await;

    let all = read_all(store, ReadAll::from_start()).await;
    assert_eq!(all.len(), 7);
    assert!(
        all.windows(2).all(|w| w[0].position < w[1].position),
        "strictly increasing positions"
    );
    let order: Vec<(Uuid, u64)> = all
        .iter()
        .map(|e| (e.aggregate_id(), e.aggregate_version()))
        .collect();
    assert_eq!(
        order,
        [(a, 1), (a, 2), (a, 3), (b, 1), (b, 2), (a, 4), (a, 5)]
    );
    assert_eq!(store.current_position().await.unwrap(), all[6].position);

    let paged = read_all(store, ReadAll::from_start().batch_size(2)).await;
    assert_eq!(
        positions(&paged),
        positions(&all),
        "paging does not change the result"
    );
    let after = read_all(store, ReadAll::after(all[2].position)).await;
    assert_eq!(
        positions(&after),
        positions(&all[3..]),
        "after is exclusive"
    );
    let limited = read_all(
        store,
        ReadAll::after(all[0].position).limit(3).batch_size(2),
    )
    .await;
    assert_eq!(positions(&limited), positions(&all[1..4]));
    let tenant = read_all(store, ReadAll::from_start().tenant("t2").batch_size(1)).await;
    assert_eq!(versions(&tenant), [1, 2]);
    assert!(tenant.iter().all(|e| e.aggregate_id() == b));
    let typed = read_all(store, ReadAll::from_start().aggregate_type("Nobody")).await;
    assert!(typed.is_empty());
    assert!(
        read_all(store, ReadAll::after(all[6].position))
            .await
            .is_empty(),
        "nothing after the end"
    );

    // A stream of another aggregate type, interleaved: the type filter keeps it apart.
    let ledger = Uuid::now_v7();
    let ledger_events = of_type(LEDGER, deposits(ledger, 0, 2));
    store
        .append(LEDGER, ledger, ExpectedVersion::NoStream, &ledger_events)
        .await
        .unwrap();
    append(store, b, ExpectedVersion::Exact(2), &deposits(b, 2, 1)).await;
    let accounts = read_all(
        store,
        ReadAll::from_start().aggregate_type(TYPE).batch_size(3),
    )
    .await;
    assert_eq!(
        accounts.len(),
        8,
        "the type filter keeps every account event"
    );
    assert!(accounts.iter().all(|e| e.envelope.aggregate_type == TYPE));
    let ledgers = read_all(
        store,
        ReadAll::after(all[6].position).aggregate_type(LEDGER),
    )
    .await;
    assert_eq!(
        ledgers.iter().map(|e| e.event_id()).collect::<Vec<_>>(),
        ledger_events
            .iter()
            .map(|e| e.envelope.event_id)
            .collect::<Vec<_>>(),
        "the type filter returns only the other type's events"
    );
    let both = read_all(
        store,
        ReadAll::from_start()
            .aggregate_type(TYPE)
            .aggregate_type(LEDGER),
    )
    .await;
    assert_eq!(both.len(), 10, "several types are a union");
    let tenant_and_type = read_all(
        store,
        ReadAll::from_start().tenant("t2").aggregate_type(LEDGER),
    )
    .await;
    assert!(tenant_and_type.is_empty(), "filters combine");
}

/// A reader resuming from the last position it saw gets exactly the rest.
pub async fn read_all_resumes_where_it_stopped<S: EventStore>(store: &S) {
    let id = Uuid::now_v7();
    append(store, id, ExpectedVersion::NoStream, &deposits(id, 0, 4)).await;
    let first = read_all(store, ReadAll::from_start().limit(2)).await;
    append(store, id, ExpectedVersion::Exact(4), &deposits(id, 4, 3)).await;
    let rest = read_all(store, ReadAll::after(first[1].position)).await;
    assert_eq!(versions(&first), [1, 2]);
    assert_eq!(versions(&rest), [3, 4, 5, 6, 7]);
}

/// `event_exists` and `current_position` follow appends.
pub async fn existence_and_position<S: EventStore>(store: &S) {
    assert_eq!(
        store.current_position().await.unwrap(),
        0,
        "an empty store is at position 0"
    );
    let id = Uuid::now_v7();
    let batch = deposits(id, 0, 1);
    assert!(
        !store
            .event_exists(batch[0].envelope.event_id)
            .await
            .unwrap()
    );
    let result = append(store, id, ExpectedVersion::Any, &batch).await;
    assert!(
        store
            .event_exists(batch[0].envelope.event_id)
            .await
            .unwrap()
    );
    assert_eq!(
        store.current_position().await.unwrap(),
        result.global_position()
    );
}

/// Concurrent `Exact` appends to one stream: exactly one wins each version.
pub async fn concurrent_writers_to_one_stream<S: EventStore + 'static>(store: Arc<S>) {
    let id = Uuid::now_v7();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .append(TYPE, id, ExpectedVersion::Exact(0), &deposits(id, 0, 2))
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(result) => {
                wins += 1;
                assert_eq!(result.new_version, 2);
            }
            Err(StoreError::Conflict(conflict)) => assert_eq!(conflict.actual, 2),
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(wins, 1, "exactly one writer wins");
    assert_eq!(
        versions(&store.read_stream(TYPE, id, 0).await.unwrap().events),
        [1, 2]
    );
}

/// Writers racing on one stream, each reading the version and appending with `Exact`
/// until it has written its share: every version has exactly one winner, the stream has
/// no gap, and every conflict reported a version the stream really reached.
pub async fn concurrent_writers_take_turns_on_one_stream<S: EventStore + 'static>(store: Arc<S>) {
    const WRITERS: usize = 4;
    const EACH: usize = 5;
    let id = Uuid::now_v7();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut won = Vec::new();
                let mut conflicts = 0_u32;
                while won.len() < EACH {
                    let version = store.stream_version(TYPE, id).await?;
                    let batch = deposits(id, version, 1);
                    match store
                        .append(TYPE, id, ExpectedVersion::Exact(version), &batch)
                        .await
                    {
                        Ok(result) => {
                            assert_eq!(result.new_version, version + 1);
                            won.push((result.new_version, batch[0].envelope.event_id));
                        }
                        Err(StoreError::Conflict(conflict)) => {
                            assert!(
                                conflict.actual > version,
                                "a conflict reports the version that beat us ({} > {version})",
                                conflict.actual
                            );
                            conflicts += 1;
                            tokio::task::yield_now().await;
                        }
                        Err(other) => return Err(other),
                    }
                }
                Ok::<_, StoreError>((won, conflicts))
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (won, _conflicts) = task.await.unwrap().unwrap();
        winners.extend(won);
    }
    winners.sort_unstable();
    let won_versions: Vec<u64> = winners.iter().map(|(version, _)| *version).collect();
    let expected: Vec<u64> = (1..=(WRITERS * EACH) as u64).collect();
    assert_eq!(
        won_versions, expected,
        "each version has exactly one winner"
    );
    let stream = store.read_stream(TYPE, id, 0).await.unwrap();
    assert_eq!(versions(&stream.events), expected, "the stream has no gap");
    for (event, (version, event_id)) in stream.events.iter().zip(&winners) {
        assert_eq!(
            event.event_id(),
            *event_id,
            "version {version} holds the winner's event"
        );
    }
}

/// Concurrent appends to different streams all succeed with distinct positions.
pub async fn concurrent_writers_to_many_streams<S: EventStore + 'static>(store: Arc<S>) {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let id = Uuid::now_v7();
                for round in 0..5 {
                    store
                        .append(
                            TYPE,
                            id,
                            ExpectedVersion::Exact(round),
                            &deposits(id, round, 1),
                        )
                        .await?;
                }
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let all = read_all(store.as_ref(), ReadAll::from_start()).await;
    assert_eq!(all.len(), 40);
    let mut seen: Vec<u64> = positions(&all);
    seen.dedup();
    assert_eq!(seen.len(), 40, "positions are distinct");
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
}

/// The aggregate rebuilt from the store equals the one that recorded the events, among
/// them a command's several events of one type (which share their payloads' allocation).
pub async fn replay_rebuilds_the_state<S: EventStore>(store: &S) {
    let id = Uuid::now_v7();
    let mut account = AggregateRoot::<ConformanceAccount>::new(id);
    account.record(Deposited {
        amount: 10,
        note: "a".into(),
    });
    account.record(Withdrawn { amount: 3 });
    account.record(Deposited {
        amount: 5,
        note: "b".into(),
    });
    let batch = vec![
        Deposited {
            amount: 7,
            note: "c".into(),
        },
        Deposited {
            amount: 9,
            note: "d".into(),
        },
    ];
    account
        .execute(|_| Ok::<_, std::convert::Infallible>(batch.clone()))
        .unwrap();
    append(store, id, ExpectedVersion::NoStream, account.uncommitted()).await;
    let mut loaded = AggregateRoot::<ConformanceAccount>::new(id);
    let stream = store.read_stream(TYPE, id, 0).await.unwrap();
    loaded
        .load_from_history(stream.events.iter().map(|e| &**e))
        .unwrap();
    assert_eq!(loaded.state(), account.state());
    assert_eq!(loaded.version(), 5);
    let read: Vec<Deposited> = stream.events[3..]
        .iter()
        .map(|event| event.decode::<Deposited>().unwrap())
        .collect();
    assert_eq!(
        read, batch,
        "a command's events of one type, each as itself"
    );
}

/// Defines one `#[tokio::test]` per conformance case for a store.
///
/// The argument is an `async` expression evaluated once per test that makes a fresh,
/// empty store, or `None` when the backend is unreachable (the test then returns; use
/// [`backend::require_or_skip`](crate::backend::require_or_skip) to decide). The calling
/// crate needs `tokio` with the `macros` and `rt-multi-thread` features.
///
/// ```no_run
/// eventsource_test::store_conformance_tests!(async { Some(eventsource::InMemoryEventStore::new()) });
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::__store_conformance_cases! { $make;
            append_and_read_back,
            envelope_round_trip,
            read_stream_after_a_version,
            versions_continue_across_appends,
            expected_versions_are_enforced,
            batches_and_empty_batches_obey_the_expectation,
            append_taking_takes_the_events_only_once_stored,
            append_taking_outcome_reports_what_was_stored,
            a_refused_batch_writes_nothing,
            retrying_a_stored_batch_is_idempotent,
            duplicate_ids_that_are_not_a_retry_are_refused,
            malformed_batches_are_refused,
            streams_are_keyed_by_type_and_id,
            read_all_in_global_order,
            read_all_resumes_where_it_stopped,
            existence_and_position,
            replay_rebuilds_the_state,
        }
        $crate::__store_conformance_shared_cases! { $make;
            concurrent_writers_to_one_stream,
            concurrent_writers_take_turns_on_one_stream,
            concurrent_writers_to_many_streams,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_cases {
    ($make:expr; $($case:ident),* $(,)?) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let ::core::option::Option::Some(store) = $make.await else { return };
            $crate::conformance::$case(&store).await;
        }
    )*};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_shared_cases {
    ($make:expr; $($case:ident),* $(,)?) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let ::core::option::Option::Some(store) = $make.await else { return };
            $crate::conformance::$case(::std::sync::Arc::new(store)).await;
        }
    )*};
}

/// The [`CheckpointRepository`] and [`DlqRepository`] contract, for any implementation:
/// checkpoints replace, list by name and reset; a dead letter is upserted per (event,
/// projection), keeping its first-failure time and adding up attempts; status changes,
/// resolution (by whom, when), filters, stats and deleting resolved rows. `events` is a
/// store to take two real events from (any empty or non-empty store).
pub async fn projection_storage_contract(
    checkpoints: &dyn CheckpointRepository,
    dlq: &dyn DlqRepository,
    events: &dyn EventStore,
) {
    assert!(checkpoints.load("p").await.unwrap().is_none());
    let id = Uuid::now_v7();
    checkpoints.save("p", 3, Some(id)).await.unwrap();
    checkpoints.save("p", 7, Some(id)).await.unwrap();
    checkpoints.save("q", 1, None).await.unwrap();
    let p = checkpoints.load("p").await.unwrap().unwrap();
    assert_eq!((p.position, p.event_id), (7, Some(id)));
    assert_eq!(
        checkpoints
            .list()
            .await
            .unwrap()
            .iter()
            .map(|c| c.projection.as_str())
            .collect::<Vec<_>>(),
        ["p", "q"]
    );
    checkpoints.reset("p").await.unwrap();
    assert!(checkpoints.load("p").await.unwrap().is_none());

    let account = Uuid::now_v7();
    let stored = events
        .append(
            "ConformanceAccount",
            account,
            ExpectedVersion::Any,
            &deposits(account, 0, 2),
        )
        .await
        .unwrap();
    let (first, second) = (&stored.events[0], &stored.events[1]);
    let row = dlq.record_failure(first, "p", "boom", 3).await.unwrap();
    assert_eq!(
        (row.attempts, row.status, row.position),
        (3, DeadLetterStatus::Failed, first.position)
    );
    assert_eq!(row.event_name, "conformance.deposited");
    let again = dlq
        .record_failure(first, "p", "boom again", 2)
        .await
        .unwrap();
    assert_eq!((again.attempts, again.error.as_str()), (5, "boom again"));
    assert_eq!(
        again.first_failed_at.timestamp_micros(),
        row.first_failed_at.timestamp_micros()
    );
    dlq.record_failure(second, "q", "bad", 1).await.unwrap();
    assert!(
        dlq.set_status(
            first.event_id(),
            "p",
            DeadLetterStatus::Resolved,
            Some("ops")
        )
        .await
        .unwrap()
    );
    assert!(
        !dlq.set_status(Uuid::now_v7(), "p", DeadLetterStatus::Resolved, None)
            .await
            .unwrap()
    );
    let resolved = dlq.get(first.event_id(), "p").await.unwrap().unwrap();
    assert_eq!(resolved.resolved_by.as_deref(), Some("ops"));
    assert!(resolved.resolved_at.is_some());
    let failed = dlq
        .list(&DeadLetterFilter {
            projection: None,
            status: Some(DeadLetterStatus::Failed),
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].projection, "q");
    let stats = dlq.stats().await.unwrap();
    assert_eq!(
        (
            stats.by_status.get("resolved"),
            stats.by_status.get("failed")
        ),
        (Some(&1), Some(&1))
    );
    assert_eq!(dlq.delete_resolved().await.unwrap(), 1);
    assert_eq!(
        dlq.list(&DeadLetterFilter::default()).await.unwrap().len(),
        1
    );
}
