//! Runs the workloads of BENCH.md and prints one `RESULT {...}` line per measurement.
//!
//! ```text
//! cargo run --release -p eventsource-bench -- --backend mem [--workloads W1,W3,P1] [--reps 5]
//! cargo run --release -p eventsource-bench -- --backend sqlite [--workloads W5,W7]
//! cargo run --release -p eventsource-bench --features postgres -- --backend pg
//! cargo run --release -p eventsource-bench --features postgres -- --backend pg-raw
//! ```
//!
//! | workload (mem / db) | what |
//! |---|---|
//! | `W1` / `W5` | one append call per event, expected version checked: 10,000 aggregates x 10 events |
//! | `W2` / `W6` | one append call of 100 events per new aggregate (one command deciding the 100 events, one save): 1,000 aggregates x 100 events |
//! | `W3` / `W7` | 20 loads of one aggregate of 10,000 events, state rebuilt (`load_ms`) |
//! | `W4` / `W8` | the 210,000 events of W1-W3 in global order through a counting projection |
//! | `P1` | the same 210,000 events through [`ProjectionRunner::catch_up`] with a counting projection; once with the runner's defaults (`"config":"default"`: a checkpoint after every event) and once with `checkpoint_every_batch` (`"config":"checkpoint_every_batch"`); in-memory checkpoints on every backend |
//!
//! The default workloads are all of them; `--workloads` takes a comma-separated subset
//! (`W5` and `W1` mean the same workload; the backend decides which id is printed).
//! `REPS` or `--reps` sets the repetitions: 5 in memory, 3 on a database by default. Each
//! repetition runs on a fresh store: a new SQLite file, or a new PostgreSQL schema
//! `bench_<pid>_<rep>` that is dropped afterwards.
//!
//! `--backend pg` and `--backend pg-raw` need the crate's `postgres` feature and read the
//! server from `EVENTSOURCE_BENCH_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). `pg-raw` measures the database alone
//! (`"peer":"database"`), with plain sqlx on a table like the store's: see `pg.rs`.
//!
//! `--backend redis [--workloads R1,R3] [--reps 3]` (feature `redis`) measures the Redis
//! Streams bus instead: see `redis_bus.rs`.
//!
//! [`ProjectionRunner::catch_up`]: eventsource::projection::ProjectionRunner::catch_up
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use eventsource::projection::{Projection, ProjectionRunner};
use eventsource::{
    AggregateRepository, AggregateRoot, EventStore, InMemoryEventStore, ReadAll, RecordedEvent,
    SqliteEventStore,
};
use eventsource_bench::{Counter, Incremented};
use futures_util::TryStreamExt;
use uuid::Uuid;

#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "redis")]
mod redis_bus;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The store under test.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Mem,
    Sqlite,
    /// `PostgresEventStore`.
    Pg,
    /// The database alone, through plain sqlx.
    PgRaw,
}

impl Backend {
    fn parse(name: &str) -> Result<Self, BoxError> {
        let backend = match name {
            "mem" => Backend::Mem,
            "sqlite" => Backend::Sqlite,
            "pg" => Backend::Pg,
            "pg-raw" => Backend::PgRaw,
            other => {
                return Err(format!(
                    "unknown backend `{other}`; available: mem, sqlite, pg, pg-raw{}",
                    if cfg!(feature = "redis") {
                        ", redis"
                    } else {
                        ""
                    }
                )
                .into());
            }
        };
        if matches!(backend, Backend::Pg | Backend::PgRaw) && !cfg!(feature = "postgres") {
            return Err(format!(
                "`--backend {name}` needs the `postgres` feature: \
                 cargo run --release -p eventsource-bench --features postgres -- --backend {name}"
            )
            .into());
        }
        Ok(backend)
    }

    /// `peer` and `backend` of the RESULT lines.
    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Backend::Mem => ("eventsource", "mem"),
            Backend::Sqlite => ("eventsource", "sqlite"),
            Backend::Pg => ("eventsource", "pg"),
            Backend::PgRaw => ("database", "pg"),
        }
    }

    fn default_reps(self) -> usize {
        if self == Backend::Mem { 5 } else { 3 }
    }
}

/// A workload, whatever the backend (W1 and W5 are the same workload on other stores).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    /// W1 / W5.
    AppendOneByOne,
    /// W2 / W6.
    AppendBatches,
    /// W3 / W7.
    Load,
    /// W4 / W8.
    ProjectAll,
    /// P1.
    CatchUp,
}

