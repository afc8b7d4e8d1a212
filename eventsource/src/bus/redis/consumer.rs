//! Consumers: read a consumer group, run handlers, acknowledge, reclaim, dead-letter.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use ::redis::{AsyncConnectionConfig, RedisError, RedisResult};
use futures_util::FutureExt;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{RedisEventBus, backend_error, dead_fields, needs_reconnect, wire};
use crate::bus::EventHandler;
use crate::error::BusError;
use crate::event::{DomainEvent, Payload};
use crate::registry::EventRegistry;

/// Where a new consumer group starts reading the event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// Every message still in the stream (the default: nothing retained is missed).
    #[default]
    Beginning,
    /// Only messages published after the group is created.
    Latest,
}

struct Subscriber {
    /// Stored event names, or `None` for every event.
    names: Option<Vec<String>>,
    handler: Arc<dyn EventHandler>,
}

impl Subscriber {
    fn wants(&self, name: &str) -> bool {
        self.names
            .as_deref()
            .is_none_or(|names| names.iter().any(|n| n == name))
    }
}

/// Configures a consumer; see [`RedisEventBus::consumer`].
#[must_use = "call `start().await` to run the consumer"]
pub struct RedisConsumerBuilder {
    bus: RedisEventBus,
    group: String,
    name: Option<String>,
    subscribers: Vec<Subscriber>,
    idle_timeout: Duration,
    reclaim_interval: Option<Duration>,
    max_deliveries: u64,
    batch_size: usize,
    block: Duration,
    start_from: StartFrom,
    wake: Vec<Arc<Notify>>,
}

impl std::fmt::Debug for RedisConsumerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConsumerBuilder")
            .field("group", &self.group)
            .field("name", &self.name)
            .field("subscribers", &self.subscribers.len())
            .field("idle_timeout", &self.idle_timeout)
            .field("max_deliveries", &self.max_deliveries)
            .finish_non_exhaustive()
    }
}

impl RedisConsumerBuilder {
    pub(super) fn new(bus: RedisEventBus, group: String) -> Self {
        RedisConsumerBuilder {
            bus,
            group,
            name: None,
            subscribers: Vec::new(),
            idle_timeout: Duration::from_secs(30),
            reclaim_interval: None,
            max_deliveries: 5,
            batch_size: 100,
            block: Duration::from_secs(1),
            start_from: StartFrom::Beginning,
            wake: Vec::new(),
        }
    }

    /// The consumer's name within its group (default: a fresh unique name). Give a
    /// restarted process the same name to keep its identity in `XINFO CONSUMERS`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Runs `handler` on events of type `E`.
    pub fn subscribe<E: DomainEvent>(self, handler: Arc<dyn EventHandler>) -> Self {
        self.subscribe_to([E::NAME], handler)
    }

