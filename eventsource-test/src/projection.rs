//! Given events of any aggregates, when a projection handles them, then its read model.

use std::fmt::{self, Debug};

use eventsource::projection::Projection;
use eventsource::{BoxError, DomainEvent, Payload, RecordedEvent};
use uuid::Uuid;

use crate::builder::History;

/// A test of a [`Projection`]: given events (of any aggregates, in global order), when the
/// projection handles each of them in order, then check its read model.
///
/// Events are handed over in their stored form (JSON payloads, as from a database) unless
/// you ask for [`typed`](Self::typed) ones, so a projection that only works with the
/// in-memory form fails here rather than in production.
///
/// ```
/// # use eventsource_test::__doc_order::*;
/// use eventsource::projection::Projection;
/// use eventsource::{BoxError, RecordedEvent};
/// use eventsource_test::{block_on, ProjectionScenario};
/// use uuid::Uuid;
///
/// #[derive(Default)]
/// struct ShippedOrders { ids: Vec<Uuid> }
///
/// #[async_trait::async_trait]
/// impl Projection for ShippedOrders {
///     fn name(&self) -> &str { "shipped-orders" }
///     async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
///         if event.as_event::<OrderShipped>()?.is_some() {
///             self.ids.push(event.aggregate_id());
///         }
///         Ok(())
///     }
/// }
///
/// let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
/// block_on(
///     ProjectionScenario::new(ShippedOrders::default())
///         .given(a, OrderCreated { customer: "ada".into(), total: 1.0 })
///         .given(b, OrderCreated { customer: "bob".into(), total: 2.0 })
///         .given(b, OrderShipped { tracking: "T-B".into() })
///         .when_handled(),
/// )
/// .then_read_model(|shipped| assert_eq!(shipped.ids, [b]));
/// ```
pub struct ProjectionScenario<P> {
    projection: P,
    history: History,
    typed: bool,
}

impl<P: Projection> Debug for ProjectionScenario<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionScenario")
            .field("projection", &self.projection.name())
            .field("events", &self.history.events().len())
            .field("typed", &self.typed)
            .finish()
    }
}

impl<P: Projection> ProjectionScenario<P> {
    /// A scenario for `projection` (in its initial state) with no events yet.
    pub fn new(projection: P) -> Self {
        ProjectionScenario {
            projection,
            history: History::new(),
            typed: false,
        }
    }

    /// Adds `event` to the stream of aggregate `aggregate_id`; its version and global
    /// position follow the events given before.
    pub fn given<E: DomainEvent>(mut self, aggregate_id: Uuid, event: E) -> Self {
        self.history.push(aggregate_id, event);
        self
    }

    /// Uses `history` as the given events (replacing any given before).
    pub fn given_history(mut self, history: History) -> Self {
        self.history = history;
        self
    }

    /// Hands events over with their typed, in-memory payloads (as the in-memory store
    /// does) instead of JSON.
    pub fn typed(mut self) -> Self {
        self.typed = true;
        self
    }

    /// The events given so far.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Feeds every given event to the projection, in order, stopping at the first error.
    pub async fn when_handled(mut self) -> ProjectionOutcome<P> {
        let mut failure = None;
        for (index, event) in self.history.events().iter().enumerate() {
            let event = if self.typed {
                event.clone()
            } else {
                match stored_form(event) {
                    Ok(event) => event,
                    Err(error) => {
                        failure = Some(Failure::new(index, event, error));
                        break;
                    }
                }
            };
            if let Err(error) = self.projection.handle(&event).await {
                failure = Some(Failure::new(index, &event, error));
                break;
            }
        }
        ProjectionOutcome {
            projection: self.projection,
            handled: failure
                .as_ref()
                .map_or(self.history.events().len(), |f| f.index),
            failure,
        }
    }
}

/// The event with its payload as JSON text, as a database returns it.
fn stored_form(event: &RecordedEvent) -> Result<RecordedEvent, BoxError> {
    let json = event.payload.to_json()?.into_owned();
    Ok(RecordedEvent {
        envelope: event.envelope.clone(),
        payload: Payload::Json(json),
        position: event.position,
        stored_at: event.stored_at,
    })
}

struct Failure {
    index: usize,
    name: String,
    aggregate: String,
    error: BoxError,
}

impl Failure {
    fn new(index: usize, event: &RecordedEvent, error: BoxError) -> Self {
        Failure {
            index,
            name: event.name().to_owned(),
            aggregate: format!(
                "{} {} version {}",
                event.envelope.aggregate_type,
                event.aggregate_id(),
                event.aggregate_version()
            ),
            error,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event [{}] {} ({}) failed: {}",
            self.index, self.name, self.aggregate, self.error
        )
    }
}

/// What a projection did with the given events, to check with the `then_*` methods
/// (which panic at your line when the check fails, and chain).
pub struct ProjectionOutcome<P> {
    projection: P,
    handled: usize,
    failure: Option<Failure>,
}

impl<P: Projection> Debug for ProjectionOutcome<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionOutcome")
            .field("projection", &self.projection.name())
            .field("handled", &self.handled)
            .field("failure", &self.failure.as_ref().map(ToString::to_string))
            .finish()
    }
}

impl<P: Projection> ProjectionOutcome<P> {
    /// The projection after the events.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// Consumes the outcome, returning the projection.
    pub fn into_projection(self) -> P {
        self.projection
    }

    /// How many events were handled without error.
    pub fn handled(&self) -> usize {
        self.handled
    }

    #[track_caller]
    fn fail(&self, message: impl fmt::Display) -> ! {
        panic!(
            "projection `{}` scenario failed: {message}",
            self.projection.name()
        )
    }

    /// Checks that every event was handled, then calls `check` with the projection (the
    /// read model); put your assertions in it.
    #[track_caller]
    pub fn then_read_model(self, check: impl FnOnce(&P)) -> Self {
        if let Some(failure) = &self.failure {
            self.fail(failure);
        }
        check(&self.projection);
        self
    }

    /// Checks that handling failed at an event and that the error's message contains
    /// `needle`.
    #[track_caller]
    pub fn then_error_contains(self, needle: &str) -> Self {
        match &self.failure {
            None => self.fail(format_args!(
                "expected an error containing {needle:?}, but all {} events were handled",
                self.handled
            )),
            Some(failure) if !failure.error.to_string().contains(needle) => self.fail(
                format_args!("the error does not contain {needle:?}: {failure}"),
            ),
            Some(_) => self,
        }
    }
}
