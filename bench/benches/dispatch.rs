//! Generated dispatch (`#[aggregate]`) against a hand-written `match` doing the same job:
//! replaying 10,000 stored events, with typed (in-memory) and JSON (database) payloads.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use chrono_free::stored_events;
use criterion::{Criterion, criterion_group, criterion_main};
use eventsource::{Aggregate, ApplyError, EventEnvelope, Payload, RecordedEvent};
use eventsource_bench::{Counter, Incremented};

mod chrono_free {
    use eventsource::{AggregateRoot, Payload, RecordedEvent};
    use eventsource_bench::Counter;
    use uuid::Uuid;

    /// `n` stored events of one counter, typed or as JSON.
    pub fn stored_events(n: usize, json: bool) -> Vec<RecordedEvent> {
        let mut root = AggregateRoot::<Counter>::new(Uuid::now_v7());
        for _ in 0..n {
            root.execute(Counter::increment).unwrap();
        }
        let stored_at = root.uncommitted()[0].envelope.occurred_at;
        root.take_uncommitted()
            .into_iter()
            .enumerate()
            .map(|(i, mut event)| {
                if json {
                    event.payload = Payload::json(event.payload.to_json().unwrap().into_owned());
                }
                RecordedEvent::from_uncommitted(event, i as u64 + 1, stored_at)
            })
            .collect()
    }
}

/// The same counter, dispatch written by hand.
#[derive(Default)]
struct HandCounter {
    count: u64,
    sum: u64,
}

impl HandCounter {
    fn apply(&mut self, envelope: &EventEnvelope, payload: &Payload) -> Result<(), ApplyError> {
        match &*envelope.event_name {
            "Incremented" => {
                payload.with::<Incremented, _>(&envelope.event_name, |e| {
                    self.count += 1;
                    self.sum += e.amount;
                })?;
                Ok(())
            }
            other => Err(eventsource::__private::unhandled("Counter", other, false).unwrap_err()),
        }
    }
}

fn replay_generated(events: &[RecordedEvent]) -> u64 {
    let mut counter = Counter::default();
    for event in events {
        counter
            .apply_stored(&event.envelope, &event.payload)
            .unwrap();
    }
    counter.sum
}

fn replay_by_hand(events: &[RecordedEvent]) -> u64 {
    let mut counter = HandCounter::default();
    for event in events {
        counter.apply(&event.envelope, &event.payload).unwrap();
    }
    counter.count.min(counter.sum)
}

fn dispatch(c: &mut Criterion) {
    for (label, json) in [("typed", false), ("json", true)] {
        let events = stored_events(10_000, json);
        let mut group = c.benchmark_group(format!("replay_10k_{label}"));
        group.bench_function("generated", |b| {
            b.iter(|| replay_generated(black_box(&events)))
        });
        group.bench_function("hand_written", |b| {
            b.iter(|| replay_by_hand(black_box(&events)))
        });
        group.finish();
    }
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
