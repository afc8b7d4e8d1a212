//! A thread-safe in-memory event store, for tests, examples and single-process tools.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Context, Poll};

use async_trait::async_trait;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    AppendOutcome, AppendResult, BatchStream, EventPage, EventStore, EventStream, ExpectedVersion,
    ReadAll, StreamEvents, classify_stored, validate_batch, validate_members,
};
use crate::error::{ConcurrencyError, StoreError};
use crate::event::{RecordedEvent, UncommittedEvent, same_str};

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

/// A stream's events as runs of consecutive global positions: an aggregate saved without
/// another stream's events in between is one run, however many appends it took.
struct Stream {
    aggregate_type: Cow<'static, str>,
    /// The stream's version: how many events it has.
    version: u64,
    /// The first run (a stream exists once it has an event).
    head: Run,
    /// Further runs, in version order.
    rest: Vec<Run>,
}

/// `len` events at the global positions `first..first + len`.
#[derive(Clone, Copy)]
struct Run {
    first: u64,
    len: u64,
}

impl Stream {
    fn new(aggregate_type: Cow<'static, str>, first: u64, len: u64) -> Self {
        Stream {
            aggregate_type,
            version: len,
            head: Run { first, len },
            rest: Vec::new(),
        }
    }

    /// Records `len` more events at the positions `first..`.
    fn extend(&mut self, first: u64, len: u64) {
        self.version += len;
        let last = self.rest.last_mut().unwrap_or(&mut self.head);
        if last.first + last.len == first {
            last.len += len;
        } else {
            self.rest.push(Run { first, len });
        }
    }

    fn runs(&self) -> impl Iterator<Item = &Run> {
        std::iter::once(&self.head).chain(&self.rest)
    }
}

/// The streams of one aggregate id: almost always one.
struct Streams {
    first: Stream,
    others: Vec<Stream>,
}

impl Streams {
    fn find(&self, aggregate_type: &str) -> Option<&Stream> {
        std::iter::once(&self.first)
            .chain(&self.others)
            .find(|stream| stream.is_of(aggregate_type))
    }

    fn find_mut(&mut self, aggregate_type: &str) -> Option<&mut Stream> {
        std::iter::once(&mut self.first)
            .chain(&mut self.others)
            .find(|stream| stream.is_of(aggregate_type))
    }
}

impl Stream {
    /// Whether the stream is of `aggregate_type`: by address first, since a stream keeps
    /// the type name its first event carried and an aggregate's events all carry one.
    #[inline]
    fn is_of(&self, aggregate_type: &str) -> bool {
        same_str(&self.aggregate_type, aggregate_type) || self.aggregate_type == aggregate_type
    }
}

/// Finds the position of a stored event id without an entry per event: ids are UUID v7,
/// time ordered, so almost every id is greater than every id stored before it. Those
/// form runs of the log whose ids increase from run to run and along each run, found by
/// binary search; any other id (a v7 id older than the greatest stored, or an id of
/// another version) is kept in a map. Only v7 ids take part in the order, so one random
/// id cannot push every later id into the map.
#[derive(Default)]
struct EventIds {
    /// Runs of positions whose ids are all greater than the previous run's.
    ordered: Vec<Run>,
    /// The greatest v7 id stored, as its big-endian value (the order of the ids' bytes),
    /// 0 before the first: no v7 id is 0, its version bits are set.
    greatest: u128,
    /// Every other id.
    others: IdMap<u64>,
}

impl EventIds {
    /// Whether `id` is certainly not stored: a v7 id greater than every stored v7 id.
    fn is_new(&self, id: Uuid) -> bool {
        Self::follows(self.greatest, id)
    }

    /// Whether `id` is a v7 id greater than `greatest` (the greatest v7 id so far, as
    /// its big-endian value). One integer comparison, where comparing the ids' bytes
    /// is a call per event.
    #[inline]
    fn follows(greatest: u128, id: Uuid) -> bool {
        id.get_version_num() == 7 && id.as_u128() > greatest
    }

