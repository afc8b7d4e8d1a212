//! `given_when_then!`: a scenario written as a specification.

/// A scenario on one aggregate, written as a specification: given past events, when a
/// command runs, then these events (or this error) and optionally this state.
///
/// ```
/// # use eventsource_test::__doc_order::*;
/// use eventsource_test::given_when_then;
///
/// given_when_then! {
///     aggregate: Order,
///     given: [OrderCreated { customer: "ada".into(), total: 50.0 }],
///     when: |order| order.ship("TRACK-123"),
///     then: [OrderShipped { tracking: "TRACK-123".into() }],
///     state: |order| assert_eq!(order.status, Status::Shipped),
/// }
///
/// given_when_then! {
///     aggregate: Order,
///     given: [
///         OrderCreated { customer: "ada".into(), total: 50.0 },
///         OrderShipped { tracking: "TRACK-123".into() },
///     ],
///     when: |order| order.ship("TRACK-456"),
///     then: error matches OrderError::NotCreated,
/// }
/// ```
///
/// The parts, in this order (*optional* ones in italics):
///
/// | part | form |
/// |---|---|
/// | `aggregate:` | the aggregate type |
/// | *`id:`* | the aggregate id (default: a fixed id) |
/// | *`context:`* | an [`EventContext`](eventsource::EventContext) stamped on given and new events |
/// | *`replay_check:`* | `false` turns off the replay check (see [`Scenario`](crate::Scenario)); it needs `PartialEq` on the aggregate when on |
/// | `given:` | `[event, ...]`: past events, no ids or versions; `[]` for a new aggregate |
/// | `when:` | `\|state\| command`: returns `Result<events, YourError>` |
/// | or `when:` | `async \|state\| command.await`: an async command (runs in or out of a tokio test, see [`block_on`](crate::block_on)) |
/// | or `when_root:` | `\|root\| ...`: commands on the [`AggregateRoot`](eventsource::AggregateRoot) itself |
/// | `then:` | `[event, ...]`: exactly these events, by value (ids, versions, timestamps ignored); `[]` for none |
/// | or `then:` | `error(value)`, `error matches Pattern`, `error contains "text"` |
/// | or `then:` | `events matching \|events\| predicate`: a predicate over the aggregate's event enum |
/// | *`state:`* | `\|state\| { assertions }` on the state afterwards |
///
/// Failures are reported at the macro's line, and name the event that differs (its
/// index, the expected and the actual value). The macro expands to the
/// [`Scenario`](crate::Scenario) calls you would write by hand.
///
/// # Projections
///
/// With `projection:` first, the scenario feeds events of any aggregates (in the order
/// listed, as `(aggregate_id, event)`) to a [`Projection`](eventsource::projection::Projection)
/// in their stored form, then checks its read model (see
/// [`ProjectionScenario`](crate::ProjectionScenario)):
///
/// ```
/// # use eventsource_test::__doc_order::*;
/// # use eventsource::{projection::Projection, BoxError, RecordedEvent};
/// # #[derive(Default)]
/// # struct Revenue { total: f64 }
/// # #[async_trait::async_trait]
/// # impl Projection for Revenue {
/// #     fn name(&self) -> &str { "revenue" }
/// #     async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
/// #         if let Some(created) = event.as_event::<OrderCreated>()? { self.total += created.total; }
/// #         Ok(())
/// #     }
/// # }
/// use eventsource_test::given_when_then;
/// use uuid::Uuid;
///
/// let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
/// given_when_then! {
///     projection: Revenue::default(),
///     given: [
///         (a, OrderCreated { customer: "ada".into(), total: 10.0 }),
///         (b, OrderCreated { customer: "bob".into(), total: 5.0 }),
///         (a, OrderShipped { tracking: "T-1".into() }),
///     ],
///     then: |revenue| assert_eq!(revenue.total, 15.0),
/// }
/// ```
///
/// `then:` takes a closure over the projection, or `error contains "text"` when handling
/// must fail.
#[macro_export]
macro_rules! given_when_then {
    (aggregate: $agg:ty, $($rest:tt)*) => {
        $crate::__given_when_then!(@id [$agg] $($rest)*)
    };
    (projection: $projection:expr, given: [$(($id:expr, $event:expr)),* $(,)?], then: error contains $needle:expr $(,)?) => {{
        let outcome = $crate::block_on(
            $crate::ProjectionScenario::new($projection)$(.given($id, $event))*.when_handled(),
        );
        let _ = outcome.then_error_contains($needle);
    }};
    (projection: $projection:expr, given: [$(($id:expr, $event:expr)),* $(,)?], then: $check:expr $(,)?) => {{
        let outcome = $crate::block_on(
            $crate::ProjectionScenario::new($projection)$(.given($id, $event))*.when_handled(),
        );
        let _ = outcome.then_read_model($check);
    }};
    (projection: $($rest:tt)*) => {
        ::core::compile_error!(
            "a projection scenario reads `projection: value, given: [(aggregate_id, event), ...], then: |projection| { assertions }` (or `then: error contains \"text\"`)"
        )
    };
    ($($other:tt)*) => {
        ::core::compile_error!(
            "`given_when_then!` starts with `aggregate: YourAggregate,` (or `projection: value,`) followed by `given: [events],`, `when: |state| command,` and `then: ...`"
        )
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __given_when_then {
    // Options, each optional, in this order: id, context, replay_check.
    (@id [$agg:ty] id: $id:expr, $($rest:tt)*) => {
        $crate::__given_when_then!(@context [$agg] [(with_id $id)] $($rest)*)
    };
    (@id [$agg:ty] $($rest:tt)*) => {
        $crate::__given_when_then!(@context [$agg] [] $($rest)*)
    };
    (@context [$agg:ty] [$($opt:tt)*] context: $context:expr, $($rest:tt)*) => {
        $crate::__given_when_then!(@replay [$agg] [$($opt)* (with_context $context)] $($rest)*)
    };
    (@context [$agg:ty] $opts:tt $($rest:tt)*) => {
        $crate::__given_when_then!(@replay [$agg] $opts $($rest)*)
    };
    (@replay [$agg:ty] $opts:tt replay_check: false, $($rest:tt)*) => {
        $crate::__given_when_then!(@given [$agg] [unchecked] $opts $($rest)*)
    };
    (@replay [$agg:ty] $opts:tt replay_check: true, $($rest:tt)*) => {
        $crate::__given_when_then!(@given [$agg] [replay_checked] $opts $($rest)*)
    };
    (@replay [$agg:ty] $opts:tt replay_check: $($rest:tt)*) => {
        ::core::compile_error!("`replay_check:` takes `true` or `false`, followed by a comma")
    };
    (@replay [$agg:ty] $opts:tt $($rest:tt)*) => {
        $crate::__given_when_then!(@given [$agg] [replay_checked] $opts $($rest)*)
    };

    (@given $agg:tt $ctor:tt $opts:tt given: [$($given:expr),* $(,)?], $($rest:tt)*) => {
        $crate::__given_when_then!(@when $agg $ctor $opts [$($given),*] $($rest)*)
    };
    (@given $agg:tt $ctor:tt $opts:tt $($rest:tt)*) => {
        ::core::compile_error!(
            "expected `given: [events],` (`given: [],` for a new aggregate) after `aggregate:` and the optional `id:`, `context:`, `replay_check:` (in that order)"
        )
    };

    (@when $agg:tt $ctor:tt $opts:tt $given:tt when: async $(move)? |$state:ident : $ty:ty| $body:expr, $($rest:tt)*) => {
        $crate::__given_when_then!(@then $agg $ctor $opts $given (async [$state: $ty] $body) $($rest)*)
    };
    (@when $agg:tt $ctor:tt $opts:tt $given:tt when: async $(move)? |$state:pat_param| $body:expr, $($rest:tt)*) => {
        $crate::__given_when_then!(@then $agg $ctor $opts $given (async [$state] $body) $($rest)*)
    };
    (@when $agg:tt $ctor:tt $opts:tt $given:tt when: $command:expr, $($rest:tt)*) => {
        $crate::__given_when_then!(@then $agg $ctor $opts $given (sync $command) $($rest)*)
    };
    (@when $agg:tt $ctor:tt $opts:tt $given:tt when_root: $command:expr, $($rest:tt)*) => {
        $crate::__given_when_then!(@then $agg $ctor $opts $given (root $command) $($rest)*)
    };
    (@when $agg:tt $ctor:tt $opts:tt $given:tt $($rest:tt)*) => {
        ::core::compile_error!(
            "expected `when: |state| command,` after `given: [...]` (or `when: async |state| ...,` for an async command, or `when_root: |root| ...,`)"
        )
    };

    (@then $agg:tt $ctor:tt $opts:tt $given:tt $when:tt then: [$($event:expr),* $(,)?] $(, $($rest:tt)*)?) => {
        $crate::__given_when_then!(@state $agg $ctor $opts $given $when (events $($event),*) $($($rest)*)?)
    };
    (@then $agg:tt $ctor:tt $opts:tt $given:tt $when:tt then: error($error:expr) $(, $($rest:tt)*)?) => {
        $crate::__given_when_then!(@state $agg $ctor $opts $given $when (error $error) $($($rest)*)?)
    };
    (@then $agg:tt $ctor:tt $opts:tt $given:tt $when:tt then: error matches $pattern:pat $(, $($rest:tt)*)?) => {
        $crate::__given_when_then!(@state $agg $ctor $opts $given $when (pattern $pattern) $($($rest)*)?)
    };
    (@then $agg:tt $ctor:tt $opts:tt $given:tt $when:tt then: error contains $needle:expr $(, $($rest:tt)*)?) => {
        $crate::__given_when_then!(@state $agg $ctor $opts $given $when (contains $needle) $($($rest)*)?)
    };
    (@then $agg:tt $ctor:tt $opts:tt $given:tt $when:tt then: events matching $predicate:expr $(, $($rest:tt)*)?) => {
        $crate::__given_when_then!(@state $agg $ctor $opts $given $when (matching $predicate) $($($rest)*)?)
    };
    (@then $agg:tt $ctor:tt $opts:tt $given:tt $when:tt then: $($rest:tt)*) => {
        ::core::compile_error!(
            "`then:` takes `[events]` (`[]` for none), `error(value)`, `error matches Pattern`, `error contains \"text\"` or `events matching |events| predicate`"
        )
    };
    (@then $agg:tt $ctor:tt $opts:tt $given:tt $when:tt $($rest:tt)*) => {
        ::core::compile_error!("expected `then: ...` after `when: ...,`")
    };

    (@state $agg:tt $ctor:tt $opts:tt $given:tt $when:tt $then:tt) => {
        $crate::__given_when_then!(@run $agg $ctor $opts $given $when $then ())
    };
    (@state $agg:tt $ctor:tt $opts:tt $given:tt $when:tt $then:tt state: $check:expr $(,)?) => {
        $crate::__given_when_then!(@run $agg $ctor $opts $given $when $then ($check))
    };
    (@state $agg:tt $ctor:tt $opts:tt $given:tt $when:tt $then:tt $($rest:tt)*) => {
        ::core::compile_error!(
            "only `state: |state| { assertions }` may follow `then: ...`, and it ends the scenario"
        )
    };

    (@run [$agg:ty] [$ctor:ident] [$(($method:ident $arg:expr))*] [$($given:expr),*] $when:tt $then:tt ($($check:expr)?)) => {{
        let scenario = $crate::__private::$ctor::<$agg>();
        $(let scenario = scenario.$method($arg);)*
        $(let scenario = scenario.given_event($given);)*
        let outcome = $crate::__given_when_then!(@call scenario $when);
        let outcome = $crate::__given_when_then!(@check outcome [$agg] $then);
        $(let outcome = outcome.then_state($check);)?
        let _ = outcome;
    }};

    (@call $scenario:ident (sync $command:expr)) => {
        $scenario.when($command)
    };
    (@call $scenario:ident (root $command:expr)) => {
        $scenario.when_root($command)
    };
    (@call $scenario:ident (async [$($param:tt)*] $body:expr)) => {
        $crate::block_on($scenario.when_async(async |$($param)*| $body))
    };

    (@check $outcome:ident [$agg:ty] (events $($event:expr),*)) => {{
        let expected: ::std::vec::Vec<<$agg as $crate::__private::Aggregate>::Event> =
            ::std::vec![$($crate::__private::Expected::<$agg>::NEW.event($event)),*];
        $outcome.then_events(expected)
    }};
    (@check $outcome:ident [$agg:ty] (error $error:expr)) => {
        $outcome.then_error($error)
    };
    (@check $outcome:ident [$agg:ty] (pattern $pattern:pat)) => {
        $outcome.then_error_matching(
            |error| ::core::matches!(error, $pattern),
            ::core::concat!("`", ::core::stringify!($pattern), "`"),
        )
    };
    (@check $outcome:ident [$agg:ty] (contains $needle:expr)) => {
        $outcome.then_error_contains($needle)
    };
    (@check $outcome:ident [$agg:ty] (matching $predicate:expr)) => {
        $outcome.then_events_matching(
            $predicate,
            ::core::concat!("`", ::core::stringify!($predicate), "`"),
        )
    };
}
