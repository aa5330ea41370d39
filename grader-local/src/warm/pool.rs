//! A fixed number of warm workers shared by concurrent jobs.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::worker::{Worker, WorkerSpec};
use super::{RunLog, WarmError, private_dir};

/// Consecutive failed worker starts after which the pool stops trying (every job then runs as
/// a plain process).
const MAX_START_FAILURES: u32 = 3;

/// How the pool sizes, checks and recycles its workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Workers at most (jobs beyond that wait for a free one). At least 1.
    pub workers: usize,
    /// Replace a worker after this many jobs (0: never).
    pub recycle_after_jobs: u64,
    /// Replace a worker whose resident memory grew by more than this many bytes since it
    /// started (0: never).
    pub max_rss_growth: u64,
    /// Ping a worker that has been idle this long before giving it a job.
    pub ping_after_idle: Duration,
    /// How long a ping may take.
    pub ping_timeout: Duration,
    /// Workers start each job's kernels ahead of need (a kernel zygote per job that forks
    /// each notebook's kernel); off, the tool launches its kernels as in a plain run.
    pub prestart_kernels: bool,
}

/// Default number of jobs after which a worker is replaced.
pub const DEFAULT_RECYCLE_AFTER_JOBS: u64 = 100;
/// Default growth of a worker's resident memory, in MiB, past which it is replaced.
pub const DEFAULT_MAX_RSS_GROWTH_MIB: u64 = 512;
/// Default seconds a worker may take to import the tool.
pub const DEFAULT_START_TIMEOUT: u64 = 60;
/// Most workers a pool may have.
pub const MAX_WORKERS: u32 = 256;
/// Whether workers start kernels ahead of need unless told otherwise.
pub const DEFAULT_PRESTART_KERNELS: bool = true;

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            workers: 1,
            recycle_after_jobs: DEFAULT_RECYCLE_AFTER_JOBS,
            max_rss_growth: DEFAULT_MAX_RSS_GROWTH_MIB * 1024 * 1024,
            ping_after_idle: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(5),
            prestart_kernels: DEFAULT_PRESTART_KERNELS,
        }
    }
}

/// Counts of what the pool did to its workers, for logs, tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Workers that said hello.
    pub started: u64,
    /// Worker starts that failed.
    pub failed_starts: u64,
    /// Workers replaced after `recycle_after_jobs` jobs or on memory growth.
    pub recycled: u64,
    /// Workers found dead, unresponsive or broken, and replaced.
    pub replaced: u64,
    /// Jobs that ran on a worker.
    pub jobs: u64,
}

