//! `grader serve` and `grader submit`, through a real socket: the real `grader` binary
//! serving the example course, with a stand-in tool (a shell script that sleeps as long as
//! the test says) for the API cases and the real grader-convert for the grading cases.

mod common;

use common::{grader, grader_convert, repo_root};

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The example course for `students` in `dir/svc`, and a config using `tool` plus `extra`
/// lines (the `[serve]` table is opened with the socket in `dir`).
fn course(dir: &Path, students: &str, tool: &Path, extra: &str) -> PathBuf {
    let svc = dir.join("svc");
    let status = Command::new("bash")
        .arg(repo_root().join("examples/make-service-dir.sh"))
        .arg(&svc)
        .args(["--students", students])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let config = dir.join("grader.toml");
    std::fs::write(
        &config,
        format!(
            "service_dir = \"{}\"\nconvert_executable = \"{}\"\nmax_grading_time = 300\n\
             [serve]\nsocket = \"{}\"\n{extra}\n",
            svc.display(),
            tool.display(),
            dir.join("grader.sock").display()
        ),
    )
    .unwrap();
    config
}

/// A stand-in tool: notes each run in `runs`, sleeps as long as `sleep_submission_N` says
/// (default 0) and succeeds; the pipeline then scores the gradebook it wrote itself.
fn stand_in_tool(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let tool = dir.join("stand-in-tool");
    std::fs::write(
        &tool,
        format!(
            "#!/bin/sh\n# args: autograde -i IN -o OUT ...\nname=$(basename \"$3\")\n\
             echo \"$name\" >> {d}/runs\n\
             sleep \"$(cat {d}/sleep_$name 2>/dev/null || echo 0)\"\nexit 0\n",
            d = dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    tool
}

fn sleep_for(dir: &Path, submission: u64, seconds: f64) {
    std::fs::write(
        dir.join(format!("sleep_submission_{submission}")),
        seconds.to_string(),
    )
    .unwrap();
}

fn runs(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("runs"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Processes that run the stand-in tool of `dir`, or its sleep.
fn tool_processes(dir: &Path) -> Vec<String> {
    let marker = dir.join("stand-in-tool").display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&marker) || cmdline.starts_with("sleep 3") {
            found.push(cmdline);
        }
    }
    found
}

/// A job file's JSON with its gradebook inline (the API reads no files).
fn inline_job(path: &Path) -> Vec<u8> {
    let mut job: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let file = job["assignment"]["gradebook_path"]
        .as_str()
        .unwrap()
        .to_string();
    let object = job["assignment"].as_object_mut().unwrap();
    object.remove("gradebook_path");
    object.insert(
        "gradebook".into(),
        serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap(),
    );
    serde_json::to_vec(&job).unwrap()
}

/// An HTTP answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// One HTTP/1.1 request on a fresh connection (test side only).
fn exchange(mut stream: impl Read + Write, request: &[u8]) -> Reply {
    stream.write_all(request).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = head.to_ascii_lowercase();
    let body = if headers.contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn request(method: &str, path: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A running `grader serve`, killed when dropped.
struct Service {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Service {
    fn start(dir: &Path, config: &Path) -> Service {
        let log = dir.join("serve.log");
        let child = grader()
            .arg("--config")
            .arg(config)
            .args(["--log-format", "json", "--log", "info", "serve"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut service = Service {
            child,
            socket: dir.join("grader.sock"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = service.child.try_wait().unwrap() {
                panic!("grader serve exited with {status}: {}", service.logs());
            }
            if service.socket.exists() && service.get("/readyz").status == 200 {
                return service;
            }
            assert!(Instant::now() < deadline, "not ready: {}", service.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn call(&self, method: &str, path: &str, headers: &[&str], body: &[u8]) -> Reply {
        match std::os::unix::net::UnixStream::connect(&self.socket) {
            Ok(stream) => exchange(stream, &request(method, path, headers, body)),
            Err(e) => Reply {
                status: 0,
                headers: String::new(),
                body: e.to_string(),
            },
        }
    }

    fn get(&self, path: &str) -> Reply {
        self.call("GET", path, &[], b"")
    }

    fn submit(&self, body: &[u8]) -> Reply {
        self.call(
            "POST",
            "/v1/jobs",
            &["Content-Type: application/json"],
            body,
        )
    }

    fn wait(&self, id: &str) -> Value {
        let reply = self.get(&format!("/v1/jobs/{id}?wait=120"));
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.json()
    }

    /// Sends SIGTERM and waits (bounded) for the exit code.
    fn terminate(&mut self, within: Duration) -> i32 {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "grader serve still running after SIGTERM: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn settled(what: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if what() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    what()
}

#[test]
fn a_job_is_queued_run_and_waited_for_and_cancelling_stops_queued_and_running_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tool = stand_in_tool(d);
    let config = course(
        d,
        "bob,alice,carol",
        &tool,
        "concurrency = 1\n[local]\nwarm_workers = 0",
    );
    let service = Service::start(d, &config);
    let jobs = d.join("svc/jobs");

    // Submit, poll, wait.
    sleep_for(d, 1, 1.0);
    let reply = service.submit(&inline_job(&jobs.join("bob.json")));
    assert_eq!(reply.status, 202, "{reply:?}");
    let job = reply.json();
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["state"], "queued");
    assert!(reply.headers.contains(&format!("location: /v1/jobs/{id}")));
    let polled = service.get(&format!("/v1/jobs/{id}")).json();
    assert!(
        ["queued", "running"].contains(&polled["state"].as_str().unwrap()),
        "{polled}"
    );
    let done = service.wait(&id);
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["succeeded"], true);
    assert_eq!(done["outcome"]["status"], "automatically_graded");
    assert_eq!(done["outcome"]["submission_id"], 1);
    let outcome = service.get(&format!("/v1/jobs/{id}/outcome"));
    assert_eq!(outcome.status, 200);
    assert!(outcome.headers.contains("grader-job-state: done"));
    assert_eq!(outcome.json()["status"], "automatically_graded");

    // Alice runs long, carol waits behind her (one slot): cancel both.
    sleep_for(d, 2, 30.0);
    let alice = service.submit(&inline_job(&jobs.join("alice.json"))).json();
    let alice = alice["id"].as_str().unwrap().to_string();
    assert!(settled(|| service.get(&format!("/v1/jobs/{alice}")).json()
        ["state"]
        == "running"));
    let carol = service.submit(&inline_job(&jobs.join("carol.json"))).json();
    assert_eq!(carol["state"], "queued");
    assert_eq!(carol["queue_position"], 0);
    let carol = carol["id"].as_str().unwrap().to_string();

    let cancelled = service.call("DELETE", &format!("/v1/jobs/{carol}"), &[], b"");
    assert_eq!(
        cancelled.status, 200,
        "a queued job ends at once: {cancelled:?}"
    );
    let cancelled = cancelled.json();
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(cancelled["outcome"]["status"], "grading_failed");
    assert!(
        cancelled["outcome"]["error"]
            .as_str()
            .unwrap()
            .contains("before the job started")
    );

    assert!(
        settled(|| !tool_processes(d).is_empty()),
        "alice's tool runs"
    );
    let stopping = service.call("DELETE", &format!("/v1/jobs/{alice}"), &[], b"");
    assert_eq!(stopping.status, 202, "{stopping:?}");
    assert_eq!(stopping.json()["stopping"], true);
    let ended = service.wait(&alice);
    assert_eq!(ended["state"], "cancelled", "{ended}");
    assert_eq!(ended["outcome"]["status"], "grading_failed");
    assert!(
        ended["outcome"]["error"]
            .as_str()
            .unwrap()
            .starts_with("cancelled"),
        "{ended}"
    );
    assert!(
        settled(|| tool_processes(d).is_empty()),
        "{:?}",
        tool_processes(d)
    );
    assert_eq!(runs(d), ["submission_1", "submission_2"], "carol never ran");
}

#[test]
fn the_same_submission_queued_or_running_is_one_job_graded_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tool = stand_in_tool(d);
    let config = course(
        d,
        "bob",
        &tool,
        "concurrency = 2\n[local]\nwarm_workers = 0",
    );
    let service = Service::start(d, &config);
    sleep_for(d, 1, 2.0);
    let body = inline_job(&d.join("svc/jobs/bob.json"));
    let first = service.submit(&body);
    assert_eq!(first.status, 202);
    let second = service.submit(&body);
    assert_eq!(second.status, 200, "{second:?}");
    let id = first.json()["id"].as_str().unwrap().to_string();
    assert_eq!(second.json()["id"], id.as_str());
    // Feedback of the same submission is another job.
    let mut with_gradebook: Value = serde_json::from_slice(&body).unwrap();
    with_gradebook["submission"]["gradebook"] = with_gradebook["assignment"]["gradebook"].clone();
    let feedback = service.call(
        "POST",
        "/v1/jobs?kind=feedback",
        &["Content-Type: application/json"],
        &serde_json::to_vec(&with_gradebook).unwrap(),
    );
    assert_eq!(feedback.status, 202, "{feedback:?}");
    assert_ne!(feedback.json()["id"], id.as_str());
    assert_eq!(service.wait(&id)["state"], "done");
    assert_eq!(runs(d), ["submission_1"], "one autograde run");
    // Once done, the same submission is graded again on request.
    let again = service.submit(&body);
    assert_eq!(again.status, 202);
    assert_ne!(again.json()["id"], id.as_str());
    let list = service.get("/v1/jobs").json();
    assert_eq!(list["counters"]["deduplicated"], 1, "{list}");
}

#[test]
fn a_full_queue_refuses_with_429_and_a_clear_body() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tool = stand_in_tool(d);
    let config = course(
        d,
        "bob,alice,carol",
        &tool,
        "concurrency = 1\nqueue_limit = 1\n[local]\nwarm_workers = 0",
    );
    let service = Service::start(d, &config);
    let jobs = d.join("svc/jobs");
    sleep_for(d, 1, 30.0);
    let bob = service.submit(&inline_job(&jobs.join("bob.json"))).json();
    let bob = bob["id"].as_str().unwrap().to_string();
    assert!(settled(
        || service.get(&format!("/v1/jobs/{bob}")).json()["state"] == "running"
    ));
    assert_eq!(
        service.submit(&inline_job(&jobs.join("alice.json"))).status,
        202
    );
    let full = service.submit(&inline_job(&jobs.join("carol.json")));
    assert_eq!(full.status, 429, "{full:?}");
    let error = full.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("queue full") && error.contains("serve.queue_limit"),
        "{error}"
    );
}

#[test]
fn bad_requests_get_4xx_naming_the_problem_and_nothing_is_graded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tool = stand_in_tool(d);
    let config = course(
        d,
        "bob",
        &tool,
        "max_request_bytes = 100000\n[local]\nwarm_workers = 0",
    );
    let service = Service::start(d, &config);
    let good: Value = serde_json::from_slice(&inline_job(&d.join("svc/jobs/bob.json"))).unwrap();
    let json = ["Content-Type: application/json"];

    // A malformed job: the field is named as in a job file.
    let mut bad = good.clone();
    bad["lecture"]["code"] = Value::from(7);
    let reply = service.submit(&serde_json::to_vec(&bad).unwrap());
    assert_eq!(reply.status, 400, "{reply:?}");
    let error = reply.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.starts_with("request body: field `lecture.code`: invalid type"),
        "{error}"
    );
    // A commit that is not hex: refused before anything touches the disk.
    let mut bad = good.clone();
    bad["submission"]["commit_hash"] = Value::from("HEAD; rm -rf /");
    let reply = service.submit(&serde_json::to_vec(&bad).unwrap());
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("commit_hash")
    );
    // The service reads no files for a client.
    let reply = service.submit(&std::fs::read(d.join("svc/jobs/bob.json")).unwrap());
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("field `assignment.gradebook_path`")
    );
    // Not JSON at all, a wrong kind, a wrong content type, too large.
    assert_eq!(service.submit(b"{not json").status, 400);
    let reply = service.call(
        "POST",
        "/v1/jobs?kind=grade",
        &json,
        &serde_json::to_vec(&good).unwrap(),
    );
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.json()["error"].as_str().unwrap().contains("`kind`"));
    let reply = service.call("POST", "/v1/jobs", &["Content-Type: text/plain"], b"{}");
    assert_eq!(reply.status, 415, "{reply:?}");
    let mut huge = good.clone();
    huge["padding"] = Value::from("x".repeat(200_000));
    let reply = service.submit(&serde_json::to_vec(&huge).unwrap());
    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("max_request_bytes")
    );
    // Unknown ids and routes, wrong methods, a bad wait.
    assert_eq!(service.get("/v1/jobs/nope").status, 404);
    assert_eq!(
        service.call("DELETE", "/v1/jobs/nope", &[], b"").status,
        404
    );
    assert_eq!(service.get("/v2/jobs").status, 404);
    assert_eq!(service.call("PUT", "/v1/jobs", &json, b"{}").status, 405);
    let reply = service.get("/v1/jobs/nope?wait=soon");
    assert_eq!(reply.status, 400, "{reply:?}");
    for reply in [
        service.get("/v2/jobs"),
        service.call("PUT", "/v1/jobs", &json, b"{}"),
    ] {
        assert!(reply.json()["error"].is_string(), "{reply:?}");
    }

    let list = service.get("/v1/jobs").json();
    assert_eq!(list["counters"]["accepted"], 0, "{list}");
    assert!(runs(d).is_empty(), "nothing was graded");
}

