//! A thread-safe in-memory event store, for tests, examples and single-process tools.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    AppendResult, EventStore, ExpectedVersion, ReadAll, StreamEvents, classify_stored,
    validate_batch,
};
use crate::error::{ConcurrencyError, StoreError};
use crate::event::{RecordedEvent, UncommittedEvent};

/// Hashes UUIDs with a multiply per word and a final avalanche (the table picks buckets
/// from the low bits, and v7 ids share their leading bits). This store is not exposed to
/// adversarial keys, so no per-process seed is needed.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // splitmix64's finalizer: every input bit reaches every output bit.
        let mut h = self.0;
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }

    fn write_usize(&mut self, word: usize) {
        self.write_u64(word as u64);
    }
}

type IdMap<V> = HashMap<Uuid, V, BuildHasherDefault<IdHasher>>;

struct Stream {
    aggregate_type: Cow<'static, str>,
    /// The global position of each of the stream's events, by version (positions, not
    /// `Arc`s: an append then bumps each event's reference count once, for the log).
    positions: Vec<u64>,
}

#[derive(Default)]
struct Inner {
    /// The global log; an event's position is its index + 1.
    log: Vec<Arc<RecordedEvent>>,
    /// Streams by aggregate id (almost always one per id).
    streams: IdMap<Vec<Stream>>,
    /// Position of every stored event id.
    ids: IdMap<u64>,
}

impl Inner {
    fn stream(&self, aggregate_type: &str, aggregate_id: Uuid) -> Option<&Stream> {
        self.streams
            .get(&aggregate_id)?
            .iter()
            .find(|stream| stream.aggregate_type == aggregate_type)
    }

    fn event_at(&self, position: u64) -> Option<&Arc<RecordedEvent>> {
        usize::try_from(position)
            .ok()
            .and_then(|p| self.log.get(p.checked_sub(1)?))
    }

    /// The stored events of a batch that is a retry, `None` when no id of it is stored;
    /// an error for a batch that repeats stored ids without being a retry.
    fn stored_batch(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        events: &[UncommittedEvent],
    ) -> Result<Option<Vec<Arc<RecordedEvent>>>, StoreError> {
        classify_stored(aggregate_type, aggregate_id, events, |id| {
            self.ids
                .get(&id)
                .and_then(|position| self.event_at(*position))
                .cloned()
        })
    }
}

/// An [`EventStore`] in memory: thread-safe, with helpers for tests.
///
/// Events keep their typed payload: nothing is serialized on the way in or out, so
/// replays cost a downcast per event. (Use a database backend, or
/// `eventsource-test`'s serialization snapshots, to check the wire format.)
///
/// ```
/// # use eventsource::{InMemoryEventStore, EventStore};
/// # tokio_test_block_on(async {
/// let store = InMemoryEventStore::new();
/// assert_eq!(store.event_count(), 0);
/// assert_eq!(store.current_position().await?, 0);
/// # Ok::<(), eventsource::StoreError>(())
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Default)]
pub struct InMemoryEventStore {
    inner: RwLock<Inner>,
    appended: Arc<Notify>,
}

impl std::fmt::Debug for InMemoryEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryEventStore")
            .field("events", &self.event_count())
            .finish()
    }
}

impl InMemoryEventStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // No code path panics while holding the lock, so a poisoned lock holds
        // consistent data.
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes every event (positions start again at 1).
    pub fn clear(&self) {
        *self.write() = Inner::default();
    }

    /// How many events are stored.
    pub fn event_count(&self) -> usize {
        self.read().log.len()
    }

    /// Every event, in global order.
    pub fn all_events(&self) -> Vec<Arc<RecordedEvent>> {
        self.read().log.clone()
    }

    /// The ids of every aggregate with events, in the order their first event was stored.
    pub fn aggregate_ids(&self) -> Vec<Uuid> {
        let inner = self.read();
        let mut seen = IdMap::default();
        inner
            .log
            .iter()
            .filter(|event| seen.insert(event.envelope.aggregate_id, ()).is_none())
            .map(|event| event.envelope.aggregate_id)
            .collect()
    }

    /// The position of the last stored event (0 when empty).
    pub fn global_position(&self) -> u64 {
        self.read().log.len() as u64
    }
}

