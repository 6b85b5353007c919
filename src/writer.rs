//! Group commit: requests hand their validated submission to a writer task, which commits
//! whatever has arrived (up to `writer.max_batch`, waiting at most `writer.max_wait_us` for more)
//! in **one** transaction, then answers each waiting request. A 2xx still means committed.
//!
//! A failed batch is retried item by item, so one bad row cannot fail its neighbours. The queue
//! is bounded: when it is full the request is refused at once (503 with `Retry-After`) instead
//! of queueing without bound. SQLite gets one writer task (it has one writer connection);
//! PostgreSQL may run several in parallel.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Mutex};

use crate::domain::{NewOutboxMessage, NewSubmission};
use crate::store::{BatchItem, LeadStore, Recorded, StoreError};
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
    pub fn start(
        store: LeadStore,
        config: WriterConfig,
        metrics: Arc<Metrics>,
    ) -> SubmissionWriter {
        let (queue, rx) = mpsc::channel(config.queue_capacity.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let (stop, stop_rx) = watch::channel(false);
        let tasks = (0..config.writers.max(1))
            .map(|_| {
                tokio::spawn(run(
                    store.clone(),
                    rx.clone(),
                    stop_rx.clone(),
                    config,
                    metrics.clone(),
                ))
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

async fn run(
    store: LeadStore,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    mut stop: watch::Receiver<bool>,
    config: WriterConfig,
    metrics: Arc<Metrics>,
) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let first = if *stop.borrow() {
                // Stopping: take what is left without waiting.
                match rx.try_recv() {
                    Ok(j) => j,
                    Err(_) => return,
                }
            } else {
                tokio::select! {
                    job = rx.recv() => match job {
                        Some(j) => j,
                        None => return,
                    },
                    _ = stop.changed() => continue,
                }
            };
            let mut batch = vec![first];
            while batch.len() < config.max_batch {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
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
        commit(&store, batch, &metrics).await;
    }
}

#[allow(clippy::cast_precision_loss)]
async fn commit(store: &LeadStore, batch: Vec<Job>, metrics: &Metrics) {
    metrics.write_batch_size.observe(batch.len() as f64);
    let items: Vec<BatchItem<'_>> = batch
        .iter()
        .map(|j| BatchItem {
            sub: &j.sub,
            messages: &j.messages,
        })
        .collect();
    match store.record_batch(&items).await {
        Ok(results) => {
            drop(items);
            for (job, result) in batch.into_iter().zip(results) {
                let _ = job.reply.send(Ok(result));
            }
        }
        Err(e) if batch.len() > 1 && !e.is_unavailable() => {
            // One bad row must not fail its neighbours: retry each on its own.
            tracing::warn!(error = %e, size = batch.len(), "batch failed; retrying its items one by one");
            drop(items);
            for job in batch {
                let result = store.record_submission(&job.sub, &job.messages).await;
                let _ = job.reply.send(result);
            }
        }
        Err(e) => {
            drop(items);
            let single = batch.len() == 1;
            for job in batch {
                let result = if single && matches!(e, StoreError::Conflict) {
                    store.record_submission(&job.sub, &job.messages).await
                } else {
                    Err(clone_error(&e))
                };
                let _ = job.reply.send(result);
            }
        }
    }
}

/// Store errors are not `Clone` (they wrap driver errors); a batch answers each request with
/// an equivalent one.
fn clone_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(inner) => {
            StoreError::Unavailable(sqlx::Error::Protocol(format!("batch failed: {inner}")))
        }
        StoreError::Conflict => StoreError::Conflict,
        other => StoreError::Corrupt(format!("batch failed: {other}")),
    }
}
