//! The seed's test patterns written with `eventsource-test` (the event builder, the
//! aggregate helper, the given/when/then order lifecycle), every scenario form, the
//! diagnostics of failing scenarios (snapshotted, with the line they point at), event
//! snapshots and the replay check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use eventsource::{
    AggregateRoot, DomainEvent, EventContext, EventStore, ExpectedVersion, InMemoryEventStore,
    ReadAll,
};
use eventsource_examples::{
    Order, OrderCreated, OrderError, OrderEvent, OrderItemAdded, OrderShipped, Status,
};
use eventsource_test::{
    AggregateTestHelper, EventBuilder, EventSchemas, History, Scenario, TestClock,
    assert_event_schemas_snapshot, assert_events_snapshot, given_when_then,
};
use uuid::Uuid;

const CUSTOMER: Uuid = Uuid::from_u128(0xC0FFEE);

fn created(total_amount: f64) -> OrderCreated {
    OrderCreated {
        customer_id: CUSTOMER,
        total_amount,
    }
}

fn item(product_name: &str, quantity: u32, unit_price: f64) -> OrderItemAdded {
    OrderItemAdded {
        product_name: product_name.into(),
        quantity,
        unit_price,
    }
}

fn shipped(tracking_number: &str) -> OrderShipped {
    OrderShipped {
        tracking_number: tracking_number.into(),
    }
}

mod event_builder {
    use super::*;

    #[test]
    fn builds_a_history_without_hand_written_versions() {
        let builder = EventBuilder::<Order>::new()
            .event(created(0.0))
            .event(item("Widget", 2, 15.0))
            .event(item("Gadget", 1, 30.0));
        let history = builder.recorded();
        assert_eq!(
            history
                .iter()
                .map(|e| e.aggregate_version())
                .collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(
            history.iter().map(|e| e.position).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(
            history
                .iter()
                .all(|e| e.aggregate_id() == builder.aggregate_id())
        );

        let mut order = AggregateRoot::<Order>::new(builder.aggregate_id());
        order.load_from_history(&history).unwrap();
        assert_eq!(order.version(), 3);
        assert_eq!(order.state().items.len(), 2);
        assert_eq!(order.state().total_amount, 60.0);
        assert_eq!(
            order.state(),
            builder.state(),
            "the builder tracks the same state"
        );
    }

    #[test]
    fn a_built_root_continues_from_the_last_version() {
        let mut order = EventBuilder::<Order>::new()
            .event(created(10.0))
            .into_root();
        assert_eq!(order.version(), 1);
        assert!(!order.has_uncommitted(), "built events are history");
        order.execute(|o| o.ship("TRACK-1")).unwrap();
        assert_eq!(order.version(), 2);
        assert_eq!(order.uncommitted()[0].envelope.aggregate_version, 2);
    }

    #[tokio::test]
    async fn built_events_append_to_a_store_and_carry_the_context() {
        let id = Uuid::from_u128(42);
        let builder = EventBuilder::<Order>::for_aggregate(id)
            .with_context(EventContext::new().tenant("acme").actor("user:1"))
            .event((created(5.0), item("Widget", 1, 5.0)));
        let store = InMemoryEventStore::new();
        let result = store
            .append(
                "Order",
                id,
                ExpectedVersion::NoStream,
                &builder.uncommitted(),
            )
            .await
            .unwrap();
        assert_eq!(result.new_version, 2);
        let stored = store.read_stream("Order", id, 0).await.unwrap();
        assert!(
            stored
                .events
                .iter()
                .all(|e| e.envelope.context.tenant_id.as_deref() == Some("acme"))
        );
        assert_eq!(
            stored.events[1].decode::<OrderItemAdded>().unwrap(),
            item("Widget", 1, 5.0)
        );
    }

    #[test]
    fn the_same_builder_twice_gives_the_same_ids_and_times() {
        let build = || {
            EventBuilder::<Order>::for_aggregate(Uuid::from_u128(1))
                .event(created(1.0))
                .recorded()
        };
        let (a, b) = (build(), build());
        assert_eq!(a[0].event_id(), b[0].event_id());
        assert_eq!(a[0].envelope.occurred_at, b[0].envelope.occurred_at);
        assert_eq!(a[0].event_id(), TestClock::new().id(1));
    }
}

mod aggregate_helper {
    use super::*;

    #[tokio::test]
    async fn order_flow() {
        let orders = AggregateTestHelper::<Order>::new();
        let mut order = orders.create();
        order.execute(|o| o.create(CUSTOMER, 50.0)).unwrap();
        orders.save(&mut order).await.unwrap();

        let events = orders.events(order.id());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].name(), OrderCreated::NAME);
        assert_eq!(
            orders.typed_events(order.id()).unwrap(),
            [OrderEvent::from(created(50.0))]
        );
    }

