//! What `#[aggregate]` generates, end to end: commands record events through the typed
//! dispatch, stored events (typed in memory or JSON from a database) replay through the
//! decode-by-name dispatch, and the generated event enum round-trips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use eventsource::{
    Aggregate, AggregateError, AggregateEvent, AggregateRoot, ApplyError, DecodeError, DomainEvent,
    Payload, RecordedEvent, Unhandled, aggregate,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Account", name = "account.opened")]
struct Opened {
    owner: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Account", name = "account.deposited", version = 2)]
struct Deposited {
    amount: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Account", name = "account.withdrawn")]
struct Withdrawn {
    amount: u64,
}

/// Stored for accounts, handled by none of the aggregates below.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Account", name = "account.audited")]
struct Audited {
    by: String,
}

#[derive(Debug, Default, PartialEq)]
struct Account {
    owner: Option<String>,
    balance: u64,
    /// Every handler call, in order, to prove each event is applied exactly once.
    applied: Vec<&'static str>,
}

#[aggregate]
impl Account {
    #[handles(Opened)]
    fn on_opened(&mut self, event: &Opened) {
        self.owner = Some(event.owner.clone());
        self.applied.push("opened");
    }

    #[handles(Deposited)]
    fn on_deposited(&mut self, event: &Deposited) {
        self.balance += event.amount;
        self.applied.push("deposited");
    }

