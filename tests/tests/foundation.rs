//! The seed's foundation scenarios: aggregates, commands, replay, the in-memory store,
//! the repository and the end-to-end flow through a bus into a read model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::{Arc, Mutex};

use eventsource::{
    Aggregate, AggregateError, AggregateRepository, AggregateRoot, AppendOutcome, DomainEvent,
    EventStore, ExpectedVersion, InMemoryEventBus, InMemoryEventStore, RecordedEvent,
    RepositoryError, StoreError, UncommittedEvent,
};
use eventsource_examples::{
    Order, OrderCreated, OrderError, OrderEvent, OrderItemAdded, OrderShipped, Status,
};
use uuid::Uuid;

fn created_order() -> AggregateRoot<Order> {
    let mut order = AggregateRoot::<Order>::new(Uuid::now_v7());
    order.execute(|o| o.create(Uuid::now_v7(), 50.0)).unwrap();
    order
}

/// Stored events for `id`, as a database would return them.
fn history(id: Uuid, events: Vec<OrderEvent>) -> Vec<RecordedEvent> {
    let mut root = AggregateRoot::<Order>::new(id);
    for event in events {
        root.record_event(event);
    }
    root.take_uncommitted()
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let at = e.envelope.occurred_at;
            RecordedEvent::from_uncommitted(e, i as u64 + 1, at)
        })
        .collect()
}

mod aggregate_initialisation {
    use super::*;

    #[test]
    fn new_aggregate_has_its_id_version_zero_and_no_uncommitted_events() {
        let id = Uuid::now_v7();
        let order = AggregateRoot::<Order>::new(id);
        assert_eq!(order.id(), id);
        assert_eq!(order.version(), 0);
        assert!(order.uncommitted().is_empty());
        assert!(!order.has_uncommitted());
        assert_eq!(order.state(), &Order::default());
    }
}

mod commands_and_business_rules {
    use super::*;

