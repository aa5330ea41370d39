//! The backend's logic against a mocked pod API: every path of a grading job.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use futures::StreamExt;
use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::stream::BoxStream;
use grader_kube::{ApiError, Deletion, ImageConfig, KubeBackend, KubeSettings, PodApi};
use grader_local::{FailureKind, GradingBackend, JobKind};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::Event;
use mockall::mock;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mock! {
    pub Api {}
    #[async_trait]
    impl PodApi for Api {
        fn namespace(&self) -> &str;
        async fn create(&self, pod: &Pod) -> Result<Pod, ApiError>;
        async fn get(&self, name: &str) -> Result<Option<Pod>, ApiError>;
        async fn delete(&self, name: &str) -> Result<Deletion, ApiError>;
        async fn logs(&self, name: &str, container: &str, cap: usize) -> Result<String, ApiError>;
        async fn list(&self, label_selector: &str) -> Result<Vec<Pod>, ApiError>;
        fn watch(&self, label_selector: &str) -> BoxStream<'static, Result<Event<Pod>, ApiError>>;
    }
}

type WatchItem = Result<Event<Pod>, ApiError>;

/// The test's hand on the fake cluster: push watch events, read the requests made.
#[derive(Clone)]
struct Ctx {
    events: UnboundedSender<WatchItem>,
    calls: Arc<Mutex<Vec<String>>>,
}