    #[tokio::test]
    async fn an_aggregate_is_rebuilt_from_its_events() {
        let orders = AggregateTestHelper::<Order>::new();
        let mut order = orders.create();
        order.execute(|o| o.create(CUSTOMER, 0.0)).unwrap();
        orders.save(&mut order).await.unwrap();

        let mut order = orders.load(order.id()).await.unwrap();
        order.execute(|o| o.add_item("Widget", 2, 15.0)).unwrap();
        order.execute(|o| o.add_item("Gadget", 1, 30.0)).unwrap();
        orders.save(&mut order).await.unwrap();

        let loaded = orders.load(order.id()).await.unwrap();
        assert_eq!(loaded.version(), 3);
        assert_eq!(loaded.state().total_amount, 60.0);
        assert_eq!(loaded.state().items.len(), 2);
    }

    #[tokio::test]
    async fn concurrent_modifications_conflict() {
        let orders = AggregateTestHelper::<Order>::new();
        let mut order = orders.create();
        order.execute(|o| o.create(CUSTOMER, 50.0)).unwrap();
        orders.save(&mut order).await.unwrap();

        let mut first = orders.load(order.id()).await.unwrap();
        let mut second = orders.load(order.id()).await.unwrap();
        first.execute(|o| o.add_item("Item 1", 1, 10.0)).unwrap();
        orders.save(&mut first).await.unwrap();
        second.execute(|o| o.add_item("Item 2", 1, 20.0)).unwrap();
        let error = orders.save(&mut second).await.unwrap_err();
        let conflict = error.as_conflict().expect("a conflict");
        assert_eq!(
            (conflict.expected, conflict.actual),
            (ExpectedVersion::Exact(1), 2)
        );
    }

    #[tokio::test]
    async fn clear_empties_the_store_and_restarts_the_clock() {
        let orders = AggregateTestHelper::<Order>::new();
        let mut order = orders.create();
        let first_id = order.id();
        order.execute(|o| o.create(CUSTOMER, 1.0)).unwrap();
        orders.save(&mut order).await.unwrap();
        assert_eq!(orders.store().event_count(), 1);

        orders.clear();
        assert!(orders.events(first_id).is_empty());
        assert!(orders.load(first_id).await.unwrap_err().is_not_found());
        assert_eq!(
            orders.create().id(),
            first_id,
            "ids start again after clear"
        );
    }

    #[tokio::test]
    async fn two_helpers_record_identical_streams() {
        async fn run() -> Vec<(Uuid, Uuid, String)> {
            let orders = AggregateTestHelper::<Order>::new();
            let mut order = orders.create();
            order.execute(|o| o.create(CUSTOMER, 1.0)).unwrap();
            order.execute(|o| o.ship("T")).unwrap();
            orders.save(&mut order).await.unwrap();
            orders
                .events(order.id())
                .iter()
                .map(|e| {
                    (
                        e.aggregate_id(),
                        e.event_id(),
                        e.envelope.occurred_at.to_rfc3339(),
                    )
                })
                .collect()
        }
        assert_eq!(run().await, run().await);
    }
}

/// The seed's given/when/then order lifecycle, with the helper as the seed writes it and
/// with the scenario macro.
mod order_lifecycle {
    use super::*;

