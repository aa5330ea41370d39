//! `connect` against a kubeconfig (no cluster is contacted: building a client sends nothing).

use grader_kube::{KubeError, connect};

const KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:6443
    insecure-skip-tls-verify: true
contexts:
- name: dev
  context: {cluster: local, user: me, namespace: dev-ns}
- name: bare
  context: {cluster: local, user: me}
users:
- name: me
  user: {token: not-a-real-token}
"#;

#[tokio::test]
async fn kubeconfig_contexts_and_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(&path, KUBECONFIG).unwrap();
    // SAFETY: the only test of this binary, on a current-thread runtime; nothing else reads
    // the environment concurrently.
    unsafe {
        std::env::set_var("KUBECONFIG", &path);
        std::env::remove_var("KUBERNETES_SERVICE_HOST");
        std::env::remove_var("KUBERNETES_SERVICE_PORT");
    }
    let in_pod = std::path::Path::new(grader_kube::SERVICE_ACCOUNT_NAMESPACE_FILE).exists();
    if in_pod {
        // Inside a pod the service account's namespace would win; nothing to check here.
        return;
    }

    let (_, ns) = connect(Some("dev"), None).await.unwrap();
    assert_eq!(ns, "dev-ns", "the context's namespace");
    let (_, ns) = connect(Some("bare"), None).await.unwrap();
    assert_eq!(ns, "default");
    let (_, ns) = connect(Some("bare"), Some("grading")).await.unwrap();
    assert_eq!(ns, "grading", "the configured namespace wins");
    // Not in a cluster: falls back to the kubeconfig's current context.
    let (_, ns) = connect(None, None).await.unwrap();
    assert_eq!(ns, "dev-ns");

    let Err(err) = connect(Some("nope"), None).await else {
        panic!("an unknown context is an error")
    };
    assert!(matches!(err, KubeError::Kubeconfig { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("cannot load kubeconfig context \"nope\":"),
        "{err}"
    );

    unsafe { std::env::set_var("KUBECONFIG", dir.path().join("missing")) };
    let Err(err) = connect(None, None).await else {
        panic!("no configuration is an error")
    };
    assert!(matches!(err, KubeError::NoConfig { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("no Kubernetes configuration: not running in a cluster"),
        "{err}"
    );
}
