//! A bus for tests: records what is published, and fails on demand.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use eventsource::{BusError, EventBus, RecordedEvent};

/// An [`EventBus`] that keeps every published event, for tests of whatever publishes:
/// a repository with a bus, an outbox relay. [`fail_with`](Self::fail_with) makes every
/// publish fail (a broker that is down) until [`recover`](Self::recover);
/// [`with_delay`](Self::with_delay) makes each publish take a while (to overlap
/// concurrent publishers).
///
/// ```
/// use std::sync::Arc;
/// use eventsource::EventBus;
/// use eventsource_test::RecordingBus;
///
/// # eventsource_test::block_on(async {
/// let bus = RecordingBus::new();
/// bus.fail_with("broker down");
/// assert!(bus.publish(&[]).await.is_err());
/// bus.recover();
/// bus.publish(&[]).await.unwrap();
/// assert_eq!(bus.publishes(), 1);
/// # });
/// ```
#[derive(Debug, Default)]
pub struct RecordingBus {
    state: Mutex<State>,
    delay: Option<Duration>,
}

#[derive(Debug, Default)]
struct State {
    received: Vec<Arc<RecordedEvent>>,
    failure: Option<String>,
    publishes: usize,
    failed: usize,
}

impl RecordingBus {
    /// A bus that accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Each publish sleeps this long first.
    #[must_use]
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From now on every publish fails with `message`.
    pub fn fail_with(&self, message: impl Into<String>) {
        self.state().failure = Some(message.into());
    }

    /// From now on publishes succeed again.
    pub fn recover(&self) {
        self.state().failure = None;
    }

    /// Every event published successfully, in publish order.
    pub fn received(&self) -> Vec<Arc<RecordedEvent>> {
        self.state().received.clone()
    }

    /// The global positions of [`received`](Self::received).
    pub fn positions(&self) -> Vec<u64> {
        self.state().received.iter().map(|e| e.position).collect()
    }

    /// Successful publish calls.
    pub fn publishes(&self) -> usize {
        self.state().publishes
    }

    /// Failed publish calls.
    pub fn failed_publishes(&self) -> usize {
        self.state().failed
    }
}

#[eventsource::async_trait]
impl EventBus for RecordingBus {
    async fn publish(&self, events: &[Arc<RecordedEvent>]) -> Result<(), BusError> {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        let mut state = self.state();
        if let Some(message) = &state.failure {
            let message = message.clone();
            state.failed += 1;
            return Err(BusError::Backend {
                backend: "recording",
                transient: true,
                source: message.into(),
            });
        }
        state.publishes += 1;
        state.received.extend(events.iter().cloned());
        Ok(())
    }
}