    #[tokio::test]
    async fn an_order_can_be_shipped_after_creation_through_the_repository() {
        let orders = AggregateTestHelper::<Order>::new();
        // Given an order that has been created
        let mut order = orders.create();
        order.execute(|o| o.create(CUSTOMER, 100.0)).unwrap();
        orders.save(&mut order).await.unwrap();
        // When the order is shipped
        let mut loaded = orders.load(order.id()).await.unwrap();
        loaded.execute(|o| o.ship("TRACK-123")).unwrap();
        orders.save(&mut loaded).await.unwrap();
        // Then it is shipped with its tracking number
        let order = orders.load(order.id()).await.unwrap();
        assert_eq!(order.state().status, Status::Shipped);
        assert_eq!(order.state().tracking_number.as_deref(), Some("TRACK-123"));
        assert_eq!(order.version(), 2);
    }

    #[test]
    fn an_order_can_be_shipped_after_creation() {
        given_when_then! {
            aggregate: Order,
            given: [created(100.0)],
            when: |order| order.ship("TRACK-123"),
            then: [shipped("TRACK-123")],
            state: |order| {
                assert_eq!(order.status, Status::Shipped);
                assert_eq!(order.tracking_number.as_deref(), Some("TRACK-123"));
            },
        }
    }

    #[test]
    fn an_order_cannot_be_shipped_twice() {
        given_when_then! {
            aggregate: Order,
            given: [created(50.0), shipped("TRACK-123")],
            when: |order| order.ship("TRACK-456"),
            then: error contains "must be created",
        }
        given_when_then! {
            aggregate: Order,
            given: [created(50.0), shipped("TRACK-123")],
            when: |order| order.ship("TRACK-456"),
            then: error(OrderError::NotCreated),
            state: |order| assert_eq!(order.tracking_number.as_deref(), Some("TRACK-123")),
        }
    }

    #[test]
    fn the_same_lifecycle_with_method_chaining() {
        Scenario::<Order>::new()
            .given(created(100.0))
            .when(|order| order.ship("TRACK-123"))
            .then_events([shipped("TRACK-123")])
            .then_state(|order| assert_eq!(order.status, Status::Shipped));

        Scenario::<Order>::new()
            .given((created(50.0), shipped("TRACK-123")))
            .when(|order| order.ship("TRACK-456"))
            .then_error_matches(|e| matches!(e, OrderError::NotCreated));
    }
}

mod scenario_forms {
    use super::*;

    #[test]
    fn given_nothing_is_a_new_aggregate() {
        given_when_then! {
            aggregate: Order,
            given: [],
            when: |order| order.create(CUSTOMER, 9.5),
            then: [created(9.5)],
            state: |order| assert_eq!(order.customer_id, Some(CUSTOMER)),
        }
    }

    #[test]
    fn events_of_several_types_and_a_predicate() {
        given_when_then! {
            aggregate: Order,
            given: [created(0.0), item("Widget", 2, 15.0)],
            when_root: |root| {
                root.execute(|o| o.add_item("Gadget", 1, 30.0))?;
                root.execute(|o| o.ship("T-1"))
            },
            then: [item("Gadget", 1, 30.0), shipped("T-1")],
            state: |order| assert_eq!(order.total_amount, 60.0),
        }
        given_when_then! {
            aggregate: Order,
            given: [created(0.0)],
            when: |order| order.add_item("Widget", 3, 1.0),
            then: events matching |events| matches!(events, [OrderEvent::OrderItemAdded(e)] if e.quantity == 3),
        }
    }

    #[test]
    fn a_command_that_decides_nothing() {
        given_when_then! {
            aggregate: Order,
            given: [created(1.0)],
            when: |order| Ok::<_, OrderError>(order.tracking_number.as_ref().map(|t| shipped(t))),
            then: [],
        }
        Scenario::<Order>::new()
            .given(created(1.0))
            .when(|_| Ok::<_, OrderError>(()))
            .then_no_events();
    }

