//! The backend on the wire: the exact requests it sends through a real `kube::Client` (over
//! kube's mock service, `tower_test::mock::pair`) and how it reads the answers, including
//! 409, 403 and a watch that breaks mid-way.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use grader_kube::{ImageConfig, KubeBackend, KubePodApi, KubeSettings, PodApi, build_pod};
use grader_local::{FailureKind, GradingBackend};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type RespBody = UnsyncBoxBody<Bytes, BoxError>;
type Handle = tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<RespBody>>;
type Chunk = Result<Bytes, std::io::Error>;

/// One request as the fake API server saw it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    body: Option<Value>,
}

impl Seen {
    fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// What the fake server answers.
enum Reply {
    Json(u16, Value),
    Text(&'static str),
    Stream(UnboundedReceiver<Chunk>),
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn parse_query(q: Option<&str>) -> BTreeMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn pod_json(uid: &str, rv: &str, status: Value) -> Value {
    let mut p = serde_json::to_value(pod(uid, status)).unwrap();
    p["metadata"]["resourceVersion"] = json!(rv);
    p
}

fn event(kind: &str, object: Value) -> Chunk {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap();
    line.push(b'\n');
    Ok(Bytes::from(line))
}

/// Serves requests with `respond`, recording them, until the client is gone.
fn serve(
    mut handle: Handle,
    mut respond: impl FnMut(&Seen) -> Reply + Send + 'static,
) -> Arc<Mutex<Vec<Seen>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let request = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: parse_query(parts.uri.query()),
                body: (!bytes.is_empty()).then(|| serde_json::from_slice(&bytes).unwrap()),
            };
            log.lock().unwrap().push(request.clone());
            let response = match respond(&request) {
                Reply::Json(code, value) => http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(
                        Full::new(Bytes::from(serde_json::to_vec(&value).unwrap()))
                            .map_err(|e| -> BoxError { match e {} })
                            .boxed_unsync(),
                    )
                    .unwrap(),
                Reply::Text(text) => http::Response::builder()
                    .status(200)
                    .body(
                        Full::new(Bytes::from(text))
                            .map_err(|e| -> BoxError { match e {} })
                            .boxed_unsync(),
                    )
                    .unwrap(),
                Reply::Stream(rx) => http::Response::builder()
                    .status(200)
                    .body(
                        StreamBody::new(rx.map(|c| c.map(Frame::data).map_err(BoxError::from)))
                            .boxed_unsync(),
                    )
                    .unwrap(),
            };
            send.send_response(response);
        }
    });
    seen
}

fn client() -> (kube::Client, Handle) {
    let (service, handle) =
        tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<RespBody>>();
    (kube::Client::new(service, "default"), handle)
}

const PODS: &str = "/api/v1/namespaces/grading/pods";
const SELECTOR: &str = "app.kubernetes.io/managed-by=grader";

fn list_reply() -> Reply {
    Reply::Json(
        200,
        json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "100"}, "items": []}),
    )
}

/// A fake cluster for a whole job: list, watch streams in `watches` order, and the given
/// answer to create; it reports the job's progress through the first watch.
fn job_server(
    handle: Handle,
    create: impl Fn(&Seen, &UnboundedSender<Chunk>) -> Reply + Send + 'static,
    mut other: impl FnMut(&Seen) -> Reply + Send + 'static,
    watch_count: usize,
) -> (Arc<Mutex<Vec<Seen>>>, Vec<UnboundedSender<Chunk>>) {
    let mut senders = Vec::new();
    let mut receivers = VecDeque::new();
    for _ in 0..watch_count {
        let (tx, rx) = unbounded();
        senders.push(tx);
        receivers.push_back(rx);
    }
    let first = senders[0].clone();
    let seen = serve(handle, move |r| {
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", PODS) if r.query.contains_key("watch") => match receivers.pop_front() {
                Some(rx) => Reply::Stream(rx),
                None => Reply::Stream(unbounded().1),
            },
            ("GET", PODS) => list_reply(),
            ("POST", PODS) => create(r, &first),
            _ => other(r),
        }
    });
    (seen, senders)
}

fn backend(client: kube::Client, settings: KubeSettings) -> KubeBackend {
    KubeBackend::new(client, NS, settings, ImageConfig::default())
}

