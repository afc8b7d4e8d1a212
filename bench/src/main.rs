//! Runs the workloads of BENCH.md and prints one `RESULT {...}` line per measurement.
//!
//! ```text
//! cargo run --release -p eventsource-bench -- --backend mem [--workloads W1,W3] [--reps 5]
//! ```
//!
//! `--backend sqlite` and `--backend pg` need the crate's `sqlite` / `postgres` features
//! (`--all-features`); PostgreSQL is read from `EVENTSOURCE_BENCH_POSTGRES_URL`.
//!
//! `--backend redis [--workloads R1,R3] [--reps 3]` (feature `redis`) measures the Redis
//! Streams bus instead: see `redis_bus.rs`.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Instant;

use eventsource::{
    AggregateRepository, AggregateRoot, EventStore, ExpectedVersion, InMemoryEventStore, ReadAll,
    SqliteEventStore,
};
use eventsource_bench::{Counter, Incremented};
use futures_util::TryStreamExt;
use uuid::Uuid;

#[cfg(feature = "redis")]
mod redis_bus;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The store under test and how to make a fresh one for each repetition.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Mem,
    Sqlite,
}

impl Backend {
    fn parse(name: &str) -> Result<Self, BoxError> {
        match name {
            "mem" => Ok(Backend::Mem),
            "sqlite" => Ok(Backend::Sqlite),
            other => Err(format!("unknown backend `{other}`; available: mem, sqlite").into()),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Backend::Mem => "mem",
            Backend::Sqlite => "sqlite",
        }
    }

    /// Workload ids: W1-W4 in memory, W5-W8 on a database.
    fn workload_id(self, index: usize) -> String {
        let offset = if self == Backend::Mem { 0 } else { 4 };
        format!("W{}", index + offset)
    }

    fn default_reps(self) -> usize {
        if self == Backend::Mem { 5 } else { 3 }
    }

    async fn fresh_store(self) -> Result<Arc<dyn EventStore>, BoxError> {
        match self {
            Backend::Mem => Ok(Arc::new(InMemoryEventStore::new())),
            Backend::Sqlite => {
                // A fresh file per repetition, WAL, durable commits (synchronous=FULL).
                let path = std::env::temp_dir()
                    .join(format!("eventsource-bench-{}.sqlite", Uuid::now_v7()));
                let store = SqliteEventStore::open(&path).await?;
                store.migrate().await?;
                Ok(Arc::new(store))
            }
        }
    }
}