#[derive(Debug, Default)]
struct Counters {
    started: AtomicU64,
    failed_starts: AtomicU64,
    recycled: AtomicU64,
    replaced: AtomicU64,
    jobs: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    spec: WorkerSpec,
    settings: PoolSettings,
    dir: PathBuf,
    idle: Mutex<Vec<Worker>>,
    slots: Arc<Semaphore>,
    start_failures: AtomicU32,
    disabled: Mutex<Option<String>>,
    logs: AtomicU64,
    counters: Counters,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Idle workers are killed by their own drop; the logs go with the directory.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The warm workers of one grading tool. Cheap to clone; the workers are killed when the last
/// clone is dropped (call [`WarmPool::shutdown`] to let them exit cleanly).
#[derive(Debug, Clone)]
pub struct WarmPool {
    inner: Arc<Inner>,
}

/// A worker lent to one job, with its slot in the pool.
#[derive(Debug)]
pub struct Lease {
    worker: Option<Worker>,
    slot: Option<OwnedSemaphorePermit>,
}

impl Lease {
    /// The lent worker.
    pub fn worker(&mut self) -> &mut Worker {
        self.worker
            .as_mut()
            .expect("a lease holds its worker until it is given back")
    }
}

impl WarmPool {
    /// Starts `settings.workers` workers at once (their logs go to a new private directory
    /// under `work_dir`). Fails only when not one of them could start; the error says why.
    pub async fn start(
        spec: WorkerSpec,
        settings: PoolSettings,
        work_dir: &Path,
    ) -> Result<WarmPool, WarmError> {
        let settings = PoolSettings {
            workers: settings.workers.max(1),
            ..settings
        };
        let spec = WorkerSpec {
            prestart_kernels: settings.prestart_kernels,
            ..spec
        };
        let dir = private_dir(work_dir)?;
        let inner = Arc::new(Inner {
            slots: Arc::new(Semaphore::new(settings.workers)),
            spec,
            settings,
            dir,
            idle: Mutex::new(Vec::new()),
            start_failures: AtomicU32::new(0),
            disabled: Mutex::new(None),
            logs: AtomicU64::new(0),
            counters: Counters::default(),
        });
        let pool = WarmPool { inner };
        // The imports are CPU-bound: at most one per core at a time, so that each start stays
        // within its timeout however many workers there are.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let gate = Arc::new(Semaphore::new(cores));
        let starts = (0..pool.inner.settings.workers).map(|_| {
            let (spec, gate) = (pool.inner.spec.clone(), gate.clone());
            tokio::spawn(async move {
                let _turn = gate.acquire_owned().await;
                Worker::start(&spec).await
            })
        });
        let mut first_error = None;
        for started in starts.collect::<Vec<_>>() {
            match started.await {
                Ok(Ok(worker)) => {
                    pool.inner.counters.started.fetch_add(1, Ordering::Relaxed);
                    pool.push_idle(worker);
                }
                Ok(Err(e)) => {
                    pool.inner
                        .counters
                        .failed_starts
                        .fetch_add(1, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
                Err(join) => {
                    first_error.get_or_insert(WarmError::NotReady {
                        python: pool.inner.spec.python.clone(),
                        reason: format!("its start was aborted ({join})"),
                        stderr: String::new(),
                    });
                }
            }
        }
        match first_error {
            Some(e) if pool.idle_count() == 0 => Err(e),
            Some(e) => {
                tracing::warn!(error = %e, "a warm grading worker could not start; the pool runs with fewer and retries on demand");
                Ok(pool)
            }
            None => Ok(pool),
        }
    }

    /// The settings the pool runs with.
    pub fn settings(&self) -> &PoolSettings {
        &self.inner.settings
    }

    /// What the pool did so far.
    pub fn stats(&self) -> PoolStats {
        let c = &self.inner.counters;
        PoolStats {
            started: c.started.load(Ordering::Relaxed),
            failed_starts: c.failed_starts.load(Ordering::Relaxed),
            recycled: c.recycled.load(Ordering::Relaxed),
            replaced: c.replaced.load(Ordering::Relaxed),
            jobs: c.jobs.load(Ordering::Relaxed),
        }
    }

    /// Process ids of the workers waiting for a job.
    pub fn idle_pids(&self) -> Vec<u32> {
        self.inner
            .idle
            .lock()
            .map(|idle| idle.iter().map(Worker::pid).collect())
            .unwrap_or_default()
    }

    /// Worker slots taken: by a job holding a worker, or by a worker being replaced. With
    /// [`WarmPool::idle_pids`], how busy the pool is (for metrics).
    pub fn busy(&self) -> usize {
        if self.inner.slots.is_closed() {
            return 0;
        }
        self.inner
            .settings
            .workers
            .saturating_sub(self.inner.slots.available_permits())
    }

    /// Why the pool gave up starting workers, if it did.
    pub fn disabled(&self) -> Option<String> {
        self.inner.disabled.lock().ok()?.clone()
    }

    /// A healthy worker for one job: waits for a free slot, replaces a worker that died or
    /// does not answer, starts one where the slot is empty. `Err` says why no worker can be had
    /// (the job should then run as a plain process).
    pub async fn checkout(&self) -> Result<Lease, String> {
        let inner = &self.inner;
        if let Some(reason) = self.disabled() {
            return Err(reason);
        }
        let slot = inner
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| "the warm worker pool is shut down".to_string())?;
        while let Some(mut worker) = self.pop_idle() {
            if let Some(status) = worker.exited() {
                tracing::warn!(
                    pid = worker.pid(),
                    %status,
                    stderr = %worker.stderr_tail(),
                    "a warm grading worker has ended; starting a new one"
                );
                inner.counters.replaced.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if worker.idle_for() >= inner.settings.ping_after_idle
                && let Err(e) = worker.ping(inner.settings.ping_timeout).await
            {
                tracing::warn!(pid = worker.pid(), error = %e, "a warm grading worker does not answer; replacing it");
                inner.counters.replaced.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            return Ok(Lease {
                worker: Some(worker),
                slot: Some(slot),
            });
        }
        if let Some(reason) = self.disabled() {
            return Err(reason);
        }
        match Worker::start(&inner.spec).await {
            Ok(worker) => {
                inner.start_failures.store(0, Ordering::Relaxed);
                inner.counters.started.fetch_add(1, Ordering::Relaxed);
                Ok(Lease {
                    worker: Some(worker),
                    slot: Some(slot),
                })
            }
            Err(e) => Err(self.start_failed(e)),
        }
    }

    /// Takes a worker back after a job. A `broken` worker is killed; a worker due for
    /// recycling is shut down. Either is replaced in the background while its slot stays
    /// taken, so that the next job finds a ready worker.
    pub fn give_back(&self, mut lease: Lease, broken: bool) {
        let Some(worker) = lease.worker.take() else {
            return;
        };
        let inner = &self.inner;
        inner.counters.jobs.fetch_add(1, Ordering::Relaxed);
        let settings = &inner.settings;
        let due = if broken {
            inner.counters.replaced.fetch_add(1, Ordering::Relaxed);
            Some("it broke".to_string())
        } else if settings.recycle_after_jobs > 0 && worker.jobs() >= settings.recycle_after_jobs {
            inner.counters.recycled.fetch_add(1, Ordering::Relaxed);
            Some(format!("it ran {} jobs", worker.jobs()))
        } else if let Some(growth) = worker.rss_growth()
            && settings.max_rss_growth > 0
            && growth > settings.max_rss_growth
        {
            inner.counters.recycled.fetch_add(1, Ordering::Relaxed);
            Some(format!("its memory grew by {} MiB", growth / (1024 * 1024)))
        } else {
            None
        };
        let Some(why) = due else {
            self.push_idle(worker);
            return;
        };
        tracing::info!(pid = worker.pid(), "replacing a warm grading worker: {why}");
        self.replace_in_background(worker, !broken, lease.slot.take());
    }

    /// Stops `old` (letting it exit if `graceful`, else killing it at once) and starts its
    /// successor, holding `slot` until it is ready.
    fn replace_in_background(
        &self,
        old: Worker,
        graceful: bool,
        slot: Option<OwnedSemaphorePermit>,
    ) {
        let pool = self.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if graceful {
                old.shutdown().await;
            } else {
                drop(old);
            }
            if pool.inner.slots.is_closed() || pool.disabled().is_some() {
                return;
            }
            match Worker::start(&pool.inner.spec).await {
                Ok(worker) => {
                    pool.inner.start_failures.store(0, Ordering::Relaxed);
                    pool.inner.counters.started.fetch_add(1, Ordering::Relaxed);
                    pool.push_idle(worker);
                }
                Err(e) => {
                    let reason = pool.start_failed(e);
                    tracing::warn!("a warm grading worker could not be replaced: {reason}");
                }
            }
        });
    }

    /// A new empty log file (0600) for one job; removed when the returned guard drops.
    pub(super) fn new_log(&self) -> std::io::Result<RunLog> {
        let n = self.inner.logs.fetch_add(1, Ordering::Relaxed);
        let path = self.inner.dir.join(format!("job-{n}.log"));
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(RunLog { path })
    }

    /// Lets every idle worker exit (they kill nothing but their own, finished state) and stops
    /// handing out workers; jobs still running keep theirs until they end.
    pub async fn shutdown(&self) {
        self.inner.slots.close();
        let idle: Vec<Worker> = self
            .inner
            .idle
            .lock()
            .map(|mut idle| idle.drain(..).collect())
            .unwrap_or_default();
        let stopping: Vec<_> = idle
            .into_iter()
            .map(|w| tokio::spawn(w.shutdown()))
            .collect();
        for s in stopping {
            let _ = s.await;
        }
    }

    fn start_failed(&self, e: WarmError) -> String {
        let inner = &self.inner;
        inner.counters.failed_starts.fetch_add(1, Ordering::Relaxed);
        let failures = inner.start_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let reason = e.to_string();
        if failures >= MAX_START_FAILURES
            && let Ok(mut disabled) = inner.disabled.lock()
            && disabled.is_none()
        {
            tracing::error!(
                "{failures} warm grading workers in a row could not start; every further job runs the grading tool as a plain process. Last error: {reason}"
            );
            *disabled = Some(format!(
                "{failures} warm grading workers in a row could not start (last: {reason})"
            ));
        }
        reason
    }

    fn pop_idle(&self) -> Option<Worker> {
        self.inner.idle.lock().ok()?.pop()
    }

    fn push_idle(&self, worker: Worker) {
        if self.inner.slots.is_closed() {
            tokio::spawn(worker.shutdown());
            return;
        }
        if let Ok(mut idle) = self.inner.idle.lock() {
            idle.push(worker);
        }
    }

    fn idle_count(&self) -> usize {
        self.inner.idle.lock().map(|i| i.len()).unwrap_or(0)
    }
}
