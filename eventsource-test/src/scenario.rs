//! Given events, when a command, then events, an error, or a state: the method-chaining
//! form of [`given_when_then!`](crate::given_when_then).

use std::fmt::{self, Debug, Display};
use std::sync::Arc;

use eventsource::{
    Aggregate, AggregateEvent, AggregateRoot, DomainEvent, EventContext, Handles, IntoEvents,
    Payload, RecordedEvent, UncommittedEvent,
};
use uuid::Uuid;

use crate::builder::EventBuilder;
use crate::clock::TestClock;
use crate::diff;

/// Compares the state after a command with the state rebuilt from every event.
pub type StateEq<A> = fn(&A, &A) -> bool;

/// A test of one command on one aggregate: given its past events, when a command runs,
/// then check what it decided.
///
/// Given events need no ids, versions or timestamps: they are numbered for you and
/// stamped by a [`TestClock`], so every run records the same stream. The aggregate is
/// loaded from them as a repository would load it, the command runs on it, and the
/// [`Outcome`]'s `then_*` methods check the result. Failures are reported at the line
/// of the `then_*` call and name the event that differs.
///
/// ```
/// # use eventsource_test::__doc_order::*;
/// use eventsource_test::Scenario;
///
/// Scenario::<Order>::new()
///     .given(OrderCreated { customer: "ada".into(), total: 50.0 })
///     .when(|order| order.ship("TRACK-123"))
///     .then_events([OrderShipped { tracking: "TRACK-123".into() }])
///     .then_state(|order| assert_eq!(order.status, Status::Shipped));
///
/// Scenario::<Order>::new()
///     .given(OrderCreated { customer: "ada".into(), total: 50.0 })
///     .given(OrderShipped { tracking: "TRACK-123".into() })
///     .when(|order| order.ship("TRACK-456"))
///     .then_error(OrderError::NotCreated);
/// ```
///
/// # The replay check
///
/// Every successful `then_*` also checks that the state after the command equals the
/// state rebuilt from the serialized form of all events (given and new), as a database
/// would return them. That catches a command that changes state outside an event
/// handler, a handler that is not deterministic, and an event whose serde form loses
/// data. It needs `A: PartialEq`; without it, or to turn it off, start from
/// [`Scenario::without_replay_check`] or [`Scenario::with_replay_check`].
pub struct Scenario<A: Aggregate> {
    builder: EventBuilder<A>,
    clock: Arc<TestClock>,
    context: EventContext,
    replay: Option<StateEq<A>>,
}

impl<A: Aggregate + Debug> Debug for Scenario<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scenario")
            .field("aggregate_id", &self.builder.aggregate_id())
            .field("given", &self.builder.version())
            .field("state", self.builder.state())
            .field("replay_check", &self.replay.is_some())
            .finish()
    }
}

impl<A: Aggregate + PartialEq> Default for Scenario<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Aggregate + PartialEq> Scenario<A> {
    /// A scenario for a new aggregate, with the replay check on.
    pub fn new() -> Self {
        Self::with_replay_check(|a, b| a == b)
    }
}

impl<A: Aggregate> Scenario<A> {
    /// A scenario whose replay check compares states with `eq` (for aggregates that are
    /// not `PartialEq`, or to compare only some fields).
    pub fn with_replay_check(eq: StateEq<A>) -> Self {
        Self::build(Some(eq))
    }

    /// A scenario without the replay check.
    pub fn without_replay_check() -> Self {
        Self::build(None)
    }

    fn build(replay: Option<StateEq<A>>) -> Self {
        let clock = Arc::new(TestClock::new());
        // The aggregate id comes from its own namespace, so it is stable and never equal
        // to an event id.
        let id = TestClock::new().with_namespace(0xA66).id(1);
        Scenario {
            builder: EventBuilder::for_aggregate(id).with_clock(clock.clone()),
            clock,
            context: EventContext::default(),
            replay,
        }
    }

    /// Uses `id` as the aggregate id (call it before `given`: given events are already
    /// numbered for the previous id).
    ///
    /// # Panics
    /// When events were already given.
    #[track_caller]
    pub fn with_id(mut self, id: Uuid) -> Self {
        assert!(
            self.builder.version() == 0,
            "call `with_id` before `given`: {} event(s) were already given to aggregate {}",
            self.builder.version(),
            self.builder.aggregate_id()
        );
        self.builder = EventBuilder::for_aggregate(id).with_clock(self.clock.clone());
        self
    }

    /// Stamps `context` on the events given from now on and on the command's events.
    pub fn with_context(mut self, context: EventContext) -> Self {
        self.builder = self.builder.with_context(context.clone());
        self.context = context;
        self
    }