    /// The position of `id`, if it is stored (`log` is the store's log).
    fn position(&self, log: &Log, id: Uuid) -> Option<u64> {
        if self.is_new(id) {
            return None;
        }
        if let Some(position) = self.others.get(&id) {
            return Some(*position);
        }
        if id.get_version_num() != 7 {
            return None;
        }
        let id_at = |position: u64| {
            let index = usize::try_from(position.checked_sub(1)?).ok()?;
            log.get(index).map(|event| event.envelope.event_id)
        };
        // The last run starting at or below `id`, then the place of `id` in it.
        let run = self
            .ordered
            .partition_point(|run| id_at(run.first).is_some_and(|first| first <= id));
        let run = self.ordered.get(run.checked_sub(1)?)?;
        let (mut low, mut high) = (run.first, run.first + run.len);
        while low < high {
            let middle = low + (high - low) / 2;
            match id_at(middle)?.cmp(&id) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => return Some(middle),
            }
        }
        None
    }

    /// Records `id` at `position` (positions are recorded in increasing order).
    fn insert(&mut self, id: Uuid, position: u64) {
        if !self.is_new(id) {
            self.others.insert(id, position);
            return;
        }
        self.push_ordered(id.as_u128(), position, 1);
    }

    /// Records `len` ids at the positions `first..first + len`, each a v7 id greater than
    /// the one before it and the first greater than every stored one; `last` is the
    /// greatest, as its big-endian value.
    fn push_ordered(&mut self, last: u128, first: u64, len: u64) {
        self.greatest = last;
        match self.ordered.last_mut() {
            Some(run) if run.first + run.len == first => run.len += len,
            _ => self.ordered.push(Run { first, len }),
        }
    }
}

/// How many events a sealed block of the log holds. An unfiltered page never crosses a
/// block (a page asked for more ends at the block's end), so pages of the crate's sizes
/// (500 for projections, 5,000 for reads, cut to 1,000) line up with the blocks.
const BLOCK: usize = 1000;

/// The global log: sealed blocks of [`BLOCK`] events each, then the open tail (always
/// shorter than a block). An event's index is its position - 1.
///
/// A sealed block never changes again, so a page of it is handed out as one shared
/// reference to the block: a reader that takes the events by reference touches no event's
/// reference count, which would otherwise be a write to every stored record it reads.
#[derive(Default)]
struct Log {
    sealed: Vec<Arc<[Arc<RecordedEvent>]>>,
    tail: Vec<Arc<RecordedEvent>>,
}

impl Log {
    fn len(&self) -> usize {
        self.sealed.len() * BLOCK + self.tail.len()
    }

    fn get(&self, index: usize) -> Option<&Arc<RecordedEvent>> {
        match self.sealed.get(index / BLOCK) {
            Some(block) => block.get(index % BLOCK),
            None => self.tail.get(index.checked_sub(self.sealed.len() * BLOCK)?),
        }
    }

    /// Appends `event`, sealing the tail once it holds a block.
    fn push(&mut self, event: Arc<RecordedEvent>) {
        self.tail.push(event);
        if self.tail.len() == BLOCK {
            let full = std::mem::replace(&mut self.tail, Vec::with_capacity(BLOCK));
            self.sealed.push(full.into());
        }
    }

    /// The events at the indexes `range` (cut to the log), as one slice per block.
    fn slices(&self, range: Range<usize>) -> impl Iterator<Item = &[Arc<RecordedEvent>]> {
        let end = range.end.min(self.len());
        let mut start = range.start.min(end);
        std::iter::from_fn(move || {
            let block = start / BLOCK;
            let events: &[Arc<RecordedEvent>] = match self.sealed.get(block) {
                Some(sealed) => sealed,
                None => &self.tail,
            };
            let offset = start - block * BLOCK;
            let part = events.get(offset..(offset + end - start).min(events.len()))?;
            if part.is_empty() {
                return None;
            }
            start += part.len();
            Some(part)
        })
    }

    /// Every event from the index `start` on.
    fn iter_from(&self, start: usize) -> impl Iterator<Item = &Arc<RecordedEvent>> {
        self.slices(start..usize::MAX).flatten()
    }

    /// Up to `max` events from the index `start`, never across a block: a shared
    /// reference to a sealed block, or copies of the tail's references.
    fn page(&self, start: usize, max: usize) -> EventPage {
        let start = start.min(self.len());
        let block = start / BLOCK;
        let offset = start - block * BLOCK;
        match self.sealed.get(block) {
            Some(sealed) => {
                EventPage::shared(Arc::clone(sealed), offset..offset + max.min(BLOCK - offset))
            }
            None => self
                .slices(start..start.saturating_add(max))
                .flatten()
                .cloned()
                .collect::<Vec<_>>()
                .into(),
        }
    }

    fn to_vec(&self) -> Vec<Arc<RecordedEvent>> {
        let mut events = Vec::with_capacity(self.len());
        self.slices(0..usize::MAX)
            .for_each(|part| events.extend_from_slice(part));
        events
    }
}