#[test]
fn sigterm_lets_running_jobs_finish_within_the_grace_then_interrupts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tool = stand_in_tool(d);
    let results = d.join("results");
    let config = course(
        d,
        "bob,alice,carol",
        &tool,
        &format!(
            "concurrency = 2\nshutdown_grace = 3\nresults_dir = \"{}\"\n[local]\nwarm_workers = 0",
            results.display()
        ),
    );
    let mut service = Service::start(d, &config);
    let jobs = d.join("svc/jobs");
    sleep_for(d, 1, 1.5); // finishes within the grace
    sleep_for(d, 2, 30.0); // does not
    let mut ids = Vec::new();
    for student in ["bob", "alice", "carol"] {
        let reply = service.submit(&inline_job(&jobs.join(format!("{student}.json"))));
        assert_eq!(reply.status, 202, "{reply:?}");
        ids.push(reply.json()["id"].as_str().unwrap().to_string());
    }
    assert!(settled(|| tool_processes(d).len() >= 2));
    // Every job has a waiter.
    let socket = service.socket.clone();
    let waiters: Vec<_> = ids
        .iter()
        .map(|id| {
            let socket = socket.clone();
            let path = format!("/v1/jobs/{id}?wait=120");
            std::thread::spawn(move || {
                let stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
                exchange(stream, &request("GET", &path, &[], b""))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(
        service.terminate(Duration::from_secs(30)),
        0,
        "{}",
        service.logs()
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "the grace was not given: {took:?}"
    );
    let states: Vec<Value> = waiters
        .into_iter()
        .map(|w| {
            let reply = w.join().unwrap();
            assert_eq!(reply.status, 200, "{reply:?}");
            reply.json()
        })
        .collect();
    assert_eq!(states[0]["state"], "done", "bob finished in the grace");
    assert_eq!(states[1]["state"], "interrupted", "alice was cancelled");
    assert_eq!(states[1]["outcome"]["status"], "grading_failed");
    assert!(
        states[1]["outcome"]["error"]
            .as_str()
            .unwrap()
            .starts_with("interrupted"),
        "{}",
        states[1]
    );
    assert_eq!(states[2]["state"], "interrupted", "carol never started");
    assert!(tool_processes(d).is_empty(), "{:?}", tool_processes(d));
    assert!(!service.socket.exists(), "the socket is removed");
    assert!(results.join("submission_1.json").is_file());
    assert!(
        !results.join("submission_2.json").exists(),
        "interrupted jobs write no outcome file"
    );
    let mut ran = runs(d);
    ran.sort();
    assert_eq!(ran, ["submission_1", "submission_2"], "carol never ran");
}

#[test]
fn tcp_needs_a_token_file_and_answers_401_without_the_right_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tool = stand_in_tool(d);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = course(
        d,
        "bob",
        &tool,
        &format!("listen = \"127.0.0.1:{port}\"\n[local]\nwarm_workers = 0"),
    );
    let out = grader()
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("serve.listen") && err.contains("serve.token_file"),
        "{err}"
    );
    assert!(!d.join("grader.sock").exists());

    std::fs::write(d.join("token"), "s3cret-token\n").unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[local]",
        &format!("token_file = \"{}\"\n[local]", d.join("token").display()),
    );
    std::fs::write(&config, text).unwrap();
    let service = Service::start(d, &config);
    let tcp = |path: &str, headers: &[&str]| {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        exchange(stream, &request("GET", path, headers, b""))
    };
    assert_eq!(tcp("/healthz", &[]).status, 200, "probes are open");
    let none = tcp("/v1/jobs", &[]);
    assert_eq!(none.status, 401, "{none:?}");
    assert!(
        none.json()["error"]
            .as_str()
            .unwrap()
            .contains("bearer token")
    );
    assert_eq!(
        tcp("/v1/jobs", &["Authorization: Bearer wrong"]).status,
        401
    );
    assert_eq!(
        tcp("/v1/jobs", &["Authorization: Bearer s3cret-token"]).status,
        200
    );
    // The Unix socket relies on its file mode instead.
    assert_eq!(service.get("/v1/jobs").status, 200);

    // grader submit over TCP with the token file.
    let out = grader()
        .arg("--config")
        .arg(&config)
        .args(["submit", "--wait", "--url"])
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("--job")
        .arg(d.join("svc/jobs/bob.json"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["status"], "automatically_graded");
}

#[test]
fn a_socket_path_holding_another_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tool = stand_in_tool(d);
    let config = course(d, "bob", &tool, "");
    std::fs::write(d.join("grader.sock"), "not a socket").unwrap();
    let out = grader()
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a socket"));
    assert_eq!(
        std::fs::read_to_string(d.join("grader.sock")).unwrap(),
        "not a socket"
    );
}