    /// Adds past events: one event, the aggregate's event enum, or a `Vec`, `Option` or
    /// tuple of those. Call it once per event, or not at all for a new aggregate.
    pub fn given(mut self, events: impl IntoEvents<A>) -> Self {
        self.builder.push(events);
        self
    }

    /// Adds one past event. Like [`given`](Self::given), with an error that names the
    /// aggregate when it does not handle `E`.
    pub fn given_event<E: DomainEvent>(mut self, event: E) -> Self
    where
        A: Handles<E>,
    {
        self.builder.push(event);
        self
    }

    /// The aggregate id.
    pub fn aggregate_id(&self) -> Uuid {
        self.builder.aggregate_id()
    }

    /// The clock that stamps given and new events.
    pub fn clock(&self) -> &Arc<TestClock> {
        &self.clock
    }

    /// Loads the aggregate from the given events, as a repository would.
    fn load(&self) -> (AggregateRoot<A>, Vec<RecordedEvent>, Option<String>) {
        let history = self.builder.recorded();
        let mut root = AggregateRoot::<A>::new(self.builder.aggregate_id());
        root.set_clock(self.clock.clone());
        root.set_context(self.context.clone());
        let failure = root
            .load_from_history(&history)
            .err()
            .map(|error| format!("the given events do not load into a `{}`: {error}", A::TYPE));
        (root, history, failure)
    }

    /// Runs a command on the aggregate's state: `command` decides which events happen
    /// (one event, the event enum, a `Vec`, `Option` or tuple, or `()`) or fails with
    /// your error.
    #[must_use = "an outcome checks nothing until you call a `then_*` method"]
    pub fn when<R, Err>(self, command: impl FnOnce(&A) -> Result<R, Err>) -> Outcome<A, Err>
    where
        R: IntoEvents<A>,
    {
        let (mut root, history, failure) = self.load();
        let result = if failure.is_some() {
            Ok(())
        } else {
            root.execute(command)
        };
        Outcome::new(root, history, result, failure, self.replay)
    }

    /// Runs a command on the aggregate root itself (for several commands in a row, or to
    /// record events directly); the root's uncommitted events are the outcome.
    #[must_use = "an outcome checks nothing until you call a `then_*` method"]
    pub fn when_root<Err>(
        self,
        command: impl FnOnce(&mut AggregateRoot<A>) -> Result<(), Err>,
    ) -> Outcome<A, Err> {
        let (mut root, history, failure) = self.load();
        let result = if failure.is_some() {
            Ok(())
        } else {
            command(&mut root)
        };
        Outcome::new(root, history, result, failure, self.replay)
    }

    /// Runs an async command. Await it inside an async test; from synchronous code run
    /// it with [`block_on`](crate::block_on).
    ///
    /// ```
    /// # use eventsource_test::__doc_order::*;
    /// use eventsource_test::{block_on, Scenario};
    ///
    /// async fn tracking_number() -> String { "TRACK-9".into() }
    ///
    /// block_on(
    ///     Scenario::<Order>::new()
    ///         .given(OrderCreated { customer: "ada".into(), total: 50.0 })
    ///         .when_async(async |order| order.ship(&tracking_number().await)),
    /// )
    /// .then_events([OrderShipped { tracking: "TRACK-9".into() }]);
    /// ```
    pub async fn when_async<F, R, Err>(self, command: F) -> Outcome<A, Err>
    where
        F: AsyncFnOnce(&A) -> Result<R, Err>,
        R: IntoEvents<A>,
    {
        let (mut root, history, failure) = self.load();
        let result = if failure.is_some() {
            Ok(())
        } else {
            match command(root.state()).await {
                Ok(events) => {
                    events.record_into(&mut root);
                    Ok(())
                }
                Err(error) => Err(error),
            }
        };
        Outcome::new(root, history, result, failure, self.replay)
    }
}

/// What a command did, to check with the `then_*` methods.
///
/// Each `then_*` method panics with a message that names the difference, at the line
/// that called it, and returns the outcome so checks chain.
pub struct Outcome<A: Aggregate, Err> {
    root: AggregateRoot<A>,
    history: Vec<RecordedEvent>,
    result: Result<(), Err>,
    setup_failure: Option<String>,
    replay: Option<StateEq<A>>,
}

impl<A: Aggregate + Debug, Err: Debug> Debug for Outcome<A, Err> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcome")
            .field("result", &self.result)
            .field("events", &self.root.uncommitted())
            .field("state", self.root.state())
            .finish()
    }
}

fn name<E: AggregateEvent>(event: &E) -> String {
    event.event_name().to_owned()
}

impl<A: Aggregate, Err> Outcome<A, Err> {
    fn new(
        root: AggregateRoot<A>,
        history: Vec<RecordedEvent>,
        result: Result<(), Err>,
        setup_failure: Option<String>,
        replay: Option<StateEq<A>>,
    ) -> Self {
        Outcome {
            root,
            history,
            result,
            setup_failure,
            replay,
        }
    }