    #[handles(Withdrawn)]
    fn on_withdrawn(&mut self, event: &Withdrawn) {
        self.balance -= event.amount;
        self.applied.push("withdrawn");
    }
}

impl Account {
    fn withdraw(&self, amount: u64) -> Result<Withdrawn, String> {
        if amount > self.balance {
            return Err(format!("balance is {}", self.balance));
        }
        Ok(Withdrawn { amount })
    }
}

/// The same events, for an aggregate that skips what it does not handle.
#[derive(Debug, Default, PartialEq)]
struct Statement {
    deposits: u64,
}

#[aggregate(name = "Account", unhandled = "ignore", event_enum = "StatementLine")]
impl Statement {
    #[handles(Deposited)]
    fn on_deposited(&mut self, event: &Deposited) {
        self.deposits += event.amount;
    }
}

fn opened_account() -> AggregateRoot<Account> {
    let mut account = AggregateRoot::<Account>::new(Uuid::now_v7());
    account
        .execute(|_| {
            Ok::<_, String>(Opened {
                owner: "ada".into(),
            })
        })
        .unwrap();
    account
}

/// The uncommitted events of `root`, as a store would return them.
fn stored<A: Aggregate>(root: &mut AggregateRoot<A>) -> Vec<RecordedEvent> {
    root.take_uncommitted()
        .into_iter()
        .enumerate()
        .map(|(index, event)| {
            let at = event.envelope.occurred_at;
            RecordedEvent::from_uncommitted(event, index as u64 + 1, at)
        })
        .collect()
}

/// The same events with JSON payloads, as a database backend returns them.
fn as_json(events: &[RecordedEvent]) -> Vec<RecordedEvent> {
    events
        .iter()
        .map(|event| RecordedEvent {
            payload: Payload::json(event.payload.to_json().unwrap().into_owned()),
            ..event.clone()
        })
        .collect()
}

/// A copy of `template` standing for another event, stored as `payload`.
fn restamped(
    template: &RecordedEvent,
    name: &'static str,
    schema_version: u32,
    payload: Payload,
) -> RecordedEvent {
    let mut event = template.clone();
    event.envelope.event_name = name.into();
    event.envelope.schema_version = schema_version;
    event.payload = payload;
    event
}

fn replay<A: Aggregate>(
    id: Uuid,
    events: &[RecordedEvent],
) -> Result<AggregateRoot<A>, AggregateError> {
    let mut root = AggregateRoot::<A>::new(id);
    root.load_from_history(events)?;
    Ok(root)
}

#[test]
fn the_generated_constants_describe_the_aggregate() {
    assert_eq!(Account::TYPE, "Account");
    assert_eq!(
        Account::HANDLED,
        ["account.opened", "account.deposited", "account.withdrawn"]
    );
    assert_eq!(Account::UNHANDLED, Unhandled::Error);
    assert_eq!(Statement::TYPE, "Account");
    assert_eq!(Statement::UNHANDLED, Unhandled::Ignore);
}

#[test]
fn commands_record_events_through_the_handlers() {
    let mut account = opened_account();
    account
        .execute(|_| Ok::<_, String>(Deposited { amount: 10 }))
        .unwrap();
    account.execute(|a| a.withdraw(4)).unwrap();
    let refused = account.execute(|a| a.withdraw(100));

    assert_eq!(refused, Err("balance is 6".to_owned()));
    assert_eq!(account.state().balance, 6);
    assert_eq!(
        account.state().applied,
        ["opened", "deposited", "withdrawn"]
    );
    assert_eq!(account.version(), 3);
    let names: Vec<_> = account
        .uncommitted()
        .iter()
        .map(|e| {
            (
                e.envelope.event_name.as_ref(),
                e.envelope.schema_version,
                e.envelope.aggregate_version,
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("account.opened", 1, 1),
            ("account.deposited", 2, 2),
            ("account.withdrawn", 1, 3)
        ]
    );
}

#[test]
fn uncommitted_events_come_back_as_the_generated_enum() {
    let mut account = opened_account();
    account
        .execute(|_| Ok::<_, String>((Deposited { amount: 5 }, Withdrawn { amount: 2 })))
        .unwrap();

    let events = account.uncommitted_events().unwrap();
    assert_eq!(
        events,
        [
            AccountEvent::Opened(Opened {
                owner: "ada".into()
            }),
            AccountEvent::Deposited(Deposited { amount: 5 }),
            AccountEvent::Withdrawn(Withdrawn { amount: 2 }),
        ]
    );
    assert_eq!(events[1].event_name(), "account.deposited");
    assert_eq!(events[1].schema_version(), 2);
    assert_eq!(AccountEvent::from(Withdrawn { amount: 2 }), events[2]);

    // Recording the enum values again rebuilds the same state.
    let mut copy = AggregateRoot::<Account>::new(Uuid::now_v7());
    copy.execute(|_| Ok::<_, String>(events.clone())).unwrap();
    assert_eq!(copy.state(), account.state());
    assert_eq!(copy.uncommitted_events().unwrap(), events);
}

#[test]
fn every_shape_of_command_result_records_its_events_in_order() {
    let mut account = opened_account();
    account.execute(|_| Ok::<_, String>(())).unwrap();
    account
        .execute(|_| Ok::<_, String>(None::<Deposited>))
        .unwrap();
    account
        .execute(|_| Ok::<_, String>(Some(Deposited { amount: 1 })))
        .unwrap();
    account
        .execute(|_| Ok::<_, String>(vec![Deposited { amount: 2 }, Deposited { amount: 3 }]))
        .unwrap();
    account
        .execute(|_| {
            Ok::<_, String>((
                Withdrawn { amount: 1 },
                AccountEvent::Deposited(Deposited { amount: 4 }),
                vec![Some(Withdrawn { amount: 2 })],
            ))
        })
        .unwrap();

    assert_eq!(account.state().balance, 1 + 2 + 3 - 1 + 4 - 2);
    assert_eq!(
        account.state().applied,
        [
            "opened",
            "deposited",
            "deposited",
            "deposited",
            "withdrawn",
            "deposited",
            "withdrawn"
        ]
    );
    assert_eq!(account.version(), 7);
}

#[test]
fn typed_and_json_payloads_replay_to_the_same_state() {
    let mut account = opened_account();
    account
        .execute(|_| Ok::<_, String>((Deposited { amount: 8 }, Withdrawn { amount: 3 })))
        .unwrap();
    let id = account.id();
    let typed = stored(&mut account);
    let json = as_json(&typed);
    assert!(matches!(json[0].payload, Payload::Json(_)));

    for events in [&typed, &json] {
        let replayed = replay::<Account>(id, events).unwrap();
        assert_eq!(replayed.state(), account.state());
        assert_eq!(replayed.version(), 3);
        assert!(!replayed.has_uncommitted());
    }
}

#[test]
fn stored_events_decode_into_the_generated_enum() {
    let mut account = opened_account();
    account
        .execute(|_| Ok::<_, String>(Deposited { amount: 8 }))
        .unwrap();
    let typed = stored(&mut account);
    for event in typed.iter().chain(&as_json(&typed)) {
        let decoded = AccountEvent::from_stored(&event.envelope, &event.payload).unwrap();
        assert_eq!(decoded.event_name(), event.name());
    }
    let audited = restamped(
        &typed[0],
        Audited::NAME,
        1,
        Payload::typed(Audited { by: "eve".into() }),
    );
    let error = AccountEvent::from_stored(&audited.envelope, &audited.payload).unwrap_err();
    assert!(
        matches!(&error, ApplyError::Unhandled { aggregate_type: "Account", event_name } if event_name == "account.audited"),
        "{error:?}"
    );
}

#[test]
fn an_unhandled_event_fails_replay_by_default() {
    let mut account = opened_account();
    let id = account.id();
    let mut events = stored(&mut account);
    let mut audited = restamped(
        &events[0],
        Audited::NAME,
        1,
        Payload::typed(Audited { by: "eve".into() }),
    );
    audited.envelope.aggregate_version = 2;
    events.push(audited);

    for events in [&events, &as_json(&events)] {
        let error = replay::<Account>(id, events).unwrap_err();
        match error {
            AggregateError::Apply(ApplyError::Unhandled {
                aggregate_type,
                event_name,
            }) => {
                assert_eq!(
                    (aggregate_type, event_name.as_str()),
                    ("Account", "account.audited")
                );
            }
            other => panic!("expected an unhandled event, got {other:?}"),
        }
    }
}

#[test]
fn an_unhandled_event_is_skipped_when_the_aggregate_ignores_them() {
    let mut account = opened_account();
    account
        .execute(|_| Ok::<_, String>(Deposited { amount: 8 }))
        .unwrap();
    let id = account.id();
    let events = stored(&mut account);

    for events in [&events, &as_json(&events)] {
        let statement = replay::<Statement>(id, events).unwrap();
        assert_eq!(statement.state().deposits, 8);
        assert_eq!(statement.version(), 2, "a skipped event still counts");
    }
}

#[test]
fn a_stored_schema_version_other_than_the_types_is_a_typed_error() {
    let mut account = opened_account();
    account
        .execute(|_| Ok::<_, String>(Deposited { amount: 8 }))
        .unwrap();
    let id = account.id();
    let mut events = stored(&mut account);
    events[1].envelope.schema_version = 1;

    for events in [&events, &as_json(&events)] {
        let error = replay::<Account>(id, events).unwrap_err();
        assert!(
            matches!(
                error,
                AggregateError::Apply(ApplyError::Decode(DecodeError::SchemaVersion {
                    name: "account.deposited",
                    stored: 1,
                    expected: 2,
                }))
            ),
            "{error:?}"
        );
        let error = AccountEvent::from_stored(&events[1].envelope, &events[1].payload).unwrap_err();
        assert!(
            matches!(
                error,
                ApplyError::Decode(DecodeError::SchemaVersion { stored: 1, .. })
            ),
            "{error:?}"
        );
    }
}

#[test]
fn a_payload_that_does_not_fit_its_name_is_a_decode_error() {
    let mut account = opened_account();
    let id = account.id();
    let mut events = stored(&mut account);
    let typed_mismatch = restamped(
        &events[0],
        Opened::NAME,
        1,
        Payload::typed(Withdrawn { amount: 1 }),
    );
    let json_mismatch = restamped(
        &events[0],
        Opened::NAME,
        1,
        Payload::json(r#"{"amount":1}"#),
    );

    events[0] = typed_mismatch;
    let error = replay::<Account>(id, &events).unwrap_err();
    assert!(
        matches!(
            error,
            AggregateError::Apply(ApplyError::Decode(DecodeError::TypeMismatch { .. }))
        ),
        "{error:?}"
    );
    events[0] = json_mismatch;
    let error = replay::<Account>(id, &events).unwrap_err();
    assert!(
        matches!(
            error,
            AggregateError::Apply(ApplyError::Decode(DecodeError::Payload { .. }))
        ),
        "{error:?}"
    );
}

#[test]
fn apply_event_and_handles_reach_the_same_handler() {
    let mut by_enum = Account::default();
    by_enum.apply_event(&AccountEvent::Deposited(Deposited { amount: 3 }));
    let mut by_handles = Account::default();
    eventsource::Handles::<Deposited>::handle(&mut by_handles, &Deposited { amount: 3 });
    assert_eq!(by_enum, by_handles);
    assert_eq!(by_enum.applied, ["deposited"]);
}

#[test]
fn the_events_of_one_type_a_command_decides_share_one_allocation_and_each_reads_as_itself() {
    let mut account = opened_account();
    let amounts = [5, 7, 11];
    account
        .execute(|_| Ok::<_, String>(amounts.map(|amount| Deposited { amount }).to_vec()))
        .unwrap();
    assert_eq!(account.state().balance, 23);
    assert_eq!(
        account.state().applied,
        ["opened", "deposited", "deposited", "deposited"]
    );
    let deposits = &account.uncommitted()[1..];
    let Payload::Shared(first) = &deposits[0].payload else {
        panic!("not shared: {:?}", deposits[0].payload);
    };
    for (index, (event, amount)) in deposits.iter().zip(amounts).enumerate() {
        match &event.payload {
            Payload::Shared(shared) => {
                assert!(shared.shares_events_with(first));
                assert_eq!(shared.index(), index);
            }
            other => panic!("not shared: {other:?}"),
        }
        assert_eq!(event.envelope.aggregate_version, index as u64 + 2);
        assert_eq!(
            event.payload.decode::<Deposited>(Deposited::NAME).unwrap(),
            Deposited { amount }
        );
        assert_eq!(
            event.payload.to_json().unwrap(),
            format!(r#"{{"amount":{amount}}}"#)
        );
        assert_eq!(
            format!("{:?}", event.payload),
            format!("Deposited {{ amount: {amount} }}")
        );
    }

    // They replay, as they are and as a database returns them.
    let id = account.id();
    let expected = Account {
        owner: Some("ada".into()),
        balance: 23,
        applied: vec!["opened", "deposited", "deposited", "deposited"],
    };
    let typed = stored(&mut account);
    for events in [&typed, &as_json(&typed)] {
        assert_eq!(replay::<Account>(id, events).unwrap().state(), &expected);
    }
}

#[test]
fn a_single_event_or_a_vec_of_the_event_enum_keeps_one_payload_each() {
    let mut account = opened_account();
    account
        .execute(|_| {
            Ok::<_, String>(vec![
                AccountEvent::from(Deposited { amount: 3 }),
                Withdrawn { amount: 1 }.into(),
            ])
        })
        .unwrap();
    account
        .execute(|_| Ok::<_, String>(vec![Deposited { amount: 4 }]))
        .unwrap();
    assert_eq!(account.state().balance, 6);
    for event in account.uncommitted() {
        assert!(
            matches!(event.payload, Payload::Typed(_)),
            "{:?}",
            event.payload
        );
    }
}