struct Args {
    backend: Backend,
    workloads: Vec<usize>,
    reps: usize,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut backend = Backend::Mem;
    let mut workloads = vec![1, 2, 3, 4];
    let mut reps = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--backend" => backend = Backend::parse(&value()?)?,
            "--workloads" => {
                workloads = value()?
                    .split(',')
                    .map(|w| {
                        let n: usize = w.trim_start_matches('W').parse()?;
                        // W5-W8 are W1-W4 on a database.
                        Ok::<_, BoxError>(if n > 4 { n - 4 } else { n })
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--reps" => reps = Some(value()?.parse()?),
            "--help" | "-h" => {
                println!(
                    "usage: eventsource-bench [--backend mem|sqlite|pg] [--workloads W1,W2,W3,W4] [--reps N]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    let reps = match reps {
        Some(reps) => reps,
        None => match std::env::var("REPS") {
            Ok(reps) => reps.parse()?,
            Err(_) => backend.default_reps(),
        },
    };
    Ok(Args {
        backend,
        workloads,
        reps,
    })
}

fn result_line(backend: Backend, workload: &str, rep: usize, events: u64, seconds: f64) {
    let line = serde_json::json!({
        "peer": "eventsource",
        "backend": backend.label(),
        "workload": workload,
        "rep": rep,
        "events": events,
        "seconds": seconds,
        "events_per_s": events as f64 / seconds,
    });
    println!("RESULT {line}");
}

/// W1/W5: one append call per event, expected version checked, aggregate after aggregate.
async fn appends_one_by_one(
    store: &Arc<dyn EventStore>,
    aggregates: usize,
    per: usize,
) -> Result<u64, BoxError> {
    let repo = AggregateRepository::<Counter, _>::new(Arc::clone(store));
    for _ in 0..aggregates {
        let mut counter = AggregateRoot::<Counter>::new(Uuid::now_v7());
        for _ in 0..per {
            counter.execute(Counter::increment)?;
            repo.save(&mut counter).await?;
        }
    }
    Ok((aggregates * per) as u64)
}

/// W2/W6: one append call of `per` events per new aggregate.
async fn appends_in_batches(
    store: &Arc<dyn EventStore>,
    aggregates: usize,
    per: usize,
) -> Result<u64, BoxError> {
    let repo = AggregateRepository::<Counter, _>::new(Arc::clone(store));
    for _ in 0..aggregates {
        let mut counter = AggregateRoot::<Counter>::new(Uuid::now_v7());
        for _ in 0..per {
            counter.execute(Counter::increment)?;
        }
        repo.save(&mut counter).await?;
    }
    Ok((aggregates * per) as u64)
}

/// W3/W7 setup: one aggregate of `events` events, appended in batches of 100.
async fn long_stream(store: &Arc<dyn EventStore>, events: usize) -> Result<Uuid, BoxError> {
    let id = Uuid::now_v7();
    let mut counter = AggregateRoot::<Counter>::new(id);
    for chunk in 0..events.div_ceil(100) {
        for _ in 0..100.min(events - chunk * 100) {
            counter.execute(Counter::increment)?;
        }
        let expected = ExpectedVersion::Exact(counter.committed_version());
        let batch = counter.take_uncommitted();
        store.append("Counter", id, expected, &batch).await?;
    }
    Ok(id)
}

/// W4/W8: every event in global order through a projection that counts them.
async fn project_all(store: &Arc<dyn EventStore>) -> Result<u64, BoxError> {
    let mut count = 0u64;
    let mut sum = 0u64;
    let mut events = store.read_all(ReadAll::from_start());
    while let Some(event) = events.try_next().await? {
        event
            .payload
            .with::<Incremented, _>(event.name(), |e| sum += e.amount)?;
        count += 1;
    }
    if sum != count {
        return Err(format!("projection saw {count} events but summed {sum}").into());
    }
    Ok(count)
}

async fn run(args: Args) -> Result<(), BoxError> {
    let backend = args.backend;
    for rep in 0..args.reps {
        let store = backend.fresh_store().await?;
        if args.workloads.contains(&1) || args.workloads.contains(&4) {
            let start = Instant::now();
            let events = appends_one_by_one(&store, 10_000, 10).await?;
            if args.workloads.contains(&1) {
                result_line(
                    backend,
                    &backend.workload_id(1),
                    rep,
                    events,
                    start.elapsed().as_secs_f64(),
                );
            }
        }
        if args.workloads.contains(&2) || args.workloads.contains(&4) {
            let start = Instant::now();
            let events = appends_in_batches(&store, 1_000, 100).await?;
            if args.workloads.contains(&2) {
                result_line(
                    backend,
                    &backend.workload_id(2),
                    rep,
                    events,
                    start.elapsed().as_secs_f64(),
                );
            }
        }
        if args.workloads.contains(&3) || args.workloads.contains(&4) {
            let id = long_stream(&store, 10_000).await?;
            if args.workloads.contains(&3) {
                let repo = AggregateRepository::<Counter, _>::new(Arc::clone(&store));
                let mut load_ms = Vec::with_capacity(20);
                for _ in 0..20 {
                    let start = Instant::now();
                    let counter = repo.load(id).await?;
                    load_ms.push(start.elapsed().as_secs_f64() * 1e3);
                    if counter.state().count != 10_000 || counter.version() != 10_000 {
                        return Err(format!(
                            "loaded {:?} at version {}",
                            counter.state(),
                            counter.version()
                        )
                        .into());
                    }
                }
                let line = serde_json::json!({
                    "peer": "eventsource",
                    "backend": backend.label(),
                    "workload": backend.workload_id(3),
                    "rep": rep,
                    "events": 10_000,
                    "load_ms": load_ms,
                });
                println!("RESULT {line}");
            }
        }
        if args.workloads.contains(&4) {
            let start = Instant::now();
            let events = project_all(&store).await?;
            result_line(
                backend,
                &backend.workload_id(4),
                rep,
                events,
                start.elapsed().as_secs_f64(),
            );
        }
    }
    Ok(())
}

fn main() -> Result<(), BoxError> {
    #[cfg(feature = "redis")]
    if let Some(outcome) = redis_bus::main_if_selected() {
        return outcome;
    }
    let args = parse_args()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}