/// The outcome minus what differs between two runs of the same job.
fn comparable(mut outcome: Value) -> Value {
    let o = outcome.as_object_mut().unwrap();
    for key in ["timings", "duration_ms", "commit", "logs", "backend"] {
        o.remove(key);
    }
    outcome
}

#[test]
fn submit_wait_prints_what_autograde_prints_with_the_same_exit_code_on_a_reused_warm_worker() {
    let Some(convert) = grader_convert(
        "submit_wait_prints_what_autograde_prints_with_the_same_exit_code_on_a_reused_warm_worker",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // One slot: one warm worker (local.warm_workers is not set), used by every job.
    let config = course(d, "bob,alice", &convert, "concurrency = 1");
    let jobs = d.join("svc/jobs");
    let service = Service::start(d, &config);
    let submit = |job: &Path| {
        grader()
            .arg("--config")
            .arg(&config)
            .args(["submit", "--wait", "--job"])
            .arg(job)
            .output()
            .unwrap()
    };
    let bob = submit(&jobs.join("bob.json"));
    assert_eq!(
        bob.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&bob.stderr)
    );
    let alice = submit(&jobs.join("alice.json"));
    assert_eq!(alice.status.code(), Some(0));
    let served: Value = serde_json::from_slice(&bob.stdout).unwrap();
    assert_eq!(served["backend"], "local-warm");
    let alice: Value = serde_json::from_slice(&alice.stdout).unwrap();
    assert_eq!(alice["backend"], "local-warm");

    let logs = service.logs();
    let workers: Vec<i64> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "starting grading tool (warm)")
        .filter_map(|v| v["fields"]["worker"].as_i64())
        .collect();
    assert_eq!(workers.len(), 2, "{logs}");
    assert_eq!(workers[0], workers[1], "the same warm worker ran both jobs");
    // The metrics show the one warm worker, idle again, and the two jobs it ran.
    let m = samples(&service.get("/metrics").body);
    assert_eq!(m["grader_warm_workers{state=\"idle\"}"], 1.0, "{m:?}");
    assert_eq!(m["grader_warm_workers{state=\"busy\"}"], 0.0);
    assert_eq!(m["grader_warm_worker_events_total{event=\"started\"}"], 1.0);
    assert_eq!(m["grader_warm_worker_events_total{event=\"job\"}"], 2.0);
    assert_eq!(m["grader_backend_ready{backend=\"local-warm\"}"], 1.0);

    // What `grader autograde` prints for the same job, and its exit code.
    let direct = grader()
        .arg("--config")
        .arg(&config)
        .args(["autograde", "--job"])
        .arg(jobs.join("bob.json"))
        .output()
        .unwrap();
    assert_eq!(direct.status.code(), Some(0));
    let direct_text = String::from_utf8(direct.stdout).unwrap();
    let direct: Value = serde_json::from_str(&direct_text).unwrap();
    assert_eq!(comparable(served.clone()), comparable(direct.clone()));
    // Same layout: the same keys in the same order, pretty-printed the same way.
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&served), keys(&direct));
    let served_text = String::from_utf8(bob.stdout).unwrap();
    assert_eq!(served_text.lines().next(), Some("{"));
    // Printed as `grader autograde` prints: pretty JSON, then a newline.
    assert!(
        served_text.starts_with("{\n  \"submission_id\": 1,\n") && served_text.ends_with("\n}\n"),
        "not printed as autograde prints"
    );

    // A job that fails: exit 1 from both, the same failure.
    let mut broken: Value =
        serde_json::from_slice(&std::fs::read(jobs.join("bob.json")).unwrap()).unwrap();
    broken["submission"]["commit_hash"] = Value::from("0123456789abcdef0123456789abcdef01234567");
    let broken_file = d.join("broken.json");
    std::fs::write(&broken_file, serde_json::to_vec(&broken).unwrap()).unwrap();
    let served = submit(&broken_file);
    let direct = grader()
        .arg("--config")
        .arg(&config)
        .args(["autograde", "--job"])
        .arg(&broken_file)
        .output()
        .unwrap();
    assert_eq!(served.status.code(), Some(1));
    assert_eq!(direct.status.code(), Some(1));
    let served: Value = serde_json::from_slice(&served.stdout).unwrap();
    let direct: Value = serde_json::from_slice(&direct.stdout).unwrap();
    assert_eq!(served["status"], "grading_failed");
    assert_eq!(comparable(served), comparable(direct));

    // A job that cannot be graded is refused by both with exit 2 and the same message.
    let mut bad = broken.clone();
    bad["submission"]["commit_hash"] = Value::from("not-hex");
    std::fs::write(&broken_file, serde_json::to_vec(&bad).unwrap()).unwrap();
    let served = submit(&broken_file);
    let direct = grader()
        .arg("--config")
        .arg(&config)
        .args(["autograde", "--job"])
        .arg(&broken_file)
        .output()
        .unwrap();
    assert_eq!(served.status.code(), Some(2));
    assert_eq!(direct.status.code(), Some(2));
    assert_eq!(served.stderr, direct.stderr);
}

