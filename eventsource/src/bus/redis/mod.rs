//! An event bus on Redis Streams (feature `redis`).
//!
//! Publishing appends each event to one stream, `{prefix}:events`, in publish order.
//! Consumers read it through consumer groups: every group gets every event (fan-out),
//! the consumers of one group share the work. A consumer acknowledges an event only once
//! every handler subscribed to it succeeded; what is not acknowledged is reclaimed by a
//! live consumer of the group once it has been idle long enough, and after the maximum
//! number of deliveries it moves to the group's dead-letter stream,
//! `{prefix}:dead:{group}`, from which it can be inspected and replayed (into
//! `{prefix}:retry:{group}`, which that group's consumers also read).
//!
//! Delivery is at least once: a handler may see an event again after a crash or a lost
//! acknowledgement, and should be idempotent (the event id is stable).

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::streams::{StreamId, StreamRangeReply};
use ::redis::{Client, ErrorKind, RedisError, ServerErrorKind, Value};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::EventBus;
use crate::error::BusError;
use crate::event::RecordedEvent;

mod consumer;
mod wire;

pub use consumer::{ConsumerStats, RedisConsumerBuilder, RedisConsumerHandle, StartFrom};
pub use wire::MalformedMessage;

const BACKEND: &str = "redis";

/// Wraps a driver error, classifying it.
pub(crate) fn backend_error(error: RedisError) -> BusError {
    BusError::Backend {
        backend: BACKEND,
        transient: is_transient(&error),
        source: Box::new(error),
    }
}

/// Whether retrying later (on a new connection if need be) may succeed.
pub(crate) fn is_transient(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ClusterDown
            )
        )
}

/// Whether the connection the error came from should be replaced.
pub(crate) fn needs_reconnect(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}

/// The keys one bus works with.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
    events: String,
}

impl Keys {
    fn new(prefix: String) -> Self {
        let events = format!("{prefix}:events");
        Keys { prefix, events }
    }

    fn dead(&self, group: &str) -> String {
        format!("{}:dead:{group}", self.prefix)
    }

    fn retry(&self, group: &str) -> String {
        format!("{}:retry:{group}", self.prefix)
    }
}

struct Inner {
    client: Client,
    publisher: ConnectionManager,
    keys: Keys,
    max_len: Option<usize>,
}

/// Publishes events to a Redis stream and builds the consumers that read it.
///
/// Cheap to clone (the connection is shared).
///
/// ```no_run
/// # async fn demo(handler: std::sync::Arc<dyn eventsource::EventHandler>) -> Result<(), eventsource::BusError> {
/// use std::time::Duration;
/// use eventsource::RedisEventBus;
///
/// let bus = RedisEventBus::builder("redis://127.0.0.1:6379")
///     .prefix("shop")
///     .max_len(1_000_000)
///     .build()
///     .await?;
/// let consumer = bus
///     .consumer("billing")
///     .subscribe_all(handler)
///     .idle_timeout(Duration::from_secs(30))
///     .max_deliveries(5)
///     .start()
///     .await?;
/// // Publish through `EventBus::publish`, or let a repository or the outbox relay do it.
/// consumer.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisEventBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisEventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEventBus")
            .field("stream", &self.inner.keys.events)
            .field("max_len", &self.inner.max_len)
            .finish_non_exhaustive()
    }
}

/// Configures a [`RedisEventBus`].
#[derive(Debug)]
#[must_use = "call `build().await` to connect"]
pub struct RedisEventBusBuilder {
    client: Result<Client, RedisError>,
    prefix: String,
    max_len: Option<usize>,
    response_timeout: Duration,
    connection_timeout: Duration,
}

impl RedisEventBusBuilder {
    /// The namespace of every key the bus uses (default `eventsource`): the event stream
    /// is `{prefix}:events`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Trims the event stream to about `max_len` entries on each publish
    /// (`XADD MAXLEN ~`). Unbounded by default.
    ///
    /// A bus is not the record: trimming drops old messages, even ones a slow group has not
    /// read or acknowledged yet. A consumer that finds such a message gone logs an error
    /// and counts it in [`ConsumerStats::trimmed`]; size the stream for the slowest group.
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = Some(max_len);
        self
    }

    /// How long the publisher waits for an answer (default 5 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How long a connection attempt may take (default 5 s).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Connects.
    ///
    /// # Errors
    /// [`BusError::Backend`] when the URL is invalid or the server unreachable.
    pub async fn build(self) -> Result<RedisEventBus, BusError> {
        let client = self.client.map_err(backend_error)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.response_timeout))
            .set_connection_timeout(Some(self.connection_timeout))
            .set_number_of_retries(3)
            .set_max_delay(Duration::from_secs(2));
        let publisher = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(backend_error)?;
        Ok(RedisEventBus {
            inner: Arc::new(Inner {
                client,
                publisher,
                keys: Keys::new(self.prefix),
                max_len: self.max_len,
            }),
        })
    }
}

impl RedisEventBus {
    /// Configures a bus on the server at `url` (`redis://host:port/db`).
    pub fn builder(url: &str) -> RedisEventBusBuilder {
        Self::builder_with_client(Client::open(url))
    }