impl Workload {
    const ALL: [Workload; 5] = [
        Workload::AppendOneByOne,
        Workload::AppendBatches,
        Workload::Load,
        Workload::ProjectAll,
        Workload::CatchUp,
    ];

    fn parse(id: &str) -> Result<Self, BoxError> {
        match id.trim() {
            "W1" | "W5" => Ok(Workload::AppendOneByOne),
            "W2" | "W6" => Ok(Workload::AppendBatches),
            "W3" | "W7" => Ok(Workload::Load),
            "W4" | "W8" => Ok(Workload::ProjectAll),
            "P1" => Ok(Workload::CatchUp),
            other => Err(format!("unknown workload `{other}`; available: W1-W8 and P1").into()),
        }
    }

    /// The printed id: W1-W4 in memory, W5-W8 on a database.
    fn id(self, backend: Backend) -> &'static str {
        let mem = backend == Backend::Mem;
        match self {
            Workload::AppendOneByOne if mem => "W1",
            Workload::AppendOneByOne => "W5",
            Workload::AppendBatches if mem => "W2",
            Workload::AppendBatches => "W6",
            Workload::Load if mem => "W3",
            Workload::Load => "W7",
            Workload::ProjectAll if mem => "W4",
            Workload::ProjectAll => "W8",
            Workload::CatchUp => "P1",
        }
    }

    /// Whether this workload needs the data set of `setup` (W4 and P1 read what W1-W3 wrote).
    fn needs(self, setup: Workload) -> bool {
        self == setup || matches!(self, Workload::ProjectAll | Workload::CatchUp)
    }
}

struct Args {
    backend: Backend,
    workloads: Vec<Workload>,
    reps: usize,
}

impl Args {
    fn wants(&self, workload: Workload) -> bool {
        self.workloads.contains(&workload)
    }

    fn needs(&self, setup: Workload) -> bool {
        self.workloads.iter().any(|w| w.needs(setup))
    }
}

fn parse_args() -> Result<Args, BoxError> {
    let mut backend = Backend::Mem;
    let mut workloads = None;
    let mut reps = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--backend" => backend = Backend::parse(&value()?)?,
            "--workloads" => {
                workloads = Some(
                    value()?
                        .split(',')
                        .map(Workload::parse)
                        .collect::<Result<Vec<_>, _>>()?,
                );
            }
            "--reps" => reps = Some(value()?.parse()?),
            "--help" | "-h" => {
                println!(
                    "usage: eventsource-bench [--backend mem|sqlite|pg|pg-raw] \
                     [--workloads W1,W2,W3,W4,P1] [--reps N]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    let reps = match reps {
        Some(reps) => reps,
        None => match std::env::var("REPS") {
            Ok(reps) => reps.parse().map_err(|e| format!("REPS={reps:?}: {e}"))?,
            Err(_) => backend.default_reps(),
        },
    };
    let mut workloads = workloads.unwrap_or_else(|| Workload::ALL.to_vec());
    if backend == Backend::PgRaw && workloads.contains(&Workload::CatchUp) {
        // The database alone has no projection runner.
        workloads.retain(|w| *w != Workload::CatchUp);
        eprintln!("note: P1 needs the event store; `--backend pg-raw` skips it");
    }
    Ok(Args {
        backend,
        workloads,
        reps,
    })
}

/// Prints one `RESULT` line with `fields` after the common ones.
fn result_line(
    backend: Backend,
    workload: Workload,
    rep: usize,
    fields: serde_json::Map<String, serde_json::Value>,
) {
    let (peer, backend_label) = backend.labels();
    let mut line = serde_json::json!({
        "peer": peer,
        "backend": backend_label,
        "workload": workload.id(backend),
        "rep": rep,
    });
    if let Some(map) = line.as_object_mut() {
        map.extend(fields);
    }
    println!("RESULT {line}");
}

/// A throughput measurement.
fn throughput(events: u64, seconds: f64) -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    map.insert("events".into(), events.into());
    map.insert("seconds".into(), seconds.into());
    map.insert("events_per_s".into(), (events as f64 / seconds).into());
    map
}