#[test]
fn batch_and_serve_use_warm_workers_unless_local_warm_workers_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tool = stand_in_tool(d);
    let config = course(d, "bob,alice", &tool, "");
    let backends = |set: &[&str]| {
        let results = d.join(format!("results-{}", set.len()));
        let out = grader()
            .arg("--config")
            .arg(&config)
            .args(set)
            .args(["batch", "--progress", "none", "--results"])
            .arg(&results)
            .arg(d.join("svc/jobs.jsonl"))
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ["submission_1.json", "submission_2.json"].map(|f| {
            let o: Value =
                serde_json::from_slice(&std::fs::read(results.join(f)).unwrap()).unwrap();
            // The stand-in is no Python console script: the warm backend runs it as a plain
            // process and says so at the top of the log.
            let fell_back = o["logs"]
                .as_str()
                .unwrap()
                .starts_with("grader: no warm grading worker");
            (o["backend"].as_str().unwrap().to_string(), fell_back)
        })
    };
    let warm = ("local-warm".to_string(), true);
    assert_eq!(backends(&[]), [warm.clone(), warm.clone()]);
    let cold = ("local".to_string(), false);
    assert_eq!(
        backends(&["--set", "local.warm_workers=0"]),
        [cold.clone(), cold]
    );

    // serve: the same rule, one warm worker per slot.
    let service = Service::start(d, &config);
    let reply = service.submit(&inline_job(&d.join("svc/jobs/bob.json")));
    let done = service.wait(reply.json()["id"].as_str().unwrap());
    assert_eq!(done["outcome"]["backend"], "local-warm");
    assert_eq!(service.get("/readyz").json()["backend"], "local-warm");
}

