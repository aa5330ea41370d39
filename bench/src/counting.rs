//! Counting API requests: at the [`PodApi`] trait boundary (each call is one request, a watch
//! one long-lived stream) and at the HTTP boundary of the kube client (every request kube's
//! watcher makes: its list, each watch (re)connect).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use grader_kube::{ApiError, Deletion, PodApi};
use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;

/// One call through the [`PodApi`].
#[derive(Debug, Clone)]
pub struct Call {
    pub method: &'static str,
    /// The pod name (empty for list and watch).
    pub pod: String,
    pub start: Instant,
    pub end: Instant,
}

/// A [`PodApi`] that records every call it forwards.
pub struct CountingApi<A> {
    inner: A,
    calls: Mutex<Vec<Call>>,
}

impl<A: PodApi> CountingApi<A> {
    pub fn new(inner: A) -> Self {
        CountingApi {
            inner,
            calls: Mutex::new(Vec::new()),
        }
    }

    fn record(&self, method: &'static str, pod: &str, start: Instant) {
        let call = Call {
            method,
            pod: pod.to_owned(),
            start,
            end: Instant::now(),
        };
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Calls per method.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        let mut m = BTreeMap::new();
        for c in self.calls() {
            *m.entry(c.method).or_insert(0) += 1;
        }
        m
    }
}

#[async_trait]
impl<A: PodApi> PodApi for CountingApi<A> {
    fn namespace(&self) -> &str {
        self.inner.namespace()
    }

    async fn create(&self, pod: &Pod) -> Result<Pod, ApiError> {
        let start = Instant::now();
        let r = self.inner.create(pod).await;
        self.record("create", pod.metadata.name.as_deref().unwrap_or(""), start);
        r
    }

    async fn get(&self, name: &str) -> Result<Option<Pod>, ApiError> {
        let start = Instant::now();
        let r = self.inner.get(name).await;
        self.record("get", name, start);
        r
    }

    async fn delete(&self, name: &str) -> Result<Deletion, ApiError> {
        let start = Instant::now();
        let r = self.inner.delete(name).await;
        self.record("delete", name, start);
        r
    }

    async fn logs(&self, name: &str, container: &str, cap: usize) -> Result<String, ApiError> {
        let start = Instant::now();
        let r = self.inner.logs(name, container, cap).await;
        self.record("logs", name, start);
        r
    }

    async fn list(&self, label_selector: &str) -> Result<Vec<Pod>, ApiError> {
        let start = Instant::now();
        let r = self.inner.list(label_selector).await;
        self.record("list", "", start);
        r
    }

    fn watch(
        &self,
        label_selector: &str,
    ) -> BoxStream<'static, Result<watcher::Event<Pod>, ApiError>> {
        self.record("watch", "", Instant::now());
        self.inner.watch(label_selector).boxed()
    }
}

/// HTTP requests by kind (`create`, `get`, `delete`, `log`, `list`, `watch`, ...).
#[derive(Debug, Clone, Default)]
pub struct HttpCounter(Arc<Mutex<BTreeMap<String, u64>>>);

impl HttpCounter {
    fn record<B>(&self, req: &http::Request<B>) {
        let path = req.uri().path();
        let query = req.uri().query().unwrap_or("");
        let kind = match *req.method() {
            http::Method::GET if query.contains("watch=true") || query.contains("watch=1") => {
                "watch"
            }
            http::Method::GET if path.ends_with("/log") => "log",
            http::Method::GET if path.ends_with("/pods") => "list",
            http::Method::GET => "get",
            http::Method::POST => "create",
            http::Method::DELETE => "delete",
            http::Method::PATCH => "patch",
            http::Method::PUT => "update",
            _ => "other",
        };
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(kind.to_owned())
            .or_insert(0) += 1;
    }

    /// Requests per kind so far.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A kube client from `kubeconfig` (context `testkit`) whose every HTTP request is counted.
pub async fn counting_client(
    kubeconfig: &Path,
    counter: HttpCounter,
) -> anyhow::Result<kube::Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let options = KubeConfigOptions {
        context: Some("testkit".into()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &options).await?;
    let layer = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        counter.record(&req);
        req
    });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&layer)
        .build())
}