/// What the workloads run against: the event store, or the database alone (baselines).
trait Target {
    /// `aggregates` new aggregates of `per` events each, aggregate after aggregate, in
    /// append calls of `per_call` events with the expected version checked (W1/W5: 1 per
    /// call; W2/W6: 100; W3/W7's stream: 100). Each call saves what one command decided.
    /// Returns the last aggregate's id.
    async fn appends(
        &self,
        aggregates: usize,
        per: usize,
        per_call: usize,
    ) -> Result<Uuid, BoxError>;
    /// W3/W7: one load of that aggregate, checked to have `events` events.
    async fn load(&self, id: Uuid, events: u64) -> Result<(), BoxError>;
    /// W4/W8: every event in global order through a projection that counts them.
    async fn project_all(&self) -> Result<u64, BoxError>;
    /// The event store, for workloads that need more than these calls (P1).
    fn store(&self) -> Option<&Arc<dyn EventStore>>;
}

impl Target for Arc<dyn EventStore> {
    async fn appends(
        &self,
        aggregates: usize,
        per: usize,
        per_call: usize,
    ) -> Result<Uuid, BoxError> {
        let repo = AggregateRepository::<Counter, _>::new(Arc::clone(self));
        let mut id = Uuid::nil();
        for _ in 0..aggregates {
            id = Uuid::now_v7();
            let mut counter = AggregateRoot::<Counter>::new(id);
            let mut left = per;
            while left > 0 {
                // One command per append call: it decides all the events of that call.
                let n = per_call.min(left);
                if n == 1 {
                    counter.execute(Counter::increment)?;
                } else {
                    counter.execute(|c| c.increment_many(n))?;
                }
                repo.save(&mut counter).await?;
                left -= n;
            }
        }
        Ok(id)
    }

    async fn load(&self, id: Uuid, events: u64) -> Result<(), BoxError> {
        let repo = AggregateRepository::<Counter, _>::new(Arc::clone(self));
        let counter = repo.load(id).await?;
        if counter.state().count != events || counter.version() != events {
            return Err(format!(
                "loaded {:?} at version {}",
                counter.state(),
                counter.version()
            )
            .into());
        }
        Ok(())
    }

    async fn project_all(&self) -> Result<u64, BoxError> {
        let mut projection = CountingProjection::default();
        let mut events = self.read_all(ReadAll::from_start());
        while let Some(event) = events.try_next().await? {
            projection.count(&event)?;
        }
        projection.check()
    }

    fn store(&self) -> Option<&Arc<dyn EventStore>> {
        Some(self)
    }
}

/// Counts events and sums their amounts (decoding each payload), for W4/W8 and P1.
#[derive(Default)]
struct CountingProjection {
    count: u64,
    sum: u64,
}

impl CountingProjection {
    fn count(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        let amount = event
            .as_event::<Incremented>()?
            .ok_or_else(|| format!("unexpected event `{}`", event.name()))?
            .amount;
        self.count += 1;
        self.sum += amount;
        Ok(())
    }

    fn check(&self) -> Result<u64, BoxError> {
        if self.sum != self.count {
            return Err(format!(
                "projection saw {} events but summed {}",
                self.count, self.sum
            )
            .into());
        }
        Ok(self.count)
    }
}

/// Shares its counts with the bench, which hands the projection itself to the runner.
#[derive(Clone, Default)]
struct SharedCounter(Arc<std::sync::Mutex<CountingProjection>>);

#[eventsource::async_trait]
impl Projection for SharedCounter {
    fn name(&self) -> &str {
        "bench-counter"
    }

    async fn handle(&mut self, event: &RecordedEvent) -> Result<(), BoxError> {
        self.0
            .lock()
            .map_err(|_| "counter lock poisoned")?
            .count(event)
    }
}

/// P1: the whole log through `ProjectionRunner::catch_up`, in each configuration.
async fn catch_up(
    store: &Arc<dyn EventStore>,
    backend: Backend,
    rep: usize,
) -> Result<(), BoxError> {
    type Configure = fn(ProjectionRunner) -> ProjectionRunner;
    let configs: [(&str, Configure); 2] = [
        ("default", |runner| runner),
        (
            "checkpoint_every_batch",
            ProjectionRunner::checkpoint_every_batch,
        ),
    ];
    for (config, configure) in configs {
        let counter = SharedCounter::default();
        let mut runner = configure(ProjectionRunner::new(Arc::clone(store)).with(counter.clone()));
        let start = Instant::now();
        let report = runner.catch_up().await?;
        let seconds = start.elapsed().as_secs_f64();
        let events = counter
            .0
            .lock()
            .map_err(|_| "counter lock poisoned")?
            .check()?;
        if report.delivered != events {
            return Err(format!(
                "runner delivered {} events, the projection counted {events}",
                report.delivered
            )
            .into());
        }
        let mut fields = throughput(events, seconds);
        fields.insert("config".into(), config.into());
        result_line(backend, Workload::CatchUp, rep, fields);
    }
    Ok(())
}