/// The (resource, verb) a request needs in RBAC terms.
fn rbac_of(r: &Seen) -> (String, &'static str) {
    let rest = r
        .path
        .strip_prefix(PODS)
        .unwrap_or_else(|| panic!("not a pod request: {}", r.path));
    let sub = rest.trim_start_matches('/').split('/').nth(1);
    let resource = match sub {
        Some(sub) => format!("pods/{sub}"),
        None => "pods".to_owned(),
    };
    let named = !rest.is_empty();
    let verb = match (r.method.as_str(), named) {
        ("GET", false) if r.query.contains_key("watch") => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", false) => "create",
        ("DELETE", true) => "delete",
        (m, _) => panic!("unexpected {m} {}", r.path),
    };
    (resource, verb)
}

/// Every request is allowed by [`grader_kube::REQUIRED_RBAC`] (which the deploy test checks
/// against `deploy/rbac.yaml`).
fn assert_covered_by_rbac(seen: &[Seen]) {
    for r in seen {
        let (resource, verb) = rbac_of(r);
        assert!(
            grader_kube::REQUIRED_RBAC
                .iter()
                .any(|(res, verbs)| *res == resource && verbs.contains(&verb)),
            "{verb} {resource} ({}) is not in REQUIRED_RBAC",
            r.line()
        );
    }
}

fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn a_graded_submission_makes_five_requests_with_these_exact_shapes() {
    let (client, handle) = client();
    let (seen, _watches) = job_server(
        handle,
        |_, watch| {
            watch
                .unbounded_send(event("MODIFIED", pod_json("u1", "101", running())))
                .unwrap();
            watch
                .unbounded_send(event("MODIFIED", pod_json("u1", "102", succeeded())))
                .unwrap();
            Reply::Json(201, pod_json("u1", "100", pending()))
        },
        |r| match (r.method.as_str(), r.path.as_str()) {
            ("GET", p) if p == format!("{PODS}/{POD}/log") => Reply::Text("[AutogradeApp] done\n"),
            ("DELETE", p) if p == format!("{PODS}/{POD}") => {
                Reply::Json(200, pod_json("u1", "103", succeeded()))
            }
            _ => Reply::Json(404, status(404, "NotFound", "unexpected")),
        },
        1,
    );
    let out = backend(client, KubeSettings::default())
        .run(&task(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(out.logs, "[AutogradeApp] done\n");

    let seen = seen.lock().unwrap().clone();
    assert_covered_by_rbac(&seen);
    let mut lines: Vec<String> = seen.iter().map(Seen::line).collect();
    lines.sort();
    let mut expected = vec![
        format!("GET {PODS}"),
        format!("GET {PODS}"),
        format!("POST {PODS}"),
        format!("GET {PODS}/{POD}/log"),
        format!("DELETE {PODS}/{POD}"),
    ];
    expected.sort();
    assert_eq!(lines, expected, "at most 6 requests per graded submission");

    let list = seen
        .iter()
        .find(|r| r.method == "GET" && r.path == PODS && !r.query.contains_key("watch"))
        .unwrap();
    assert_eq!(
        list.query,
        q(&[("labelSelector", SELECTOR), ("limit", "500")])
    );
    let watch = seen.iter().find(|r| r.query.contains_key("watch")).unwrap();
    assert_eq!(
        watch.query,
        q(&[
            ("watch", "true"),
            ("labelSelector", SELECTOR),
            ("resourceVersion", "100"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", "290"),
        ])
    );
    let create = seen.iter().find(|r| r.method == "POST").unwrap();
    let expected_pod = serde_json::to_value(
        build_pod(&KubeSettings::default(), &task(), "cs101_image")
            .unwrap()
            .0,
    )
    .unwrap();
    assert_eq!(expected_pod["apiVersion"], "v1");
    assert_eq!(create.body.as_ref(), Some(&expected_pod));
    assert!(create.query.is_empty());
    let log = seen.iter().find(|r| r.path.ends_with("/log")).unwrap();
    assert_eq!(log.query, q(&[("container", "autograde")]));
    let delete = seen.iter().find(|r| r.method == "DELETE").unwrap();
    // Background propagation, never forced (no gracePeriodSeconds).
    assert_eq!(
        delete.body,
        Some(json!({"propagationPolicy": "Background"}))
    );
    assert!(delete.query.is_empty());
}

#[tokio::test]
async fn forbidden_create_reads_the_api_status() {
    let (client, handle) = client();
    let message = "pods is forbidden: User \"system:serviceaccount:grading:grader\" cannot create resource \"pods\" in API group \"\" in the namespace \"grading\"";
    let (seen, _w) = job_server(
        handle,
        move |_, _| Reply::Json(403, status(403, "Forbidden", message)),
        |_| Reply::Json(404, status(404, "NotFound", "unexpected")),
        1,
    );
    let err = backend(client, KubeSettings::default())
        .run(&task(), CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(
        err.reason,
        format!("creating pod {POD} in namespace {NS}: forbidden: {message}")
    );
    assert_eq!(err.kind, FailureKind::Infrastructure);
    assert!(!seen.lock().unwrap().iter().any(|r| r.method == "DELETE"));
}

/// A failed pod as the watch streams it is told apart by kind: eviction is the cluster's
/// doing, OOMKilled is the notebook's memory, the deadline is max_grading_time.
#[tokio::test]
async fn failed_pods_on_the_watch_carry_their_failure_kind() {
    let oom = json!({"phase": "Failed", "containerStatuses": [{
        "name": "autograde", "image": "cs101_image", "imageID": "", "ready": false,
        "restartCount": 0, "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
    }]});
    for (ended_with, kind) in [
        (
            json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}),
            FailureKind::Infrastructure,
        ),
        (oom, FailureKind::OutOfMemory),
        (
            json!({"phase": "Failed", "reason": "DeadlineExceeded", "message": "Pod was active on the node longer than the specified deadline"}),
            FailureKind::TimedOut,
        ),
    ] {
        let (client, handle) = client();
        let ended = ended_with.clone();
        let (_seen, _watches) = job_server(
            handle,
            move |_, watch| {
                watch
                    .unbounded_send(event("MODIFIED", pod_json("u1", "101", ended.clone())))
                    .unwrap();
                Reply::Json(201, pod_json("u1", "100", pending()))
            },
            |r| match (r.method.as_str(), r.path.as_str()) {
                ("GET", p) if p == format!("{PODS}/{POD}/log") => Reply::Text("log\n"),
                ("DELETE", p) if p == format!("{PODS}/{POD}") => {
                    Reply::Json(200, pod_json("u1", "102", pending()))
                }
                _ => Reply::Json(404, status(404, "NotFound", "unexpected")),
            },
            1,
        );
        let err = backend(client, KubeSettings::default())
            .run(&task(), CancellationToken::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind, kind, "{ended_with}: {}", err.reason);
        assert!(
            err.reason
                .starts_with(&format!("pod {POD} in namespace {NS} ")),
            "{}",
            err.reason
        );
    }
}

#[tokio::test]
async fn conflict_on_create_adopts_the_running_pod() {
    let (client, handle) = client();
    let (seen, watches) = job_server(
        handle,
        |_, _| {
            Reply::Json(
                409,
                status(
                    409,
                    "AlreadyExists",
                    "pods \"autograde-job-alice-42\" already exists",
                ),
            )
        },
        |r| match (r.method.as_str(), r.path.as_str()) {
            ("GET", p) if p == format!("{PODS}/{POD}") => {
                Reply::Json(200, pod_json("old", "90", running()))
            }
            ("GET", p) if p.ends_with("/log") => Reply::Text("adopted\n"),
            ("DELETE", _) => Reply::Json(200, pod_json("old", "95", succeeded())),
            _ => Reply::Json(404, status(404, "NotFound", "unexpected")),
        },
        1,
    );
    let backend = backend(client, KubeSettings::default());
    let t = common::resumed_task();
    let run = backend.run(&t, CancellationToken::new());
    let finish = async {
        // Once the pod was read, report it done.
        loop {
            if seen
                .lock()
                .unwrap()
                .iter()
                .any(|r| r.method == "GET" && r.path.ends_with(POD))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        watches[0]
            .unbounded_send(event("MODIFIED", pod_json("old", "96", succeeded())))
            .unwrap();
    };
    let (out, ()) = tokio::join!(run, finish);
    assert_eq!(out.unwrap().logs, "adopted\n");
    assert_covered_by_rbac(&seen.lock().unwrap());
    let lines: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| !(r.path == PODS && r.method == "GET"))
        .map(Seen::line)
        .collect();
    assert_eq!(
        lines,
        [
            format!("POST {PODS}"),
            format!("GET {PODS}/{POD}"),
            format!("GET {PODS}/{POD}/log"),
            format!("DELETE {PODS}/{POD}"),
        ]
    );
}

#[tokio::test]
async fn a_watch_that_breaks_midway_falls_back_to_get_polling() {
    let (client, handle) = client();
    let gets = Arc::new(Mutex::new(0));
    let g = gets.clone();
    let (seen, _watches) = job_server(
        handle,
        |_, watch| {
            watch
                .unbounded_send(event("MODIFIED", pod_json("u1", "101", running())))
                .unwrap();
            watch
                .unbounded_send(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection reset",
                )))
                .unwrap();
            Reply::Json(201, pod_json("u1", "100", pending()))
        },
        move |r| match (r.method.as_str(), r.path.as_str()) {
            ("GET", p) if p == format!("{PODS}/{POD}") => {
                *g.lock().unwrap() += 1;
                Reply::Json(200, pod_json("u1", "102", succeeded()))
            }
            ("GET", p) if p.ends_with("/log") => Reply::Text("polled\n"),
            ("DELETE", _) => Reply::Json(200, pod_json("u1", "103", succeeded())),
            _ => Reply::Json(404, status(404, "NotFound", "unexpected")),
        },
        2,
    );
    let settings = KubeSettings {
        poll_interval: Duration::from_millis(200),
        ..KubeSettings::default()
    };
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        backend(client, settings).run(&task(), CancellationToken::new()),
    )
    .await
    .expect("finishes by polling")
    .unwrap();
    assert_eq!(out.logs, "polled\n");
    assert_eq!(*gets.lock().unwrap(), 1);
    let seen = seen.lock().unwrap();
    assert_covered_by_rbac(&seen);
    let watches: Vec<&Seen> = seen
        .iter()
        .filter(|r| r.query.contains_key("watch"))
        .collect();
    assert!(!watches.is_empty());
    if let Some(resumed) = watches.get(1) {
        // Re-established from the last version seen, without a re-list.
        assert_eq!(resumed.query["resourceVersion"], "101");
    }
}

