//! Given / when / then for aggregates.
//!
//! ```
//! # use eventsource_test::Scenario;
//! # use eventsource_examples::{Order, OrderCreated, OrderShipped, OrderError};
//! # let customer_id = uuid::Uuid::nil();
//! Scenario::<Order>::given([OrderCreated { customer_id, total_amount: 50.0 }])
//!     .when(|order| order.ship("TRACK-123"))
//!     .then_events([OrderShipped { tracking_number: "TRACK-123".into() }]);
//!
//! Scenario::<Order>::given_nothing()
//!     .when(|order| order.ship("TRACK-123"))
//!     .then_error(OrderError::NotCreated);
//! ```
//!
//! Every check fails at the caller's line and says what differs (which event, expected
//! and actual) instead of dumping both lists. By default `when` also checks that the
//! state after the command equals the state rebuilt from all events, which catches
//! commands that change state outside handlers.

use std::fmt::{Debug, Display, Write as _};
use std::future::Future;
use std::sync::Arc;

use eventsource::{Aggregate, AggregateRoot, IntoEvents};
use uuid::Uuid;

use crate::clock::DeterministicClock;

/// A scenario: an aggregate with a history, about to receive a command.
pub struct Scenario<A: Aggregate> {
    id: Uuid,
    history: Vec<A::Event>,
    replay_check: bool,
}

/// What a command did: the events it recorded, or its error, and the resulting state.
pub struct Outcome<A: Aggregate, E> {
    history: Vec<A::Event>,
    result: Result<Vec<A::Event>, E>,
    root: AggregateRoot<A>,
}

impl<A: Aggregate> Scenario<A> {
    /// An aggregate whose history is `events`, oldest first (ids and versions are made up).
    pub fn given<I>(events: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<A::Event>,
    {
        Scenario {
            id: Uuid::from_u128(0x0000_0000_0000_7000_8000_0000_0000_0001),
            history: events.into_iter().map(Into::into).collect(),
            replay_check: true,
        }
    }

    /// A new aggregate with no history.
    pub fn given_nothing() -> Self {
        Self::given(std::iter::empty::<A::Event>())
    }

    /// Uses this aggregate id (the default is a fixed id).
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = id;
        self
    }

    /// Skips the replay check (for aggregates whose state is not `PartialEq`, use
    /// [`when_unchecked`](Self::when_unchecked) instead).
    pub fn without_replay_check(mut self) -> Self {
        self.replay_check = false;
        self
    }

    #[track_caller]
    fn root(&self) -> AggregateRoot<A> {
        let mut root = AggregateRoot::<A>::new(self.id);
        root.set_clock(Arc::new(DeterministicClock::new()));
        for event in self.history.iter().cloned() {
            root.record_event(event);
        }
        root.mark_committed();
        root
    }

    /// Runs a synchronous command on the state, checking replay.
    #[track_caller]
    pub fn when<R, E>(self, command: impl FnOnce(&A) -> Result<R, E>) -> Outcome<A, E>
    where
        R: IntoEvents<A>,
        A: PartialEq + Debug,
    {
        let check = self.replay_check;
        let outcome = self.when_unchecked(command);
        if check {
            outcome.check_replay();
        }
        outcome
    }

    /// Runs a synchronous command without the replay check.
    #[track_caller]
    pub fn when_unchecked<R, E>(self, command: impl FnOnce(&A) -> Result<R, E>) -> Outcome<A, E>
    where
        R: IntoEvents<A>,
    {
        let mut root = self.root();
        let result = root.execute(command).map(|()| Self::recorded(&root));
        Outcome {
            history: self.history,
            result,
            root,
        }
    }

    /// Runs an asynchronous command (one that awaits I/O before deciding), checking replay.
    /// Await it inside your async test; no runtime is started here.
    pub async fn when_async<R, E, F, Fut>(self, command: F) -> Outcome<A, E>
    where
        F: FnOnce(A) -> Fut,
        Fut: Future<Output = Result<R, E>>,
        R: IntoEvents<A>,
        A: PartialEq + Debug + Clone,
    {
        let check = self.replay_check;
        let mut root = self.root();
        let result = match command(root.state().clone()).await {
            Ok(events) => {
                events.record_into(&mut root);
                Ok(Self::recorded(&root))
            }
            Err(error) => Err(error),
        };
        let outcome = Outcome {
            history: self.history,
            result,
            root,
        };
        if check {
            outcome.check_replay();
        }
        outcome
    }

    fn recorded(root: &AggregateRoot<A>) -> Vec<A::Event> {
        // Uncommitted events were recorded through the typed API, so they convert back.
        root.uncommitted_events()
            .unwrap_or_else(|e| panic!("recorded events do not read back: {e}"))
    }
}

impl<A: Aggregate, E> Outcome<A, E> {
    /// The events the command recorded (empty on error).
    pub fn events(&self) -> &[A::Event] {
        self.result.as_ref().map_or(&[], Vec::as_slice)
    }

    /// The state after the command.
    pub fn state(&self) -> &A {
        self.root.state()
    }

