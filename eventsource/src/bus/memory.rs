//! An in-process event bus.

use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;

use super::{EventBus, EventHandler};
use crate::error::{BoxError, BusError, HandlerFailure};
use crate::event::{DomainEvent, RecordedEvent};

struct Subscriber {
    /// Stored event names, or `None` for every event.
    names: Option<Vec<String>>,
    handler: Arc<dyn EventHandler>,
}

fn wants(names: Option<&[String]>, name: &str) -> bool {
    names.is_none_or(|names| names.iter().any(|n| n == name))
}

/// Delivers events to handlers in the same process, in publish order.
///
/// Every handler subscribed to an event gets it, even if another handler failed on it; the
/// failures are returned together as [`BusError::HandlerFailed`] and logged.
#[derive(Default)]
pub struct InMemoryEventBus {
    subscribers: RwLock<Vec<Subscriber>>,
}

impl std::fmt::Debug for InMemoryEventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryEventBus")
            .field("subscribers", &self.subscriber_count())
            .finish()
    }
}

impl InMemoryEventBus {
    /// A bus with no subscriber.
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&self, names: Option<Vec<String>>, handler: Arc<dyn EventHandler>) {
        self.subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Subscriber { names, handler });
    }

    /// Subscribes `handler` to events of type `E`.
    pub fn subscribe<E: DomainEvent>(&self, handler: Arc<dyn EventHandler>) {
        self.add(Some(vec![E::NAME.to_owned()]), handler);
    }

    /// Subscribes `handler` to events with these stored names.
    pub fn subscribe_to<I, N>(&self, names: I, handler: Arc<dyn EventHandler>)
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        self.add(Some(names.into_iter().map(Into::into).collect()), handler);
    }

    /// Subscribes `handler` to every event.
    pub fn subscribe_all(&self, handler: Arc<dyn EventHandler>) {
        self.add(None, handler);
    }

    /// Subscribes a closure to every event.
    pub fn subscribe_fn<F>(&self, name: impl Into<String>, handler: F)
    where
        F: Fn(&RecordedEvent) -> Result<(), BoxError> + Send + Sync + 'static,
    {
        self.subscribe_all(Arc::new(FnHandler {
            name: name.into(),
            handler,
        }));
    }

    /// How many subscriptions there are.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[async_trait]
impl EventBus for InMemoryEventBus {
    async fn publish(&self, events: &[Arc<RecordedEvent>]) -> Result<(), BusError> {
        // Snapshot the subscriber list so handlers may subscribe others while running.
        let subscribers: Vec<(Option<Vec<String>>, Arc<dyn EventHandler>)> = self
            .subscribers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|s| (s.names.clone(), Arc::clone(&s.handler)))
            .collect();
        let mut failures = Vec::new();
        for event in events {
            for (names, handler) in &subscribers {
                if !wants(names.as_deref(), event.name()) {
                    continue;
                }
                if let Err(error) = handler.handle(event).await {
                    tracing::warn!(
                        handler = handler.name(),
                        event_id = %event.event_id(),
                        event_name = event.name(),
                        %error,
                        "event handler failed"
                    );
                    failures.push(HandlerFailure {
                        handler: handler.name().to_owned(),
                        event_id: event.event_id(),
                        event_name: event.name().to_owned(),
                        error,
                    });
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(BusError::HandlerFailed { failures })
        }
    }
}

struct FnHandler<F> {
    name: String,
    handler: F,
}

#[async_trait]
impl<F> EventHandler for FnHandler<F>
where
    F: Fn(&RecordedEvent) -> Result<(), BoxError> + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError> {
        (self.handler)(event)
    }
}