    /// Configures a bus on an existing client (for TLS or custom connection settings).
    pub fn builder_from_client(client: Client) -> RedisEventBusBuilder {
        Self::builder_with_client(Ok(client))
    }

    fn builder_with_client(client: Result<Client, RedisError>) -> RedisEventBusBuilder {
        RedisEventBusBuilder {
            client,
            prefix: "eventsource".to_owned(),
            max_len: None,
            response_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(5),
        }
    }

    /// Connects to `url` with the default settings.
    ///
    /// # Errors
    /// As [`RedisEventBusBuilder::build`].
    pub async fn connect(url: &str) -> Result<Self, BusError> {
        Self::builder(url).build().await
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.keys.prefix
    }

    /// The key of the event stream.
    pub fn stream_key(&self) -> &str {
        &self.inner.keys.events
    }

    /// The key of `group`'s dead-letter stream.
    pub fn dead_letter_key(&self, group: &str) -> String {
        self.inner.keys.dead(group)
    }

    /// The key of `group`'s retry stream, where replayed dead letters go.
    pub fn retry_key(&self, group: &str) -> String {
        self.inner.keys.retry(group)
    }

    /// Starts configuring a consumer in `group`.
    pub fn consumer(&self, group: impl Into<String>) -> RedisConsumerBuilder {
        RedisConsumerBuilder::new(self.clone(), group.into())
    }

    fn publisher(&self) -> ConnectionManager {
        self.inner.publisher.clone()
    }

    /// The server-side id of the publishing connection (`CLIENT ID`), to find it in
    /// `CLIENT LIST`. It changes when the connection is re-established.
    ///
    /// # Errors
    /// [`BusError::Backend`].
    pub async fn connection_id(&self) -> Result<i64, BusError> {
        ::redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut self.publisher())
            .await
            .map_err(backend_error)
    }

    /// How many messages wait in `group`'s dead-letter stream.
    ///
    /// # Errors
    /// [`BusError::Backend`].
    pub async fn dead_letter_count(&self, group: &str) -> Result<u64, BusError> {
        ::redis::cmd("XLEN")
            .arg(self.inner.keys.dead(group))
            .query_async(&mut self.publisher())
            .await
            .map_err(backend_error)
    }

    /// Up to `max` of `group`'s dead letters, oldest first.
    ///
    /// # Errors
    /// [`BusError::Backend`].
    pub async fn dead_letters(&self, group: &str, max: usize) -> Result<Vec<DeadLetter>, BusError> {
        let reply: StreamRangeReply = ::redis::cmd("XRANGE")
            .arg(self.inner.keys.dead(group))
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut self.publisher())
            .await
            .map_err(backend_error)?;
        Ok(reply
            .ids
            .into_iter()
            .map(|entry| DeadLetter::from_entry(group, entry))
            .collect())
    }

    /// Moves one dead letter back to `group`'s retry stream, where the group's consumers
    /// pick it up with a fresh delivery count; other groups do not see it again. Returns
    /// the id of the new message, or `None` if there is no such dead letter (already
    /// replayed or discarded). Atomic: a dead letter is replayed at most once.
    ///
    /// # Errors
    /// [`BusError::Backend`].
    pub async fn replay_dead_letter(
        &self,
        group: &str,
        id: &str,
    ) -> Result<Option<String>, BusError> {
        self.replay_cmd(group, id)
            .query_async(&mut self.publisher())
            .await
            .map_err(backend_error)
    }

    fn replay_cmd(&self, group: &str, id: &str) -> ::redis::Cmd {
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(REPLAY_SCRIPT)
            .arg(2)
            .arg(self.inner.keys.dead(group))
            .arg(self.inner.keys.retry(group))
            .arg(id);
        cmd
    }

    /// Replays every dead letter of `group` that is there when the call starts (see
    /// [`RedisEventBus::replay_dead_letter`]); returns how many were replayed.
    ///
    /// # Errors
    /// [`BusError::Backend`]; what was replayed before the error stays replayed.
    pub async fn replay_dead_letters(&self, group: &str) -> Result<usize, BusError> {
        const PAGE: usize = 100;
        let dead = self.inner.keys.dead(group);
        let mut con = self.publisher();
        // Only what is there now: letters that fail again while this runs wait for the next call.
        let last: StreamRangeReply = ::redis::cmd("XREVRANGE")
            .arg(&dead)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut con)
            .await
            .map_err(backend_error)?;
        let Some(last) = last.ids.into_iter().next().map(|entry| entry.id) else {
            return Ok(0);
        };
        let mut replayed = 0;
        loop {
            let ids: Vec<(String, Value)> = ::redis::cmd("XRANGE")
                .arg(&dead)
                .arg("-")
                .arg(&last)
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut con)
                .await
                .map_err(backend_error)?;
            if ids.is_empty() {
                return Ok(replayed);
            }
            let mut pipe = ::redis::pipe();
            for (id, _) in &ids {
                pipe.add_command(self.replay_cmd(group, id));
            }
            let results: Vec<Option<String>> =
                pipe.query_async(&mut con).await.map_err(backend_error)?;
            replayed += results.iter().filter(|id| id.is_some()).count();
            if ids.len() < PAGE {
                return Ok(replayed);
            }
        }
    }

    /// Deletes one dead letter for good; returns whether it existed.
    ///
    /// # Errors
    /// [`BusError::Backend`].
    pub async fn discard_dead_letter(&self, group: &str, id: &str) -> Result<bool, BusError> {
        let deleted: u64 = ::redis::cmd("XDEL")
            .arg(self.inner.keys.dead(group))
            .arg(id)
            .query_async(&mut self.publisher())
            .await
            .map_err(backend_error)?;
        Ok(deleted > 0)
    }
}