#[derive(Default)]
struct Inner {
    /// The global log; an event's position is its index + 1.
    log: Log,
    /// Streams by aggregate id.
    streams: IdMap<Streams>,
    /// Where every stored event id is.
    ids: EventIds,
}

impl Inner {
    fn stream(&self, aggregate_type: &str, aggregate_id: Uuid) -> Option<&Stream> {
        self.streams.get(&aggregate_id)?.find(aggregate_type)
    }

    /// Up to `max` events of the log after `after` that `query` accepts.
    fn page(&self, query: &ReadAll, after: u64, max: usize) -> EventPage {
        let start = usize::try_from(after).unwrap_or(usize::MAX);
        if query.aggregate_types.is_empty() && query.tenant_id.is_none() {
            self.log.page(start, max)
        } else {
            self.log
                .iter_from(start)
                .filter(|event| query.accepts(event))
                .take(max)
                .cloned()
                .collect::<Vec<_>>()
                .into()
        }
    }
}

/// The stored events of a batch that is a retry, `None` when no id of it is stored;
/// an error for a batch that repeats stored ids without being a retry.
fn stored_batch(
    log: &Log,
    ids: &EventIds,
    aggregate_type: &str,
    aggregate_id: Uuid,
    events: &[UncommittedEvent],
) -> Result<Option<Vec<Arc<RecordedEvent>>>, StoreError> {
    classify_stored(aggregate_type, aggregate_id, events, |id| {
        let index = usize::try_from(ids.position(log, id)?)
            .ok()?
            .checked_sub(1)?;
        log.get(index).cloned()
    })
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
        self.read().log.to_vec()
    }

    /// The ids of every aggregate with events, in the order their first event was stored.
    pub fn aggregate_ids(&self) -> Vec<Uuid> {
        let inner = self.read();
        let mut seen = IdMap::default();
        inner
            .log
            .iter_from(0)
            .filter(|event| seen.insert(event.envelope.aggregate_id, ()).is_none())
            .map(|event| event.envelope.aggregate_id)
            .collect()
    }

    /// The position of the last stored event (0 when empty).
    pub fn global_position(&self) -> u64 {
        self.read().log.len() as u64
    }
}

