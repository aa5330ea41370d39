//! Two `grader` processes grading the same submission at once: the second waits for the
//! first (a lock on the submission's work dirs that dies with its holder), and both report its
//! exact score; a `grader` killed while holding the lock does not block the next one.

mod common;

use common::{grader_convert, repo_root};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

/// A service dir with bob's submission and a config for it.
fn course(dir: &Path, convert: &Path) -> PathBuf {
    let status = Command::new("bash")
        .arg(repo_root().join("examples/make-service-dir.sh"))
        .arg(dir)
        .args(["--students", "bob"])
        .status()
        .unwrap();
    assert!(status.success());
    let config = dir.join("grader.toml");
    std::fs::write(
        &config,
        format!(
            "service_dir = \"{}\"\nconvert_executable = \"{}\"\n",
            dir.display(),
            convert.display()
        ),
    )
    .unwrap();
    config
}

fn autograde(config: &Path, job: &Path) -> Command {
    let mut cmd = Command::cargo_bin("grader").unwrap();
    cmd.env_remove("GRADER_CONFIG")
        .env("GRADER_LOG", "warn")
        .arg("--config")
        .arg(config)
        .args(["autograde", "--job"])
        .arg(job)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn outcome(child: std::process::Child) -> Value {
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn two_grader_processes_on_one_submission_take_turns_and_agree() {
    let Some(convert) =
        grader_convert("two_grader_processes_on_one_submission_take_turns_and_agree")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = course(dir.path(), &convert);
    let job = dir.path().join("jobs/bob.json");
    let first = autograde(&config, &job).spawn().unwrap();
    let second = autograde(&config, &job).spawn().unwrap();
    let (a, b) = (outcome(first), outcome(second));
    for o in [&a, &b] {
        assert_eq!(o["status"], "automatically_graded", "{o}");
        assert_eq!(o["grading_score"], 2.5, "{o}");
    }
    let waited = [&a, &b]
        .iter()
        .filter(|o| {
            o["logs"]
                .as_str()
                .unwrap()
                .contains("waited for another run")
        })
        .count();
    assert_eq!(waited, 1, "exactly one run waited for the other");
}

#[test]
fn a_killed_grader_does_not_leave_its_submission_locked() {
    let Some(convert) = grader_convert("a_killed_grader_does_not_leave_its_submission_locked")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = course(dir.path(), &convert);
    let job = dir.path().join("jobs/bob.json");
    let mut first = autograde(&config, &job).spawn().unwrap();
    // Wait until the first run is grading (its input is fetched), then kill it outright.
    let input = dir.path().join("convert_in/submission_1/hw1.ipynb");
    let start = Instant::now();
    while !input.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let second = outcome(autograde(&config, &job).spawn().unwrap());
    assert_eq!(second["status"], "automatically_graded", "{second}");
    assert_eq!(second["grading_score"], 2.5);
}