    #[test]
    fn error_patterns_and_fixed_ids_and_context() {
        let id = Uuid::from_u128(77);
        given_when_then! {
            aggregate: Order,
            id: id,
            context: EventContext::new().tenant("acme"),
            given: [],
            when: |order| order.add_item("Widget", 0, 1.0),
            then: error matches OrderError::NotCreated | OrderError::EmptyQuantity,
        }
        let outcome = Scenario::<Order>::new()
            .with_id(id)
            .with_context(EventContext::new().tenant("acme"))
            .given(created(1.0))
            .when(|order| order.add_item("Widget", 1, 1.0))
            .then_event(item("Widget", 1, 1.0));
        let envelope = &outcome.uncommitted()[0].envelope;
        assert_eq!((envelope.aggregate_id, envelope.aggregate_version), (id, 2));
        assert_eq!(envelope.context.tenant_id.as_deref(), Some("acme"));
        assert_eq!(
            outcome.history()[0].envelope.context.tenant_id.as_deref(),
            Some("acme")
        );
    }

    #[test]
    fn the_expected_state_by_value() {
        let mut expected = Order {
            status: Status::Created,
            customer_id: Some(CUSTOMER),
            total_amount: 12.0,
            ..Order::default()
        };
        expected.items.push(eventsource_examples::Item {
            product_name: "Widget".into(),
            quantity: 2,
            unit_price: 1.0,
        });
        Scenario::<Order>::new()
            .given(created(10.0))
            .when(|order| order.add_item("Widget", 2, 1.0))
            .then_state_eq(&expected);
    }

    async fn tracking_service() -> String {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        "TRACK-ASYNC".to_owned()
    }

    #[test]
    fn an_async_command_in_a_plain_test() {
        given_when_then! {
            aggregate: Order,
            given: [created(1.0)],
            when: async |order| order.ship(&tracking_service().await),
            then: [shipped("TRACK-ASYNC")],
        }
    }

    #[tokio::test]
    async fn an_async_command_in_a_tokio_test() {
        given_when_then! {
            aggregate: Order,
            given: [created(1.0)],
            when: async move |order| order.ship(&tracking_service().await),
            then: [shipped("TRACK-ASYNC")],
        }
        Scenario::<Order>::new()
            .given(created(1.0))
            .when_async(async |order| order.ship(&tracking_service().await))
            .await
            .then_events([shipped("TRACK-ASYNC")]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_async_command_in_a_multi_threaded_tokio_test() {
        given_when_then! {
            aggregate: Order,
            given: [created(1.0)],
            when: async |order| order.ship(&tracking_service().await),
            then: [shipped("TRACK-ASYNC")],
        }
    }
}

/// What a failing scenario says, and where it says it. The messages are snapshots, so a
/// change to the diagnostics shows up in review.
mod failure_diagnostics {
    use std::cell::RefCell;
    use std::panic::{self, AssertUnwindSafe};
    use std::sync::Once;

    use super::*;

    thread_local! {
        static LOCATION: RefCell<Option<(String, u32)>> = const { RefCell::new(None) };
    }

    /// Runs `f`, which must panic, and returns the panic message and the line it
    /// reported.
    fn failure(f: impl FnOnce()) -> (String, u32) {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let default = panic::take_hook();
            panic::set_hook(Box::new(move |info| {
                let here = info.location().map(|l| (l.file().to_owned(), l.line()));
                let ours = LOCATION.with(|cell| {
                    let mut cell = cell.borrow_mut();
                    if cell.is_some() {
                        *cell = here;
                        true
                    } else {
                        false
                    }
                });
                if !ours {
                    default(info);
                }
            }));
        });
        LOCATION.with(|cell| *cell.borrow_mut() = Some((String::new(), 0)));
        let payload =
            panic::catch_unwind(AssertUnwindSafe(f)).expect_err("the scenario should fail");
        let (file, line) = LOCATION.with(|cell| cell.borrow_mut().take()).unwrap();
        assert!(
            file.ends_with("testing.rs"),
            "the failure points into the test file, not {file}"
        );
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap();
        (message, line)
    }

    #[test]
    fn an_event_with_another_value() {
        let (message, line) = failure(|| {
            Scenario::<Order>::new()
                .given(created(50.0))
                .when(|order| order.ship("TRACK-124"))
                .then_events([shipped("TRACK-123")]); // the failing line
        });
        assert_eq!(line, line!() - 2);
        insta::assert_snapshot!(message);
    }