    /// The root after the command (version, uncommitted events with their envelopes).
    pub fn root(&self) -> &AggregateRoot<A> {
        &self.root
    }

    /// The command's error, if it failed.
    pub fn error(&self) -> Option<&E> {
        self.result.as_ref().err()
    }

    #[track_caller]
    fn check_replay(&self)
    where
        A: PartialEq + Debug,
    {
        let mut rebuilt = A::default();
        for event in self.history.iter().chain(self.events()) {
            rebuilt.apply_event(event);
        }
        if &rebuilt != self.root.state() {
            panic!(
                "replay check failed: the state after the command differs from the state rebuilt from its events \
                 (does the command change state outside a #[handles] method?)\n  after the command: {:?}\n  rebuilt:           {:?}",
                self.root.state(),
                rebuilt
            );
        }
    }

    #[track_caller]
    fn recorded_or_fail(&self) -> &[A::Event]
    where
        E: Debug,
    {
        match &self.result {
            Ok(events) => events,
            Err(error) => panic!("expected the command to succeed, but it failed: {error:?}"),
        }
    }

    /// The command recorded exactly these events, in order (ids, versions and timestamps
    /// are not compared).
    #[track_caller]
    pub fn then_events<I>(self, expected: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<A::Event>,
        E: Debug,
    {
        let expected: Vec<A::Event> = expected.into_iter().map(Into::into).collect();
        if let Some(report) = diff_events(&expected, self.recorded_or_fail()) {
            panic!("{report}");
        }
        self
    }

    /// The command succeeded and recorded nothing.
    #[track_caller]
    pub fn then_no_events(self) -> Self
    where
        E: Debug,
    {
        let recorded = self.recorded_or_fail();
        if !recorded.is_empty() {
            panic!(
                "expected no events, but the command recorded {}:\n{}",
                recorded.len(),
                list(recorded)
            );
        }
        self
    }

    /// The recorded events satisfy `predicate` (for events with values you cannot predict).
    #[track_caller]
    pub fn then_events_match(
        self,
        description: &str,
        predicate: impl FnOnce(&[A::Event]) -> bool,
    ) -> Self
    where
        E: Debug,
    {
        let recorded = self.recorded_or_fail();
        if !predicate(recorded) {
            panic!(
                "expected events that {description}, but the command recorded:\n{}",
                list(recorded)
            );
        }
        self
    }

    #[track_caller]
    fn error_or_fail(&self) -> &E {
        match &self.result {
            Err(error) => error,
            Ok(events) => panic!(
                "expected the command to fail, but it succeeded and recorded:\n{}",
                list(events)
            ),
        }
    }

    /// The command failed with exactly this error.
    #[track_caller]
    pub fn then_error(self, expected: E) -> Self
    where
        E: PartialEq + Debug,
    {
        let error = self.error_or_fail();
        if *error != expected {
            panic!(
                "the command failed with another error\n  expected: {expected:?}\n  actual:   {error:?}"
            );
        }
        self
    }

    /// The command failed with an error that `predicate` accepts (use `matches!` for a
    /// pattern).
    #[track_caller]
    pub fn then_error_matches(self, description: &str, predicate: impl FnOnce(&E) -> bool) -> Self
    where
        E: Debug,
    {
        let error = self.error_or_fail();
        if !predicate(error) {
            panic!("expected an error that {description}, got {error:?}");
        }
        self
    }

    /// The command failed with an error whose message contains `text`.
    #[track_caller]
    pub fn then_error_contains(self, text: &str) -> Self
    where
        E: Display,
    {
        let message = self.error_or_fail().to_string();
        if !message.contains(text) {
            panic!("expected an error containing {text:?}, got {message:?}");
        }
        self
    }

    /// Asserts on the state after the command.
    #[track_caller]
    pub fn and_state(self, check: impl FnOnce(&A)) -> Self {
        check(self.root.state());
        self
    }
}

fn list<T: Debug>(events: &[T]) -> String {
    if events.is_empty() {
        return "  (none)".to_owned();
    }
    events
        .iter()
        .enumerate()
        .fold(String::new(), |mut out, (i, e)| {
            let _ = writeln!(out, "  [{i}] {e:?}");
            out
        })
}

/// Describes how `actual` differs from `expected`: the first differing index with both
/// sides, then what is missing or extra. `None` when they are equal.
pub fn diff_events<T: Debug + PartialEq>(expected: &[T], actual: &[T]) -> Option<String> {
    if expected == actual {
        return None;
    }
    let mut report = format!(
        "the command recorded other events than expected ({} expected, {} recorded)\n",
        expected.len(),
        actual.len()
    );
    if let Some(index) = expected.iter().zip(actual).position(|(e, a)| e != a) {
        let _ = write!(
            report,
            "  first difference at event [{index}]:\n    expected: {:?}\n    actual:   {:?}\n",
            expected[index], actual[index]
        );
    }
    if actual.len() < expected.len() {
        let _ = write!(report, "  missing:\n{}", list(&expected[actual.len()..]));
    } else if actual.len() > expected.len() {
        let _ = write!(report, "  unexpected:\n{}", list(&actual[expected.len()..]));
    }
    Some(report)
}
