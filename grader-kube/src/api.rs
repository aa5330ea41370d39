//! The narrow pod API the backend needs, and its implementation over a `kube::Client`.
//!
//! Everything the backend does to the cluster goes through [`PodApi`], so the grading logic
//! is tested against a mock and the wire format against kube's mock service.

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{AsyncReadExt, StreamExt};
use grader_local::logs::LogBuffer;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

use crate::error::ApiError;

/// The RBAC rules [`KubePodApi`] needs, as (resource, verbs) in the core API group: exactly
/// these and nothing more (`deploy/rbac.yaml` grants them).
pub const REQUIRED_RBAC: &[(&str, &[&str])] = &[
    ("pods", &["create", "get", "list", "watch", "delete"]),
    ("pods/log", &["get"]),
];

/// What a delete call achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// The pod is terminating; it disappears once its containers have stopped.
    Started,
    /// The pod is gone already.
    Gone,
    /// There was no such pod.
    NotFound,
}

/// One namespace's pods, as far as the backend uses them. Each method is one API request,
/// except [`PodApi::watch`], a long-lived stream.
#[async_trait]
pub trait PodApi: Send + Sync + 'static {
    /// The namespace this API works in.
    fn namespace(&self) -> &str;
    /// Creates `pod`; returns it as stored (with uid and resource version).
    async fn create(&self, pod: &Pod) -> Result<Pod, ApiError>;
    /// Reads a pod; `None` when it does not exist.
    async fn get(&self, name: &str) -> Result<Option<Pod>, ApiError>;
    /// Deletes a pod (background propagation, default grace period).
    async fn delete(&self, name: &str) -> Result<Deletion, ApiError>;
    /// The log of `container`, keeping at most about `cap` bytes (head and tail).
    async fn logs(&self, name: &str, container: &str, cap: usize) -> Result<String, ApiError>;
    /// The pods matching `label_selector`.
    async fn list(&self, label_selector: &str) -> Result<Vec<Pod>, ApiError>;
    /// A watch of the pods matching `label_selector` that recovers by itself after errors
    /// (each error is yielded, then the stream goes on after a backoff).
    fn watch(
        &self,
        label_selector: &str,
    ) -> BoxStream<'static, Result<watcher::Event<Pod>, ApiError>>;
}

/// [`PodApi`] over a `kube::Client`.
#[derive(Clone)]
pub struct KubePodApi {
    api: Api<Pod>,
    namespace: String,
}

impl KubePodApi {
    /// The pods of `namespace`.
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        KubePodApi {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
        }
    }
}

impl std::fmt::Debug for KubePodApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubePodApi")
            .field("namespace", &self.namespace)
            .finish()
    }
}

#[async_trait]
impl PodApi for KubePodApi {
    fn namespace(&self) -> &str {
        &self.namespace
    }

    async fn create(&self, pod: &Pod) -> Result<Pod, ApiError> {
        Ok(slim(self.api.create(&PostParams::default(), pod).await?))
    }

    async fn get(&self, name: &str) -> Result<Option<Pod>, ApiError> {
        Ok(self.api.get_opt(name).await?.map(slim))
    }

    async fn delete(&self, name: &str) -> Result<Deletion, ApiError> {
        match self.api.delete(name, &DeleteParams::background()).await {
            Ok(either) => Ok(if either.is_left() {
                Deletion::Started
            } else {
                Deletion::Gone
            }),
            Err(e) => {
                let e = ApiError::from(e);
                if e.is_not_found() {
                    Ok(Deletion::NotFound)
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn logs(&self, name: &str, container: &str, cap: usize) -> Result<String, ApiError> {
        let params = LogParams {
            container: Some(container.to_owned()),
            ..LogParams::default()
        };
        let mut stream = self.api.log_stream(name, &params).await?;
        let mut buffer = LogBuffer::new(cap);
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => buffer.push(&chunk[..n]),
                Err(e) => {
                    // Keep what arrived; a cut log is better than none.
                    tracing::warn!(pod = name, error = %e, "pod log stream broke off");
                    buffer.push_line(&format!("[log stream broke off: {e}]"));
                    break;
                }
            }
        }
        Ok(buffer.into_string())
    }

    async fn list(&self, label_selector: &str) -> Result<Vec<Pod>, ApiError> {
        let params = ListParams::default().labels(label_selector);
        Ok(self
            .api
            .list(&params)
            .await?
            .items
            .into_iter()
            .map(slim)
            .collect())
    }

    fn watch(
        &self,
        label_selector: &str,
    ) -> BoxStream<'static, Result<watcher::Event<Pod>, ApiError>> {
        watcher(
            self.api.clone(),
            watcher::Config::default().labels(label_selector),
        )
        .default_backoff()
        .modify(|pod: &mut Pod| pod.metadata.managed_fields = None)
        .map(|item| item.map_err(ApiError::from))
        .boxed()
    }
}

/// The pod without its `managedFields`, which the backend never reads and which are most of
/// a pod's size in memory.
fn slim(mut pod: Pod) -> Pod {
    pod.metadata.managed_fields = None;
    pod
}