#[tokio::test]
async fn pod_api_calls_on_the_wire() {
    let (client, handle) = client();
    let seen = serve(handle, |r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", p) if p.ends_with("/missing") => {
            Reply::Json(404, status(404, "NotFound", "pods \"missing\" not found"))
        }
        ("DELETE", p) if p.ends_with("/missing") => {
            Reply::Json(404, status(404, "NotFound", "pods \"missing\" not found"))
        }
        ("DELETE", _) => Reply::Json(200, status(200, "", "")),
        ("GET", PODS) => Reply::Json(
            200,
            json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"},
            "items": [pod_json("a", "5", succeeded())]}),
        ),
        _ => Reply::Json(500, status(500, "InternalError", "etcd is down")),
    });
    let api = KubePodApi::new(client, NS);
    assert_eq!(api.get("missing").await.unwrap(), None);
    assert_eq!(
        api.delete("missing").await.unwrap(),
        grader_kube::Deletion::NotFound
    );
    assert_eq!(
        api.delete("gone").await.unwrap(),
        grader_kube::Deletion::Gone
    );
    let pods: Vec<Pod> = api.list(SELECTOR).await.unwrap();
    assert_eq!(pods.len(), 1);
    let err = api.logs("x", "autograde", 100).await.unwrap_err();
    assert_eq!(err.to_string(), "internal error: etcd is down");
    let gone = grader_kube::collect_garbage(&api, NS, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(gone, [POD]);
    let seen = seen.lock().unwrap();
    assert_covered_by_rbac(&seen);
    assert_eq!(seen.last().unwrap().line(), format!("DELETE {PODS}/{POD}"));
    let list = seen.iter().find(|r| r.path == PODS).unwrap();
    assert_eq!(list.query, q(&[("labelSelector", SELECTOR)]));
}

#[tokio::test]
async fn logs_are_capped_keeping_head_and_tail() {
    let (client, handle) = client();
    let big: &'static str = Box::leak(format!("START{}END", "x".repeat(10_000)).into_boxed_str());
    serve(handle, move |_| Reply::Text(big));
    let logs = KubePodApi::new(client, NS)
        .logs(POD, "autograde", 200)
        .await
        .unwrap();
    assert!(logs.starts_with("START") && logs.ends_with("END"), "{logs}");
    assert!(logs.contains("bytes of log omitted"), "{logs}");
    assert!(logs.len() < 400);
}

#[tokio::test]
async fn an_unreachable_server_is_named() {
    let (client, mut handle) = client();
    tokio::spawn(async move {
        while let Some((_, send)) = handle.next_request().await {
            send.send_error(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            ));
        }
    });
    let err = KubePodApi::new(client, NS).get(POD).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot reach the Kubernetes API server:"),
        "{err}"
    );
    assert!(err.to_string().contains("connection refused"), "{err}");
}