    #[test]
    fn an_unexpected_and_a_missing_event() {
        let (message, line) = failure(|| {
            given_when_then! {
                aggregate: Order,
                given: [created(0.0)],
                when_root: |root| {
                    root.execute(|o| o.add_item("Widget", 1, 2.0))?;
                    root.execute(|o| o.add_item("Gadget", 1, 3.0))
                },
                then: [item("Gadget", 1, 3.0), shipped("T-9")],
            }
        });
        assert_eq!(line, line!() - 10, "the failure points at the macro");
        insta::assert_snapshot!(message);
    }

    #[test]
    fn an_error_where_events_were_expected() {
        let (message, _) = failure(|| {
            given_when_then! {
                aggregate: Order,
                given: [],
                when: |order| order.ship("TRACK-1"),
                then: [shipped("TRACK-1")],
            }
        });
        insta::assert_snapshot!(message);
    }

    #[test]
    fn events_where_an_error_was_expected() {
        let (message, _) = failure(|| {
            given_when_then! {
                aggregate: Order,
                given: [created(1.0)],
                when: |order| order.ship("TRACK-1"),
                then: error matches OrderError::AlreadyShipped,
            }
        });
        insta::assert_snapshot!(message);
    }

    #[test]
    fn another_error_and_another_message() {
        let (by_value, _) = failure(|| {
            Scenario::<Order>::new()
                .when(|order| order.ship("T"))
                .then_error(OrderError::AlreadyShipped);
        });
        let (by_text, _) = failure(|| {
            Scenario::<Order>::new()
                .when(|order| order.ship("T"))
                .then_error_contains("shipped");
        });
        insta::assert_snapshot!(format!("{by_value}\n---\n{by_text}"));
    }

    #[test]
    fn a_predicate_that_does_not_hold() {
        let (message, _) = failure(|| {
            given_when_then! {
                aggregate: Order,
                given: [created(1.0)],
                when: |order| order.add_item("Widget", 2, 1.0),
                then: events matching |events| events.len() == 2,
            }
        });
        insta::assert_snapshot!(message);
    }

    #[test]
    fn no_events_expected() {
        let (message, line) = failure(|| {
            Scenario::<Order>::new()
                .given(created(1.0))
                .when(|order| order.ship("T"))
                .then_no_events();
        });
        assert_eq!(line, line!() - 2);
        insta::assert_snapshot!(message);
    }
}

/// The replay check catches state that the events do not carry.
mod replay_check {
    use eventsource::aggregate;
    use serde::{Deserialize, Serialize};

    use super::failure_diagnostics_support::failure_message;
    use super::*;

    /// A note whose `draft` flag is not stored (a serde mistake the check catches).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
    #[event(aggregate = "Notebook", name = "testing.note_written")]
    pub struct NoteWritten {
        pub text: String,
        #[serde(skip)]
        pub draft: bool,
    }

    #[derive(Debug, Default, Clone, PartialEq)]
    pub struct Notebook {
        pub notes: Vec<String>,
        pub drafts: u32,
    }

    #[aggregate]
    impl Notebook {
        #[handles(NoteWritten)]
        fn on_written(&mut self, e: &NoteWritten) {
            self.notes.push(e.text.clone());
            if e.draft {
                self.drafts += 1;
            }
        }
    }

    #[test]
    fn state_that_is_lost_in_serialization_fails_the_scenario() {
        let message = failure_message(|| {
            given_when_then! {
                aggregate: Notebook,
                given: [NoteWritten { text: "a".into(), draft: false }],
                when: |_| Ok::<_, String>(NoteWritten { text: "b".into(), draft: true }),
                then: [NoteWritten { text: "b".into(), draft: true }],
            }
        });
        insta::assert_snapshot!(message);
    }

    #[test]
    fn the_check_can_be_turned_off() {
        given_when_then! {
            aggregate: Notebook,
            replay_check: false,
            given: [],
            when: |_| Ok::<_, String>(NoteWritten { text: "b".into(), draft: true }),
            then: [NoteWritten { text: "b".into(), draft: true }],
            state: |notebook| assert_eq!(notebook.drafts, 1),
        }
        Scenario::<Notebook>::with_replay_check(|a, b| a.notes == b.notes)
            .when(|_| {
                Ok::<_, String>(NoteWritten {
                    text: "b".into(),
                    draft: true,
                })
            })
            .then_events([NoteWritten {
                text: "b".into(),
                draft: true,
            }]);
    }
}