/// One repetition of the selected workloads on a fresh `target`.
async fn run_rep(target: &impl Target, args: &Args, rep: usize) -> Result<(), BoxError> {
    let backend = args.backend;
    for (workload, aggregates, per, per_call) in [
        (Workload::AppendOneByOne, 10_000, 10, 1),
        (Workload::AppendBatches, 1_000, 100, 100),
    ] {
        if args.needs(workload) {
            let start = Instant::now();
            target.appends(aggregates, per, per_call).await?;
            if args.wants(workload) {
                let seconds = start.elapsed().as_secs_f64();
                let events = (aggregates * per) as u64;
                result_line(backend, workload, rep, throughput(events, seconds));
            }
        }
    }
    if args.needs(Workload::Load) {
        let id = target.appends(1, 10_000, 100).await?;
        if args.wants(Workload::Load) {
            let mut load_ms = Vec::with_capacity(20);
            for _ in 0..20 {
                let start = Instant::now();
                target.load(id, 10_000).await?;
                load_ms.push(start.elapsed().as_secs_f64() * 1e3);
            }
            let mut fields = serde_json::Map::new();
            fields.insert("events".into(), 10_000.into());
            fields.insert("load_ms".into(), load_ms.into());
            result_line(backend, Workload::Load, rep, fields);
        }
    }
    if args.wants(Workload::ProjectAll) {
        let start = Instant::now();
        let events = target.project_all().await?;
        let seconds = start.elapsed().as_secs_f64();
        result_line(
            backend,
            Workload::ProjectAll,
            rep,
            throughput(events, seconds),
        );
    }
    if args.wants(Workload::CatchUp)
        && let Some(store) = target.store()
    {
        catch_up(store, backend, rep).await?;
    }
    Ok(())
}

/// A fresh SQLite file: WAL, durable commits (synchronous=FULL).
async fn fresh_sqlite() -> Result<(Arc<dyn EventStore>, PathBuf), BoxError> {
    let path = std::env::temp_dir().join(format!("eventsource-bench-{}.sqlite", Uuid::now_v7()));
    let store = SqliteEventStore::open(&path).await?;
    store.migrate().await?;
    Ok((Arc::new(store), path))
}

/// Removes a SQLite file and its WAL files.
fn remove_sqlite(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        // Best effort: a leftover file in the temp dir is harmless.
        let _ = std::fs::remove_file(file);
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    #[cfg(feature = "postgres")]
    let server = match args.backend {
        Backend::Pg | Backend::PgRaw => Some(pg::Server::connect().await?),
        _ => None,
    };
    for rep in 0..args.reps {
        match args.backend {
            Backend::Mem => {
                let store: Arc<dyn EventStore> = Arc::new(InMemoryEventStore::new());
                run_rep(&store, &args, rep).await?;
            }
            Backend::Sqlite => {
                let (store, path) = fresh_sqlite().await?;
                let outcome = run_rep(&store, &args, rep).await;
                drop(store);
                remove_sqlite(&path);
                outcome?;
            }
            #[cfg(feature = "postgres")]
            Backend::Pg | Backend::PgRaw => {
                let server = server.as_ref().ok_or("not connected to PostgreSQL")?;
                server.run_rep(&args, rep).await?;
            }
            #[cfg(not(feature = "postgres"))]
            Backend::Pg | Backend::PgRaw => {
                return Err("this backend needs the `postgres` feature".into());
            }
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    #[cfg(feature = "redis")]
    if let Some(outcome) = redis_bus::main_if_selected() {
        return report(outcome);
    }
    let outcome = parse_args().and_then(|args| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(run(args))
    });
    report(outcome)
}

/// Prints an error as a sentence (not a `Debug` dump) and sets the exit code.
fn report(outcome: Result<(), BoxError>) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            let mut message = format!("error: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                // Many errors already print their source in their own message.
                let cause_text = cause.to_string();
                if !message.contains(&cause_text) {
                    message.push_str(": ");
                    message.push_str(&cause_text);
                }
                source = cause.source();
            }
            eprintln!("{message}");
            std::process::ExitCode::FAILURE
        }
    }
}
