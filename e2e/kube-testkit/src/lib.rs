//! **Test support only — never use this crate in production code.**
//!
//! `kube-testkit` gives end-to-end tests a *real* Kubernetes API server to talk to, so a test
//! shows that Kubernetes accepts what the grader sends (mocks only show that we send what we
//! meant):
//!
//! * [`ControlPlane`] starts a real `etcd` and a real `kube-apiserver` (built by
//!   `e2e/control-plane/build.sh`) on loopback, with freshly generated certificates, RBAC,
//!   and the normal admission chain (including `PodSecurity` and `ServiceAccount`). No
//!   controller-manager and no scheduler run.
//! * [`NodeAgent`] is the **test node agent**: it plays a kubelet (and the scheduler) for
//!   tests. It registers a Ready `Node`, binds pending pods to itself, runs each pod's
//!   container as a local child process, writes real pod status, serves container logs to
//!   the API server over HTTPS (so `pods/log` works as in a cluster), enforces
//!   `activeDeadlineSeconds` and completes graceful deletion. It knows nothing about grader.
//!
//! When the binaries are missing, [`ControlPlane::start`] returns `Ok(None)` after printing a
//! loud `SKIPPED:` line, unless env `CI=true`, where it is an error (CI must not pass by
//! skipping).
//!
//! # How the parts fit
//!
//! A test first gets a [`ControlPlane`]: [`locate_binaries`] finds `etcd` and
//! `kube-apiserver` (module `binaries`), `certs` makes a throw-away PKI for them, and `spawn`
//! starts both processes tied to the test process, so they die with it even when a control
//! plane kept in a `static` is never dropped. The test then starts a [`NodeAgent`] with a
//! client of that control plane and a [`NodeAgentConfig`]; the agent (module `node_agent`,
//! whose own documentation describes its parts) registers a `Node`, runs the pods bound to it
//! as local processes, and serves their logs over HTTPS with a certificate from `certs`.
//! The two halves meet only through the API server (the agent is its client; the API server
//! calls back the agent's log endpoint). Both mark their temporary directories as owned by
//! this process, and `spawn` removes those left behind by test processes that are gone.
//!
//! # Contents
//!
//! * `binaries` — where the control-plane binaries come from: [`Binaries`],
//!   [`locate_binaries`] and the versions `e2e/control-plane/build.sh` builds.
//! * `certs` — the throw-away PKI (CA, serving and client certificates, service-account key).
//! * `control_plane` — [`ControlPlane`]: a real etcd + kube-apiserver on loopback.
//! * `node_agent` — [`NodeAgent`] and [`NodeAgentConfig`]: the stand-in kubelet and scheduler.
//! * `real_node` — [`RealNode`]: a real kubelet with containerd and runc, plus
//!   kube-scheduler and kube-controller-manager, for tests that need real containers; and
//!   [`grading_image`], where the grading image of `deploy/image/build.sh` is.
//! * `spawn` — child processes that never outlive the test process; stale-directory reaping.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use kube_testkit::{ControlPlane, NodeAgent, NodeAgentConfig};
//! let Some(cp) = ControlPlane::start().await? else { return Ok(()) }; // skipped
//! let agent = NodeAgent::start(cp.client().await?, NodeAgentConfig::default()).await?;
//! cp.create_namespace("demo", true).await?;
//! // ... create pods with cp.client() and watch them ...
//! agent.stop().await;
//! # Ok(()) }
//! ```

mod binaries;
mod certs;
mod control_plane;
mod node_agent;
mod real_node;
mod spawn;

pub use binaries::{
    Binaries, ETCD_SOURCE_VERSION, ETCD_VERSION, KUBE_APISERVER_VERSION, locate_binaries,
};
pub use control_plane::ControlPlane;
pub use node_agent::{NodeAgent, NodeAgentConfig};
pub use real_node::{
    GradingImage, NodeBinaries, PAUSE_VERSION, RealNode, RealNodeConfig, grading_image,
    locate_node_binaries,
};
