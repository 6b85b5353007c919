//! Group commit: requests hand their validated submission to a writer task, which commits
//! whatever has arrived (up to `writer.max_batch`, waiting at most `writer.max_wait_us` for more)
//! in **one** transaction, then answers each waiting request. A 2xx still means committed.
//!
//! A failed batch is retried item by item, so one bad row cannot fail its neighbours. The queue
//! is bounded: when it is full the request is refused at once (503 with `Retry-After`) instead
//! of queueing without bound. SQLite gets one writer task (it has one writer connection);
//! PostgreSQL may run several in parallel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch, Mutex};

use super::{BatchItem, LeadStore, Recorded, StoreError, WriteConn};
use crate::domain::{NewOutboxMessage, NewSubmission};
use crate::telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the write queue is full")]
    Overloaded,
    #[error("the writer has stopped")]
    Stopped,
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Job {
    sub: NewSubmission,
    messages: Vec<NewOutboxMessage>,
    reply: oneshot::Sender<Result<Recorded, StoreError>>,
}

/// The handle requests use. Cheap to share.
pub struct SubmissionWriter {
    queue: mpsc::Sender<Job>,
    stop: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    pub max_batch: usize,
    pub max_wait: Duration,
    pub queue_capacity: usize,
    pub writers: usize,
}

impl SubmissionWriter {
    /// Starts the writer tasks, each supervised: restarted after a panic (the requests of the
    /// batch it was writing get 503 and retry with their idempotency keys), given up if it
    /// keeps panicking, and then the queue is closed so requests get 503 at once.
    pub fn start(
        store: LeadStore,
        config: WriterConfig,
        metrics: Arc<Metrics>,
        supervision: (&crate::supervisor::TaskHealth, &crate::supervisor::Faults),
    ) -> SubmissionWriter {
        let (health, faults) = supervision;
        let (queue, rx) = mpsc::channel(config.queue_capacity.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let (stop, stop_rx) = watch::channel(false);
        let tasks = (0..config.writers.max(1))
            .map(|_| {
                let (store, rx, stop_rx, metrics_for_task, faults) = (
                    store.clone(),
                    rx.clone(),
                    stop_rx.clone(),
                    metrics.clone(),
                    faults.clone(),
                );
                let closing = rx.clone();
                crate::supervisor::supervise(
                    "writer",
                    health,
                    metrics.clone(),
                    move || {
                        run(
                            store.clone(),
                            rx.clone(),
                            stop_rx.clone(),
                            config,
                            metrics_for_task.clone(),
                            faults.clone(),
                        )
                    },
                    async move {
                        let mut rx = closing.lock().await;
                        rx.close();
                        while rx.try_recv().is_ok() {} // their requests get 503
                    },
                )
            })
            .collect();
        SubmissionWriter {
            queue,
            stop,
            tasks: std::sync::Mutex::new(tasks),
        }
    }

    /// Queues one submission and waits until its batch has committed.
    pub async fn submit(
        &self,
        sub: NewSubmission,
        messages: Vec<NewOutboxMessage>,
    ) -> Result<Recorded, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Job {
                sub,
                messages,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => WriteError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => WriteError::Stopped,
            })?;
        Ok(answer.await.map_err(|_| WriteError::Stopped)??)
    }

    /// Commits everything already queued, then stops the writer tasks.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks: Vec<_> = match self.tasks.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// How long a writer keeps its connection across back-to-back batches before giving others
/// (the outbox worker, confirmations; on SQLite there is one writer connection) a turn.
const HOLD: Duration = Duration::from_millis(10);

async fn run(
    store: LeadStore,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    mut stop: watch::Receiver<bool>,
    config: WriterConfig,
    metrics: Arc<Metrics>,
    faults: crate::supervisor::Faults,
) {
    let mut session: Option<(WriteConn, Instant)> = None;
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let mut batch = Vec::new();
            take_queued(&mut rx, &mut batch, config.max_batch);
            if batch.is_empty() {
                // Idle: give the connection back while waiting.
                session = None;
                if *stop.borrow() {
                    return; // stopping, and nothing is left
                }
                let first = tokio::select! {
                    job = rx.recv() => match job {
                        Some(j) => j,
                        None => return,
                    },
                    _ = stop.changed() => continue,
                };
                batch.push(first);
                take_queued(&mut rx, &mut batch, config.max_batch);
            }
            if !config.max_wait.is_zero() && batch.len() < config.max_batch {
                let deadline = tokio::time::Instant::now() + config.max_wait;
                while batch.len() < config.max_batch {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(j)) => batch.push(j),
                        _ => break,
                    }
                }
            }
            batch
        };
        faults.check("writer");
        // Past its turn (or unusable), the connection goes back before a new one is taken: on
        // SQLite it is the only one.
        session = session.filter(|(conn, since)| since.elapsed() < HOLD && conn.is_usable());
        let held = match session.take() {
            Some(s) => Ok(s),
            None => store.write_connection().await.map(|c| (c, Instant::now())),
        };
        match held {
            Ok((mut conn, since)) => {
                commit(&store, &mut conn, batch, &metrics).await;
                session = Some((conn, since));
            }
            Err(e) => {
                for job in batch {
                    let _ = job.reply.send(Err(e.replicate()));
                }
            }
        }
    }
}

/// Moves what is already queued into `batch`, up to `max` jobs, without waiting.
fn take_queued(rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(j) => batch.push(j),
            Err(_) => break,
        }
    }
}

#[allow(clippy::cast_precision_loss)]
async fn commit(store: &LeadStore, conn: &mut WriteConn, batch: Vec<Job>, metrics: &Metrics) {
    metrics.write_batch_size.observe(batch.len() as f64);
    let items: Vec<BatchItem<'_>> = batch
        .iter()
        .map(|j| BatchItem {
            sub: &j.sub,
            messages: &j.messages,
        })
        .collect();
    let outcome = store.record_batch(conn, &items).await;
    drop(items);
    let size = batch.len();
    let results: Vec<Result<Recorded, StoreError>> = match outcome {
        Ok(results) => results,
        Err(e) => batch.iter().map(|_| Err(e.replicate())).collect(),
    };
    for (job, result) in batch.into_iter().zip(results) {
        let result = match result {
            // One bad row must not fail its neighbours: a failed item is retried on its own
            // (also a lone item whose idempotency key another writer committed first).
            Err(e)
                if !e.is_unavailable()
                    && !matches!(e, StoreError::KeyReused)
                    && (size > 1 || matches!(e, StoreError::Conflict)) =>
            {
                tracing::warn!(error = %e, size, "batch item failed; retrying it on its own");
                store.record_one(conn, &job.sub, &job.messages).await
            }
            other => other,
        };
        let _ = job.reply.send(result);
    }
}
