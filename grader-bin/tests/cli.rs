//! The real `grader` binary on the example course: single job, batch, bad config, bad job,
//! Ctrl-C during a batch, and the small commands.

mod common;

use common::{grader, grader_convert, repo_root, under_ci};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A service dir from the example course and a config file for it.
/// Runs `cmd`, which must exit 0, and parses what it printed as JSON.
fn outcome_of(cmd: &mut Command) -> Value {
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn course(dir: &Path, convert: &Path, args: &[&str]) -> PathBuf {
    let status = Command::new("bash")
        .arg(repo_root().join("examples/make-service-dir.sh"))
        .arg(dir)
        .args(args)
        .status()
        .unwrap();
    assert!(status.success());
    let config = dir.join("grader.toml");
    std::fs::write(
        &config,
        format!(
            "backend = \"local\"\nservice_dir = \"{}\"\nconvert_executable = \"{}\"\nmax_grading_time = 300\n",
            dir.display(),
            convert.display()
        ),
    )
    .unwrap();
    config
}

fn expected(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("expected.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn autograde_one_job_prints_the_outcome() {
    let Some(convert) = grader_convert("autograde_one_job_prints_the_outcome") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = course(dir.path(), &convert, &["--students", "bob"]);
    let outcome = outcome_of(
        grader()
            .arg("--config")
            .arg(&config)
            .args(["autograde", "--job"])
            .arg(dir.path().join("jobs/bob.json")),
    );
    let exp = &expected(dir.path())[0];
    for key in [
        "submission_id",
        "status",
        "grading_score",
        "score",
        "max_score",
        "backend",
        "duration_ms",
        "logs",
        "gradebook",
    ] {
        assert!(outcome.get(key).is_some(), "outcome lacks {key}: {outcome}");
    }
    assert_eq!(outcome["status"], "automatically_graded");
    assert_eq!(
        outcome["backend"], "local",
        "warm workers are off by default"
    );
    assert_eq!(outcome["score"], exp["score"]);
    assert_eq!(outcome["max_score"], exp["max_score"]);

    // The same job on a warm worker gives the same result.
    let warm = outcome_of(
        grader()
            .arg("--config")
            .arg(&config)
            .args(["--set", "local.warm_workers=1", "autograde", "--job"])
            .arg(dir.path().join("jobs/bob.json")),
    );
    assert_eq!(warm["backend"], "local-warm");
    assert_eq!(warm["score"], exp["score"]);
    assert_eq!(warm["gradebook"], outcome["gradebook"]);
    assert!(
        !warm["logs"]
            .as_str()
            .unwrap()
            .starts_with("grader: no warm"),
        "{}",
        warm["logs"]
    );

    // The tool named as a program on PATH (the default `grader-convert`) runs warm too.
    let mut path = std::ffi::OsString::from(convert.parent().unwrap());
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let on_path = outcome_of(
        grader()
            .arg("--config")
            .arg(&config)
            .args(["--set", "local.warm_workers=1"])
            .args(["--set", "convert_executable=grader-convert"])
            .args(["autograde", "--job"])
            .arg(dir.path().join("jobs/bob.json"))
            .env("PATH", path),
    );
    assert_eq!(on_path["score"], exp["score"]);
    let logs = on_path["logs"].as_str().unwrap();
    assert!(!logs.starts_with("grader: no warm"), "{logs}");
}

#[test]
fn batch_with_concurrency_four_grades_every_submission_exactly_cold_and_warm() {
    let Some(convert) = grader_convert("batch_with_concurrency_four") else {
        return;
    };
    let mut gradebooks = vec![];
    for (mode, set, backend) in [
        ("cold", "local.warm_workers=0", "local"),
        ("warm", "local.warm_workers=2", "local-warm"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = course(dir.path(), &convert, &[]);
        let results = dir.path().join("results");
        // A TMPDIR of its own: the workers inherit it and keep their logs under it.
        let tmpdir = dir.path().join("tmp");
        std::fs::create_dir(&tmpdir).unwrap();
        let out = grader()
            .env("TMPDIR", &tmpdir)
            .arg("--config")
            .arg(&config)
            .args(["--set", set, "batch"])
            .arg(dir.path().join("jobs.jsonl"))
            .args(["--concurrency", "4", "--results"])
            .arg(&results)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{mode}: {stderr}");
        assert!(stderr.contains("4 graded, 0 failed"), "{mode}: {stderr}");
        let mut books = vec![];
        for exp in expected(dir.path()) {
            let id = exp["submission_id"].as_u64().unwrap();
            let text =
                std::fs::read_to_string(results.join(format!("submission_{id}.json"))).unwrap();
            let o: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(o["status"], "automatically_graded", "{mode} #{id}");
            assert_eq!(o["score"], exp["score"], "{mode} #{id}");
            assert_eq!(o["backend"], backend, "{mode} #{id}");
            books.push(o["gradebook"].clone());
        }
        gradebooks.push(books);
        let summary: Value =
            serde_json::from_str(&std::fs::read_to_string(results.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary["graded"], 4);
        assert_eq!(summary["score_max"], 6.0);
        // The workers exited with grader and took their directory with them.
        let left = processes_with_tmpdir(&tmpdir);
        assert!(left.is_empty(), "{mode}: processes left: {left:?}");
        let files: Vec<_> = std::fs::read_dir(&tmpdir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(
            !files
                .iter()
                .any(|f| f.to_string_lossy().starts_with(".grader-warm")),
            "{mode}: {files:?}"
        );
    }
    assert_eq!(
        gradebooks[0], gradebooks[1],
        "warm and cold gradebooks differ"
    );
}

#[test]
fn a_bad_config_exits_2_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "max_grading_tim = 10\n").unwrap();
    let out = grader()
        .arg("--config")
        .arg(&config)
        .arg("config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max_grading_tim") && err.contains("bad.toml"),
        "{err}"
    );

    let out = grader()
        .arg("--config")
        .arg(&config)
        .env("GRADER_MAX_GRADING_TIME", "soon")
        .arg("config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn config_prints_each_key_with_its_layer() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("g.toml");
    std::fs::write(&config, "max_grading_time = 77\n").unwrap();
    let out = grader()
        .arg("--config")
        .arg(&config)
        .env("GRADER_KUBE__NAMESPACE", "grading")
        .args(["--set", "log_cap_bytes=4096", "config"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |k: &str| {
        text.lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("max_grading_time = 77").contains("g.toml"), "{text}");
    assert!(
        line("namespace = \"grading\"").contains("GRADER_KUBE__NAMESPACE"),
        "{text}"
    );
    assert!(line("log_cap_bytes = 4096").contains("--set"), "{text}");
    assert!(line("backend = \"local\"").contains("default"), "{text}");
}

#[test]
fn a_bad_job_exits_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("g.toml");
    std::fs::write(
        &config,
        format!("service_dir = \"{}\"\n", dir.path().display()),
    )
    .unwrap();
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        r#"{"lecture": {"code": "cs101"}, "assignment": {"id": 1, "name": "hw1", "gradebook": {"notebooks": {}}},
            "submission": {"id": 1, "commit_hash": "abcd", "username": "u", "score_scaling": "full"}}"#,
    )
    .unwrap();
    let out = grader()
        .arg("--config")
        .arg(&config)
        .args(["autograde", "--job"])
        .arg(&job)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("job.json") && err.contains("submission"),
        "{err}"
    );

    // A job that parses but cannot be graded is refused before any warm worker starts.
    let bad_commit = dir.path().join("bad-commit.json");
    std::fs::write(
        &bad_commit,
        r#"{"lecture": {"code": "cs101"}, "assignment": {"id": 1, "name": "hw1", "gradebook": {"notebooks": {}}},
            "submission": {"id": 1, "commit_hash": "not-a-commit", "username": "u"}}"#,
    )
    .unwrap();
    let bad_list = dir.path().join("bad-commit.jsonl");
    let one_line = std::fs::read_to_string(&bad_commit)
        .unwrap()
        .replace('\n', " ");
    std::fs::write(&bad_list, one_line + "\n").unwrap();
    for args in [["autograde", "--job"], ["batch", ""]] {
        let file = if args[0] == "batch" {
            &bad_list
        } else {
            &bad_commit
        };
        let out = grader()
            .arg("--config")
            .arg(&config)
            .args(["--set", "local.warm_workers=2", "--log", "info"])
            .args(args.iter().filter(|a| !a.is_empty()))
            .arg(file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not-a-commit"), "{args:?}: {err}");
        assert!(
            !err.contains("warm"),
            "{args:?}: a worker was started: {err}"
        );
    }

    let jobs = dir.path().join("jobs.jsonl");
    std::fs::write(&jobs, "{\"lecture\": {\"code\": \"c\"}}\nnot json\n").unwrap();
    let out = grader()
        .arg("--config")
        .arg(&config)
        .arg("batch")
        .arg(&jobs)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("jobs.jsonl:1") && err.contains("jobs.jsonl:2"),
        "{err}"
    );
}

