//! Running projections: catch up from the global log, then follow it live.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use uuid::Uuid;

use super::storage::{CheckpointRepository, DeadLetterStatus, DlqRepository};
use super::{
    InMemoryCheckpointRepository, InMemoryDlqRepository, OnExhausted, Projection, ProjectionError,
    RetryPolicy,
};
use crate::error::BoxError;
use crate::event::RecordedEvent;
use crate::store::{EventStore, ReadAll};

/// Where a projection starts reading when the runner starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// After its saved checkpoint, or from the beginning without one (the default).
    #[default]
    Checkpoint,
    /// From the first event, ignoring any checkpoint.
    Beginning,
    /// After the last event stored now: only new events.
    End,
    /// After this position.
    Position(u64),
}

/// A projection's progress, for monitoring.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionStatus {
    /// The projection.
    pub name: String,
    /// The position it is done with.
    pub position: u64,
    /// Events the runner has read past this projection's position and not delivered to
    /// it: non-zero while the projection is halted. Counted in events, not positions (on
    /// PostgreSQL positions are far apart).
    pub lag: u64,
    /// Events handled since the runner started.
    pub processed: u64,
    /// Events dead-lettered since the runner started.
    pub failed: u64,
    /// Handled events per second since the runner started.
    pub events_per_second: f64,
    /// Why the projection is halted (it failed on an event with [`OnExhausted::Stop`]).
    pub halted: Option<String>,
}

/// What a catch-up or a rebuild did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatchUpReport {
    /// Events read from the log.
    pub events_read: u64,
    /// Deliveries to projections that succeeded.
    pub delivered: u64,
    /// Events that went to the dead-letter queue.
    pub dead_lettered: u64,
    /// The position reached.
    pub position: u64,
}

struct Slot {
    projection: Box<dyn Projection>,
    name: String,
    position: u64,
    /// The last handled event whose checkpoint is not written yet.
    unsaved: Option<(u64, Option<Uuid>)>,
    processed: u64,
    failed: u64,
    halted: Option<String>,
    /// Events read past `position` and not delivered (while halted).
    behind: u64,
    /// The last position counted in `behind` (pages can be read again after a reset of
    /// another projection: each event counts once).
    counted: u64,
}

/// Runs projections over an event store. See the [module docs](super).
///
/// ```
/// # use std::sync::Arc;
/// # use eventsource::projection::{Projection, ProjectionRunner, RetryPolicy};
/// # use eventsource::{BoxError, InMemoryEventStore, RecordedEvent};
/// # #[derive(Default)] struct Counter(u64);
/// # #[async_trait::async_trait]
/// # impl Projection for Counter {
/// #     fn name(&self) -> &str { "counter" }
/// #     async fn handle(&mut self, _: &RecordedEvent) -> Result<(), BoxError> { self.0 += 1; Ok(()) }
/// # }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store = Arc::new(InMemoryEventStore::new());
/// let mut runner = ProjectionRunner::new(store).retry(RetryPolicy::immediate(3)).with(Counter::default());
/// let report = runner.catch_up().await?;   // or `runner.start()` to follow live
/// assert_eq!(report.events_read, 0);
/// # Ok::<(), eventsource::projection::ProjectionError>(())
/// # }).unwrap();
/// ```
pub struct ProjectionRunner {
    store: Arc<dyn EventStore>,
    checkpoints: Arc<dyn CheckpointRepository>,
    dlq: Arc<dyn DlqRepository>,
    slots: Vec<Slot>,
    policy: RetryPolicy,
    batch_size: usize,
    checkpoint_every_event: bool,
    start: StartFrom,
    poll_interval: Duration,
    initialized: bool,
    started: Instant,
}