impl Ctx {
    fn emit(&self, event: Event<Pod>) {
        self.events.unbounded_send(Ok(event)).unwrap();
    }
    fn apply(&self, pod: Pod) {
        self.emit(Event::Apply(pod));
    }
    fn break_watch(&self) {
        self.events
            .unbounded_send(Err(ApiError::Unreachable(
                "connection reset by peer".into(),
            )))
            .unwrap();
    }
    fn log(&self, call: impl Into<String>) {
        self.calls.lock().unwrap().push(call.into());
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn count(&self, prefix: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    }
}

fn settings() -> KubeSettings {
    KubeSettings::default()
}

/// A backend over a mock whose watch is fed by the returned [`Ctx`]; `configure` adds the
/// expectations of the test. `logs` and `delete` succeed and are recorded unless configured.
/// The first create meets a leftover pod (409), which `get` returns as `old`; the backend
/// deletes it, and the delete event comes `gone_after` later; the second create succeeds.
fn expect_replacing(m: &mut MockApi, c: &Ctx, old: Pod, gone_after: Duration) {
    let c2 = c.clone();
    m.expect_create().times(2).returning(move |_| {
        c2.log("create");
        if c2.count("create") == 1 {
            return Err(ApiError::status(409, "AlreadyExists", "exists"));
        }
        c2.apply(pod("new", succeeded()));
        Ok(pod("new", pending()))
    });
    let c = c.clone();
    m.expect_get().times(1).returning(move |_| {
        c.log("get");
        let (c3, gone) = (c.clone(), old.clone());
        tokio::spawn(async move {
            tokio::time::sleep(gone_after).await;
            c3.emit(Event::Delete(gone));
        });
        Ok(Some(old.clone()))
    });
}

fn setup(settings: KubeSettings, configure: impl FnOnce(&mut MockApi, &Ctx)) -> (KubeBackend, Ctx) {
    let (tx, rx) = unbounded::<WatchItem>();
    let ctx = Ctx {
        events: tx,
        calls: Arc::new(Mutex::new(Vec::new())),
    };
    let mut mock = MockApi::new();
    mock.expect_namespace().return_const(NS.to_owned());
    let c = ctx.clone();
    mock.expect_watch()
        .times(0..=1)
        .return_once(move |selector| {
            c.log(format!("watch {selector}"));
            // The watch stays open after the test's events.
            rx.chain(futures::stream::pending()).boxed()
        });
    configure(&mut mock, &ctx);
    let c = ctx.clone();
    mock.expect_logs().returning(move |name, container, cap| {
        c.log(format!("logs {name} {container} {cap}"));
        Ok(format!("graded {name}\n"))
    });
    let c = ctx.clone();
    mock.expect_delete().returning(move |name| {
        c.log(format!("delete {name}"));
        Ok(Deletion::Started)
    });
    (
        KubeBackend::with_api(Arc::new(mock), settings, ImageConfig::default()),
        ctx,
    )
}

/// The requests of one job, without the shared watch.
fn job_calls(ctx: &Ctx) -> Vec<String> {
    ctx.calls()
        .into_iter()
        .filter(|c| !c.starts_with("watch"))
        .collect()
}

fn create_then(mock: &mut MockApi, ctx: &Ctx, uid: &'static str, events: Vec<Event<Pod>>) {
    let c = ctx.clone();
    let mut events = Some(events);
    mock.expect_create().times(1).returning(move |p| {
        c.log(format!(
            "create {}",
            p.metadata.name.clone().unwrap_or_default()
        ));
        for e in events.take().unwrap_or_default() {
            c.emit(e);
        }
        Ok(pod(uid, pending()))
    });
}

#[tokio::test(start_paused = true)]
async fn success_fetches_logs_and_deletes_with_three_requests() {
    let (backend, ctx) = setup(settings(), |m, c| {
        create_then(
            m,
            c,
            "u1",
            vec![
                Event::Apply(pod("u1", running())),
                Event::Apply(pod("u1", succeeded())),
            ],
        );
    });
    let out = backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(out.logs, format!("graded {POD}\n"));
    assert_eq!(
        job_calls(&ctx),
        [
            format!("create {POD}"),
            format!("logs {POD} autograde 1048576"),
            format!("delete {POD}"),
        ]
    );
    assert_eq!(
        ctx.calls()
            .iter()
            .filter(|c| c.starts_with("watch"))
            .collect::<Vec<_>>(),
        ["watch app.kubernetes.io/managed-by=grader"]
    );
    assert_eq!(backend.name(), "kube");
}

#[tokio::test(start_paused = true)]
async fn one_watch_serves_many_jobs() {
    let (backend, ctx) = setup(settings(), |m, c| {
        let c = c.clone();
        m.expect_create().times(3).returning(move |p| {
            c.log("create");
            let mut done: Pod = p.clone();
            let uid = format!("uid-{}", c.count("create"));
            done.metadata.uid = Some(uid.clone());
            done.status = serde_json::from_value(succeeded()).ok();
            c.apply(done.clone());
            done.status = serde_json::from_value(pending()).ok();
            Ok(done)
        });
    });
    for _ in 0..3 {
        backend
            .run(&task(), CancellationToken::new())
            .await
            .unwrap();
    }
    assert_eq!(ctx.count("watch"), 1);
    assert_eq!(ctx.count("create"), 3);
}

#[tokio::test(start_paused = true)]
async fn stats_count_requests_by_verb_and_the_pods_in_flight() {
    let (backend, ctx) = setup(settings(), |m, c| {
        create_then(m, c, "u1", vec![Event::Apply(pod("u1", running()))]);
    });
    let backend = Arc::new(backend);
    assert_eq!(backend.stats(), grader_kube::KubeStats::default());
    let running = {
        let backend = backend.clone();
        tokio::spawn(async move { backend.run(&task(), CancellationToken::new()).await })
    };
    while ctx.count("create") == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    let during = backend.stats();
    assert_eq!(
        (during.pods_in_flight, during.create, during.watch),
        (1, 1, 1)
    );
    ctx.apply(pod("u1", succeeded()));
    running.await.unwrap().unwrap();
    let after = backend.stats();
    assert_eq!(after.pods_in_flight, 0, "{after:?}");
    assert_eq!(
        after.requests(),
        [
            ("create", 1),
            ("get", 0),
            ("delete", 1),
            ("logs", 1),
            ("list", 0),
            ("watch", 1)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn tool_exit_code_fails_the_job_with_logs() {
    let (backend, ctx) = setup(settings(), |m, c| {
        create_then(m, c, "u1", vec![Event::Apply(pod("u1", exited(1)))]);
    });
    let err = backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(
        err.reason,
        format!(
            "pod {POD} in namespace {NS} failed: container autograde exited with code 1 (Error)"
        )
    );
    assert_eq!(err.kind, FailureKind::ToolExited);
    assert_eq!(err.logs, format!("graded {POD}\n"));
    assert_eq!(ctx.count("delete"), 1);
}

#[tokio::test(start_paused = true)]
async fn invalid_image_fails_at_once_without_logs() {
    let (backend, ctx) = setup(settings(), |m, c| {
        create_then(
            m,
            c,
            "u1",
            vec![Event::Apply(pod(
                "u1",
                waiting("InvalidImageName", "couldn't parse image name \"CS 101\""),
            ))],
        );
    });
    let start = Instant::now();
    let err = backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(
        err.reason,
        format!(
            "pod {POD} in namespace {NS} could not start: InvalidImageName: couldn't parse image name \"CS 101\""
        )
    );
    assert_eq!(err.kind, FailureKind::ToolNotStarted);
    assert_eq!(
        job_calls(&ctx),
        [format!("create {POD}"), format!("delete {POD}")]
    );
}

#[tokio::test(start_paused = true)]
async fn image_pull_backoff_fails_after_the_grace() {
    let mut s = settings();
    s.unschedulable_grace = Duration::from_secs(120);
    let (backend, ctx) = setup(s, |m, c| {
        create_then(
            m,
            c,
            "u1",
            vec![
                Event::Apply(pod("u1", waiting("ErrImagePull", "not found"))),
                Event::Apply(pod(
                    "u1",
                    waiting("ImagePullBackOff", "Back-off pulling image \"cs101_image\""),
                )),
            ],
        );
    });
    let start = Instant::now();
    let err = backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(120));
    assert_eq!(
        err.reason,
        format!(
            "pod {POD} in namespace {NS} could not start: ImagePullBackOff: Back-off pulling image \"cs101_image\" (for longer than unschedulable_grace of 120s)"
        )
    );
    assert_eq!(err.kind, FailureKind::ToolNotStarted);
    assert_eq!(ctx.count("logs"), 0);
    assert_eq!(ctx.count("delete"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_pull_that_recovers_within_the_grace_goes_on() {
    let (backend, ctx) = setup(settings(), |m, c| {
        create_then(
            m,
            c,
            "u1",
            vec![Event::Apply(pod(
                "u1",
                waiting("ImagePullBackOff", "slow registry"),
            ))],
        );
        let c = c.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(100)).await;
            c.apply(pod("u1", running()));
            tokio::time::sleep(Duration::from_secs(400)).await;
            c.apply(pod("u1", succeeded()));
        });
    });
    let start = Instant::now();
    backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(500));
    assert_eq!(ctx.count("delete"), 1);
}

#[tokio::test(start_paused = true)]
async fn unschedulable_past_the_grace_fails() {
    let (backend, ctx) = setup(settings(), |m, c| {
        create_then(m, c, "u1", vec![Event::Apply(pod("u1", unschedulable()))]);
    });
    let start = Instant::now();
    let err = backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(300));
    assert_eq!(
        err.reason,
        format!(
            "pod {POD} in namespace {NS} could not start: Unschedulable: 0/3 nodes are available: 3 Insufficient memory. (for longer than unschedulable_grace of 300s)"
        )
    );
    assert_eq!(err.kind, FailureKind::ToolNotStarted);
    assert_eq!(ctx.count("delete"), 1);
}

#[tokio::test(start_paused = true)]
async fn eviction_and_deadline_are_named() {
    for (reason, message, expected, kind) in [
        (
            "Evicted",
            "The node was low on resource: memory.",
            format!(
                "pod {POD} in namespace {NS} was evicted: The node was low on resource: memory."
            ),
            FailureKind::Infrastructure,
        ),
        (
            "DeadlineExceeded",
            "Pod was active on the node longer than the specified deadline",
            format!(
                "pod {POD} in namespace {NS} exceeded its activeDeadlineSeconds (max_grading_time) and was stopped by Kubernetes: Pod was active on the node longer than the specified deadline"
            ),
            FailureKind::TimedOut,
        ),
    ] {
        let (backend, ctx) = setup(settings(), |m, c| {
            create_then(
                m,
                c,
                "u1",
                vec![Event::Apply(pod("u1", failed_with(reason, message)))],
            );
        });
        let err = backend
            .run(&task(), CancellationToken::new())
            .await
            .unwrap_err();
        assert_eq!(err.reason, expected);
        assert_eq!(err.kind, kind, "{reason}");
        assert_eq!(ctx.count("logs"), 1, "logs are fetched for failed pods too");
        assert_eq!(ctx.count("delete"), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn deleted_by_someone_else_via_watch() {
    let (backend, ctx) = setup(settings(), |m, c| {
        create_then(
            m,
            c,
            "u1",
            vec![
                Event::Apply(pod("u1", running())),
                Event::Delete(pod("u1", running())),
            ],
        );
    });
    let err = backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(
        err.reason,
        format!("pod {POD} in namespace {NS} was deleted before it finished")
    );
    assert_eq!(err.kind, FailureKind::Infrastructure);
    assert_eq!(ctx.count("logs"), 0);
    assert_eq!(ctx.count("delete"), 1, "a delete is still sent, in case");
}

#[tokio::test(start_paused = true)]
async fn deletion_timestamp_counts_as_deleted() {
    let (backend, _ctx) = setup(settings(), |m, c| {
        let mut terminating = pod("u1", running());
        terminating.metadata.deletion_timestamp =
            serde_json::from_value(serde_json::json!("2026-01-01T00:00:00Z")).ok();
        create_then(m, c, "u1", vec![Event::Apply(terminating)]);
    });
    let err = backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        err.reason.ends_with("was deleted before it finished"),
        "{}",
        err.reason
    );
}

#[tokio::test(start_paused = true)]
async fn watch_error_falls_back_to_polling_until_done() {
    let (backend, ctx) = setup(settings(), |m, c| {
        let c2 = c.clone();
        m.expect_create().times(1).returning(move |_| {
            c2.log("create");
            c2.break_watch();
            Ok(pod("u1", pending()))
        });
        let c = c.clone();
        m.expect_get().times(2).returning(move |name| {
            c.log(format!("get {name}"));
            let status = if c.count("get") == 1 {
                running()
            } else {
                succeeded()
            };
            Ok(Some(pod("u1", status)))
        });
    });
    let start = Instant::now();
    backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(10),
        "GET every poll_interval (5s)"
    );
    assert_eq!(
        job_calls(&ctx),
        [
            "create".to_owned(),
            format!("get {POD}"),
            format!("get {POD}"),
            format!("logs {POD} autograde 1048576"),
            format!("delete {POD}")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn polling_stops_when_the_watch_is_healthy_again() {
    let (backend, ctx) = setup(settings(), |m, c| {
        let c2 = c.clone();
        m.expect_create().times(1).returning(move |_| {
            c2.log("create");
            c2.break_watch();
            let c3 = c2.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(7)).await;
                // Any event marks the watch healthy, even for another pod.
                let mut other = pod("x", running());
                other.metadata.name = Some("autograde-job-bob-1".into());
                c3.apply(other);
                tokio::time::sleep(Duration::from_secs(60)).await;
                c3.apply(pod("u1", succeeded()));
            });
            Ok(pod("u1", pending()))
        });
        let c = c.clone();
        m.expect_get().times(1).returning(move |_| {
            c.log("get");
            Ok(Some(pod("u1", running())))
        });
    });
    let start = Instant::now();
    backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(67));
    assert_eq!(ctx.count("get"), 1);
}

#[tokio::test(start_paused = true)]
async fn polling_sees_a_404_as_deleted() {
    let (backend, ctx) = setup(settings(), |m, c| {
        let c2 = c.clone();
        m.expect_create().times(1).returning(move |_| {
            c2.break_watch();
            Ok(pod("u1", running()))
        });
        let c = c.clone();
        m.expect_get().times(1).returning(move |_| {
            c.log("get");
            Ok(None)
        });
    });
    let err = backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(
        err.reason,
        format!("pod {POD} in namespace {NS} was deleted before it finished")
    );
    assert_eq!(ctx.count("get"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_relist_without_the_pod_is_confirmed_by_get() {
    let (backend, ctx) = setup(settings(), |m, c| {
        let c2 = c.clone();
        m.expect_create().times(1).returning(move |_| {
            let c3 = c2.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                c3.emit(Event::Init);
                c3.emit(Event::InitDone);
            });
            Ok(pod("u1", running()))
        });
        let c = c.clone();
        m.expect_get().times(1).returning(move |_| {
            c.log("get");
            Ok(None)
        });
    });
    let err = backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        err.reason.ends_with("was deleted before it finished"),
        "{}",
        err.reason
    );
    assert_eq!(ctx.count("get"), 1);
}

#[tokio::test(start_paused = true)]
async fn already_exists_adopts_the_running_pod_of_the_same_job() {
    let (backend, ctx) = setup(settings(), |m, c| {
        let c2 = c.clone();
        m.expect_create().times(1).returning(move |_| {
            c2.log("create");
            Err(ApiError::status(
                409,
                "AlreadyExists",
                format!("pods \"{POD}\" already exists"),
            ))
        });
        let c = c.clone();
        m.expect_get().times(1).returning(move |_| {
            c.log("get");
            c.apply(pod("old", succeeded()));
            Ok(Some(pod("old", running())))
        });
    });
    backend
        .run(&resumed_task(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        job_calls(&ctx),
        [
            "create".to_owned(),
            "get".to_owned(),
            format!("logs {POD} autograde 1048576"),
            format!("delete {POD}")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn already_exists_replaces_a_pod_of_another_commit() {
    let (backend, ctx) = setup(settings(), |m, c| {
        expect_replacing(
            m,
            c,
            pod_with("old", "0ld", running()),
            Duration::from_secs(3),
        )
    });
    let start = Instant::now();
    backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(3),
        "waits for the old pod to be gone"
    );
    assert_eq!(
        job_calls(&ctx),
        [
            "create".to_owned(),
            "get".to_owned(),
            format!("delete {POD}"),
            "create".to_owned(),
            format!("logs {POD} autograde 1048576"),
            format!("delete {POD}")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_running_pod_of_the_same_job_is_replaced_when_the_work_dirs_were_prepared_anew() {
    let (backend, ctx) = setup(settings(), |m, c| {
        expect_replacing(m, c, pod("old", running()), Duration::from_secs(1))
    });
    // `task()` has `resume: false`: its old pod's mounts point at directories made anew.
    backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        job_calls(&ctx),
        [
            "create".to_owned(),
            "get".to_owned(),
            format!("delete {POD}"),
            "create".to_owned(),
            format!("logs {POD} autograde 1048576"),
            format!("delete {POD}")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn resumable_only_for_a_running_pod_of_the_same_job() {
    for (found, expected) in [
        (Some(pod("old", running())), true),
        (Some(pod("old", pending())), true),
        (Some(pod("old", succeeded())), false),
        (Some(pod_with("old", "0ld", running())), false),
        (None, false),
    ] {
        let (backend, ctx) = setup(settings(), move |m, c| {
            let c = c.clone();
            m.expect_get().times(1).returning(move |_| {
                c.log("get");
                Ok(found.clone())
            });
        });
        assert_eq!(backend.resumable(&task()).await, expected);
        assert_eq!(ctx.count("get"), 1);
    }
    let (backend, _ctx) = setup(settings(), |m, _| {
        m.expect_get()
            .times(1)
            .returning(|_| Err(ApiError::status(403, "Forbidden", "no")));
    });
    assert!(!backend.resumable(&task()).await);
}

#[tokio::test(start_paused = true)]
async fn already_exists_replaces_a_finished_pod_polling_while_the_watch_is_down() {
    let (backend, ctx) = setup(settings(), |m, c| {
        let c2 = c.clone();
        m.expect_create().times(2).returning(move |_| {
            c2.log("create");
            if c2.count("create") == 1 {
                c2.break_watch();
                return Err(ApiError::status(409, "AlreadyExists", "exists"));
            }
            c2.apply(pod("new", succeeded()));
            Ok(pod("new", pending()))
        });
        let c = c.clone();
        m.expect_get().times(2).returning(move |_| {
            c.log("get");
            // First the leftover (same job, but finished), then 404 once it is gone.
            Ok((c.count("get") == 1).then(|| pod("old", succeeded())))
        });
    });
    let start = Instant::now();
    backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(ctx.count("create"), 2);
    assert_eq!(ctx.count("delete"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_pod_that_never_goes_away_is_a_readable_failure() {
    let (backend, ctx) = setup(settings(), |m, c| {
        let c2 = c.clone();
        m.expect_create().times(1).returning(move |_| {
            c2.log("create");
            Err(ApiError::status(409, "AlreadyExists", "exists"))
        });
        m.expect_get()
            .returning(|_| Ok(Some(pod_with("old", "0ld", running()))));
    });
    let err = backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(
        err.reason,
        format!("pod {POD} in namespace {NS} was still there 120s after deleting it")
    );
    assert_eq!(err.kind, FailureKind::Infrastructure);
    assert!(!err.reason.to_lowercase().contains("already exists"));
    assert_eq!(
        ctx.count("delete"),
        2,
        "deleted, then deleted again when giving up"
    );
}

#[tokio::test(start_paused = true)]
async fn forbidden_create_is_a_readable_failure_without_cleanup() {
    let message = format!(
        "pods \"{POD}\" is forbidden: User \"system:serviceaccount:grading:grader\" cannot create resource \"pods\" in API group \"\" in the namespace \"{NS}\""
    );
    let m2 = message.clone();
    let (backend, ctx) = setup(settings(), move |m, c| {
        let c = c.clone();
        m.expect_create().times(1).returning(move |_| {
            c.log("create");
            Err(ApiError::status(403, "Forbidden", m2.clone()))
        });
    });
    let err = backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(
        err.reason,
        format!("creating pod {POD} in namespace {NS}: forbidden: {message}")
    );
    assert_eq!(err.kind, FailureKind::Infrastructure);
    assert_eq!(job_calls(&ctx), ["create"]);
}

#[tokio::test(start_paused = true)]
async fn unreachable_cluster_is_a_readable_failure() {
    let (backend, _ctx) = setup(settings(), |m, _| {
        m.expect_create().returning(|_| {
            Err(ApiError::Unreachable(
                "tcp connect error: Connection refused (os error 111)".into(),
            ))
        });
    });
    let err = backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(
        err.reason,
        format!(
            "creating pod {POD} in namespace {NS}: cannot reach the Kubernetes API server: tcp connect error: Connection refused (os error 111)"
        )
    );
    assert_eq!(err.kind, FailureKind::Infrastructure);
}

#[tokio::test(start_paused = true)]
async fn cancellation_fetches_logs_and_deletes() {
    let (backend, ctx) = setup(settings(), |m, c| {
        create_then(m, c, "u1", vec![Event::Apply(pod("u1", running()))]);
    });
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        c.cancel();
    });
    let start = Instant::now();
    let err = backend.run(&task(), cancel).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    assert_eq!(
        err.reason,
        format!("grading was cancelled while pod {POD} in namespace {NS} was running")
    );
    assert_eq!(err.kind, FailureKind::Cancelled);
    assert_eq!(err.logs, format!("graded {POD}\n"));
    assert_eq!(ctx.count("delete"), 1);
}

#[tokio::test(start_paused = true)]
async fn timeout_fetches_logs_and_deletes() {
    let (backend, ctx) = setup(settings(), |m, c| {
        create_then(m, c, "u1", vec![Event::Apply(pod("u1", running()))]);
    });
    let mut t = task();
    t.max_grading_time = Duration::from_secs(60);
    let start = Instant::now();
    let err = backend.run(&t, CancellationToken::new()).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(60));
    assert_eq!(
        err.reason,
        format!(
            "grading exceeded max_grading_time of 60s: pod {POD} in namespace {NS} did not finish"
        )
    );
    assert_eq!(err.kind, FailureKind::TimedOut);
    assert_eq!(ctx.count("logs"), 1);
    assert_eq!(ctx.count("delete"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_run_still_deletes_its_pod() {
    let (backend, ctx) = setup(settings(), |m, c| {
        create_then(m, c, "u1", vec![Event::Apply(pod("u1", running()))]);
    });
    let t = task();
    let run = backend.run(&t, CancellationToken::new());
    assert!(
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .is_err()
    );
    // The guard spawned the delete; let it run.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(
        job_calls(&ctx),
        [format!("create {POD}"), format!("delete {POD}")]
    );
}

#[tokio::test(start_paused = true)]
async fn cancelled_before_start_creates_nothing() {
    let (backend, ctx) = setup(settings(), |_, _| {});
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = backend.run(&task(), cancel).await.unwrap_err();
    assert!(
        err.reason.starts_with("grading was cancelled before pod"),
        "{}",
        err.reason
    );
    assert_eq!(err.kind, FailureKind::Cancelled);
    assert!(ctx.calls().is_empty(), "not even the watch is started");
}

#[tokio::test(start_paused = true)]
async fn feedback_pods_have_their_own_name_and_component() {
    let (backend, ctx) = setup(settings(), |m, c| {
        let c = c.clone();
        m.expect_create().times(1).returning(move |p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            c.log(format!(
                "create {} {}",
                p.metadata.name.clone().unwrap_or_default(),
                labels["app.kubernetes.io/component"]
            ));
            let mut done = p.clone();
            done.metadata.uid = Some("f1".into());
            done.status = serde_json::from_value(succeeded()).ok();
            c.apply(done.clone());
            Ok(done)
        });
    });
    let mut t = task();
    t.kind = JobKind::Feedback;
    backend.run(&t, CancellationToken::new()).await.unwrap();
    assert_eq!(job_calls(&ctx)[0], "create feedback-job-alice-42 feedback");
    let args = grader_kube::build_pod(&KubeSettings::default(), &t, "img")
        .unwrap()
        .0
        .spec
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(args[1], "generate_feedback");
}

#[tokio::test(start_paused = true)]
async fn a_bad_setting_fails_before_any_request() {
    let mut s = settings();
    s.extra_pod_config = serde_json::json!({"noSuchField": 1});
    let (backend, ctx) = setup(s, |_, _| {});
    let err = backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        err.reason.starts_with("cannot build the grading pod of submission 42: invalid kube setting kube.extra_pod_config"),
        "{}",
        err.reason
    );
    assert_eq!(err.kind, FailureKind::InvalidJob);
    assert!(ctx.calls().is_empty());
}

mod gc {
    use super::*;
    use grader_kube::collect_garbage;

    fn aged(name: &str, phase: &str, age: Duration) -> Pod {
        let created = k8s_openapi::jiff::Timestamp::now() - age;
        let mut p = pod(name, serde_json::json!({ "phase": phase }));
        p.metadata.name = Some(name.into());
        p.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            created,
        ));
        p
    }

    #[tokio::test]
    async fn deletes_finished_and_stale_pods_only() {
        let mut mock = MockApi::new();
        mock.expect_namespace().return_const(NS.to_owned());
        let hour = Duration::from_secs(3600);
        let mut terminating = aged("terminating", "Running", hour * 5);
        terminating.metadata.deletion_timestamp = terminating.metadata.creation_timestamp.clone();
        let pods = vec![
            aged("done", "Succeeded", Duration::from_secs(60)),
            aged("failed", "Failed", Duration::from_secs(60)),
            aged("fresh", "Running", Duration::from_secs(60)),
            aged("stale", "Running", hour * 3),
            aged("vanished", "Failed", hour),
            terminating,
        ];
        mock.expect_list()
            .withf(|sel| sel == "app.kubernetes.io/managed-by=grader")
            .times(1)
            .return_once(move |_| Ok(pods));
        let deleted = Arc::new(Mutex::new(Vec::new()));
        let d = deleted.clone();
        mock.expect_delete().returning(move |name| {
            d.lock().unwrap().push(name.to_owned());
            Ok(if name == "vanished" {
                Deletion::NotFound
            } else {
                Deletion::Started
            })
        });
        let gone = collect_garbage(&mock, NS, hour * 2).await.unwrap();
        assert_eq!(gone, ["done", "failed", "stale"]);
        assert_eq!(
            *deleted.lock().unwrap(),
            ["done", "failed", "stale", "vanished"]
        );
    }

    #[tokio::test]
    async fn a_forbidden_list_names_the_namespace() {
        let mut mock = MockApi::new();
        mock.expect_list()
            .returning(|_| Err(ApiError::status(403, "Forbidden", "pods is forbidden")));
        let err = collect_garbage(&mock, NS, Duration::from_secs(60))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "listing grading pods in namespace grading: forbidden: pods is forbidden"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_pod_in_the_way_that_cannot_be_read_is_left_alone() {
    let (backend, ctx) = setup(settings(), |m, c| {
        let c2 = c.clone();
        m.expect_create().times(1).returning(move |_| {
            c2.log("create");
            Err(ApiError::status(409, "AlreadyExists", "exists"))
        });
        m.expect_get()
            .times(1)
            .returning(|_| Err(ApiError::status(403, "Forbidden", "cannot get pods")));
    });
    let err = backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(
        err.reason,
        format!("reading existing pod {POD} in namespace {NS}: forbidden: cannot get pods")
    );
    assert_eq!(err.kind, FailureKind::Infrastructure);
    assert_eq!(ctx.count("delete"), 0, "not known to be ours: not deleted");
}

/// Counts the events logged on this thread whose message contains a text.
mod logged {
    use std::fmt::Debug;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    pub struct Count {
        needle: &'static str,
        seen: Arc<AtomicUsize>,
    }

    /// Counts events containing `needle` until the guard is dropped.
    pub fn count(needle: &'static str) -> (Arc<AtomicUsize>, tracing::subscriber::DefaultGuard) {
        let seen = Arc::new(AtomicUsize::new(0));
        let guard = tracing::subscriber::set_default(Count {
            needle,
            seen: seen.clone(),
        });
        (seen, guard)
    }

    struct Message(String);

    impl Visit for Message {
        fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
            if field.name() == "message" {
                self.0 = format!("{value:?}");
            }
        }
    }

    impl Subscriber for Count {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut message = Message(String::new());
            event.record(&mut message);
            if message.0.contains(self.needle) {
                self.seen.fetch_add(1, Ordering::SeqCst);
            }
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}

/// The pipeline asks `resumable` and then `run` for a job whose work dirs were left: the
/// pod is built once (its extra_pod_config warning is logged once), not once per call.
#[tokio::test(start_paused = true)]
async fn a_resumed_job_builds_its_pod_once() {
    let mut s = settings();
    s.node_selector = std::collections::BTreeMap::from([("pool".into(), "default".into())]);
    s.extra_pod_config = serde_json::json!({"nodeSelector": {"pool": "gpu"}});
    let (backend, ctx) = setup(s, |m, c| {
        let c2 = c.clone();
        m.expect_get().times(1).returning(move |_| {
            c2.log("get");
            Ok(Some(pod("old", running())))
        });
        create_then(m, c, "u1", vec![Event::Apply(pod("u1", succeeded()))]);
    });
    let (built, _guard) = logged::count("overridden by extra_pod_config");
    let mut t = task();
    // The pipeline sets `resume` from `resumable`; here the running pod is not adopted.
    assert!(backend.resumable(&t).await);
    t.resume = false;
    backend.run(&t, CancellationToken::new()).await.unwrap();
    assert_eq!(
        job_calls(&ctx),
        [
            "get".to_owned(),
            format!("create {POD}"),
            format!("logs {POD} autograde 1048576"),
            format!("delete {POD}"),
        ]
    );
    assert_eq!(
        built.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the pod of one job is built once"
    );
}

#[tokio::test(start_paused = true)]
async fn an_oom_killed_container_is_out_of_memory() {
    let oom = serde_json::json!({"phase": "Failed", "containerStatuses": [{
        "name": "autograde", "image": "cs101_image", "imageID": "", "ready": false,
        "restartCount": 0, "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
    }]});
    let (backend, ctx) = setup(settings(), |m, c| {
        create_then(m, c, "u1", vec![Event::Apply(pod("u1", oom))]);
    });
    let err = backend
        .run(&task(), CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(
        err.reason,
        format!(
            "pod {POD} in namespace {NS} failed: container autograde exited with code 137 (OOMKilled)"
        )
    );
    assert_eq!(err.kind, FailureKind::OutOfMemory);
    assert_eq!(ctx.count("logs"), 1);
    assert_eq!(ctx.count("delete"), 1);
}

#[tokio::test(start_paused = true)]
async fn cancelled_while_replacing_a_leftover_deletes_and_says_cancelled() {
    let (backend, ctx) = setup(settings(), |m, c| {
        let c2 = c.clone();
        m.expect_create().times(1).returning(move |_| {
            c2.log("create");
            Err(ApiError::status(409, "AlreadyExists", "exists"))
        });
        m.expect_get()
            .returning(|_| Ok(Some(pod_with("old", "0ld", running()))));
    });
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        c.cancel();
    });
    let err = backend.run(&task(), cancel).await.unwrap_err();
    assert_eq!(
        err.reason,
        format!("grading was cancelled before pod {POD} in namespace {NS} started")
    );
    assert_eq!(err.kind, FailureKind::Cancelled);
    assert_eq!(
        ctx.count("delete"),
        2,
        "the leftover was deleted, and deleted again on the way out"
    );
}