/// Copies a dead letter's event fields to the retry stream and deletes it, atomically.
const REPLAY_SCRIPT: &str = r"
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #entries == 0 then return false end
local fields = entries[1][2]
local out = {}
for i = 1, #fields, 2 do
  local f = fields[i]
  if f == 'name' or f == 'meta' or f == 'payload' then
    out[#out + 1] = f
    out[#out + 1] = fields[i + 1]
  end
end
out[#out + 1] = 'replay_of'
out[#out + 1] = ARGV[1]
local id = redis.call('XADD', KEYS[2], '*', unpack(out))
redis.call('XDEL', KEYS[1], ARGV[1])
return id
";

/// Dead-letter fields besides the event's own.
mod dead_fields {
    pub(super) const GROUP: &str = "group";
    pub(super) const CONSUMER: &str = "consumer";
    pub(super) const SOURCE: &str = "source";
    pub(super) const SOURCE_ID: &str = "source_id";
    pub(super) const DELIVERIES: &str = "deliveries";
    pub(super) const ERROR: &str = "error";
}

/// A message a consumer group gave up on, with why.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Its id in the dead-letter stream (pass it to [`RedisEventBus::replay_dead_letter`]).
    pub id: String,
    /// The consumer group that gave up.
    pub group: String,
    /// The consumer that moved it here.
    pub consumer: String,
    /// The stream it came from (the event stream or the group's retry stream).
    pub source: String,
    /// Its id there.
    pub source_id: String,
    /// How many times it had been delivered, as counted by the server.
    pub deliveries: u64,
    /// The last error: each failed handler with what it returned, or why the message could
    /// not be handled at all.
    pub error: String,
    /// The stored event name (empty if the message had none).
    pub event_name: String,
    /// The event, or why it cannot be decoded.
    pub event: Result<RecordedEvent, MalformedMessage>,
}

impl DeadLetter {
    fn from_entry(group: &str, mut entry: StreamId) -> Self {
        use dead_fields::*;
        let text = |name: &str| {
            wire::text_field(&entry.map, name)
                .unwrap_or_default()
                .to_owned()
        };
        let consumer = text(CONSUMER);
        let source = text(SOURCE);
        let source_id = text(SOURCE_ID);
        let deliveries = text(DELIVERIES).parse().unwrap_or(0);
        let error = text(ERROR);
        let event_name = text(wire::NAME);
        let recorded_group = text(GROUP);
        let event = wire::decode(&entry.id, &mut entry.map);
        DeadLetter {
            id: entry.id,
            group: if recorded_group.is_empty() {
                group.to_owned()
            } else {
                recorded_group
            },
            consumer,
            source,
            source_id,
            deliveries,
            error,
            event_name,
            event,
        }
    }

    /// When it was dead-lettered (from its id), if the id is a standard stream id.
    pub fn failed_at(&self) -> Option<DateTime<Utc>> {
        let millis = self.id.split('-').next()?.parse().ok()?;
        DateTime::from_timestamp_millis(millis)
    }
}

#[async_trait]
impl EventBus for RedisEventBus {
    /// Appends the events to the stream in one round trip; a batch is written atomically
    /// (`MULTI`/`EXEC`). A dropped connection is retried once on a fresh connection, so an
    /// event may in rare cases be published twice (consumers are at least once anyway).
    async fn publish(&self, events: &[Arc<RecordedEvent>]) -> Result<(), BusError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipe = ::redis::pipe();
        if events.len() > 1 {
            pipe.atomic();
        }
        for event in events {
            let encoded = wire::encode(event)?;
            pipe.cmd("XADD").arg(&self.inner.keys.events);
            if let Some(max_len) = self.inner.max_len {
                pipe.arg("MAXLEN").arg("~").arg(max_len);
            }
            pipe.arg("*")
                .arg(wire::NAME)
                .arg(encoded.name)
                .arg(wire::META)
                .arg(encoded.meta)
                .arg(wire::PAYLOAD)
                .arg(encoded.payload.as_ref())
                .ignore();
        }
        let mut con = self.publisher();
        match pipe.exec_async(&mut con).await {
            Ok(()) => Ok(()),
            Err(error) if needs_reconnect(&error) => {
                tracing::warn!(%error, "publishing to redis failed; retrying once on a new connection");
                pipe.exec_async(&mut con).await.map_err(backend_error)
            }
            Err(error) => Err(backend_error(error)),
        }
    }
}