    #[test]
    fn the_events_of_one_command_occur_together_and_each_has_its_own_id() {
        let clock = Arc::new(eventsource_test::TestClock::new());
        let mut order = AggregateRoot::<Order>::new(Uuid::now_v7());
        order.set_clock(clock.clone());
        let item = |name: &str| OrderItemAdded {
            product_name: name.into(),
            quantity: 1,
            unit_price: 5.0,
        };
        order
            .execute(|_| {
                let created = OrderCreated {
                    customer_id: Uuid::now_v7(),
                    total_amount: 0.0,
                };
                Ok::<_, OrderError>((created, vec![item("pen"), item("ink")]))
            })
            .unwrap();
        order.execute(|_| Ok::<_, OrderError>(item("nib"))).unwrap();
        order.record(item("cap"));
        order.record(item("box"));

        let stamps: Vec<_> = order
            .uncommitted()
            .iter()
            .map(|e| (e.envelope.event_id, e.envelope.occurred_at))
            .collect();
        let ids: Vec<_> = stamps.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, (1..=6).map(|n| clock.id(n)).collect::<Vec<_>>());
        let times: Vec<_> = stamps.iter().map(|(_, at)| *at).collect();
        // One reading per command; a `record` outside a command reads the clock itself.
        assert_eq!(
            times,
            [1, 1, 1, 2, 3, 4].map(|n| clock.time(n)).to_vec(),
            "three events of the first command, one of the second, two records"
        );
    }

    #[test]
    fn a_command_on_the_system_clock_stamps_its_events_once_with_increasing_ids() {
        let mut order = AggregateRoot::<Order>::new(Uuid::now_v7());
        order.execute(|o| o.create(Uuid::now_v7(), 10.0)).unwrap();
        let before = chrono::Utc::now();
        order
            .execute(|_| {
                Ok::<_, OrderError>(
                    (0..50)
                        .map(|i| OrderItemAdded {
                            product_name: format!("item {i}"),
                            quantity: 1,
                            unit_price: 1.0,
                        })
                        .collect::<Vec<_>>(),
                )
            })
            .unwrap();
        let after = chrono::Utc::now();
        let batch = &order.uncommitted()[1..];
        assert_eq!(batch.len(), 50);
        let at = batch[0].envelope.occurred_at;
        assert!(before <= at && at <= after, "{before} <= {at} <= {after}");
        assert!(batch.iter().all(|e| e.envelope.occurred_at == at));
        assert!(
            order
                .uncommitted()
                .windows(2)
                .all(|w| w[0].envelope.event_id < w[1].envelope.event_id),
            "ids increase in recording order"
        );
    }

    #[test]
    fn a_command_records_and_applies_its_event() {
        let customer = Uuid::now_v7();
        let mut order = AggregateRoot::<Order>::new(Uuid::now_v7());
        order.execute(|o| o.create(customer, 99.99)).unwrap();
        assert_eq!(order.version(), 1);
        assert_eq!(order.state().customer_id, Some(customer));
        assert_eq!(order.state().total_amount, 99.99);
        assert_eq!(order.state().status, Status::Created);
        let recorded = &order.uncommitted()[0].envelope;
        assert_eq!(recorded.event_name, OrderCreated::NAME);
        assert_eq!(recorded.aggregate_version, 1);
        assert_eq!(recorded.aggregate_type, "Order");
    }

    #[test]
    fn cannot_create_twice() {
        let mut order = created_order();
        assert_eq!(
            order.execute(|o| o.create(Uuid::now_v7(), 100.0)),
            Err(OrderError::AlreadyCreated)
        );
        assert_eq!(order.version(), 1, "a refused command records nothing");
        assert_eq!(order.uncommitted().len(), 1);
    }

    #[test]
    fn cannot_ship_before_creating() {
        let mut order = AggregateRoot::<Order>::new(Uuid::now_v7());
        assert_eq!(
            order.execute(|o| o.ship("TRACK-123")),
            Err(OrderError::NotCreated)
        );
        assert_eq!(order.version(), 0);
    }

    #[test]
    fn a_command_can_return_several_events() {
        let mut order = AggregateRoot::<Order>::new(Uuid::now_v7());
        order
            .execute(|o| {
                let created = o.create(Uuid::now_v7(), 0.0)?;
                Ok::<_, OrderError>((
                    created,
                    vec![
                        OrderItemAdded {
                            product_name: "A".into(),
                            quantity: 1,
                            unit_price: 2.0,
                        },
                        OrderItemAdded {
                            product_name: "B".into(),
                            quantity: 2,
                            unit_price: 3.0,
                        },
                    ],
                ))
            })
            .unwrap();
        assert_eq!(order.version(), 3);
        assert_eq!(order.state().total_amount, 8.0);
        let versions: Vec<u64> = order
            .uncommitted()
            .iter()
            .map(|e| e.envelope.aggregate_version)
            .collect();
        assert_eq!(versions, [1, 2, 3]);
    }
}

mod event_application {
    use super::*;

    #[test]
    fn applying_a_new_event_updates_state_and_tracks_it() {
        let mut source = AggregateRoot::<Order>::new(Uuid::now_v7());
        source.record(OrderCreated {
            customer_id: Uuid::now_v7(),
            total_amount: 50.0,
        });
        let event: UncommittedEvent = source.take_uncommitted().remove(0);

        let mut order = AggregateRoot::<Order>::new(source.id());
        order.apply_new(event.clone()).unwrap();
        assert_eq!(order.state().status, Status::Created);
        assert_eq!(order.state().total_amount, 50.0);
        assert_eq!(order.uncommitted().len(), 1);
        assert_eq!(order.uncommitted()[0].envelope, event.envelope);
        assert!(order.has_uncommitted());
    }

    #[test]
    fn applying_a_historical_event_does_not_track_it() {
        let id = Uuid::now_v7();
        let events = history(
            id,
            vec![
                OrderCreated {
                    customer_id: Uuid::now_v7(),
                    total_amount: 50.0,
                }
                .into(),
            ],
        );
        let mut order = AggregateRoot::<Order>::new(id);
        order.apply_historical(&events[0]).unwrap();
        assert_eq!(order.state().status, Status::Created);
        assert_eq!(order.version(), 1);
        assert!(!order.has_uncommitted());
    }