mod failure_diagnostics_support {
    use std::panic::{self, AssertUnwindSafe};

    /// The panic message of `f`, which must panic.
    pub fn failure_message(f: impl FnOnce()) -> String {
        let payload =
            panic::catch_unwind(AssertUnwindSafe(f)).expect_err("the scenario should fail");
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap()
    }
}

mod snapshots {
    use super::failure_diagnostics_support::failure_message;
    use super::replay_check::NoteWritten;
    use super::*;

    #[test]
    fn the_events_of_a_command() {
        let outcome = Scenario::<Order>::new()
            .with_context(
                EventContext::new()
                    .tenant("acme")
                    .correlation(Uuid::from_u128(5))
                    .actor("user:7")
                    .meta("request", "r-1"),
            )
            .given(created(0.0))
            .when_root(|root| {
                root.execute(|o| o.add_item("Widget", 2, 15.0))?;
                root.execute(|o| o.ship("TRACK-1"))
            })
            .then_events([
                OrderEvent::from(item("Widget", 2, 15.0)),
                shipped("TRACK-1").into(),
            ]);
        assert_events_snapshot!(outcome.uncommitted());
    }

    #[tokio::test]
    async fn a_stored_stream() {
        let orders = AggregateTestHelper::<Order>::new();
        let mut order = orders.create();
        order.execute(|o| o.create(CUSTOMER, 5.0)).unwrap();
        order.execute(|o| o.ship("TRACK-2")).unwrap();
        orders.save(&mut order).await.unwrap();
        assert_events_snapshot!("order_stream", orders.events(order.id()));
    }

    #[test]
    fn the_wire_format_of_every_order_event() {
        assert_event_schemas_snapshot!(
            EventSchemas::for_aggregate::<Order>()
                .sample(created(99.5))
                .sample(item("Widget", 2, 15.0))
                .sample(shipped("TRACK-1"))
        );
    }

    #[test]
    fn a_missing_sample_is_named() {
        let message = failure_message(|| {
            let _ = EventSchemas::for_aggregate::<Order>()
                .sample(created(1.0))
                .to_snapshot();
        });
        assert!(message.contains(OrderItemAdded::NAME), "{message}");
        assert!(message.contains(OrderShipped::NAME), "{message}");
        assert!(!message.contains(OrderCreated::NAME), "{message}");
    }

    #[test]
    fn a_sample_that_does_not_survive_serde_is_refused() {
        let message = failure_message(|| {
            let _ = EventSchemas::new().sample(NoteWritten {
                text: "a".into(),
                draft: true,
            });
        });
        assert!(
            message.contains("does not survive a serde round trip"),
            "{message}"
        );
    }
}

/// Read models are tested from a global history of several aggregates: `History` is the
/// "given" of such tests.
mod read_model_history {
    use std::collections::BTreeMap;

    use futures_util::TryStreamExt;

    use super::*;

    /// A tiny read model: each order's status and total.
    fn summaries(events: &[eventsource::RecordedEvent]) -> BTreeMap<Uuid, (String, f64)> {
        let mut out = BTreeMap::new();
        for event in events {
            let id = event.aggregate_id();
            if let Ok(e) = event.decode::<OrderCreated>() {
                out.insert(id, ("created".to_owned(), e.total_amount));
            } else if event.decode::<OrderShipped>().is_ok() {
                out.entry(id)
                    .and_modify(|s: &mut (String, f64)| s.0 = "shipped".into());
            }
        }
        out
    }

    #[tokio::test]
    async fn several_aggregates_in_one_log() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let history = History::new()
            .event(a, created(10.0))
            .event(b, created(20.0))
            .event(a, shipped("T-A"));
        assert_eq!(history.version_of("Order", a), 2);
        assert_eq!(history.stream("Order", b).len(), 1);

        let model = summaries(history.events());
        assert_eq!(model[&a], ("shipped".to_owned(), 10.0));
        assert_eq!(model[&b], ("created".to_owned(), 20.0));

