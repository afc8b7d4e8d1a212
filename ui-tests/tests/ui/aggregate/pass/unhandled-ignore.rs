//! `unhandled = "ignore"` skips stored events the aggregate has no handler for.

use eventsource::{aggregate, Aggregate, AggregateRoot, DomainEvent, Payload, RecordedEvent, Unhandled};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Counter")]
struct Incremented {
    by: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(aggregate = "Counter")]
struct Renamed {
    name: String,
}

#[derive(Debug, Default)]
struct Counter {
    value: u32,
}

#[aggregate(unhandled = "ignore")]
impl Counter {
    #[handles(Incremented)]
    fn on_incremented(&mut self, event: &Incremented) {
        self.value += event.by;
    }
}

fn main() {
    assert_eq!(Counter::UNHANDLED, Unhandled::Ignore);

    let mut writer = AggregateRoot::<Counter>::new(uuid::Uuid::now_v7());
    writer.record(Incremented { by: 2 });
    let mut stored: Vec<RecordedEvent> = writer
        .take_uncommitted()
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let at = e.envelope.occurred_at;
            RecordedEvent::from_uncommitted(e, i as u64 + 1, at)
        })
        .collect();
    let mut renamed = stored[0].clone();
    renamed.envelope.event_name = <Renamed as DomainEvent>::NAME.into();
    renamed.envelope.aggregate_version = 2;
    renamed.payload = Payload::typed(Renamed { name: "clicks".into() });
    stored.push(renamed);

    let mut reader = AggregateRoot::<Counter>::new(writer.id());
    reader.load_from_history(&stored).unwrap();
    assert_eq!(reader.state().value, 2);
    assert_eq!(reader.version(), 2);
}
