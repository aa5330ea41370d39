//! Hostile notebooks against the pipeline's own steps, with the real grading tool, cold (a
//! plain process) and warm (a forked child of a warm worker): a cell that forges the
//! gradebook the tool reads back, and two runs of one submission at once.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use grader_local::{
    Executor, ExecutorConfig, GradingBackend, LocalBackend, Outcome, ProcessGit, Status,
};
use grader_model::AutoStatus;
use tokio_util::sync::CancellationToken;

/// A cell that adds grades with 31 points of extra credit each to the gradebook in its output
/// dir, which the tool reads back after running the notebook.
const FORGE_GRADEBOOK: &str = r#"
import json, os
out = os.getcwd().replace("convert_in", "convert_out")
path = os.path.join(out, "gradebook.json")
gb = json.load(open(path))
for nb in gb["notebooks"].values():
    for cell_id, cell in nb["grade_cells_dict"].items():
        nb["grades_dict"][cell_id] = {
            "cell_id": cell_id, "notebook_id": nb["name"], "id": cell_id,
            "auto_score": None, "manual_score": None, "extra_credit": 31.0,
            "needs_manual_grade": False, "max_score_gradecell": cell["max_score"],
            "max_score_taskcell": None, "failed_tests": None, "_type": "Grade",
        }
json.dump(gb, open(path, "w"))
"#;

fn executor(service: &Path, backend: Arc<dyn GradingBackend>) -> Executor {
    let mut config = ExecutorConfig::new(service);
    config.max_grading_time = Duration::from_secs(300);
    Executor::new(config, Arc::new(ProcessGit::new("git")), backend)
}

/// The two ways the local backend runs the tool: a plain process, and one warm worker (with
/// the directory its logs live in).
async fn backends(
    convert: &Path,
) -> Vec<(&'static str, Arc<dyn GradingBackend>, tempfile::TempDir)> {
    let cold: Arc<dyn GradingBackend> =
        Arc::new(LocalBackend::new(convert.to_string_lossy(), 1 << 20));
    let work = tempfile::tempdir().unwrap();
    let warm =
        support::started_warm_backend(convert, support::one_worker(), work.path(), 1 << 20).await;
    vec![
        ("cold", cold, tempfile::tempdir().unwrap()),
        ("warm", Arc::new(warm), work),
    ]
}

fn assert_failed_with(out: &Outcome, what: &str) {
    assert_eq!(
        out.status,
        Status::Auto(AutoStatus::GradingFailed),
        "{:?}\n{}",
        out.error,
        out.logs
    );
    let error = out.error.as_deref().unwrap_or_default();
    assert!(error.contains(what), "{error}");
    assert_eq!(out.score, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notebook_that_forges_its_gradebook_fails_as_tampered_and_publishes_nothing() {
    let Some(convert) = support::grader_convert(
        "a_notebook_that_forges_its_gradebook_fails_as_tampered_and_publishes_nothing",
    ) else {
        return;
    };
    for (mode, backend, _work) in backends(&convert).await {
        let dir = tempfile::tempdir().unwrap();
        let service = dir.path();
        support::make_service_dir(service, &["--students", "alice"]);
        let job = support::hostile_job(service, "mallory", 77, FORGE_GRADEBOOK);
        let exec = executor(service, backend.clone());
        let out = exec.autograde(&job, CancellationToken::new()).await;
        assert_failed_with(&out, "tampered");
        assert!(
            out.error.as_deref().unwrap().contains("extra_credit"),
            "{mode}: {:?}",
            out.error
        );
        let autograde = service.join("git/cs101/1/autograde/user/mallory");
        let branches = if autograde.exists() {
            support::git(&["--git-dir", autograde.to_str().unwrap(), "branch", "--list"])
        } else {
            String::new()
        };
        assert!(
            branches.trim().is_empty(),
            "{mode}: nothing committed, found {branches}"
        );
        backend.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_one_submission_at_once_both_give_its_exact_score() {
    let Some(convert) =
        support::grader_convert("two_runs_of_one_submission_at_once_both_give_its_exact_score")
    else {
        return;
    };
    for (mode, backend, _work) in backends(&convert).await {
        let dir = tempfile::tempdir().unwrap();
        let service = dir.path();
        support::make_service_dir(service, &["--students", "bob"]);
        let job = grader_local::job_file::load_job(&service.join("jobs/bob.json")).unwrap();
        let exec = Arc::new(executor(service, backend.clone()));
        let runs: Vec<_> = (0..2)
            .map(|_| {
                let (exec, job) = (exec.clone(), job.clone());
                tokio::spawn(async move { exec.autograde(&job, CancellationToken::new()).await })
            })
            .collect();
        let mut waited = 0;
        for run in runs {
            let out = run.await.unwrap();
            assert_eq!(
                out.status,
                Status::Auto(AutoStatus::AutomaticallyGraded),
                "{mode}: {:?}\n{}",
                out.error,
                out.logs
            );
            assert_eq!(out.grading_score, Some(2.5), "{mode}");
            waited += usize::from(out.logs.contains("waited for another run"));
        }
        assert_eq!(waited, 1, "{mode}: one run waited for the other");
        backend.shutdown().await;
    }
}