#[test]
fn slug_prints_the_slug_and_refuses_bad_parameters() {
    let out = grader()
        .args([
            "slug",
            "--limit",
            "20",
            "--hash-length",
            "4",
            "NüZRǈßß_oςWWAÖaJ",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "nüzrǉßß_oςwwaöa-df99"
    );
    let out = grader()
        .args(["slug", "--limit", "5", "--hash-length", "4", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("limit"));
}

/// Processes whose environment holds `TMPDIR={tmpdir}` (warm workers inherit it), after
/// giving exiting ones a moment. A worker is not dumpable, so only root (as under CI) can
/// read its environment; the check of the worker directory below works for anyone.
fn processes_with_tmpdir(tmpdir: &Path) -> Vec<String> {
    let needle = format!("TMPDIR={}\0", tmpdir.display()).into_bytes();
    let scan = || {
        let mut found = vec![];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let env = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            if env.windows(needle.len()).any(|w| w == needle.as_slice()) {
                found.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        found
    };
    let mut left = scan();
    for _ in 0..20 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        left = scan();
    }
    left
}

/// Processes whose working directory is under `dir`.
fn processes_in(dir: &Path) -> Vec<String> {
    let mut found = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd"))
            && cwd.starts_with(dir)
        {
            found.push(format!(
                "{} in {}",
                entry.file_name().to_string_lossy(),
                cwd.display()
            ));
        }
    }
    found
}

#[test]
fn ctrl_c_during_a_batch_stops_new_jobs_kills_running_ones_and_keeps_finished_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let svc = dir.path().join("svc");
    // A stand-in tool: submissions 1 and 2 finish at once, every other one hangs.
    let tool = dir.path().join("tool");
    std::fs::write(
        &tool,
        "#!/bin/sh\ncase \"$3\" in */submission_1|*/submission_2) exit 0;; esac\nwhile :; do sleep 1; done\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(&svc).unwrap();
    let config = course(&svc, &tool, &["--copies", "3"]);
    let results = dir.path().join("results");
    let mut child = grader()
        .arg("--config")
        .arg(&config)
        .arg("batch")
        .arg(svc.join("jobs.jsonl"))
        .args(["--concurrency", "2", "--progress", "lines", "--results"])
        .arg(&results)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(results.join("submission_1.json").exists()
        && results.join("submission_2.json").exists())
    {
        assert!(Instant::now() < deadline, "the first jobs did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !processes_in(&svc).is_empty(),
        "jobs 3 and 4 should be running"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    let mut written: Vec<String> = std::fs::read_dir(&results)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(
        written,
        vec!["submission_1.json", "submission_2.json", "summary.json"]
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["graded"], 2);
    assert_eq!(summary["interrupted"], 10);
    assert!(
        processes_in(&svc).is_empty(),
        "left behind: {:?}",
        processes_in(&svc)
    );
    assert!(
        !svc.join("convert_in/submission_3").exists(),
        "work dirs cleaned"
    );
}

#[test]
fn pod_prints_the_manifest_without_a_cluster_or_git() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("g.toml");
    std::fs::write(
        &config,
        format!(
            "service_dir = \"{}\"\nmax_grading_time = 600\n[kube]\nnamespace = \"grading\"\ndefault_image_name = \"registry.example.org/{{lecture}}:{{assignment_id}}\"\nnode_selector = {{ pool = \"grading\" }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        r#"{"lecture": {"code": "cs101"}, "assignment": {"id": 3, "name": "hw1", "gradebook": {"notebooks": {}},
            "settings": {"cell_timeout": 120, "allowed_files": ["*.csv"]}},
            "submission": {"id": 42, "commit_hash": "0f3c9a", "username": "Alice.Smith"}}"#,
    )
    .unwrap();
    // Git is absent from PATH: a preview builds the task without git or a backend.
    let empty = tempfile::tempdir().unwrap();
    let out = grader()
        .env("PATH", empty.path())
        .arg("--config")
        .arg(&config)
        .args(["pod", "--job"])
        .arg(&job)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pod: Value = serde_yaml::from_slice(&out.stdout).unwrap();
    assert_eq!(pod["metadata"]["name"], "autograde-job-alice-smith-42");
    assert_eq!(pod["metadata"]["namespace"], "grading");
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["image"], "registry.example.org/cs101:3");
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let input = format!("{}/convert_in/submission_42", dir.path().display());
    assert_eq!(
        args[..4],
        ["grader-convert", "autograde", "-i", input.as_str()]
    );
    assert!(args.contains(&"--ExecutePreprocessor.timeout=120"));
    assert_eq!(c["env"][0]["name"], "ASSIGNMENT_SETTINGS");
    assert_eq!(c["volumeMounts"][0]["subPath"], "convert_in/submission_42");
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["spec"]["activeDeadlineSeconds"], 600);
    assert_eq!(pod["spec"]["nodeSelector"]["pool"], "grading");
}

#[test]
fn feedback_after_autograde_commits_html_to_the_feedback_branch() {
    let Some(convert) = grader_convert("feedback_after_autograde") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = course(dir.path(), &convert, &["--students", "bob"]);
    let graded = dir.path().join("graded.json");
    let out = grader()
        .arg("--config")
        .arg(&config)
        .args(["autograde", "--job"])
        .arg(dir.path().join("jobs/bob.json"))
        .arg("--output")
        .arg(&graded)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcome: Value = serde_json::from_str(&std::fs::read_to_string(&graded).unwrap()).unwrap();

    // The feedback job: the same submission, now graded, with the gradebook grading produced.
    let mut job: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("jobs/bob.json")).unwrap())
            .unwrap();
    job["submission"]["auto_status"] = "automatically_graded".into();
    job["submission"]["gradebook"] = outcome["gradebook"].clone();
    let job_path = dir.path().join("feedback.json");
    std::fs::write(&job_path, job.to_string()).unwrap();
    let out = grader()
        .arg("--config")
        .arg(&config)
        .args(["--log-format", "json", "--log", "info", "feedback", "--job"])
        .arg(&job_path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fb: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fb["status"], "generated");
    let commit = job["submission"]["commit_hash"].as_str().unwrap();
    assert_eq!(fb["branch"], format!("feedback_{commit}"));
    let repo = dir.path().join("git/cs101/1/feedback/user/bob");
    let files = Command::new("git")
        .arg("--git-dir")
        .arg(&repo)
        .args([
            "ls-tree",
            "-r",
            "--name-only",
            &format!("feedback_{commit}"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&files.stdout).trim(), "hw1.html");
    // --log-format json: every log line on stderr is a JSON object.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().count() > 0);
    for line in stderr.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
}