/// The samples of a metrics page: `name{labels}` → value.
fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}

/// The sum of the samples whose series starts with `name{` and has every label of `labels`.
fn sum_of(m: &std::collections::BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{")) || k.as_str() == name)
        .filter(|(k, _)| labels.iter().all(|l| k.contains(l)))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn metrics_count_jobs_by_kind_result_and_failure_time_them_and_show_queue_and_running() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tool = stand_in_tool(d);
    let config = course(
        d,
        "bob,alice,carol",
        &tool,
        "concurrency = 1\n[local]\nwarm_workers = 0",
    );
    let service = Service::start(d, &config);
    let jobs = d.join("svc/jobs");
    let scrape = || {
        let reply = service.get("/metrics");
        assert_eq!(reply.status, 200, "{reply:?}");
        assert!(
            reply
                .headers
                .contains("content-type: text/plain; version=0.0.4"),
            "{}",
            reply.headers
        );
        samples(&reply.body)
    };
    let before = scrape();
    assert_eq!(before["grader_jobs_accepted_total"], 0.0);
    assert_eq!(before["grader_backend_ready{backend=\"local\"}"], 1.0);
    assert_eq!(before["grader_concurrency"], 1.0);

    // Bob graded; submitted twice while it runs (one job, one deduplicated).
    sleep_for(d, 1, 0.7);
    let bob = inline_job(&jobs.join("bob.json"));
    let id = service.submit(&bob).json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(service.submit(&bob).status, 200);
    assert_eq!(service.wait(&id)["state"], "done");

    // Alice runs long, carol waits: one running, one queued; both cancelled.
    sleep_for(d, 2, 30.0);
    let alice = service.submit(&inline_job(&jobs.join("alice.json"))).json();
    let alice = alice["id"].as_str().unwrap().to_string();
    assert!(settled(|| service.get(&format!("/v1/jobs/{alice}")).json()
        ["state"]
        == "running"));
    let carol = service.submit(&inline_job(&jobs.join("carol.json"))).json();
    let carol = carol["id"].as_str().unwrap().to_string();
    let busy = scrape();
    assert_eq!(busy["grader_jobs_running"], 1.0);
    assert_eq!(busy["grader_queue_depth"], 1.0);
    service.call("DELETE", &format!("/v1/jobs/{carol}"), &[], b"");
    service.call("DELETE", &format!("/v1/jobs/{alice}"), &[], b"");
    assert_eq!(service.wait(&alice)["state"], "cancelled");

    // A commit the repository does not have: grading fails, with a failure kind.
    let mut broken: Value = serde_json::from_slice(&bob).unwrap();
    broken["submission"]["commit_hash"] = Value::from("0123456789abcdef0123456789abcdef01234567");
    let reply = service.submit(&serde_json::to_vec(&broken).unwrap());
    let failed = service.wait(reply.json()["id"].as_str().unwrap());
    assert_eq!(failed["outcome"]["status"], "grading_failed");
    let failure = failed["outcome"]["failure"].as_str().unwrap().to_string();

    let m = scrape();
    assert_eq!(m["grader_jobs_accepted_total"], 4.0, "{m:?}");
    assert_eq!(m["grader_jobs_deduplicated_total"], 1.0);
    assert_eq!(m["grader_jobs_refused_total{reason=\"queue_full\"}"], 0.0);
    assert_eq!(
        m["grader_jobs_finished_total{kind=\"autograde\",result=\"automatically_graded\",failure=\"none\"}"],
        1.0,
        "{m:?}"
    );
    assert_eq!(
        sum_of(
            &m,
            "grader_jobs_finished_total",
            &["kind=\"autograde\"", "result=\"cancelled\""]
        ),
        2.0,
        "{m:?}"
    );
    assert_eq!(
        m[&format!(
            "grader_jobs_finished_total{{kind=\"autograde\",result=\"grading_failed\",failure=\"{failure}\"}}"
        )],
        1.0,
        "{m:?}"
    );
    assert_eq!(sum_of(&m, "grader_jobs_finished_total", &[]), 4.0);
    // Three jobs started (bob, alice, the broken one); carol never did.
    let bucket = |le: &str| {
        m[&format!("grader_grading_duration_seconds_bucket{{kind=\"autograde\",le=\"{le}\"}}")]
    };
    assert_eq!(
        m["grader_grading_duration_seconds_count{kind=\"autograde\"}"],
        3.0
    );
    assert_eq!(bucket("+Inf"), 3.0);
    assert_eq!(bucket("600.0"), 3.0);
    assert!(bucket("0.5") < 3.0, "bob slept 0.7 s: {m:?}");
    assert!(m["grader_grading_duration_seconds_sum{kind=\"autograde\"}"] >= 0.7);
    assert_eq!(m["grader_jobs_running"], 0.0);
    assert_eq!(m["grader_queue_depth"], 0.0);
    // A plain local backend has no warm workers and no pods.
    assert!(!m.keys().any(|k| k.starts_with("grader_warm_workers")));
    assert!(!m.keys().any(|k| k.starts_with("grader_kube_")));
}

/// Debian's `chromium` (scripts/install-chromium.sh), or `None` after a loud message (a
/// failure under CI).
fn chromium(test: &str) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("CHROMIUM").map(PathBuf::from),
        Some(PathBuf::from("/usr/bin/chromium")),
    ];
    if let Some(c) = candidates.into_iter().flatten().find(|c| c.is_file()) {
        return Some(c);
    }
    let msg = format!("{test}: chromium not found (run scripts/install-chromium.sh)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}; CI=true, so this is a failure");
    }
    eprintln!("\n==========\nSKIPPED {msg}\n==========\n");
    None
}