    /// The state after the command (after the given events if it failed).
    pub fn state(&self) -> &A {
        self.root.state()
    }

    /// The aggregate root after the command.
    pub fn root(&self) -> &AggregateRoot<A> {
        &self.root
    }

    /// Consumes the outcome, returning the root.
    pub fn into_root(self) -> AggregateRoot<A> {
        self.root
    }

    /// What the command returned.
    pub fn result(&self) -> &Result<(), Err> {
        &self.result
    }

    /// The given events, as stored.
    pub fn history(&self) -> &[RecordedEvent] {
        &self.history
    }

    /// The events the command recorded, with their envelopes (for snapshots).
    pub fn uncommitted(&self) -> &[UncommittedEvent] {
        self.root.uncommitted()
    }

    /// The events the command recorded, as the aggregate's event enum.
    ///
    /// # Panics
    /// When a recorded event is not one the aggregate handles (which `record` prevents).
    #[track_caller]
    pub fn events(&self) -> Vec<A::Event> {
        match self.root.uncommitted_events() {
            Ok(events) => events,
            Err(error) => panic!("a recorded event does not decode: {error}"),
        }
    }

    #[track_caller]
    fn fail(&self, message: impl Display) -> ! {
        panic!(
            "scenario on {} {} failed: {message}",
            A::TYPE,
            self.root.id()
        )
    }

    #[track_caller]
    fn check_setup(&self) {
        if let Some(failure) = &self.setup_failure {
            self.fail(failure);
        }
    }
}

impl<A: Aggregate + Debug, Err: Debug> Outcome<A, Err> {
    /// Checks that the command succeeded and returns its events.
    #[track_caller]
    fn succeeded(&self, expectation: &str) -> Vec<A::Event> {
        self.check_setup();
        if let Err(error) = &self.result {
            self.fail(format_args!(
                "expected {expectation}, but the command failed with {error:?}"
            ));
        }
        let events = self.events();
        if let Some(message) = self.replay_failure() {
            self.fail(message);
        }
        events
    }

    /// Rebuilds the state from the serialized form of every event and compares it with
    /// the state after the command.
    fn replay_failure(&self) -> Option<String> {
        let eq = self.replay?;
        let mut rebuilt = AggregateRoot::<A>::new(self.root.id());
        let given = self.history.iter().map(|e| (&e.envelope, &e.payload));
        let new = self
            .root
            .uncommitted()
            .iter()
            .map(|e| (&e.envelope, &e.payload));
        for (index, (envelope, payload)) in given.chain(new).enumerate() {
            let json = match payload.to_json() {
                Ok(json) => json.into_owned(),
                Err(error) => {
                    return Some(format!(
                        "replay check: event {} (version {}) does not serialize: {error}",
                        envelope.event_name, envelope.aggregate_version
                    ));
                }
            };
            let stored = RecordedEvent {
                envelope: envelope.clone(),
                payload: Payload::Json(json),
                position: index as u64 + 1,
                stored_at: envelope.occurred_at,
            };
            if let Err(error) = rebuilt.apply_historical(&stored) {
                return Some(format!(
                    "replay check: the stored form of event {} (version {}) does not replay: {error}",
                    envelope.event_name, envelope.aggregate_version
                ));
            }
        }
        if eq(rebuilt.state(), self.root.state()) {
            return None;
        }
        Some(format!(
            "replay check: the state after the command differs from the state rebuilt from \
             all {} events (given and new, through their serialized form)\n\
             \x20 a command changed state outside an event handler, a handler is not \
             deterministic, or an event loses data in serde\n\
             \x20 diff (- after the command, + rebuilt from events):\n{}\n\
             \x20 (to turn the check off: `Scenario::without_replay_check()` or \
             `replay_check: false`)",
            rebuilt.version(),
            diff::indent(
                &diff::line_diff(
                    &diff::pretty(self.root.state()),
                    &diff::pretty(rebuilt.state())
                ),
                4
            )
        ))
    }

    /// Checks that the command succeeded and recorded exactly `expected`, compared by
    /// value (ids, versions and timestamps are not compared). Pass the aggregate's event
    /// enum, or event types that convert into it (`[OrderShipped { .. }]`).
    #[track_caller]
    pub fn then_events<E>(self, expected: impl IntoIterator<Item = E>) -> Self
    where
        E: Into<A::Event>,
    {
        let expected: Vec<A::Event> = expected.into_iter().map(Into::into).collect();
        let actual = self.succeeded(&format!(
            "{} [{}]",
            diff::count(expected.len()),
            names(&expected)
        ));
        if let Some(message) =
            diff::sequence_mismatch("the command's events", &expected, &actual, name)
        {
            self.fail(message);
        }
        self
    }