/// A stand-in grading tool that succeeds at once without writing anything (the pipeline
/// then reads back the gradebook it wrote itself).
fn quick_tool(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let tool = dir.join("quick-tool");
    std::fs::write(&tool, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    tool
}

/// Files in `dir`, sorted (none when it does not exist).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_grading_tool_or_git_that_cannot_run_is_refused_before_any_job_is_graded() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let svc = dir.path().join("svc");
    let tool_dir = dir.path().join("tools");
    std::fs::create_dir_all(&tool_dir).unwrap();
    std::fs::create_dir_all(&svc).unwrap();
    // convert_executable names a directory (the venv's bin dir, say).
    let config = course(&svc, &tool_dir, &["--students", "bob"]);
    let not_executable = dir.path().join("not-executable");
    std::fs::write(&not_executable, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();
    let not_executable = format!("convert_executable={}", not_executable.display());
    let results = dir.path().join("results");
    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (vec![], "convert_executable", "is a directory"),
        (
            vec!["--set".into(), not_executable],
            "convert_executable",
            "not executable",
        ),
        (
            vec![
                "--set".into(),
                "convert_executable=no-such-grading-tool".into(),
            ],
            "no-such-grading-tool",
            "not found",
        ),
        (
            vec![
                "--set".into(),
                "convert_executable=./relative/grader-convert".into(),
            ],
            "convert_executable",
            "does not exist",
        ),
        (
            vec!["--set".into(), "git_executable=/nonexistent/git".into()],
            "git_executable",
            "does not exist",
        ),
    ];
    for (set, key, what) in &cases {
        for command in ["autograde", "batch"] {
            let mut cmd = grader();
            cmd.arg("--config").arg(&config).args(set).arg(command);
            if command == "autograde" {
                cmd.arg("--job").arg(svc.join("jobs/bob.json"));
            } else {
                cmd.arg(svc.join("jobs.jsonl"))
                    .arg("--results")
                    .arg(&results);
            }
            let out = cmd.output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {set:?}: {err}");
            assert!(err.contains(key), "{command} {set:?}: {err}");
            assert!(err.contains(what), "{command} {set:?}: {err}");
            assert!(
                out.stdout.is_empty(),
                "{command} {set:?}: an outcome was printed"
            );
            assert!(
                !listing(&results)
                    .iter()
                    .any(|f| f.starts_with("submission_")),
                "{command} {set:?}: {:?}",
                listing(&results)
            );
            assert!(
                !svc.join("git/cs101/1/autograde").exists(),
                "{command} {set:?}: something was committed"
            );
        }
    }
    // The kube backend runs the tool inside its image: the local check does not apply (the
    // job then fails for want of a cluster, not because of convert_executable).
    let out = grader()
        .arg("--config")
        .arg(&config)
        .args([
            "--set",
            "kube.context=no-such-context",
            "autograde",
            "--backend",
            "kube",
        ])
        .arg("--job")
        .arg(svc.join("jobs/bob.json"))
        .env("KUBECONFIG", dir.path().join("no-kubeconfig"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("convert_executable"), "{err}");
}

#[test]
fn a_relative_service_dir_is_refused_in_a_file_and_taken_from_the_working_dir_as_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    let svc = dir.path().join("svc");
    std::fs::create_dir_all(&svc).unwrap();
    let tool = quick_tool(dir.path());
    let config = course(&svc, &tool, &["--students", "bob"]);
    let text = std::fs::read_to_string(&config).unwrap();
    let relative = dir.path().join("relative.toml");
    std::fs::write(
        &relative,
        text.replace(
            &format!("service_dir = \"{}\"", svc.display()),
            "service_dir = \"svc\"",
        ),
    )
    .unwrap();
    let out = grader()
        .current_dir(dir.path())
        .arg("--config")
        .arg(&relative)
        .args(["autograde", "--job"])
        .arg(svc.join("jobs/bob.json"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("service_dir") && err.contains("relative.toml") && err.contains("absolute"),
        "{err}"
    );

    // On the command line a relative directory means the one under the working directory.
    let outcome = outcome_of(
        grader()
            .current_dir(dir.path())
            .arg("--config")
            .arg(&config)
            .args(["autograde", "--service-dir", "svc", "--job"])
            .arg(svc.join("jobs/bob.json")),
    );
    assert_eq!(outcome["status"], "automatically_graded", "{outcome}");
}

/// A tmpfs of `size` mounted on `dir` and unmounted on drop; `None` (after a loud message)
/// where mounting is not allowed.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(dir: &Path, size: &str, test: &str) -> Option<SmallFs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(SmallFs(dir.to_path_buf()));
        }
        let msg = format!("{test}: cannot mount a tmpfs (needs root)");
        if under_ci() {
            panic!("{msg}; CI=true, so this is a failure");
        }
        eprintln!("\n==========\nSKIPPED {msg}\n==========\n");
        None
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn results_that_cannot_be_written_after_grading_are_reported_with_what_was_graded() {
    let dir = tempfile::tempdir().unwrap();
    let svc = dir.path().join("svc");
    std::fs::create_dir_all(&svc).unwrap();
    let tool = quick_tool(dir.path());
    let config = course(&svc, &tool, &[]);
    let batch = |results: &Path| {
        let out = grader()
            .arg("--config")
            .arg(&config)
            .arg("batch")
            .arg(svc.join("jobs.jsonl"))
            .args(["--concurrency", "1", "--progress", "none", "--results"])
            .arg(results)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // A directory stands where one outcome file should go.
    let results = dir.path().join("results");
    std::fs::create_dir_all(results.join("submission_2.json")).unwrap();
    let (code, err) = batch(&results);
    assert_eq!(code, Some(1), "{err}");
    assert!(!err.contains("nothing was graded"), "{err}");
    assert!(err.contains("4 graded, 0 failed"), "{err}");
    assert!(err.contains(&results.display().to_string()), "{err}");
    assert!(err.contains("submission_2.json"), "{err}");
    assert_eq!(
        listing(&results),
        [
            "submission_1.json",
            "submission_2.json",
            "submission_3.json",
            "submission_4.json",
            "summary.json"
        ],
        "no .json.tmp is left behind"
    );
    assert!(results.join("submission_2.json").is_dir());
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["graded"], 4);
    assert_eq!(summary["unwritten"], 1, "{summary}");

    // A results dir that is full from the start is refused before anything is graded.
    let full = dir.path().join("full");
    let Some(fs) = SmallFs::mount(&full, "64k", "results_that_cannot_be_written") else {
        return;
    };
    let results = full.join("results");
    std::fs::create_dir_all(&results).unwrap();
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", full.join("filler").display()))
        .args(["bs=4k", "count=100"])
        .output();
    let (code, err) = batch(&results);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("nothing was graded"), "{err}");
    assert!(err.contains(&results.display().to_string()), "{err}");
    assert!(err.contains("No space left"), "{err}");
    assert_eq!(listing(&results), Vec::<String>::new(), "{err}");
    drop(fs);

    // A results dir that fills up during the batch: four pages hold the first outcomes (about
    // 7 kB, two pages each), the others and the summary find no space.
    let filling = dir.path().join("filling");
    let Some(_fs) = SmallFs::mount(&filling, "16k", "results_that_cannot_be_written") else {
        return;
    };
    let (code, err) = batch(&filling);
    assert_eq!(code, Some(1), "{err}");
    assert!(!err.contains("nothing was graded"), "{err}");
    assert!(err.contains("4 graded, 0 failed"), "{err}");
    assert!(err.contains("No space left"), "{err}");
    assert!(err.contains("cannot write the summary"), "{err}");
    assert!(
        err.contains(&format!(
            "could not be written to results dir {}",
            filling.display()
        )),
        "{err}"
    );
    let written = listing(&filling);
    assert!(
        written
            .iter()
            .all(|f| f.starts_with("submission_") && f.ends_with(".json")),
        "no .json.tmp is left behind: {written:?}"
    );
    assert!(
        !written.is_empty() && written.len() < 4,
        "{written:?}: {err}"
    );
}