/// Runs headless Chromium on `url` with `extra` arguments (after 3 s of virtual time, so
/// the page's script has fetched and drawn) and returns its standard output.
fn headless(browser: &Path, profile: &Path, url: &str, extra: &[&str]) -> String {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1200,900",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        stdout.read_to_string(&mut out).unwrap();
        out
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

/// The part of `html` from the element with `id` to the end of its table (or section).
fn part<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}: {html}"));
    let rest = &html[start..];
    let end = rest.find("</section>").unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn the_status_page_shows_running_queued_and_recent_jobs_and_a_score_histogram_in_chromium() {
    let test =
        "the_status_page_shows_running_queued_and_recent_jobs_and_a_score_histogram_in_chromium";
    let Some(convert) = grader_convert(test) else {
        return;
    };
    let Some(browser) = chromium(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(d.join("token"), "page-token\n").unwrap();
    let config = course(
        d,
        "alice,bob,carol,dave,loop",
        &convert,
        &format!(
            "concurrency = 1\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"",
            d.join("token").display()
        ),
    );
    let service = Service::start(d, &config);
    let jobs = d.join("svc/jobs");
    let tcp = |path: &str, headers: &[&str]| {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        exchange(stream, &request("GET", path, headers, b""))
    };

    // Four submissions graded (the example course's four different scores).
    for student in ["alice", "bob", "carol", "dave"] {
        let reply = service.submit(&inline_job(&jobs.join(format!("{student}.json"))));
        let done = service.wait(reply.json()["id"].as_str().unwrap());
        assert_eq!(done["outcome"]["status"], "automatically_graded", "{done}");
    }
    // One running (an endless loop, until its cell timeout), one queued behind it.
    let running = service.submit(&inline_job(&jobs.join("loop.json"))).json();
    let running = running["id"].as_str().unwrap().to_string();
    assert!(settled(|| service
        .get(&format!("/v1/jobs/{running}"))
        .json()["state"]
        == "running"));
    let queued = service.submit(&inline_job(&jobs.join("alice.json"))).json();
    assert_eq!(queued["state"], "queued");
    let queued = queued["id"].as_str().unwrap().to_string();

    // On TCP the page is open (it holds no data); its data and the metrics need the token.
    let page = tcp("/", &[]);
    assert_eq!(page.status, 200);
    assert!(
        page.headers
            .contains("content-security-policy: default-src 'none'")
    );
    assert_eq!(tcp("/v1/status", &[]).status, 401);
    assert_eq!(tcp("/metrics", &[]).status, 401);
    assert_eq!(
        tcp("/metrics", &["Authorization: Bearer page-token"]).status,
        200
    );
    // The token goes in the fragment, which the browser never sends.
    let url = format!("http://127.0.0.1:{port}/#token=page-token");

    // The DOM after the script ran.
    let dom = headless(&browser, &d.join("profile-dom"), &url, &["--dump-dom"]);
    let run_rows = part(&dom, "running");
    assert!(
        run_rows.contains(&format!("data-job=\"{running}\"")),
        "the running job: {run_rows}"
    );
    assert!(run_rows.contains("loop"), "{run_rows}");
    let queue_rows = part(&dom, "queued");
    assert!(
        queue_rows.contains(&format!("data-job=\"{queued}\"")),
        "the queued job: {queue_rows}"
    );
    let recent = part(&dom, "recent");
    assert_eq!(
        recent.matches("class=\"job-row ok\"").count(),
        4,
        "four graded outcomes: {recent}"
    );
    for student in ["alice", "bob", "carol", "dave"] {
        assert!(
            recent.contains(&format!(">{student}<")),
            "{student}: {recent}"
        );
    }
    assert!(recent.contains("automatically_graded"));
    let histogram = part(&dom, "histograms");
    assert!(
        histogram.contains("data-assignment=\"cs101 / "),
        "{histogram}"
    );
    let counts: Vec<u64> = histogram
        .split("class=\"bar\"")
        .skip(1)
        .map(|bar| {
            let n = bar.split("data-count=\"").nth(1).unwrap();
            n[..n.find('"').unwrap()].parse().unwrap()
        })
        .collect();
    assert_eq!(counts.len(), 10, "ten bars: {histogram}");
    assert_eq!(counts.iter().sum::<u64>(), 4, "{counts:?}");
    assert!(
        !dom.contains("needs the bearer token"),
        "the token was used"
    );

    // The screenshot: the tables and the bars are drawn, not a blank page.
    let shot = d.join("status.png");
    headless(
        &browser,
        &d.join("profile-shot"),
        &url,
        &[&format!("--screenshot={}", shot.display())],
    );
    let keep = std::env::var_os("SERVE_PAGE_SCREENSHOT").map(PathBuf::from);
    if let Some(keep) = &keep {
        std::fs::copy(&shot, keep).unwrap();
    }
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    assert_eq!((w, h), (1200, 900));
    let channels = info.color_type.samples();
    let at = |x: usize, y: usize| {
        let i = (y * w + x) * channels;
        (pixels[i], pixels[i + 1], pixels[i + 2])
    };
    let near = |(r, g, b): (u8, u8, u8), (x, y, z): (u8, u8, u8)| {
        r.abs_diff(x) < 24 && g.abs_diff(y) < 24 && b.abs_diff(z) < 24
    };
    // The bars' colour (#2f6fdb), and rows of text (dark pixels on white) below the header.
    let bar_pixels = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .filter(|&(x, y)| near(at(x, y), (0x2f, 0x6f, 0xdb)))
        .count();
    assert!(
        bar_pixels > 1000,
        "the histogram bars are drawn: {bar_pixels} pixels"
    );
    let text_rows = (80..h)
        .filter(|&y| (0..w).any(|x| near(at(x, y), (0x1d, 0x24, 0x30))))
        .count();
    assert!(
        text_rows > 150,
        "the tables are drawn: {text_rows} rows with text"
    );
    let header = (0..w)
        .filter(|&x| near(at(x, 5), (0x1d, 0x24, 0x30)))
        .count();
    assert!(header > w / 2, "the header bar is drawn");

    for id in [&queued, &running] {
        service.call("DELETE", &format!("/v1/jobs/{id}"), &[], b"");
    }
    assert_eq!(service.wait(&running)["state"], "cancelled");
}
