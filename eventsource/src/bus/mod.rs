//! Event buses: deliver stored events to handlers.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{BoxError, BusError};
use crate::event::RecordedEvent;

mod memory;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
pub use self::redis::{
    ConsumerStats, DeadLetter, MalformedMessage, RedisConsumerBuilder, RedisConsumerHandle,
    RedisEventBus, RedisEventBusBuilder, StartFrom,
};
pub use memory::InMemoryEventBus;

/// Delivers stored events to subscribers.
///
/// A bus is for reacting quickly; it is not the record. Subscriptions that must see every
/// event read the store's global log (see the projection module), which a bus can wake.
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Delivers `events` in order.
    ///
    /// # Errors
    /// [`BusError::HandlerFailed`] lists every handler that failed (the others still got
    /// the events); backend errors for brokers.
    async fn publish(&self, events: &[Arc<RecordedEvent>]) -> Result<(), BusError>;
}

#[async_trait]
impl<B: EventBus + ?Sized> EventBus for Arc<B> {
    async fn publish(&self, events: &[Arc<RecordedEvent>]) -> Result<(), BusError> {
        (**self).publish(events).await
    }
}

/// Something that reacts to published events.
#[async_trait]
pub trait EventHandler: Send + Sync {
    /// The handler's name, in logs and failure reports.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// Handles one event.
    ///
    /// # Errors
    /// Any error; the bus reports it with the handler's name and the event.
    async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError>;
}