    /// Runs `handler` on events with these stored names.
    pub fn subscribe_to<I, N>(mut self, names: I, handler: Arc<dyn EventHandler>) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        self.subscribers.push(Subscriber {
            names: Some(names.into_iter().map(Into::into).collect()),
            handler,
        });
        self
    }

    /// Runs `handler` on every event.
    pub fn subscribe_all(mut self, handler: Arc<dyn EventHandler>) -> Self {
        self.subscribers.push(Subscriber {
            names: None,
            handler,
        });
        self
    }

    /// How long a message may stay unacknowledged before a consumer of the group claims
    /// it (default 30 s). It is also the delay before a failed event is retried. Keep it
    /// above the longest time a handler takes, or slow handlers see their event twice.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// How often the consumer looks for idle messages to claim (default: half the idle
    /// timeout).
    pub fn reclaim_interval(mut self, interval: Duration) -> Self {
        self.reclaim_interval = Some(interval);
        self
    }

    /// Deliveries before a message is dead-lettered (default 5, at least 1). Counted by the
    /// server: a delivery to a consumer that crashed counts too.
    pub fn max_deliveries(mut self, max: u64) -> Self {
        self.max_deliveries = max.max(1);
        self
    }

    /// Messages read per round trip (default 100, at least 1).
    pub fn batch_size(mut self, size: usize) -> Self {
        self.batch_size = size.max(1);
        self
    }

    /// How long one read waits for new messages (default 1 s; at least 1 ms). A graceful
    /// shutdown may wait this long.
    pub fn block_time(mut self, block: Duration) -> Self {
        self.block = block.max(Duration::from_millis(1));
        self
    }

    /// Where a group created by this consumer starts (default [`StartFrom::Beginning`]).
    /// An existing group keeps its position.
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.start_from = start;
        self
    }

    /// Fires `notify.notify_waiters()` after each batch is acknowledged, e.g. to wake a
    /// subscription that reads the event store (pass the signal it waits on).
    pub fn wake(mut self, notify: Arc<Notify>) -> Self {
        self.wake.push(notify);
        self
    }

    /// Creates the consumer group if needed (and the group's retry stream), then runs the
    /// consumer on a task until [`RedisConsumerHandle::shutdown`].
    ///
    /// # Errors
    /// [`BusError::Backend`] when the server is unreachable or refuses the group.
    pub async fn start(self) -> Result<RedisConsumerHandle, BusError> {
        let name = self
            .name
            .unwrap_or_else(|| format!("consumer-{}", uuid::Uuid::now_v7().simple()));
        let keys = &self.bus.inner.keys;
        let connection_name: String = format!("{}:{}:{}", keys.prefix, self.group, name)
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '_' })
            .collect();
        let streams = [keys.events.clone(), keys.retry(&self.group)];
        let dead = keys.dead(&self.group);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (position_tx, position_rx) = watch::channel(0);
        let stats = Arc::new(Stats::default());
        let reclaim_interval = self
            .reclaim_interval
            .unwrap_or(self.idle_timeout / 2)
            .max(Duration::from_millis(1));
        let mut worker = Worker {
            client: self.bus.inner.client.clone(),
            streams,
            dead,
            group: self.group,
            name: name.clone(),
            connection_name: connection_name.clone(),
            subscribers: self.subscribers,
            idle_ms: u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX),
            reclaim_interval,
            max_deliveries: self.max_deliveries,
            batch_size: self.batch_size,
            block: self.block,
            start_from: self.start_from,
            wake: self.wake,
            connection: None,
            groups_ready: false,
            stats: Arc::clone(&stats),
            position: position_tx,
            shutdown: shutdown_rx,
        };
        // Fail fast on a bad URL or a refused group; later failures are retried.
        worker.connect().await.map_err(backend_error)?;
        let task = tokio::spawn(worker.run());
        Ok(RedisConsumerHandle {
            name,
            connection_name,
            shutdown,
            task: Some(task),
            stats,
            position: position_rx,
        })
    }
}

#[derive(Default)]
struct Stats {
    handled: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
    dead_lettered: AtomicU64,
    reclaimed: AtomicU64,
    trimmed: AtomicU64,
    reconnects: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// What a consumer has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerStats {
    /// Messages every handler succeeded on, acknowledged.
    pub handled: u64,
    /// Messages no handler of this consumer subscribes to, acknowledged and skipped.
    pub skipped: u64,
    /// Handler failures left pending for a retry after the idle timeout.
    pub failed: u64,
    /// Messages moved to the dead-letter stream.
    pub dead_lettered: u64,
    /// Messages claimed from the group's pending list (a crashed consumer's, or a retry).
    pub reclaimed: u64,
    /// Pending messages found deleted from the stream by trimming before anyone
    /// acknowledged them (logged as errors).
    pub trimmed: u64,
    /// Times the consumer lost its connection and set out to reconnect.
    pub reconnects: u64,
}

/// Controls a running consumer. Dropping it asks the consumer to stop, as
/// [`shutdown`](Self::shutdown) does, without waiting.
#[derive(Debug)]
pub struct RedisConsumerHandle {
    name: String,
    connection_name: String,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    stats: Arc<Stats>,
    position: watch::Receiver<u64>,
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stats")
    }
}

