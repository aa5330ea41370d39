//! Connecting to the cluster and choosing the namespace.

use std::path::Path;

use kube::config::{Config, KubeConfigOptions};

use crate::error::{KubeError, chain};

/// Where a pod's service account namespace is mounted.
pub const SERVICE_ACCOUNT_NAMESPACE_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Connects to the cluster and returns the client with the namespace the grading pods go to.
///
/// With `context` set the kubeconfig is loaded with that context (an error if it is missing).
/// Otherwise the in-cluster configuration is used, falling back to the default kubeconfig
/// (`Config::infer`) outside a cluster. The namespace is `namespace` when set, else as
/// [`resolve_namespace`] decides.
pub async fn connect(
    context: Option<&str>,
    namespace: Option<&str>,
) -> Result<(kube::Client, String), KubeError> {
    let (config, kubeconfig_namespace) = match context {
        Some(context) => {
            let options = KubeConfigOptions {
                context: Some(context.to_owned()),
                ..KubeConfigOptions::default()
            };
            let config =
                Config::from_kubeconfig(&options)
                    .await
                    .map_err(|e| KubeError::Kubeconfig {
                        context: Some(context.to_owned()),
                        message: chain(&e),
                    })?;
            tracing::info!(context, cluster = %config.cluster_url, "loaded kubeconfig context");
            let ns = config.default_namespace.clone();
            (config, Some(ns))
        }
        None => match Config::incluster() {
            Ok(config) => {
                tracing::info!(cluster = %config.cluster_url, "using in-cluster configuration");
                (config, None)
            }
            Err(in_cluster) => {
                tracing::debug!(error = %in_cluster, "not in a cluster, trying the kubeconfig");
                let config = Config::infer().await.map_err(|e| KubeError::NoConfig {
                    in_cluster: chain(&in_cluster),
                    kubeconfig: chain(&e),
                })?;
                tracing::info!(cluster = %config.cluster_url, "loaded default kubeconfig");
                let ns = config.default_namespace.clone();
                (config, Some(ns))
            }
        },
    };
    let service_account = read_namespace_file(Path::new(SERVICE_ACCOUNT_NAMESPACE_FILE));
    let namespace = resolve_namespace(
        namespace,
        service_account.as_deref(),
        kubeconfig_namespace.as_deref(),
    );
    let client = kube::Client::try_from(config).map_err(|e| KubeError::Client(chain(&e)))?;
    tracing::info!(%namespace, "grading pods will run in this namespace");
    Ok((client, namespace))
}

/// The namespace of the grading pods: `configured`, else the service account's namespace
/// (the content of [`SERVICE_ACCOUNT_NAMESPACE_FILE`]), else the kubeconfig context's
/// namespace, else `default`. Blank values count as unset.
pub fn resolve_namespace(
    configured: Option<&str>,
    service_account: Option<&str>,
    kubeconfig_context: Option<&str>,
) -> String {
    [configured, service_account, kubeconfig_context]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|ns| !ns.is_empty())
        .unwrap_or("default")
        .to_owned()
}

/// The trimmed content of a namespace file, `None` when it is missing or unreadable.
pub fn read_namespace_file(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_precedence() {
        assert_eq!(
            resolve_namespace(Some("cfg"), Some("sa"), Some("kc")),
            "cfg"
        );
        assert_eq!(resolve_namespace(None, Some("sa"), Some("kc")), "sa");
        assert_eq!(resolve_namespace(None, None, Some("kc")), "kc");
        assert_eq!(resolve_namespace(None, None, None), "default");
        assert_eq!(resolve_namespace(Some("  "), Some("sa\n"), None), "sa");
        assert_eq!(resolve_namespace(None, Some(""), Some(" ")), "default");
    }

    #[test]
    fn namespace_file_is_trimmed_and_optional() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("namespace");
        assert_eq!(read_namespace_file(&path), None);
        std::fs::write(&path, "grading\n").unwrap();
        assert_eq!(read_namespace_file(&path).as_deref(), Some("grading"));
        std::fs::write(&path, "\n").unwrap();
        assert_eq!(read_namespace_file(&path), None);
    }
}