    #[test]
    fn events_of_another_aggregate_or_out_of_sequence_are_refused() {
        let events = history(
            Uuid::now_v7(),
            vec![
                OrderCreated {
                    customer_id: Uuid::now_v7(),
                    total_amount: 1.0,
                }
                .into(),
            ],
        );
        let mut other = AggregateRoot::<Order>::new(Uuid::now_v7());
        assert!(matches!(
            other.apply_historical(&events[0]),
            Err(AggregateError::WrongAggregate { .. })
        ));

        let id = Uuid::now_v7();
        let events = history(
            id,
            vec![
                OrderCreated {
                    customer_id: Uuid::now_v7(),
                    total_amount: 1.0,
                }
                .into(),
                OrderShipped {
                    tracking_number: "T".into(),
                }
                .into(),
            ],
        );
        let mut order = AggregateRoot::<Order>::new(id);
        let error = order.apply_historical(&events[1]).unwrap_err();
        assert!(
            matches!(
                error,
                AggregateError::UnexpectedVersion {
                    current: 0,
                    actual: 2,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(order.version(), 0, "a refused event changes nothing");
    }
}

mod history_replay {
    use super::*;

    #[test]
    fn load_from_history_replays_everything_without_uncommitted_events() {
        let id = Uuid::now_v7();
        let customer = Uuid::now_v7();
        let events = history(
            id,
            vec![
                OrderCreated {
                    customer_id: customer,
                    total_amount: 50.0,
                }
                .into(),
                OrderItemAdded {
                    product_name: "Widget".into(),
                    quantity: 2,
                    unit_price: 25.0,
                }
                .into(),
                OrderShipped {
                    tracking_number: "TRACK-123".into(),
                }
                .into(),
            ],
        );
        let mut order = AggregateRoot::<Order>::new(id);
        order.load_from_history(&events).unwrap();
        assert_eq!(order.version(), 3);
        assert_eq!(order.state().status, Status::Shipped);
        assert_eq!(order.state().tracking_number.as_deref(), Some("TRACK-123"));
        assert_eq!(order.state().total_amount, 100.0);
        assert!(order.uncommitted().is_empty());
    }

    #[test]
    fn new_commands_continue_from_the_loaded_version() {
        let id = Uuid::now_v7();
        let events = history(
            id,
            vec![
                OrderCreated {
                    customer_id: Uuid::now_v7(),
                    total_amount: 50.0,
                }
                .into(),
            ],
        );
        let mut order = AggregateRoot::<Order>::new(id);
        order.load_from_history(&events).unwrap();
        order.execute(|o| o.ship("TRACK-456")).unwrap();
        assert_eq!(order.version(), 2);
        assert_eq!(order.committed_version(), 1);
        assert_eq!(order.uncommitted().len(), 1);
        assert_eq!(order.state().status, Status::Shipped);
    }

    #[test]
    fn replay_decodes_json_payloads_as_a_database_returns_them() {
        let id = Uuid::now_v7();
        let mut events = history(
            id,
            vec![
                OrderCreated {
                    customer_id: Uuid::now_v7(),
                    total_amount: 10.0,
                }
                .into(),
                OrderItemAdded {
                    product_name: "Widget".into(),
                    quantity: 3,
                    unit_price: 5.0,
                }
                .into(),
            ],
        );
        for event in &mut events {
            event.payload =
                eventsource::Payload::json(event.payload.to_json().unwrap().into_owned());
        }
        let mut order = AggregateRoot::<Order>::new(id);
        order.load_from_history(&events).unwrap();
        assert_eq!(order.state().total_amount, 25.0);
    }

    #[test]
    fn a_large_history_of_1000_commands_reaches_version_1001() {
        let mut order = created_order();
        for i in 0..1000 {
            order
                .execute(|o| o.add_item(&format!("Item {i}"), 1, 1.0))
                .unwrap();
        }
        assert_eq!(order.version(), 1001);
        assert_eq!(order.state().items.len(), 1000);
        assert_eq!(order.state().total_amount, 1050.0);
    }
}

mod declarative_handlers {
    use super::*;

    #[test]
    fn the_generated_table_lists_every_handled_event() {
        assert_eq!(Order::TYPE, "Order");
        assert_eq!(
            Order::HANDLED,
            [OrderCreated::NAME, OrderItemAdded::NAME, OrderShipped::NAME]
        );
        assert_eq!(OrderShipped::NAME, "order.shipped");
    }

    #[test]
    fn dispatch_calls_the_matching_handler() {
        let mut order = Order::default();
        order.apply_event(
            &OrderCreated {
                customer_id: Uuid::nil(),
                total_amount: 100.0,
            }
            .into(),
        );
        assert_eq!(order.status, Status::Created);
        assert_eq!(order.total_amount, 100.0);
    }

    #[test]
    fn uncommitted_events_read_back_as_the_typed_enum() {
        let mut order = created_order();
        order.execute(|o| o.ship("T-1")).unwrap();
        let events = order.uncommitted_events().unwrap();
        assert!(matches!(&events[0], OrderEvent::OrderCreated(e) if e.total_amount == 50.0));
        assert_eq!(
            events[1],
            OrderEvent::from(OrderShipped {
                tracking_number: "T-1".into()
            })
        );
    }
}

mod in_memory_store {
    use super::*;

    async fn append_created(store: &InMemoryEventStore, id: Uuid) -> eventsource::AppendResult {
        let mut order = AggregateRoot::<Order>::new(id);
        order.execute(|o| o.create(Uuid::now_v7(), 50.0)).unwrap();
        store
            .append(
                "Order",
                id,
                ExpectedVersion::Exact(0),
                &order.take_uncommitted(),
            )
            .await
            .unwrap()
    }

    fn shipped_event(id: Uuid, version: u64) -> Vec<UncommittedEvent> {
        let mut order = AggregateRoot::<Order>::from_state(
            id,
            version,
            Order {
                status: Status::Created,
                ..Order::default()
            },
        );
        order.execute(|o| o.ship("TRACK-123")).unwrap();
        order.take_uncommitted()
    }

    #[tokio::test]
    async fn append_one_event() {
        let store = InMemoryEventStore::new();
        let result = append_created(&store, Uuid::now_v7()).await;
        assert_eq!(result.new_version, 1);
        assert_eq!(result.global_position(), 1);
        assert!(!result.already_stored);
    }

    #[tokio::test]
    async fn a_wrong_expected_version_is_a_conflict_with_both_versions() {
        let store = InMemoryEventStore::new();
        let id = Uuid::now_v7();
        append_created(&store, id).await;
        let error = store
            .append(
                "Order",
                id,
                ExpectedVersion::Exact(0),
                &shipped_event(id, 1),
            )
            .await
            .unwrap_err();
        let conflict = error.as_conflict().expect("a conflict");
        assert_eq!(conflict.aggregate_id, id);
        assert_eq!(conflict.aggregate_type, "Order");
        assert_eq!(conflict.expected, ExpectedVersion::Exact(0));
        assert_eq!(conflict.actual, 1);
        assert_eq!(store.event_count(), 1);
    }

    #[tokio::test]
    async fn any_skips_the_check_and_no_stream_requires_a_new_stream() {
        let store = InMemoryEventStore::new();
        let id = Uuid::now_v7();
        append_created(&store, id).await;
        let result = store
            .append("Order", id, ExpectedVersion::Any, &shipped_event(id, 1))
            .await
            .unwrap();
        assert_eq!(result.new_version, 2);
        let error = store
            .append(
                "Order",
                id,
                ExpectedVersion::NoStream,
                &shipped_event(id, 2),
            )
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Conflict(_)));
    }

    #[tokio::test]
    async fn read_a_stream_from_a_version() {
        let store = InMemoryEventStore::new();
        let id = Uuid::now_v7();
        let mut order = AggregateRoot::<Order>::new(id);
        order.execute(|o| o.create(Uuid::now_v7(), 50.0)).unwrap();
        order.execute(|o| o.add_item("Widget", 2, 25.0)).unwrap();
        order.execute(|o| o.ship("TRACK-123")).unwrap();
        store
            .append(
                "Order",
                id,
                ExpectedVersion::NoStream,
                &order.take_uncommitted(),
            )
            .await
            .unwrap();

        let all = store.read_stream("Order", id, 0).await.unwrap();
        assert_eq!(all.version, 3);
        let names: Vec<&str> = all.events.iter().map(|e| e.name()).collect();
        assert_eq!(names, ["OrderCreated", "OrderItemAdded", "order.shipped"]);

        let rest = store.read_stream("Order", id, 1).await.unwrap();
        assert_eq!(rest.events.len(), 2);
        assert_eq!(rest.events[0].name(), OrderItemAdded::NAME);
        assert_eq!(rest.version, 3);
    }

    #[tokio::test]
    async fn re_appending_the_same_event_stores_it_once() {
        let store = InMemoryEventStore::new();
        let id = Uuid::now_v7();
        let mut order = AggregateRoot::<Order>::new(id);
        order.execute(|o| o.create(Uuid::now_v7(), 50.0)).unwrap();
        let batch = order.take_uncommitted();
        store
            .append("Order", id, ExpectedVersion::Exact(0), &batch)
            .await
            .unwrap();
        let retry = store
            .append("Order", id, ExpectedVersion::Any, &batch)
            .await
            .unwrap();
        assert!(retry.already_stored);
        assert_eq!(store.event_count(), 1);
    }

    #[tokio::test]
    async fn test_helpers_report_the_contents() {
        let store = InMemoryEventStore::new();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        append_created(&store, a).await;
        append_created(&store, b).await;
        assert_eq!(store.event_count(), 2);
        assert_eq!(store.global_position(), 2);
        assert_eq!(store.aggregate_ids(), [a, b]);
        assert_eq!(
            store
                .all_events()
                .iter()
                .map(|e| e.position)
                .collect::<Vec<_>>(),
            [1, 2]
        );
        store.clear();
        assert_eq!(store.event_count(), 0);
        assert_eq!(store.global_position(), 0);
    }
}

mod repository {
    use super::*;