/// The events of an append: copied from the caller's slice, or moved out of its vector.
enum Incoming<'a> {
    Borrowed(&'a [UncommittedEvent]),
    Taken(&'a mut Vec<UncommittedEvent>),
}

impl InMemoryEventStore {
    /// [`EventStore::append`] and [`EventStore::append_taking`]: nothing here waits, so
    /// the whole append runs under the write lock without yielding.
    fn append_now(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        incoming: Incoming<'_>,
        hand_back: HandBack,
    ) -> Result<(AppendResult, AppendOutcome), StoreError> {
        let events: &[UncommittedEvent] = match &incoming {
            Incoming::Borrowed(events) => events,
            Incoming::Taken(events) => events,
        };
        validate_members(aggregate_type, aggregate_id, events)?;
        // Equal to `aggregate_type` now; the events' own string is the one a stream keeps,
        // which finds the stream by address.
        let stream_type = events
            .first()
            .map_or(aggregate_type, |event| &*event.envelope.aggregate_type);
        let mut guard = self.write();
        // Read under the lock, so that storage times follow positions; and first, before
        // the lookups below leave loads in flight for the clock read to wait on.
        let stored_at = crate::clock::utc_now();
        let inner = &mut *guard;
        // One lookup of the aggregate id: the entry is filled in at the end.
        let entry = inner.streams.entry(aggregate_id);
        let actual = match &entry {
            Entry::Occupied(streams) => streams
                .get()
                .find(stream_type)
                .map_or(0, |stream| stream.version),
            Entry::Vacant(_) => 0,
        };
        if !expected.matches(actual) {
            validate_batch(aggregate_type, aggregate_id, events)?;
            // A retry of a stored batch is idempotent even with a stale expectation.
            return match stored_batch(&inner.log, &inner.ids, aggregate_type, aggregate_id, events)?
            {
                Some(stored) => Ok(with_outcome(AppendResult::retried(actual, stored))),
                None => Err(ConcurrencyError {
                    aggregate_type: aggregate_type.to_owned(),
                    aggregate_id,
                    expected,
                    actual,
                }
                .into()),
            };
        }
        let Some(first_event) = events.first() else {
            return Ok(with_outcome(AppendResult {
                new_version: actual,
                events: Vec::new(),
                already_stored: false,
            }));
        };
        // Check the ids first. An id greater than every id before it, stored or earlier
        // in the batch, is new without a lookup: the common case (v7 ids). Any other id
        // is looked up; a stored one makes the batch a retry or a refusal.
        let first = inner.log.len() as u64 + 1;
        let mut greatest = inner.ids.greatest;
        let mut in_order = true;
        for event in events {
            let id = event.envelope.event_id;
            if EventIds::follows(greatest, id) {
                greatest = id.as_u128();
                continue;
            }
            in_order = false;
            if inner.ids.position(&inner.log, id).is_some() {
                // An id twice in the batch is refused here.
                validate_batch(aggregate_type, aggregate_id, events)?;
                return match stored_batch(
                    &inner.log,
                    &inner.ids,
                    aggregate_type,
                    aggregate_id,
                    events,
                )? {
                    Some(stored) => Ok(with_outcome(AppendResult::retried(actual, stored))),
                    // classify_stored refuses a batch that repeats a stored id
                    // without being a retry.
                    None => Err(StoreError::Corrupt {
                        position: 0,
                        reason: format!("event id {id} is stored but cannot be read back"),
                    }),
                };
            }
        }
        if !in_order {
            // None is stored; an id twice in the batch is refused here.
            validate_batch(aggregate_type, aggregate_id, events)?;
        }

        let count = events.len() as u64;
        match entry {
            Entry::Occupied(streams) => {
                let streams = streams.into_mut();
                match streams.find_mut(stream_type) {
                    Some(stream) => stream.extend(first, count),
                    None => streams.others.push(Stream::new(
                        first_event.envelope.aggregate_type.clone(),
                        first,
                        count,
                    )),
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(Streams {
                    first: Stream::new(first_event.envelope.aggregate_type.clone(), first, count),
                    others: Vec::new(),
                });
            }
        }
        let mut recorded = match hand_back {
            HandBack::Events => Vec::with_capacity(events.len()),
            HandBack::Nothing => Vec::new(),
        };
        if in_order {
            // Every id follows the one before it: the batch extends the ordered runs at
            // once, with no work per event.
            inner.ids.push_ordered(greatest, first, count);
        }
        // Each event is moved from the caller's vector straight into its stored record
        // (a struct literal in `Arc::new`), its version set where it lies first: a moved
        // envelope is copied once, not once per step.
        let mut next = first;
        let mut store = |event: UncommittedEvent| {
            let position = next;
            next += 1;
            if !in_order {
                inner.ids.insert(event.envelope.event_id, position);
            }
            let record = Arc::new(RecordedEvent {
                envelope: event.envelope,
                payload: event.payload,
                position,
                stored_at,
            });
            if let HandBack::Events = hand_back {
                recorded.push(Arc::clone(&record));
            }
            inner.log.push(record);
        };
        match incoming {
            Incoming::Borrowed(events) => {
                for (version, event) in (actual + 1..).zip(events) {
                    let mut event = event.clone();
                    event.envelope.aggregate_version = version;
                    store(event);
                }
            }
            Incoming::Taken(events) => {
                for (version, event) in (actual + 1..).zip(events.iter_mut()) {
                    event.envelope.aggregate_version = version;
                }
                events.drain(..).for_each(store);
            }
        }
        drop(guard);
        // Only a holder of the signal can wait on it: with none, nobody follows the log.
        if Arc::strong_count(&self.appended) > 1 {
            self.appended.notify_waiters();
        }
        let outcome = AppendOutcome {
            new_version: actual + count,
            count,
            first_position: first,
            last_position: first + count - 1,
            already_stored: false,
        };
        let result = AppendResult {
            new_version: outcome.new_version,
            events: recorded,
            already_stored: false,
        };
        Ok((result, outcome))
    }
}

impl InMemoryEventStore {
    /// [`EventStore::append_taking`] and [`EventStore::append_taking_outcome`]: the events
    /// are moved out of `events`, which is left empty on success.
    fn append_taken(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        events: &mut Vec<UncommittedEvent>,
        hand_back: HandBack,
    ) -> Result<(AppendResult, AppendOutcome), StoreError> {
        let appended = self.append_now(
            aggregate_type,
            aggregate_id,
            expected,
            Incoming::Taken(&mut *events),
            hand_back,
        )?;
        // Moved out already, unless the batch was a retry of stored events.
        events.clear();
        Ok(appended)
    }
}

/// Whether an append hands the stored events back to its caller.
#[derive(Clone, Copy)]
enum HandBack {
    /// In [`AppendResult::events`].
    Events,
    /// Only the [`AppendOutcome`] (the events of a retry are handed back all the same).
    Nothing,
}

/// `result` with its outcome.
fn with_outcome(result: AppendResult) -> (AppendResult, AppendOutcome) {
    let outcome = result.outcome();
    (result, outcome)
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
        self.append_now(
            aggregate_type,
            aggregate_id,
            expected,
            Incoming::Borrowed(events),
            HandBack::Events,
        )
        .map(|(result, _)| result)
    }

    async fn append_taking(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        events: &mut Vec<UncommittedEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.append_taken(
            aggregate_type,
            aggregate_id,
            expected,
            events,
            HandBack::Events,
        )
        .map(|(result, _)| result)
    }

    async fn append_taking_outcome(
        &self,
        aggregate_type: &str,
        aggregate_id: Uuid,
        expected: ExpectedVersion,
        events: &mut Vec<UncommittedEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.append_taken(
            aggregate_type,
            aggregate_id,
            expected,
            events,
            HandBack::Nothing,
        )
        .map(|(_, outcome)| outcome)
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
        let mut skip = after_version.min(stream.version);
        let mut events = Vec::with_capacity(usize::try_from(stream.version - skip).unwrap_or(0));
        for run in stream.runs() {
            if skip >= run.len {
                skip -= run.len;
                continue;
            }
            let range = usize::try_from(run.first - 1 + skip)
                .ok()
                .zip(usize::try_from(run.first - 1 + run.len).ok())
                .filter(|(_, end)| *end <= inner.log.len())
                .ok_or_else(|| StoreError::Corrupt {
                    position: run.first + skip,
                    reason: "a stream names a position the log does not have".into(),
                })?;
            for part in inner.log.slices(range.0..range.1) {
                events.extend_from_slice(part);
            }
            skip = 0;
        }
        Ok(StreamEvents {
            events,
            version: stream.version,
        })
    }

    async fn read_all_batch(
        &self,
        query: &ReadAll,
        after: u64,
        max: usize,
    ) -> Result<EventPage, StoreError> {
        Ok(self.read().page(query, after, max))
    }

    fn read_all_batches(&self, query: ReadAll) -> BatchStream<'_> {
        Box::pin(Pages::new(self, query))
    }

    fn read_all(&self, query: ReadAll) -> EventStream<'_> {
        Box::pin(Events {
            pages: Pages::new(self, query),
            page: EventPage::default().into_iter(),
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
            .map_or(0, |stream| stream.version))
    }

    async fn current_position(&self) -> Result<u64, StoreError> {
        Ok(self.global_position())
    }

    async fn event_exists(&self, event_id: Uuid) -> Result<bool, StoreError> {
        let inner = self.read();
        Ok(inner.ids.position(&inner.log, event_id).is_some())
    }

    fn append_signal(&self) -> Option<Arc<Notify>> {
        Some(Arc::clone(&self.appended))
    }
}

