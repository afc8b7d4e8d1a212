//! `--backend redis`: the Redis Streams bus.
//!
//! | workload | what |
//! |---|---|
//! | `R1` | publish 20,000 events, one `publish` call (one round trip) each |
//! | `R2` | publish 200,000 events in `publish` calls of 100 (one pipelined round trip each) |
//! | `R3` | end-to-end latency: publish one event, wait until a consumer's handler has it; 2,000 times |
//! | `R4` | consume: 100,000 events already in the stream, through one consumer, handled and acknowledged |
//!
//! The server is read from `EVENTSOURCE_BENCH_REDIS_URL` (default `redis://127.0.0.1:6379`);
//! each repetition works under a fresh key prefix and deletes its keys afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use eventsource::{
    BoxError, EventBus, EventEnvelope, EventHandler, Payload, RecordedEvent, RedisEventBus,
};
use eventsource_bench::Incremented;
use tokio::sync::mpsc;
use uuid::Uuid;

fn event(position: u64, aggregate_id: Uuid) -> Arc<RecordedEvent> {
    let now = chrono::Utc::now();
    Arc::new(RecordedEvent {
        envelope: EventEnvelope {
            event_id: Uuid::now_v7(),
            event_name: <Incremented as eventsource::DomainEvent>::NAME.into(),
            schema_version: 1,
            aggregate_id,
            aggregate_type: "Counter".into(),
            aggregate_version: position,
            occurred_at: now,
            context: Default::default(),
        },
        payload: Payload::typed(Incremented::sample()),
        position,
        stored_at: now,
    })
}

fn events(n: u64) -> Vec<Arc<RecordedEvent>> {
    let id = Uuid::now_v7();
    (1..=n).map(|p| event(p, id)).collect()
}

/// Tells the bench when a handler saw an event (and checks it decodes).
struct Signal(mpsc::UnboundedSender<(u64, Instant)>);

#[async_trait]
impl EventHandler for Signal {
    async fn handle(&self, event: &RecordedEvent) -> Result<(), BoxError> {
        let at = Instant::now();
        let decoded = event.decode::<Incremented>()?;
        if decoded.amount != 1 {
            return Err("wrong amount".into());
        }
        self.0.send((event.position, at))?;
        Ok(())
    }
}

fn result(workload: &str, rep: usize, events: u64, seconds: f64) {
    let line = serde_json::json!({
        "peer": "eventsource",
        "backend": "redis",
        "workload": workload,
        "rep": rep,
        "events": events,
        "seconds": seconds,
        "events_per_s": events as f64 / seconds,
    });
    println!("RESULT {line}");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn cleanup(url: &str, prefix: &str) -> Result<(), BoxError> {
    let client = redis::Client::open(url)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut con)
        .await?;
    if !keys.is_empty() {
        redis::cmd("DEL").arg(&keys).exec_async(&mut con).await?;
    }
    Ok(())
}

async fn bus(url: &str, prefix: &str) -> Result<RedisEventBus, BoxError> {
    Ok(RedisEventBus::builder(url).prefix(prefix).build().await?)
}

/// Runs the selected workloads (1-4 for R1-R4) `reps` times.
pub async fn run(workloads: &[usize], reps: usize) -> Result<(), BoxError> {
    let url = std::env::var("EVENTSOURCE_BENCH_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    for rep in 0..reps {
        let prefix = format!("esbench:{}", Uuid::now_v7().simple());
        let outcome = run_rep(&url, &prefix, workloads, rep).await;
        cleanup(&url, &prefix).await?;
        outcome?;
    }
    Ok(())
}

async fn run_rep(url: &str, prefix: &str, workloads: &[usize], rep: usize) -> Result<(), BoxError> {
    let bus = bus(url, prefix).await?;
    if workloads.contains(&1) {
        let batch = events(20_000);
        let start = Instant::now();
        for event in &batch {
            bus.publish(std::slice::from_ref(event)).await?;
        }
        result("R1", rep, batch.len() as u64, start.elapsed().as_secs_f64());
    }
    if workloads.contains(&2) {
        let batch = events(200_000);
        let start = Instant::now();
        for chunk in batch.chunks(100) {
            bus.publish(chunk).await?;
        }
        result("R2", rep, batch.len() as u64, start.elapsed().as_secs_f64());
    }
    if workloads.contains(&3) {
        let bus = self::bus(url, &format!("{prefix}:latency")).await?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let consumer = bus
            .consumer("latency")
            .start_from(eventsource::StartFrom::Latest)
            .subscribe_all(Arc::new(Signal(tx)))
            .start()
            .await?;
        let batch = events(2_000);
        let mut micros = Vec::with_capacity(batch.len());
        for event in &batch {
            let sent = Instant::now();
            bus.publish(std::slice::from_ref(event)).await?;
            let (position, seen) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await?
                .ok_or("consumer stopped")?;
            if position != event.position {
                return Err(format!(
                    "expected position {}, handler saw {position}",
                    event.position
                )
                .into());
            }
            micros.push(seen.duration_since(sent).as_secs_f64() * 1e6);
        }
        consumer.shutdown().await;
        micros.sort_by(f64::total_cmp);
        let line = serde_json::json!({
            "peer": "eventsource",
            "backend": "redis",
            "workload": "R3",
            "rep": rep,
            "events": micros.len(),
            "latency_us": {
                "p50": percentile(&micros, 0.50),
                "p90": percentile(&micros, 0.90),
                "p99": percentile(&micros, 0.99),
                "max": percentile(&micros, 1.0),
            },
        });
        println!("RESULT {line}");
    }
    if workloads.contains(&4) {
        let bus = self::bus(url, &format!("{prefix}:consume")).await?;
        let batch = events(100_000);
        for chunk in batch.chunks(1_000) {
            bus.publish(chunk).await?;
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let start = Instant::now();
        let consumer = bus
            .consumer("consume")
            .subscribe_all(Arc::new(Signal(tx)))
            .batch_size(500)
            .start()
            .await?;
        let mut seen = 0u64;
        while seen < batch.len() as u64 {
            tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await?
                .ok_or("consumer stopped")?;
            seen += 1;
        }
        // Acknowledged too: the handler runs before the batch's XACK.
        let mut positions = consumer.positions();
        positions.wait_for(|p| *p == batch.len() as u64).await?;
        result("R4", rep, seen, start.elapsed().as_secs_f64());
        consumer.shutdown().await;
    }
    Ok(())
}

/// `Some` when the command line asks for `--backend redis`: runs it on a two-thread
/// runtime (publisher and consumer side by side, as in a service).
pub fn main_if_selected() -> Option<Result<(), BoxError>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let selected = args
        .windows(2)
        .any(|w| w[0] == "--backend" && w[1] == "redis");
    if !selected {
        return None;
    }
    Some(parse_and_run(&args))
}

fn parse_and_run(args: &[String]) -> Result<(), BoxError> {
    let mut workloads = vec![1, 2, 3, 4];
    let mut reps = match std::env::var("REPS") {
        Ok(reps) => reps.parse()?,
        Err(_) => 3,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--backend" => {
                value()?;
            }
            "--workloads" => {
                workloads = value()?
                    .split(',')
                    .map(|w| w.trim_start_matches('R').parse::<usize>())
                    .collect::<Result<_, _>>()?;
            }
            "--reps" => reps = value()?.parse()?,
            other => return Err(format!("unknown argument `{other}` for --backend redis").into()),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(&workloads, reps))
}