    #[tokio::test]
    async fn load_modify_save() {
        let orders = AggregateRepository::<Order, _>::new(InMemoryEventStore::new());
        let mut order = created_order();
        let id = order.id();
        orders.save(&mut order).await.unwrap();
        assert!(!order.has_uncommitted());

        let mut order = orders.load(id).await.unwrap();
        order.execute(|o| o.add_item("Widget", 2, 15.0)).unwrap();
        order.execute(|o| o.add_item("Gadget", 1, 30.0)).unwrap();
        orders.save(&mut order).await.unwrap();

        let loaded = orders.load(id).await.unwrap();
        assert_eq!(loaded.version(), 3);
        assert_eq!(loaded.state().total_amount, 110.0);
        assert_eq!(loaded.state().items.len(), 2);
        assert!(orders.exists(id).await.unwrap());
        assert_eq!(orders.version(id).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn loading_a_missing_aggregate_is_not_found() {
        let orders = AggregateRepository::<Order, _>::new(InMemoryEventStore::new());
        let id = Uuid::now_v7();
        let error = orders.load(id).await.unwrap_err();
        assert!(error.is_not_found());
        assert!(
            matches!(error, RepositoryError::NotFound { aggregate_type: "Order", aggregate_id } if aggregate_id == id)
        );
        let fresh = orders.load_or_create(id).await.unwrap();
        assert_eq!(fresh.version(), 0);
        assert!(!orders.exists(id).await.unwrap());
    }

    #[tokio::test]
    async fn saving_nothing_does_nothing() {
        let store = Arc::new(InMemoryEventStore::new());
        let orders = AggregateRepository::<Order, _>::new(Arc::clone(&store));
        let mut order = AggregateRoot::<Order>::new(Uuid::now_v7());
        let result = orders.save(&mut order).await.unwrap();
        assert_eq!(result, AppendOutcome::default());
        assert_eq!(store.event_count(), 0);
    }

    /// `save` reports the version and the positions of what it stored, whether it hands
    /// the stored events to a bus or not (the store gives them back only for a bus).
    #[tokio::test]
    async fn save_reports_the_new_version_and_the_positions_it_stored() {
        for with_bus in [false, true] {
            let store = Arc::new(InMemoryEventStore::new());
            let mut orders = AggregateRepository::<Order, _>::new(Arc::clone(&store));
            let published: Arc<Mutex<Vec<u64>>> = Arc::default();
            if with_bus {
                let bus = Arc::new(InMemoryEventBus::new());
                let sink = Arc::clone(&published);
                bus.subscribe_fn("positions", move |event: &RecordedEvent| {
                    sink.lock().unwrap().push(event.position);
                    Ok(())
                });
                orders = orders.with_bus(bus);
            }
            // Another aggregate first, so that positions are not the versions.
            orders.save(&mut created_order()).await.unwrap();
            let mut order = created_order();
            order.execute(|o| o.add_item("Widget", 2, 15.0)).unwrap();

            let saved = orders.save(&mut order).await.unwrap();

            let stored = store.read_stream("Order", order.id(), 0).await.unwrap();
            let positions: Vec<u64> = stored.events.iter().map(|e| e.position).collect();
            assert_eq!(positions, [2, 3]);
            assert_eq!(
                saved,
                AppendOutcome {
                    new_version: 2,
                    count: 2,
                    first_position: 2,
                    last_position: 3,
                    already_stored: false,
                },
                "with a bus: {with_bus}"
            );
            assert_eq!(saved.global_position(), 3);
            assert!(!order.has_uncommitted());
            let expected: &[u64] = if with_bus { &[1, 2, 3] } else { &[] };
            assert_eq!(*published.lock().unwrap(), expected);
        }
    }

    #[tokio::test]
    async fn concurrent_modification_is_a_conflict_and_keeps_the_losers_events() {
        let orders = AggregateRepository::<Order, _>::new(InMemoryEventStore::new());
        let mut order = created_order();
        let id = order.id();
        orders.save(&mut order).await.unwrap();

        let mut first = orders.load(id).await.unwrap();
        let mut second = orders.load(id).await.unwrap();
        first.execute(|o| o.add_item("Item 1", 1, 10.0)).unwrap();
        orders.save(&mut first).await.unwrap();
        second.execute(|o| o.add_item("Item 2", 1, 20.0)).unwrap();
        let error = orders.save(&mut second).await.unwrap_err();
        assert!(error.is_conflict());
        let conflict = error.as_conflict().unwrap();
        assert_eq!(
            (conflict.expected, conflict.actual),
            (ExpectedVersion::Exact(1), 2)
        );
        assert_eq!(
            second.uncommitted().len(),
            1,
            "the losing writer keeps its events to retry"
        );
        assert_eq!(
            orders.load(id).await.unwrap().state().items[0].product_name,
            "Item 1"
        );
    }
}

mod end_to_end {
    use super::*;

    /// command -> aggregate -> store -> bus -> read model
    #[tokio::test]
    async fn a_command_reaches_the_read_model() {
        let store = Arc::new(InMemoryEventStore::new());
        let bus = Arc::new(InMemoryEventBus::new());
        let seen: Arc<Mutex<Vec<(Uuid, String)>>> = Arc::default();
        let sink = Arc::clone(&seen);
        bus.subscribe_fn("summaries", move |event: &RecordedEvent| {
            sink.lock()
                .unwrap()
                .push((event.aggregate_id(), event.name().to_owned()));
            Ok(())
        });
        let orders = AggregateRepository::<Order, _>::new(Arc::clone(&store)).with_bus(bus);

        let mut order = created_order();
        let id = order.id();
        orders.save(&mut order).await.unwrap();
        let mut order = orders.load(id).await.unwrap();
        order.execute(|o| o.ship("TRACK-123")).unwrap();
        orders.save(&mut order).await.unwrap();

        let loaded = orders.load(id).await.unwrap();
        assert_eq!(loaded.state().status, Status::Shipped);
        assert_eq!(loaded.version(), 2);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (id, "OrderCreated".to_owned()),
                (id, "order.shipped".to_owned())
            ]
        );
    }

    #[tokio::test]
    async fn a_failing_handler_is_reported_after_the_others_ran_and_nothing_is_lost() {
        let store = Arc::new(InMemoryEventStore::new());
        let bus = Arc::new(InMemoryEventBus::new());
        let seen = Arc::new(Mutex::new(0));
        bus.subscribe_fn("broken", |_| Err("read model offline".into()));
        let counter = Arc::clone(&seen);
        bus.subscribe_fn("counter", move |_| {
            *counter.lock().unwrap() += 1;
            Ok(())
        });
        let orders = AggregateRepository::<Order, _>::new(Arc::clone(&store)).with_bus(bus);
        let mut order = created_order();
        let error = orders.save(&mut order).await.unwrap_err();
        let RepositoryError::Publish {
            last_position,
            source,
        } = &error
        else {
            panic!("expected a publish error, got {error:?}");
        };
        assert_eq!(*last_position, 1);
        assert!(
            source.to_string().contains("read model offline"),
            "{source}"
        );
        assert_eq!(*seen.lock().unwrap(), 1, "the other handler still ran");
        assert_eq!(store.event_count(), 1, "the event is stored");
        assert!(!order.has_uncommitted());
    }
}