/// [`InMemoryEventStore::read_all_batches`]: each page is taken under the read lock when
/// polled, synchronously (there is nothing to wait for).
struct Pages<'a> {
    store: &'a InMemoryEventStore,
    query: ReadAll,
    after: u64,
    /// Events left to read under the query's limit.
    remaining: Option<u64>,
    done: bool,
}

impl<'a> Pages<'a> {
    fn new(store: &'a InMemoryEventStore, query: ReadAll) -> Self {
        Pages {
            store,
            after: query.after,
            remaining: query.limit,
            query,
            done: false,
        }
    }

    /// The next page; empty once the reader has caught up or reached the limit.
    fn next_page(&mut self) -> EventPage {
        let max = match self.remaining {
            Some(left) => usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.query.batch_size),
            None => self.query.batch_size,
        };
        if self.done || max == 0 {
            self.done = true;
            return EventPage::default();
        }
        let page = self.store.read().page(&self.query, self.after, max);
        match page.last() {
            Some(last) => {
                self.after = last.position;
                if let Some(left) = &mut self.remaining {
                    *left = left.saturating_sub(page.len() as u64);
                }
            }
            None => self.done = true,
        }
        page
    }
}

impl futures_core::Stream for Pages<'_> {
    type Item = Result<EventPage, StoreError>;

    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let page = self.get_mut().next_page();
        Poll::Ready((!page.is_empty()).then_some(Ok(page)))
    }
}

/// [`InMemoryEventStore::read_all`]: the events of [`Pages`], one at a time.
struct Events<'a> {
    pages: Pages<'a>,
    page: super::page::IntoIter,
}

