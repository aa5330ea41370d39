//! The test node agent: a stand-in kubelet (and scheduler) for tests. It knows nothing about
//! grader.
//!
//! How the parts fit: [`NodeAgent::start`] (`agent`) registers the agent's Ready `Node`
//! (`node`), starts the HTTPS log endpoint (`logs`) and the controller loop (`controller`),
//! all sharing one `Shared` state and shutdown signal (`shared`). The controller watches pods,
//! binds pending ones to the node and starts one worker per bound pod; it completes a pod's
//! graceful deletion once the worker is done. The worker is the pod's lifecycle (`pod`): it
//! writes the pod's status at every step (`status`), turns the container spec into a process
//! to start (`prepare`: the environment in `env`, each volume's host directory in `volumes`,
//! the API objects both draw on in `objects`, the bind mounts in `mounts`), runs and stops
//! that process (`process`) with its output in a log file that `logs` serves, and waits for
//! its exit, its deadline or its deletion. What a test can configure is in `config`.
//!
//! * `config` — [`NodeAgentConfig`].
//! * `agent` — the [`NodeAgent`] handle: start, stop, kill on drop.
//! * `shared` — state shared by the controller, the pod workers and the log server.
//! * `node` — registering the `Node` object.
//! * `controller` — the watch loop: bind, dispatch to pod workers, final delete.
//! * `pod` — one pod's lifecycle and its status transitions.
//! * `status` — pod status as a kubelet builds and writes it (retried through API outages).
//! * `prepare` — from container spec to the process to launch.
//! * `env` — the container's environment and `$(VAR)` expansion.
//! * `volumes` — the host directory behind each volume.
//! * `objects` — ConfigMaps, Secrets, tokens and downward-API fields.
//! * `mounts` — volume mounts, `subPath`, mount points.
//! * `process` — starting, stopping and killing the container process.
//! * `logs` — container log files and the kubelet-style endpoint serving them.

mod agent;
mod config;
mod controller;
mod env;
mod logs;
mod mounts;
mod node;
mod objects;
mod pod;
mod prepare;
mod process;
mod shared;
mod status;
mod volumes;

pub use agent::NodeAgent;
pub use config::NodeAgentConfig;