impl RedisConsumerHandle {
    /// The consumer's name in its group.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name the consumer gives its connection (`CLIENT SETNAME`), as shown by
    /// `CLIENT LIST`: `{prefix}:{group}:{consumer}`.
    pub fn connection_name(&self) -> &str {
        &self.connection_name
    }

    /// Counters of what the consumer did.
    pub fn stats(&self) -> ConsumerStats {
        let s = &self.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ConsumerStats {
            handled: get(&s.handled),
            skipped: get(&s.skipped),
            failed: get(&s.failed),
            dead_lettered: get(&s.dead_lettered),
            reclaimed: get(&s.reclaimed),
            trimmed: get(&s.trimmed),
            reconnects: get(&s.reconnects),
        }
    }

    /// The highest global position among the events this consumer handled, updated
    /// after each batch: `changed().await` on it to follow progress.
    pub fn positions(&self) -> watch::Receiver<u64> {
        self.position.clone()
    }

    /// Stops after the current read and batch (at most the block time plus the handlers'
    /// time) and waits for it. What was handled is acknowledged; nothing is left half done.
    /// A consumer that holds no pending message then leaves its group.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
        {
            tracing::error!(consumer = %self.name, %error, "redis consumer task failed");
        }
    }

    /// Stops at once, as a crash would: messages being handled stay unacknowledged in
    /// the group, and another consumer claims them after the idle timeout.
    pub fn abort(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for RedisConsumerHandle {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// One message to handle and how many times the server says it was delivered.
struct Delivery {
    entry: StreamId,
    deliveries: u64,
}

enum Outcome {
    /// Acknowledge.
    Ack,
    /// Leave pending, to be retried after the idle timeout.
    Retry,
    /// Move to the dead-letter stream with this error.
    DeadLetter(String),
}

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

struct Worker {
    client: ::redis::Client,
    /// The event stream and the group's retry stream, read together.
    streams: [String; 2],
    dead: String,
    group: String,
    name: String,
    connection_name: String,
    subscribers: Vec<Subscriber>,
    idle_ms: u64,
    reclaim_interval: Duration,
    max_deliveries: u64,
    batch_size: usize,
    block: Duration,
    start_from: StartFrom,
    wake: Vec<Arc<Notify>>,
    connection: Option<MultiplexedConnection>,
    groups_ready: bool,
    stats: Arc<Stats>,
    position: watch::Sender<u64>,
    shutdown: watch::Receiver<bool>,
}

impl Worker {
    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Sleeps, or returns early on shutdown.
    async fn pause(&mut self, duration: Duration) {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }

    /// A connection with the groups in place, (re)connecting if needed.
    async fn connect(&mut self) -> RedisResult<MultiplexedConnection> {
        let mut con = match &self.connection {
            Some(con) => con.clone(),
            None => {
                // A blocking read holds the connection for the block time: wait longer than that.
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(5)))
                    .set_response_timeout(Some(self.block + Duration::from_secs(5)));
                let mut con = self
                    .client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                ::redis::cmd("CLIENT")
                    .arg("SETNAME")
                    .arg(&self.connection_name)
                    .exec_async(&mut con)
                    .await?;
                self.connection = Some(con.clone());
                con
            }
        };
        if !self.groups_ready {
            let start = match self.start_from {
                StartFrom::Beginning => "0",
                StartFrom::Latest => "$",
            };
            for (stream, start) in self.streams.iter().zip([start, "0"]) {
                let created: RedisResult<()> = ::redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(stream)
                    .arg(&self.group)
                    .arg(start)
                    .arg("MKSTREAM")
                    .exec_async(&mut con)
                    .await;
                match created {
                    // BUSYGROUP: the group exists already, and keeps its position.
                    Err(error) if error.code() != Some("BUSYGROUP") => return Err(error),
                    _ => {}
                }
            }
            self.groups_ready = true;
        }
        Ok(con)
    }

    async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        let mut next_reclaim = Instant::now();
        while !self.stopping() {
            match self.step(&mut next_reclaim).await {
                Ok(()) => backoff = MIN_BACKOFF,
                Err(error) => {
                    self.on_error(&error);
                    self.pause(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if let Err(error) = self.leave_group().await {
            tracing::debug!(consumer = %self.name, group = %self.group, %error, "could not remove the consumer from its group");
        }
        tracing::debug!(consumer = %self.name, group = %self.group, "redis consumer stopped");
    }

    /// On a graceful stop, removes this consumer from the group if it holds no pending
    /// message, so that consumers with generated names do not pile up in `XINFO CONSUMERS`.
    /// Nothing can be added to its pending list once it stopped reading (claims move
    /// messages to the claimer), so the check cannot race.
    async fn leave_group(&mut self) -> RedisResult<()> {
        let Some(mut con) = self.connection.clone() else {
            return Ok(());
        };
        let mut pipe = ::redis::pipe();
        for stream in &self.streams {
            pipe.cmd("XPENDING")
                .arg(stream)
                .arg(&self.group)
                .arg("-")
                .arg("+")
                .arg(1)
                .arg(&self.name);
        }
        let pending: Vec<StreamPendingCountReply> = pipe.query_async(&mut con).await?;
        if pending.iter().any(|reply| !reply.ids.is_empty()) {
            return Ok(());
        }
        let mut pipe = ::redis::pipe();
        for stream in &self.streams {
            pipe.cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(stream)
                .arg(&self.group)
                .arg(&self.name)
                .ignore();
        }
        pipe.exec_async(&mut con).await
    }

    fn on_error(&mut self, error: &RedisError) {
        if needs_reconnect(error) {
            if self.connection.take().is_some() {
                bump(&self.stats.reconnects, 1);
            }
            tracing::warn!(consumer = %self.name, group = %self.group, %error, "redis connection lost; reconnecting");
        } else if error.code() == Some("NOGROUP") {
            // The stream or the group was deleted (or the server restarted empty): recreate.
            self.groups_ready = false;
            tracing::warn!(consumer = %self.name, group = %self.group, %error, "consumer group missing; recreating it");
        } else {
            tracing::error!(consumer = %self.name, group = %self.group, %error, "redis consumer error; retrying");
        }
    }

    /// Reclaims idle messages when it is time, then reads and handles one batch.
    async fn step(&mut self, next_reclaim: &mut Instant) -> RedisResult<()> {
        let mut con = self.connect().await?;
        if Instant::now() >= *next_reclaim {
            self.reclaim(&mut con).await?;
            *next_reclaim = Instant::now() + self.reclaim_interval;
        }
        if self.stopping() {
            return Ok(());
        }
        let until_reclaim = next_reclaim.saturating_duration_since(Instant::now());
        let block = self.block.min(until_reclaim).max(Duration::from_millis(1));
        let reply: Option<StreamReadReply> = ::redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group)
            .arg(&self.name)
            .arg("COUNT")
            .arg(self.batch_size)
            .arg("BLOCK")
            .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX))
            .arg("STREAMS")
            .arg(&self.streams)
            .arg(">")
            .arg(">")
            .query_async(&mut con)
            .await?;
        for key in reply.map(|reply| reply.keys).unwrap_or_default() {
            let Some(stream) = self.streams.iter().position(|s| *s == key.key) else {
                continue;
            };
            // Read with `>`: never delivered to this group before, so this is delivery 1.
            let batch = key
                .ids
                .into_iter()
                .map(|entry| Delivery {
                    entry,
                    deliveries: 1,
                })
                .collect();
            self.process(&mut con, stream, batch).await?;
        }
        Ok(())
    }

    /// Claims messages idle longer than the idle timeout (a crashed consumer's, or failures
    /// waiting for their retry), reads their delivery counts from the pending list, and
    /// handles them.
    async fn reclaim(&mut self, con: &mut MultiplexedConnection) -> RedisResult<()> {
        for stream in 0..self.streams.len() {
            let mut cursor = "0-0".to_owned();
            loop {
                let reply: StreamAutoClaimReply = ::redis::cmd("XAUTOCLAIM")
                    .arg(&self.streams[stream])
                    .arg(&self.group)
                    .arg(&self.name)
                    .arg(self.idle_ms)
                    .arg(&cursor)
                    .arg("COUNT")
                    .arg(self.batch_size)
                    .query_async(&mut *con)
                    .await?;
                if !reply.deleted_ids.is_empty() {
                    bump(&self.stats.trimmed, reply.deleted_ids.len() as u64);
                    tracing::error!(
                        group = %self.group,
                        stream = %self.streams[stream],
                        ids = ?reply.deleted_ids,
                        "pending messages were trimmed from the stream before being acknowledged; raise the bus's max length"
                    );
                }
                if !reply.claimed.is_empty() {
                    bump(&self.stats.reclaimed, reply.claimed.len() as u64);
                    let batch = self.delivery_counts(con, stream, reply.claimed).await?;
                    self.process(con, stream, batch).await?;
                }
                cursor = reply.next_stream_id;
                if cursor == "0-0" || self.stopping() {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The server's delivery count of each claimed message, in one round trip. A message
    /// no longer pending for this consumer (claimed again by another) is dropped here: it
    /// is that consumer's now.
    async fn delivery_counts(
        &self,
        con: &mut MultiplexedConnection,
        stream: usize,
        claimed: Vec<StreamId>,
    ) -> RedisResult<Vec<Delivery>> {
        let mut pipe = ::redis::pipe();
        for entry in &claimed {
            pipe.cmd("XPENDING")
                .arg(&self.streams[stream])
                .arg(&self.group)
                .arg(&entry.id)
                .arg(&entry.id)
                .arg(1)
                .arg(&self.name);
        }
        let counts: Vec<StreamPendingCountReply> = pipe.query_async(con).await?;
        Ok(claimed
            .into_iter()
            .zip(counts)
            .filter_map(|(entry, pending)| {
                let pending = pending.ids.into_iter().next()?;
                Some(Delivery {
                    entry,
                    deliveries: pending.times_delivered as u64,
                })
            })
            .collect())
    }

    /// Handles a batch, acknowledges what succeeded or was skipped in one round trip,
    /// dead-letters what has to be, then wakes whoever waits.
    async fn process(
        &mut self,
        con: &mut MultiplexedConnection,
        stream: usize,
        batch: Vec<Delivery>,
    ) -> RedisResult<()> {
        let mut acks: Vec<String> = Vec::with_capacity(batch.len());
        let mut dead = Vec::new();
        let mut highest = 0;
        for Delivery {
            mut entry,
            deliveries,
        } in batch
        {
            match self.handle(&mut entry, deliveries, &mut highest).await {
                Outcome::Ack => acks.push(entry.id),
                Outcome::Retry => {}
                Outcome::DeadLetter(error) => dead.push((entry, deliveries, error)),
            }
        }
        if !acks.is_empty() {
            ::redis::cmd("XACK")
                .arg(&self.streams[stream])
                .arg(&self.group)
                .arg(&acks)
                .exec_async(&mut *con)
                .await?;
        }
        for (entry, deliveries, error) in dead {
            self.dead_letter(con, stream, &entry, deliveries, &error)
                .await?;
        }
        if highest > 0 {
            self.position.send_if_modified(|position| {
                let moved = highest > *position;
                *position = (*position).max(highest);
                moved
            });
        }
        if !acks.is_empty() {
            for notify in &self.wake {
                notify.notify_waiters();
            }
        }
        Ok(())
    }

    /// Runs the handlers subscribed to one message and decides its fate.
    async fn handle(&self, entry: &mut StreamId, deliveries: u64, highest: &mut u64) -> Outcome {
        let Some(name) = wire::text_field(&entry.map, wire::NAME).map(str::to_owned) else {
            return Outcome::DeadLetter(format!(
                "malformed bus message {}: no `{}` field",
                entry.id,
                wire::NAME
            ));
        };
        if !self.subscribers.iter().any(|s| s.wants(&name)) {
            bump(&self.stats.skipped, 1);
            let known = EventRegistry::global().is_ok_and(|registry| registry.get(&name).is_some());
            if known {
                tracing::debug!(group = %self.group, event_name = %name, id = %entry.id, "no handler subscribed; acknowledged and skipped");
            } else {
                tracing::warn!(group = %self.group, event_name = %name, id = %entry.id, "unknown event type; acknowledged and skipped");
            }
            return Outcome::Ack;
        }
        if deliveries > self.max_deliveries {
            return Outcome::DeadLetter(format!(
                "delivered {deliveries} times without being acknowledged (a consumer stopped while handling it?)"
            ));
        }
        let mut event = match wire::decode(&entry.id, &mut entry.map) {
            Ok(event) => event,
            Err(malformed) => return Outcome::DeadLetter(malformed.to_string()),
        };
        let mut failures = Vec::new();
        for handler in self
            .subscribers
            .iter()
            .filter(|s| s.wants(&name))
            .map(|s| &s.handler)
        {
            let result = AssertUnwindSafe(handler.handle(&event))
                .catch_unwind()
                .await;
            let error = match result {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => error.to_string(),
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a non-text panic".to_owned());
                    format!("panicked: {message}")
                }
            };
            tracing::warn!(
                group = %self.group,
                handler = handler.name(),
                event_id = %event.event_id(),
                event_name = %name,
                deliveries,
                %error,
                "event handler failed"
            );
            failures.push(format!("handler `{}` failed: {error}", handler.name()));
        }
        if failures.is_empty() {
            bump(&self.stats.handled, 1);
            *highest = (*highest).max(event.position);
            return Outcome::Ack;
        }
        let error = failures.join("; ");
        if deliveries >= self.max_deliveries {
            // Decoding took the payload out of the message: put it back for the dead letter.
            if let Payload::Json(text) =
                std::mem::replace(&mut event.payload, Payload::Json(String::new()))
            {
                entry.map.insert(
                    wire::PAYLOAD.to_owned(),
                    ::redis::Value::BulkString(text.into_bytes()),
                );
            }
            Outcome::DeadLetter(error)
        } else {
            bump(&self.stats.failed, 1);
            Outcome::Retry
        }
    }

    /// Writes the message to the dead-letter stream and acknowledges it, atomically.
    async fn dead_letter(
        &self,
        con: &mut MultiplexedConnection,
        stream: usize,
        entry: &StreamId,
        deliveries: u64,
        error: &str,
    ) -> RedisResult<()> {
        tracing::error!(
            group = %self.group,
            id = %entry.id,
            deliveries,
            %error,
            "message moved to the dead-letter stream"
        );
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        pipe.cmd("XADD").arg(&self.dead).arg("*");
        for field in [wire::NAME, wire::META, wire::PAYLOAD] {
            if let Some(value) = wire::field(&entry.map, field) {
                pipe.arg(field).arg(value);
            }
        }
        pipe.arg(dead_fields::GROUP)
            .arg(&self.group)
            .arg(dead_fields::CONSUMER)
            .arg(&self.name)
            .arg(dead_fields::SOURCE)
            .arg(&self.streams[stream])
            .arg(dead_fields::SOURCE_ID)
            .arg(&entry.id)
            .arg(dead_fields::DELIVERIES)
            .arg(deliveries)
            .arg(dead_fields::ERROR)
            .arg(error)
            .ignore();
        pipe.cmd("XACK")
            .arg(&self.streams[stream])
            .arg(&self.group)
            .arg(&entry.id)
            .ignore();
        pipe.exec_async(&mut *con).await?;
        bump(&self.stats.dead_lettered, 1);
        Ok(())
    }
}