        let store = InMemoryEventStore::new();
        assert_eq!(history.append_to(&store).await.unwrap(), 3);
        let stored: Vec<_> = store
            .read_all(ReadAll::from_start())
            .try_collect()
            .await
            .unwrap();
        let ids: Vec<_> = stored.iter().map(|e| e.event_id()).collect();
        assert_eq!(
            ids,
            history
                .events()
                .iter()
                .map(|e| e.event_id())
                .collect::<Vec<_>>()
        );
        assert!(
            history.append_to(&store).await.unwrap() > 0,
            "a second append is an idempotent retry"
        );
        assert_eq!(store.event_count(), 3);
    }
}

mod several_aggregates {
    use super::*;

    #[tokio::test]
    async fn a_helper_given_several_aggregates() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let orders = AggregateTestHelper::<Order>::new();
        let history = History::new()
            .event(a, created(10.0))
            .event(b, created(20.0))
            .event(a, shipped("T-A"));
        assert_eq!(orders.given(&history).await.unwrap(), 3);
        let (a, b) = (orders.load(a).await.unwrap(), orders.load(b).await.unwrap());
        assert_eq!((a.version(), a.state().status), (2, Status::Shipped));
        assert_eq!((b.version(), b.state().status), (1, Status::Created));
    }
}

/// The seed's order-summary projection, tested from given events of several orders.
mod projection_scenarios {
    use std::collections::BTreeMap;

    use eventsource::projection::Projection;
    use eventsource::{BoxError, RecordedEvent};
    use eventsource_test::ProjectionScenario;

    use super::failure_diagnostics_support::failure_message;
    use super::*;

    #[derive(Default)]
    struct OrderSummaries {
        orders: BTreeMap<Uuid, (String, f64, Option<String>)>,
    }

    #[async_trait::async_trait]
    impl Projection for OrderSummaries {
        fn name(&self) -> &str {
            "order-summaries"
        }

        async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
            let id = event.aggregate_id();
            if let Some(created) = event.as_event::<OrderCreated>()? {
                self.orders
                    .insert(id, ("created".into(), created.total_amount, None));
            } else if let Some(shipped) = event.as_event::<OrderShipped>()? {
                let order = self.orders.get_mut(&id).ok_or("shipped before created")?;
                order.0 = "shipped".into();
                order.2 = Some(shipped.tracking_number.clone());
            }
            Ok(())
        }

        async fn reset(&mut self) -> Result<(), BoxError> {
            self.orders.clear();
            Ok(())
        }
    }

    #[test]
    fn a_read_model_of_several_orders() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        given_when_then! {
            projection: OrderSummaries::default(),
            given: [
                (a, created(100.0)),
                (b, created(50.0)),
                (a, item("Widget", 1, 5.0)),
                (a, shipped("TRACK-123")),
            ],
            then: |summaries| {
                assert_eq!(summaries.orders[&a], ("shipped".into(), 100.0, Some("TRACK-123".into())));
                assert_eq!(summaries.orders[&b], ("created".into(), 50.0, None));
            },
        }
    }

    #[tokio::test]
    async fn the_same_with_method_chaining_and_typed_payloads() {
        let a = Uuid::from_u128(1);
        let outcome = ProjectionScenario::new(OrderSummaries::default())
            .given(a, created(1.0))
            .given(a, shipped("T"))
            .typed()
            .when_handled()
            .await
            .then_read_model(|summaries| assert_eq!(summaries.orders.len(), 1));
        assert_eq!(outcome.handled(), 2);
    }

    #[test]
    fn a_handler_error_names_the_event() {
        given_when_then! {
            projection: OrderSummaries::default(),
            given: [(Uuid::from_u128(9), shipped("T"))],
            then: error contains "shipped before created",
        }
        let message = failure_message(|| {
            given_when_then! {
                projection: OrderSummaries::default(),
                given: [(Uuid::from_u128(1), created(1.0)), (Uuid::from_u128(9), shipped("T"))],
                then: |summaries| assert_eq!(summaries.orders.len(), 2),
            }
        });
        insta::assert_snapshot!(message);
    }
}