#[async_trait]
impl EventStore for InMemoryEventStore {
    async fn append(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        events: &[UncommittedEvent],
    ) -> Result<AppendResult, StoreError> {
        let mut guard = self.write();
        let actual = guard
            .stream(aggregate_type, aggregate_id)
            .map_or(0, |stream| stream.positions.len() as u64);
        validate_batch(aggregate_type, aggregate_id, events)?;
        if !expected.matches(actual) {
            // A retry of a stored batch is idempotent even with a stale expectation.
            return match guard.stored_batch(aggregate_type, aggregate_id, events)? {
                Some(stored) => Ok(AppendResult::retried(actual, stored)),
                None => Err(ConcurrencyError {
                    aggregate_type: aggregate_type.to_owned(),
                    aggregate_id,
                    expected,
                    actual,
                }
                .into()),
            };
        }
        if events.is_empty() {
            return Ok(AppendResult {
                new_version: actual,
                events: Vec::new(),
                already_stored: false,
            });
        }
        // Claim the ids first: one probe per event when none is stored yet (the common
        // case); on a collision, undo the claims and classify the batch.
        let first = guard.log.len() as u64 + 1;
        for (offset, event) in events.iter().enumerate() {
            let id = event.envelope.event_id;
            match guard.ids.entry(id) {
                Entry::Vacant(slot) => {
                    slot.insert(first + offset as u64);
                }
                Entry::Occupied(_) => {
                    for claimed in &events[..offset] {
                        guard.ids.remove(&claimed.envelope.event_id);
                    }
                    return match guard.stored_batch(aggregate_type, aggregate_id, events)? {
                        Some(stored) => Ok(AppendResult::retried(actual, stored)),
                        // classify_stored refuses a batch that repeats a stored id
                        // without being a retry; an id twice in one batch was refused
                        // by validate_batch.
                        None => Err(StoreError::Corrupt {
                            position: 0,
                            reason: format!("event id {id} collided but is not stored"),
                        }),
                    };
                }
            }
        }

        let stored_at = Utc::now();
        let inner = &mut *guard;
        let streams = inner.streams.entry(aggregate_id).or_default();
        let index = match streams
            .iter()
            .position(|s| s.aggregate_type == aggregate_type)
        {
            Some(index) => index,
            None => {
                streams.push(Stream {
                    aggregate_type: events[0].envelope.aggregate_type.clone(),
                    positions: Vec::new(),
                });
                streams.len() - 1
            }
        };
        let stream = &mut streams[index];
        let mut recorded = Vec::with_capacity(events.len());
        let mut version = actual;
        stream.positions.reserve(events.len());
        for event in events {
            version += 1;
            let position = inner.log.len() as u64 + 1;
            let mut envelope = event.envelope.clone();
            envelope.aggregate_version = version;
            let record = Arc::new(RecordedEvent {
                envelope,
                payload: event.payload.clone(),
                position,
                stored_at,
            });
            inner.log.push(Arc::clone(&record));
            stream.positions.push(position);
            recorded.push(record);
        }
        drop(guard);
        self.appended.notify_waiters();
        Ok(AppendResult {
            new_version: version,
            events: recorded,
            already_stored: false,
        })
    }

    async fn read_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        after_version: u64,
    ) -> Result<StreamEvents, StoreError> {
        let inner = self.read();
        let Some(stream) = inner.stream(aggregate_type, aggregate_id) else {
            return Ok(StreamEvents::default());
        };
        let skip = usize::try_from(after_version)
            .unwrap_or(usize::MAX)
            .min(stream.positions.len());
        let positions = &stream.positions[skip..];
        let mut events = Vec::with_capacity(positions.len());
        for &position in positions {
            let event = inner
                .event_at(position)
                .ok_or_else(|| StoreError::Corrupt {
                    position,
                    reason: "a stream names a position the log does not have".into(),
                })?;
            events.push(Arc::clone(event));
        }
        Ok(StreamEvents {
            events,
            version: stream.positions.len() as u64,
        })
    }

    async fn read_all_batch(
        &self,
        query: &ReadAll,
        after: u64,
        max: usize,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        let inner = self.read();
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(inner.log.len());
        let tail = &inner.log[start..];
        let unfiltered = query.aggregate_types.is_empty() && query.tenant_id.is_none();
        Ok(if unfiltered {
            tail[..max.min(tail.len())].to_vec()
        } else {
            tail.iter()
                .filter(|event| query.accepts(event))
                .take(max)
                .cloned()
                .collect()
        })
    }

    async fn stream_version(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
    ) -> Result<u64, StoreError> {
        Ok(self
            .read()
            .stream(aggregate_type, aggregate_id)
            .map_or(0, |stream| stream.positions.len() as u64))
    }

    async fn current_position(&self) -> Result<u64, StoreError> {
        Ok(self.global_position())
    }

    async fn event_exists(&self, event_id: Uuid) -> Result<bool, StoreError> {
        Ok(self.read().ids.contains_key(&event_id))
    }

    fn append_signal(&self) -> Option<Arc<Notify>> {
        Some(Arc::clone(&self.appended))
    }
}
