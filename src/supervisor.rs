//! Background tasks that restart when they panic: the submission writers and the outbox
//! worker. A panic is a bug, but it must not leave submissions answered "overloaded" forever
//! while `/readyz` stays green: the task is restarted (counted in
//! `inlet_task_restarts_total{task}`), and one that keeps panicking (more than
//! [`MAX_RESTARTS`] within [`RESTART_WINDOW`]) is given up, which `/readyz` reports.
//!
//! [`Faults`] lets the fault tests make a task panic on purpose through the running
//! application; nothing else sets it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::telemetry::Metrics;

/// Restarts tolerated within [`RESTART_WINDOW`] before a task is given up.
pub const MAX_RESTARTS: usize = 10;
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// Whether each supervised task is running, by name (for `/readyz`).
#[derive(Debug, Clone, Default)]
pub struct TaskHealth {
    tasks: Arc<Mutex<HashMap<&'static str, Arc<AtomicBool>>>>,
}

impl TaskHealth {
    fn register(&self, name: &'static str) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(true));
        if let Ok(mut tasks) = self.tasks.lock() {
            // Several writers share a name: the entry is down when any of them is.
            let entry = tasks.entry(name).or_insert_with(|| flag.clone());
            if !Arc::ptr_eq(entry, &flag) {
                return entry.clone();
            }
        }
        flag
    }

    /// Names of the tasks that were given up.
    pub fn stopped(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = self
            .tasks
            .lock()
            .map(|t| {
                t.iter()
                    .filter(|(_, up)| !up.load(Ordering::Relaxed))
                    .map(|(name, _)| *name)
                    .collect()
            })
            .unwrap_or_default();
        out.sort_unstable();
        out
    }
}

/// Panics to cause on purpose, by task name (fault tests only).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pending: Arc<Mutex<HashMap<&'static str, Arc<AtomicU32>>>>,
}

impl Faults {
    fn counter(&self, task: &'static str) -> Arc<AtomicU32> {
        self.pending
            .lock()
            .map(|mut p| p.entry(task).or_default().clone())
            .unwrap_or_default()
    }

    /// Makes the next `n` rounds of `task` panic.
    #[doc(hidden)]
    pub fn inject(&self, task: &'static str, n: u32) {
        self.counter(task).store(n, Ordering::Relaxed);
    }

    /// Panics if a fault is pending for `task` (called at the top of each round).
    pub fn check(&self, task: &'static str) {
        let counter = self.counter(task);
        if counter
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("fault injected into {task}");
        }
    }
}

/// Runs `make()` as a task, again each time it panics, until it returns or panics too often;
/// `on_give_up` runs once if it is given up.
pub fn supervise<F, Fut>(
    name: &'static str,
    health: &TaskHealth,
    metrics: Arc<Metrics>,
    make: F,
    on_give_up: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let up = health.register(name);
    tokio::spawn(async move {
        let mut recent: Vec<Instant> = Vec::new();
        loop {
            match tokio::spawn(make()).await {
                Ok(()) => return,
                Err(e) if e.is_panic() => {
                    metrics.task_restarts.with_label_values(&[name]).inc();
                    let now = Instant::now();
                    recent.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
                    recent.push(now);
                    if recent.len() > MAX_RESTARTS {
                        tracing::error!(
                            task = name,
                            "task keeps panicking; given up (see /readyz)"
                        );
                        up.store(false, Ordering::Relaxed);
                        on_give_up.await;
                        return;
                    }
                    tracing::error!(
                        task = name,
                        restarts = recent.len(),
                        "task panicked; restarting"
                    );
                    // Back off a little so a crash loop does not spin.
                    let pause = 20u64.saturating_mul(1 << recent.len().min(4));
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(_) => return, // cancelled: the runtime is shutting down
            }
        }
    })
}
