//! Runs accepted jobs: each waits for the backend to be ready and for one of
//! `serve.concurrency` slots (a fair semaphore: first come, first served), runs through the
//! one shared [`Executor`] (so warm workers and the kube watch serve every job), and leaves
//! its outcome in the registry and, when graded to the end, in `serve.results_dir`.

use std::path::PathBuf;
use std::sync::Arc;

use grader_local::{Executor, Job, JobKind};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use super::registry::{JobState, Registry};

/// The shared executor, `None` until the backend is built.
pub type ExecutorCell = watch::Receiver<Option<Arc<Executor>>>;

/// Starts jobs under the concurrency limit.
pub struct Runner {
    registry: Arc<Registry>,
    slots: Arc<Semaphore>,
    executor: ExecutorCell,
    results_dir: Option<PathBuf>,
}

impl Runner {
    /// A runner of `concurrency` jobs at once over the executor `executor` will hold.
    pub fn new(
        registry: Arc<Registry>,
        concurrency: u32,
        executor: ExecutorCell,
        results_dir: Option<PathBuf>,
    ) -> Self {
        Runner {
            registry,
            slots: Arc::new(Semaphore::new(concurrency as usize)),
            executor,
            results_dir,
        }
    }

    /// Runs job `id` in the background; `cancel` is its token in the registry.
    pub fn spawn(self: &Arc<Self>, id: String, job: Job, kind: JobKind, cancel: CancellationToken) {
        let runner = self.clone();
        tokio::spawn(async move { runner.run(id, job, kind, cancel).await });
    }

    async fn run(&self, id: String, job: Job, kind: JobKind, cancel: CancellationToken) {
        let mut cell = self.executor.clone();
        let exec = tokio::select! {
            biased;
            () = cancel.cancelled() => None,
            ready = cell.wait_for(Option::is_some) => ready.ok().and_then(|e| e.clone()),
        };
        let Some(exec) = exec else {
            self.registry.abandon(&id);
            return;
        };
        let permit = tokio::select! {
            biased;
            () = cancel.cancelled() => None,
            permit = self.slots.clone().acquire_owned() => permit.ok(),
        };
        let Some(_permit) = permit else {
            self.registry.abandon(&id);
            return;
        };
        if !self.registry.start(&id) {
            return;
        }
        let outcome = exec.run(&job, kind, cancel).await;
        let ended = std::time::SystemTime::now();
        // The outcome file is written before waiters hear of it: a client told `done` finds it.
        if let Some(dir) = &self.results_dir
            && self.registry.final_state(&id, &outcome) == JobState::Done
        {
            let path = crate::batch::outcome_path(dir, kind, outcome.submission_id);
            let text = crate::wiring::outcome_json(&outcome) + "\n";
            if let Err(e) = crate::batch::write_atomically(&path, &text) {
                tracing::error!(path = %path.display(), error = %e, "cannot write the outcome");
            }
        }
        self.registry.finish(&id, outcome, ended);
    }
}