    /// Checks that the command succeeded and recorded exactly one event, `expected`.
    #[track_caller]
    pub fn then_event<E: DomainEvent>(self, expected: E) -> Self
    where
        A: Handles<E>,
    {
        let expected = crate::__private::expected::<A, E>(expected);
        self.then_events([expected])
    }

    /// Checks that the command succeeded and recorded nothing.
    #[track_caller]
    pub fn then_no_events(self) -> Self {
        let actual = self.succeeded("no events");
        if !actual.is_empty() {
            self.fail(format_args!(
                "expected no events, but the command recorded {}:\n{}",
                diff::count(actual.len()),
                diff::numbered(&actual, name)
            ));
        }
        self
    }

    /// Checks that the command succeeded and its events satisfy `predicate`.
    #[track_caller]
    pub fn then_events_match(self, predicate: impl FnOnce(&[A::Event]) -> bool) -> Self {
        self.then_events_matching(predicate, "the predicate")
    }

    #[doc(hidden)]
    #[track_caller]
    pub fn then_events_matching(
        self,
        predicate: impl FnOnce(&[A::Event]) -> bool,
        description: &str,
    ) -> Self {
        let actual = self.succeeded(&format!("events matching {description}"));
        if !predicate(&actual) {
            self.fail(format_args!(
                "the command's events do not match {description}; it recorded {}:\n{}",
                diff::count(actual.len()),
                diff::numbered(&actual, name)
            ));
        }
        self
    }

    /// Calls `check` with the state after the command (after the given events if the
    /// command failed); put your assertions in it. On success the replay check runs too.
    #[track_caller]
    pub fn then_state(self, check: impl FnOnce(&A)) -> Self {
        self.check_setup();
        if self.result.is_ok()
            && let Some(message) = self.replay_failure()
        {
            self.fail(message);
        }
        check(self.root.state());
        self
    }

    /// Checks that the state after the command equals `expected`.
    #[track_caller]
    pub fn then_state_eq(self, expected: &A) -> Self
    where
        A: PartialEq,
    {
        self.check_setup();
        if self.root.state() != expected {
            self.fail(format_args!(
                "the state differs from the expected one\n  diff (- expected, + actual):\n{}",
                diff::indent(
                    &diff::line_diff(&diff::pretty(expected), &diff::pretty(self.root.state())),
                    4
                )
            ));
        }
        self.then_state(|_| {})
    }

    /// Checks that the command failed (recording nothing) and returns the error.
    #[track_caller]
    fn failed(&self, expectation: &str) -> &Err {
        self.check_setup();
        match &self.result {
            Err(error) => {
                if self.root.has_uncommitted() {
                    self.fail(format_args!(
                        "the command failed with {error:?} but still recorded {}",
                        diff::count(self.root.uncommitted().len())
                    ));
                }
                error
            }
            Ok(()) => {
                let events = self.events();
                self.fail(format_args!(
                    "expected {expectation}, but the command succeeded and recorded {}:\n{}",
                    diff::count(events.len()),
                    diff::numbered(&events, name)
                ))
            }
        }
    }

    /// Checks that the command failed with `expected`.
    #[track_caller]
    pub fn then_error(self, expected: Err) -> Self
    where
        Err: PartialEq,
    {
        let error = self.failed(&format!("the error {expected:?}"));
        if *error != expected {
            self.fail(format_args!(
                "the command failed with another error\n  expected: {expected:?}\n  actual:   {error:?}"
            ));
        }
        self
    }

    /// Checks that the command failed with an error for which `predicate` holds (for
    /// example `|e| matches!(e, OrderError::NotCreated)`).
    #[track_caller]
    pub fn then_error_matches(self, predicate: impl FnOnce(&Err) -> bool) -> Self {
        self.then_error_matching(predicate, "the predicate")
    }

    #[doc(hidden)]
    #[track_caller]
    pub fn then_error_matching(
        self,
        predicate: impl FnOnce(&Err) -> bool,
        description: &str,
    ) -> Self {
        let error = self.failed(&format!("an error matching {description}"));
        if !predicate(error) {
            self.fail(format_args!(
                "the command failed with {error:?}, which does not match {description}"
            ));
        }
        self
    }

    /// Checks that the command failed with an error whose message contains `needle`.
    #[track_caller]
    pub fn then_error_contains(self, needle: &str) -> Self
    where
        Err: Display,
    {
        let error = self.failed(&format!("an error containing {needle:?}"));
        let message = error.to_string();
        if !message.contains(needle) {
            self.fail(format_args!(
                "the command failed with {error:?}, whose message {message:?} does not contain {needle:?}"
            ));
        }
        self
    }
}

fn names<E: AggregateEvent>(events: &[E]) -> String {
    events.iter().map(name).collect::<Vec<_>>().join(", ")
}
