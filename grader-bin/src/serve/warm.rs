//! Warm workers by default for the commands that grade many jobs in one process.

use grader_config::{Backend, Layer, Loaded, MAX_WARM_WORKERS};

/// `grader serve` and `grader batch` keep the grading tool imported between jobs: when no
/// layer set `local.warm_workers`, they get one warm worker per job graded at once
/// (`concurrency`, at most [`MAX_WARM_WORKERS`]). A setting from any layer, `0` included,
/// wins; without a usable worker jobs still run as plain processes (the pool's fallback).
pub fn default_warm_workers(loaded: &mut Loaded, concurrency: u32) {
    if loaded.config.backend != Backend::Local
        || loaded.layer_of("local.warm_workers") != Layer::Default
    {
        return;
    }
    let workers = concurrency.clamp(1, MAX_WARM_WORKERS);
    tracing::debug!(
        workers,
        "local.warm_workers is not set: one warm worker per concurrent job"
    );
    loaded.config.local.warm_workers = workers;
}