impl futures_core::Stream for Events<'_> {
    type Item = Result<Arc<RecordedEvent>, StoreError>;

    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(event) = this.page.next() {
            return Poll::Ready(Some(Ok(event)));
        }
        this.page = this.pages.next_page().into_iter();
        Poll::Ready(this.page.next().map(Ok))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use futures_util::{FutureExt, TryStreamExt};

    use super::*;
    use crate::event::{EventEnvelope, Payload};

    const ACCOUNT: &str = "Account";

    /// `n` events of `(aggregate_type, id)` numbered from `after + 1`, with JSON payloads.
    fn events(aggregate_type: &'static str, id: Uuid, after: u64, n: u64) -> Vec<UncommittedEvent> {
        (after + 1..=after + n)
            .map(|version| UncommittedEvent {
                envelope: EventEnvelope {
                    event_id: Uuid::now_v7(),
                    event_name: "Deposited".into(),
                    schema_version: 1,
                    aggregate_id: id,
                    aggregate_type: aggregate_type.into(),
                    aggregate_version: version,
                    occurred_at: crate::clock::utc_now(),
                    context: Default::default(),
                },
                payload: Payload::json(format!("{{\"version\":{version}}}")),
            })
            .collect()
    }

    async fn append(store: &InMemoryEventStore, aggregate_type: &'static str, id: Uuid, n: u64) {
        let version = store.stream_version(aggregate_type, id).await.unwrap();
        store
            .append(
                aggregate_type,
                id,
                ExpectedVersion::Exact(version),
                &events(aggregate_type, id, version, n),
            )
            .await
            .unwrap();
    }

    fn positions(events: &[Arc<RecordedEvent>]) -> Vec<u64> {
        events.iter().map(|event| event.position).collect()
    }

    fn versions(events: &[Arc<RecordedEvent>]) -> Vec<u64> {
        events
            .iter()
            .map(|event| event.aggregate_version())
            .collect()
    }

    #[tokio::test]
    async fn a_stream_interleaved_with_others_reads_back_across_its_runs() {
        let store = InMemoryEventStore::new();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        append(&store, ACCOUNT, a, 2).await; // positions 1-2
        append(&store, ACCOUNT, a, 1).await; // 3: extends the run
        append(&store, ACCOUNT, b, 2).await; // 4-5
        append(&store, "Ledger", a, 1).await; // 6: another stream of the same id
        append(&store, ACCOUNT, a, 3).await; // 7-9: a second run

        let stream = store.read_stream(ACCOUNT, a, 0).await.unwrap();
        assert_eq!(stream.version, 6);
        assert_eq!(positions(&stream.events), [1, 2, 3, 7, 8, 9]);
        assert_eq!(versions(&stream.events), [1, 2, 3, 4, 5, 6]);
        for after in 0..=7 {
            let stream = store.read_stream(ACCOUNT, a, after).await.unwrap();
            let expected: Vec<u64> = (after + 1..=6).collect();
            assert_eq!(versions(&stream.events), expected, "after {after}");
            assert_eq!(stream.version, 6);
        }
        let ledger = store.read_stream("Ledger", a, 0).await.unwrap();
        assert_eq!(positions(&ledger.events), [6]);
        assert_eq!(store.stream_version(ACCOUNT, b).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn an_id_twice_in_a_batch_is_refused_and_claims_nothing() {
        let store = InMemoryEventStore::new();
        let id = Uuid::now_v7();
        let mut batch = events(ACCOUNT, id, 0, 3);
        batch[2].envelope.event_id = batch[0].envelope.event_id;
        let error = store
            .append(ACCOUNT, id, ExpectedVersion::NoStream, &batch)
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::InvalidAppend { ref reason, .. } if reason.contains("twice")),
            "{error}"
        );
        assert_eq!(store.event_count(), 0);
        for event in &batch {
            assert!(!store.event_exists(event.envelope.event_id).await.unwrap());
        }
        // The same ids in a valid batch are free to use.
        batch.truncate(2);
        store
            .append(ACCOUNT, id, ExpectedVersion::NoStream, &batch)
            .await
            .unwrap();
        assert_eq!(store.stream_version(ACCOUNT, id).await.unwrap(), 2);
    }

    /// Ids in increasing order are found by search, the rest through the map: either way
    /// every stored id is found, no other is, and a stored id makes a batch a retry.
    #[tokio::test]
    async fn ids_in_any_order_are_found_and_never_stored_twice() {
        let store = InMemoryEventStore::new();
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        append(&store, ACCOUNT, a, 5).await; // increasing v7 ids: one run
        // Random (v4) ids, then ids below everything stored, in decreasing order.
        let mut random = events(ACCOUNT, b, 0, 4);
        for event in &mut random {
            // Version 4: a random value with version 7 bits would take part in the order.
            event.envelope.event_id =
                uuid::Builder::from_random_bytes(rand_u128().to_le_bytes()).into_uuid();
        }
        store
            .append(ACCOUNT, b, ExpectedVersion::NoStream, &random)
            .await
            .unwrap();
        let mut old = events(ACCOUNT, c, 0, 3);
        for (n, event) in (1u128..).zip(&mut old) {
            event.envelope.event_id = Uuid::from_u128(100 - n);
        }
        store
            .append(ACCOUNT, c, ExpectedVersion::NoStream, &old)
            .await
            .unwrap();
        append(&store, ACCOUNT, a, 3).await; // a second run of increasing ids

        let all = store.all_events();
        assert_eq!(all.len(), 15);
        for event in &all {
            assert!(store.event_exists(event.event_id()).await.unwrap());
        }
        for absent in [
            Uuid::nil(),
            Uuid::from_u128(50),
            Uuid::max(),
            Uuid::now_v7(),
        ] {
            assert!(!store.event_exists(absent).await.unwrap(), "{absent}");
        }
        // Ids from the middle of a run, or from the map, make a batch a retry.
        for (id, from) in [(a, 0), (b, 0), (c, 0)] {
            let stream = store.read_stream(ACCOUNT, id, from).await.unwrap();
            let retry: Vec<UncommittedEvent> = stream.events[1..2]
                .iter()
                .map(|event| UncommittedEvent {
                    envelope: event.envelope.clone(),
                    payload: event.payload.clone(),
                })
                .collect();
            let result = store
                .append(ACCOUNT, id, ExpectedVersion::Any, &retry)
                .await
                .unwrap();
            assert!(result.already_stored, "{id}");
            assert_eq!(positions(&result.events), positions(&stream.events[1..2]));
        }
        assert_eq!(store.event_count(), 15);

        // An id of another version takes no part in the order: later v7 ids still need
        // no map entry.
        let d = Uuid::now_v7();
        let mut odd = events(ACCOUNT, d, 0, 1);
        odd[0].envelope.event_id = Uuid::max();
        store
            .append(ACCOUNT, d, ExpectedVersion::NoStream, &odd)
            .await
            .unwrap();
        let in_map = store.read().ids.others.len();
        append(&store, ACCOUNT, d, 3).await;
        assert_eq!(store.read().ids.others.len(), in_map);
        assert!(store.event_exists(Uuid::max()).await.unwrap());
        let last = store.all_events().last().unwrap().event_id();
        assert!(store.event_exists(last).await.unwrap());
    }

    /// 128 bits from the standard library's randomly keyed hasher (no extra dependency).
    fn rand_u128() -> u128 {
        use std::hash::{BuildHasher, RandomState};
        let state = RandomState::new();
        (u128::from(state.hash_one(1u8)) << 64) | u128::from(state.hash_one(2u8))
    }

    #[tokio::test]
    async fn read_all_pages_respect_the_batch_size_the_limit_and_the_filters() {
        let store = InMemoryEventStore::new();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        append(&store, ACCOUNT, a, 5).await;
        append(&store, "Ledger", b, 2).await;
        append(&store, ACCOUNT, b, 4).await;

        let pages: Vec<EventPage> = store
            .read_all_batches(ReadAll::after(1).batch_size(3).limit(8))
            .try_collect()
            .await
            .unwrap();
        let sizes: Vec<usize> = pages.iter().map(|page| page.len()).collect();
        assert_eq!(sizes, [3, 3, 2]);
        let events: Vec<Arc<RecordedEvent>> = pages.into_iter().flatten().collect();
        assert_eq!(positions(&events), (2..=9).collect::<Vec<_>>());

        let all: Vec<Arc<RecordedEvent>> = store
            .read_all(ReadAll::from_start().batch_size(2))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(positions(&all), (1..=11).collect::<Vec<_>>());

        let accounts: Vec<Arc<RecordedEvent>> = store
            .read_all(ReadAll::after(3).aggregate_type(ACCOUNT).batch_size(2))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(positions(&accounts), [4, 5, 8, 9, 10, 11]);

        let none: Vec<Arc<RecordedEvent>> = store
            .read_all(ReadAll::from_start().limit(0))
            .try_collect()
            .await
            .unwrap();
        assert!(none.is_empty());
    }

    /// The log is kept in sealed blocks and an open tail. Every read sees one log in
    /// position order across the blocks; a page never crosses a block, and a page of a
    /// sealed block lends the block's events instead of counting a reference to each.
    #[tokio::test]
    async fn the_log_reads_as_one_across_its_blocks_and_lends_sealed_pages() {
        let store = InMemoryEventStore::new();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        // Two streams interleaved in batches that straddle the block boundaries.
        for _ in 0..7 {
            append(&store, ACCOUNT, a, 230).await;
            append(&store, "Ledger", b, 120).await;
        }
        let total = 7 * 350;
        assert_eq!(store.event_count(), total);
        let every: Vec<u64> = (1..=total as u64).collect();

        let pages: Vec<EventPage> = store
            .read_all_batches(ReadAll::from_start().batch_size(700))
            .try_collect()
            .await
            .unwrap();
        let sizes: Vec<usize> = pages.iter().map(|page| page.len()).collect();
        assert_eq!(sizes, [700, 300, 700, 300, 450], "no page crosses a block");
        // Sealed pages lend the log's own references; the tail's page holds copies.
        assert_eq!(Arc::strong_count(&pages[0][0]), 1);
        assert_eq!(Arc::strong_count(&pages[3][299]), 1);
        assert_eq!(Arc::strong_count(&pages[4][0]), 2);
        let events: Vec<Arc<RecordedEvent>> =
            pages.iter().flat_map(|page| page.iter().cloned()).collect();
        assert_eq!(positions(&events), every);
        assert_eq!(positions(&store.all_events()), every);

        let all: Vec<Arc<RecordedEvent>> = store
            .read_all(ReadAll::after(999).batch_size(5000))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(positions(&all), every[999..]);
        // However large the page asked for, from inside a block or not.
        for after in [0, 1, 999, 1000, 1999] {
            let all: Vec<Arc<RecordedEvent>> = store
                .read_all(ReadAll::after(after).batch_size(usize::MAX))
                .try_collect()
                .await
                .unwrap();
            assert_eq!(positions(&all), every[after as usize..], "after {after}");
            let page = store
                .read_all_batch(&ReadAll::default(), after, usize::MAX)
                .await
                .unwrap();
            assert_eq!(page.first().map(|e| e.position), Some(after + 1));
        }
        let page = store
            .read_all_batch(&ReadAll::default(), 1998, 10)
            .await
            .unwrap();
        assert_eq!(positions(&page), [1999, 2000], "cut at the block's end");
        let past = store
            .read_all_batch(&ReadAll::default(), total as u64 + 5, 10)
            .await
            .unwrap();
        assert!(past.is_empty());

        let ledgers: Vec<Arc<RecordedEvent>> = store
            .read_all(
                ReadAll::from_start()
                    .aggregate_type("Ledger")
                    .batch_size(333),
            )
            .try_collect()
            .await
            .unwrap();
        assert_eq!(ledgers.len(), 7 * 120);
        assert!(ledgers.iter().all(|event| event.aggregate_id() == b));
        assert!(ledgers.windows(2).all(|w| w[0].position < w[1].position));

        for (id, stream_type, count) in [(a, ACCOUNT, 7 * 230), (b, "Ledger", 7 * 120)] {
            let stream = store.read_stream(stream_type, id, 0).await.unwrap();
            assert_eq!(versions(&stream.events), (1..=count).collect::<Vec<u64>>());
            let rest = store.read_stream(stream_type, id, 500).await.unwrap();
            assert_eq!(versions(&rest.events), (501..=count).collect::<Vec<u64>>());
        }
        for event in [&events[0], &events[999], &events[1000], &events[total - 1]] {
            assert!(store.event_exists(event.event_id()).await.unwrap());
        }
        // A retry of a batch stored across a block boundary is recognised.
        let stored = store.read_stream("Ledger", b, 600).await.unwrap();
        let retry: Vec<UncommittedEvent> = stored.events[..120]
            .iter()
            .map(|event| UncommittedEvent {
                envelope: event.envelope.clone(),
                payload: event.payload.clone(),
            })
            .collect();
        assert!(stored.events[0].position < 2000 && stored.events[119].position > 2000);
        let again = store
            .append("Ledger", b, ExpectedVersion::Any, &retry)
            .await
            .unwrap();
        assert!(again.already_stored);
        assert_eq!(store.event_count(), total);
    }

    #[tokio::test]
    async fn a_follower_holding_the_signal_is_woken_by_an_append() {
        let store = Arc::new(InMemoryEventStore::new());
        let Some(signal) = store.append_signal() else {
            panic!("the memory store has an append signal");
        };
        let notified = signal.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        append(&store, ACCOUNT, Uuid::now_v7(), 1).await;
        assert!(
            notified.now_or_never().is_some(),
            "the append notified the waiter"
        );
        assert_eq!(store.event_count(), 1);
    }
}
