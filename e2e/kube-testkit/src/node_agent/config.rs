//! What a test may configure about its node agent.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Configuration of a [`NodeAgent`](super::NodeAgent).
#[derive(Clone, Debug)]
pub struct NodeAgentConfig {
    /// Name of the Node the agent registers and binds pods to.
    pub node_name: String,
    /// Host directory backing each PersistentVolumeClaim, by claim name (the "PVC" a pod
    /// mounts). A pod mounting a claim missing here stays `Pending` with the waiting reason
    /// `CreateContainerConfigError`.
    pub claim_dirs: BTreeMap<String, PathBuf>,
    /// Host directory backing a volume by *volume* name, whatever its type (optional;
    /// overrides the rules below). Without it: `persistentVolumeClaim` → `claim_dirs`,
    /// `hostPath` → its path, `emptyDir` → a fresh per-pod directory, `configMap`/`secret`/
    /// `projected`/`downwardAPI` → files written from the API objects into a per-pod directory.
    pub volume_dirs: BTreeMap<String, PathBuf>,
    /// Map from a container's `command[0]` (or `args[0]` when `command` is empty, e.g.
    /// `"grader-convert"`) to the host executable to run instead, so a pod whose image would
    /// contain the tool runs the host's copy; other commands run as given (looked up in the
    /// agent's `PATH`).
    pub executables: BTreeMap<String, PathBuf>,
    /// Images that "fail to pull": a container with such an image waits forever with reason
    /// `ErrImagePull`, then `ImagePullBackOff` (until deleted or its `activeDeadlineSeconds`
    /// pass), to test image-pull failures. An entry ending in `*` matches by prefix.
    pub pull_fail_images: Vec<String>,
    /// Only bind and run pods in these namespaces (all namespaces when empty), so that several
    /// agents can share one control plane.
    pub namespaces: Vec<String>,
}

impl Default for NodeAgentConfig {
    fn default() -> Self {
        NodeAgentConfig {
            node_name: "testkit-node".into(),
            claim_dirs: BTreeMap::new(),
            volume_dirs: BTreeMap::new(),
            executables: BTreeMap::new(),
            pull_fail_images: Vec::new(),
            namespaces: Vec::new(),
        }
    }
}