impl std::fmt::Debug for ProjectionRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field(
                "projections",
                &self.slots.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl ProjectionRunner {
    /// A runner over `store` with in-memory checkpoints and dead letters (replace them
    /// with durable ones), the default retry policy, pages of 500 events and a checkpoint
    /// after every event.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        ProjectionRunner {
            store,
            checkpoints: Arc::new(InMemoryCheckpointRepository::new()),
            dlq: Arc::new(InMemoryDlqRepository::new()),
            slots: Vec::new(),
            policy: RetryPolicy::default(),
            batch_size: 500,
            checkpoint_every_event: true,
            start: StartFrom::Checkpoint,
            poll_interval: Duration::from_secs(1),
            initialized: false,
            started: Instant::now(),
        }
    }

    /// Adds a projection.
    pub fn with(mut self, projection: impl Projection + 'static) -> Self {
        self.add(Box::new(projection));
        self
    }

    /// Adds a boxed projection.
    pub fn add(&mut self, projection: Box<dyn Projection>) {
        let name = projection.name().to_owned();
        self.slots.push(Slot {
            projection,
            name,
            position: 0,
            unsaved: None,
            processed: 0,
            failed: 0,
            halted: None,
            behind: 0,
            counted: 0,
        });
        self.initialized = false;
    }

    /// Where checkpoints are kept.
    pub fn checkpoints(mut self, repository: Arc<dyn CheckpointRepository>) -> Self {
        self.checkpoints = repository;
        self
    }

    /// Where dead letters are kept.
    pub fn dead_letters(mut self, repository: Arc<dyn DlqRepository>) -> Self {
        self.dlq = repository;
        self
    }

    /// The retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Events per read (at least 1).
    pub fn batch_size(mut self, size: usize) -> Self {
        self.batch_size = size.max(1);
        self
    }

    /// Writes checkpoints once per page instead of after every event (fewer writes; after
    /// a crash, up to a page is delivered again).
    pub fn checkpoint_every_batch(mut self) -> Self {
        self.checkpoint_every_event = false;
        self
    }

    /// Where projections start.
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.start = start;
        self.initialized = false;
        self
    }

    /// How often a live runner polls when the store has no append signal (or as a
    /// safety net when it has one).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The dead-letter queue in use.
    pub fn dlq(&self) -> &Arc<dyn DlqRepository> {
        &self.dlq
    }

    /// The checkpoint repository in use.
    pub fn checkpoint_repository(&self) -> &Arc<dyn CheckpointRepository> {
        &self.checkpoints
    }

    async fn init(&mut self) -> Result<(), ProjectionError> {
        if self.initialized {
            return Ok(());
        }
        let end = match self.start {
            StartFrom::End => self.store.current_position().await?,
            _ => 0,
        };
        for slot in &mut self.slots {
            slot.position = match self.start {
                StartFrom::Checkpoint => self
                    .checkpoints
                    .load(&slot.name)
                    .await?
                    .map_or(0, |c| c.position),
                StartFrom::Beginning => 0,
                StartFrom::End => end,
                StartFrom::Position(position) => position,
            };
        }
        self.initialized = true;
        Ok(())
    }

    /// Every projection's progress.
    pub fn status(&self) -> Vec<ProjectionStatus> {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-9);
        self.slots
            .iter()
            .map(|slot| ProjectionStatus {
                name: slot.name.clone(),
                position: slot.position,
                lag: slot.behind,
                processed: slot.processed,
                failed: slot.failed,
                events_per_second: slot.processed as f64 / seconds,
                halted: slot.halted.clone(),
            })
            .collect()
    }

    /// Reads and delivers one page. Returns how many events were read (0: caught up).
    ///
    /// # Errors
    /// The first [`ProjectionError::HandlerFailed`] of a projection that stops on failure
    /// (the others still got the page), store errors.
    pub async fn step(&mut self) -> Result<usize, ProjectionError> {
        self.init().await?;
        let Some(from) = self
            .slots
            .iter()
            .filter(|s| s.halted.is_none())
            .map(|s| s.position)
            .min()
        else {
            return Ok(0);
        };
        let query = ReadAll::after(from).batch_size(self.batch_size);
        let page = self
            .store
            .read_all_batch(&query, from, self.batch_size)
            .await?;
        let mut first_error = None;
        for event in &page {
            for index in 0..self.slots.len() {
                let slot = &self.slots[index];
                if slot.position >= event.position {
                    continue;
                }
                if slot.halted.is_none()
                    && let Err(error) = self.deliver(index, event).await
                {
                    first_error.get_or_insert(error);
                }
                // Halted before this event, or at it.
                let slot = &mut self.slots[index];
                if slot.halted.is_some() && event.position > slot.counted {
                    slot.behind += 1;
                    slot.counted = event.position;
                }
            }
        }
        // Writes what is pending: a page's checkpoints, or ones whose write failed before.
        self.flush_checkpoints().await?;
        match first_error {
            Some(error) => Err(error),
            None => Ok(page.len()),
        }
    }

    /// Delivers pages until the log is exhausted.
    ///
    /// # Errors
    /// As [`step`](Self::step): it stops at the first error.
    pub async fn catch_up(&mut self) -> Result<CatchUpReport, ProjectionError> {
        let before: u64 = self.slots.iter().map(|s| s.processed).sum();
        let failed_before: u64 = self.slots.iter().map(|s| s.failed).sum();
        let mut events_read = 0u64;
        loop {
            let read = self.step().await?;
            if read == 0 {
                break;
            }
            events_read += read as u64;
        }
        Ok(CatchUpReport {
            events_read,
            delivered: self.slots.iter().map(|s| s.processed).sum::<u64>() - before,
            dead_lettered: self.slots.iter().map(|s| s.failed).sum::<u64>() - failed_before,
            position: self.slots.iter().map(|s| s.position).min().unwrap_or(0),
        })
    }

    /// Calls the handler per the retry policy. Returns the last error and the attempts made.
    async fn attempt(
        &mut self,
        index: usize,
        event: &RecordedEvent,
    ) -> (Result<(), BoxError>, u32) {
        let policy = &self.policy;
        let slot = &mut self.slots[index];
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result: Result<(), BoxError> = match policy.timeout {
                Some(limit) => {
                    match tokio::time::timeout(limit, slot.projection.handle(event)).await {
                        Ok(result) => result,
                        Err(_) => Err(format!("handler timed out after {limit:?}").into()),
                    }
                }
                None => slot.projection.handle(event).await,
            };
            match result {
                Err(error) if attempt < policy.max_attempts => {
                    tracing::debug!(projection = %slot.name, position = event.position, attempt, %error, "handler failed; retrying");
                    let delay = policy.delay(attempt);
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                }
                result => return (result, attempt),
            }
        }
    }

    /// Delivers one event: retries, dead-letters when attempts run out, then moves the
    /// projection's position (unless it halts on the failure).
    async fn deliver(
        &mut self,
        index: usize,
        event: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let (outcome, attempts) = self.attempt(index, event).await;
        let on_exhausted = self.policy.on_exhausted;
        let slot = &mut self.slots[index];
        match outcome {
            Ok(()) => slot.processed += 1,
            Err(source) => {
                tracing::error!(projection = %slot.name, position = event.position, event = event.name(), attempts, error = %source, "event dead-lettered");
                self.dlq
                    .record_failure(event, &slot.name, &source.to_string(), attempts)
                    .await?;
                slot.failed += 1;
                if on_exhausted == OnExhausted::Stop {
                    slot.halted = Some(format!("failed at position {}: {source}", event.position));
                    return Err(ProjectionError::HandlerFailed {
                        projection: slot.name.clone(),
                        event_name: event.name().to_owned(),
                        position: event.position,
                        attempts,
                        source,
                    });
                }
            }
        }
        // The handler ran (or the dead letter is the record): the position moves in memory
        // first, so a failing checkpoint write never makes the handler run again.
        slot.position = event.position;
        slot.unsaved = Some((event.position, Some(event.event_id())));
        if self.checkpoint_every_event {
            self.flush_checkpoint(index).await?;
        }
        Ok(())
    }

    async fn flush_checkpoint(&mut self, index: usize) -> Result<(), ProjectionError> {
        let slot = &mut self.slots[index];
        if let Some((position, event_id)) = slot.unsaved {
            self.checkpoints
                .save(&slot.name, position, event_id)
                .await?;
            slot.unsaved = None;
        }
        Ok(())
    }

    async fn flush_checkpoints(&mut self) -> Result<(), ProjectionError> {
        for index in 0..self.slots.len() {
            self.flush_checkpoint(index).await?;
        }
        Ok(())
    }

    fn slot_index(&self, name: &str) -> Result<usize, ProjectionError> {
        self.slots
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| ProjectionError::UnknownProjection(name.to_owned()))
    }

    /// Truncates a projection and replays the whole log into it. Other projections are
    /// untouched.
    ///
    /// # Errors
    /// [`ProjectionError::Reset`] when the projection cannot be reset; as
    /// [`catch_up`](Self::catch_up).
    pub async fn rebuild(&mut self, name: &str) -> Result<CatchUpReport, ProjectionError> {
        self.init().await?;
        let index = self.slot_index(name)?;
        {
            let slot = &mut self.slots[index];
            slot.projection
                .reset()
                .await
                .map_err(|source| ProjectionError::Reset {
                    projection: name.to_owned(),
                    source,
                })?;
            slot.position = 0;
            slot.unsaved = None;
            slot.halted = None;
            slot.behind = 0;
            slot.counted = 0;
        }
        self.checkpoints.reset(name).await?;
        tracing::info!(projection = name, "rebuilding from the beginning");
        self.catch_up().await
    }

    /// Resets a projection: truncates its read model and forgets its checkpoint (it
    /// restarts from the beginning on the next step).
    ///
    /// # Errors
    /// [`ProjectionError::Reset`], store errors.
    pub async fn reset(&mut self, name: &str) -> Result<(), ProjectionError> {
        let index = self.slot_index(name)?;
        let slot = &mut self.slots[index];
        slot.projection
            .reset()
            .await
            .map_err(|source| ProjectionError::Reset {
                projection: name.to_owned(),
                source,
            })?;
        slot.position = 0;
        slot.unsaved = None;
        slot.halted = None;
        slot.behind = 0;
        slot.counted = 0;
        self.checkpoints.reset(name).await?;
        Ok(())
    }

    /// Re-delivers a dead letter to its projection (one attempt per the retry policy's
    /// count). On success the row is resolved by `"retry"`, and a projection halted at
    /// that event moves on. Returns whether it succeeded.
    ///
    /// # Errors
    /// Unknown projection or dead letter, store errors.
    pub async fn retry_dead_letter(
        &mut self,
        event_id: Uuid,
        projection: &str,
    ) -> Result<bool, ProjectionError> {
        self.init().await?;
        let index = self.slot_index(projection)?;
        let Some(row) = self.dlq.get(event_id, projection).await? else {
            return Err(ProjectionError::UnknownDeadLetter {
                event_id,
                projection: projection.to_owned(),
            });
        };
        self.dlq
            .set_status(event_id, projection, DeadLetterStatus::Retrying, None)
            .await?;
        let query = ReadAll::from_start();
        let page = self
            .store
            .read_all_batch(&query, row.position.saturating_sub(1), 1)
            .await?;
        let Some(event) = page.into_iter().find(|e| e.event_id() == event_id) else {
            return Err(ProjectionError::UnknownDeadLetter {
                event_id,
                projection: projection.to_owned(),
            });
        };
        let (outcome, attempts) = self.attempt(index, &event).await;
        match outcome {
            Ok(()) => {
                self.dlq
                    .set_status(
                        event_id,
                        projection,
                        DeadLetterStatus::Resolved,
                        Some("retry"),
                    )
                    .await?;
                let slot = &mut self.slots[index];
                slot.processed += 1;
                // A projection halted at this event moves past it.
                if slot.halted.is_some() && slot.position < event.position {
                    slot.halted = None;
                    // It reads again from here: nothing read is left undelivered.
                    slot.behind = 0;
                    slot.counted = 0;
                    slot.position = event.position;
                    slot.unsaved = Some((event.position, Some(event_id)));
                    self.flush_checkpoint(index).await?;
                }
                Ok(true)
            }
            Err(error) => {
                self.dlq
                    .record_failure(&event, projection, &error.to_string(), attempts)
                    .await?;
                Ok(false)
            }
        }
    }

    /// Runs in the background: catch up, then follow the log live until stopped.
    /// Must be called inside a Tokio runtime with the time driver enabled.
    pub fn start(self) -> RunnerHandle {
        let (control, mut commands) = watch::channel(Command::Run);
        let status = Arc::new(Mutex::new(self.status()));
        let shared = Arc::clone(&status);
        let task = tokio::spawn(async move {
            let mut runner = self;
            let signal = runner.store.append_signal();
            loop {
                let command = *commands.borrow_and_update();
                match command {
                    Command::Stop => break,
                    Command::Pause => {
                        if commands.changed().await.is_err() {
                            break;
                        }
                        continue;
                    }
                    Command::Run => {}
                }
                // Register interest before reading, so an append between the read and
                // the wait still wakes us.
                let notified = signal.as_ref().map(|n| n.notified());
                let mut notified = notified.map(Box::pin);
                if let Some(n) = notified.as_mut() {
                    n.as_mut().enable();
                }
                let read = match runner.step().await {
                    Ok(read) => read,
                    Err(error) => {
                        tracing::warn!(%error, "projection runner step failed");
                        // Store errors: back off; handler failures halted their projection.
                        if !matches!(error, ProjectionError::HandlerFailed { .. }) {
                            tokio::time::sleep(runner.poll_interval.min(Duration::from_secs(1)))
                                .await;
                        }
                        1
                    }
                };
                *shared.lock().unwrap_or_else(PoisonError::into_inner) = runner.status();
                if read > 0 {
                    continue;
                }
                let poll = tokio::time::sleep(runner.poll_interval);
                match notified {
                    Some(notified) => tokio::select! {
                        () = notified => {}
                        () = poll => {}
                        _ = commands.changed() => {}
                    },
                    None => tokio::select! {
                        () = poll => {}
                        _ = commands.changed() => {}
                    },
                }
            }
            if let Err(error) = runner.flush_checkpoints().await {
                tracing::warn!(%error, "checkpoint not saved at shutdown");
            }
            *shared.lock().unwrap_or_else(PoisonError::into_inner) = runner.status();
            runner
        });
        RunnerHandle {
            control,
            status,
            task,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Run,
    Pause,
    Stop,
}

/// Controls a runner started with [`ProjectionRunner::start`].
#[derive(Debug)]
pub struct RunnerHandle {
    control: watch::Sender<Command>,
    status: Arc<Mutex<Vec<ProjectionStatus>>>,
    task: tokio::task::JoinHandle<ProjectionRunner>,
}

impl RunnerHandle {
    /// Stops reading after the current page (the runner keeps its state).
    pub fn pause(&self) {
        self.control.send_replace(Command::Pause);
    }

    /// Resumes after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.control.send_replace(Command::Run);
    }

    /// The projections' progress as of the last page.
    pub fn status(&self) -> Vec<ProjectionStatus> {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops gracefully: finishes the current page, writes checkpoints, and returns the
    /// runner (to inspect, or to start again).
    ///
    /// # Errors
    /// When the runner's task panicked (a handler panicked).
    pub async fn stop(self) -> Result<ProjectionRunner, tokio::task::JoinError> {
        self.control.send_replace(Command::Stop);
        self.task.await
    }
}
