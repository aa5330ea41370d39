//! The API objects a container's environment and volumes draw on: ConfigMaps, Secrets,
//! service-account tokens and downward-API fields.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use kube::api::{Api, PostParams};

use super::prepare::{PrepareError, Setup};

/// The two kinds of object whose data a container's environment and volumes draw on.
#[derive(Clone, Copy, Debug)]
pub(super) enum DataKind {
    ConfigMap,
    Secret,
}

impl DataKind {
    /// The resource name, as in `configmap "x" not found`.
    fn resource(self) -> &'static str {
        match self {
            DataKind::ConfigMap => "configmap",
            DataKind::Secret => "secret",
        }
    }

    /// The kind, as in `couldn't find key k in ConfigMap ns/x`.
    fn kind(self) -> &'static str {
        match self {
            DataKind::ConfigMap => "ConfigMap",
            DataKind::Secret => "Secret",
        }
    }
}

impl Setup<'_> {
    /// The data of the ConfigMap (`data` and `binaryData`) or Secret `name`; empty when it is
    /// missing and `optional`.
    pub(super) async fn data(
        &self,
        kind: DataKind,
        name: &str,
        optional: bool,
    ) -> Result<BTreeMap<String, Vec<u8>>, PrepareError> {
        let client = self.shared.client.clone();
        let found = match kind {
            DataKind::ConfigMap => Api::<ConfigMap>::namespaced(client, self.namespace)
                .get_opt(name)
                .await
                .map(|cm| cm.map(config_map_bytes)),
            DataKind::Secret => Api::<Secret>::namespaced(client, self.namespace)
                .get_opt(name)
                .await
                .map(|secret| secret.map(secret_bytes)),
        };
        let resource = kind.resource();
        match found {
            Ok(Some(data)) => Ok(data),
            Ok(None) if optional => Ok(BTreeMap::new()),
            Ok(None) => Err(PrepareError::Config(format!(
                "{resource} \"{name}\" not found"
            ))),
            Err(e) => Err(PrepareError::Config(format!(
                "get {resource} \"{name}\": {e}"
            ))),
        }
    }

    /// `key` of the data of `kind` `name` (a `configMapKeyRef` / `secretKeyRef`); `None`
    /// when it is missing and `optional`.
    pub(super) async fn key_value(
        &self,
        kind: DataKind,
        name: &str,
        key: &str,
        optional: bool,
    ) -> Result<Option<String>, PrepareError> {
        let data = self.data(kind, name, optional).await?;
        match data.get(key) {
            Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
            None if optional => Ok(None),
            None => Err(PrepareError::Config(format!(
                "couldn't find key {key} in {} {}/{name}",
                kind.kind(),
                self.namespace
            ))),
        }
    }

    /// A token bound to the pod, for its service account (TokenRequest API).
    pub(super) async fn service_account_token(
        &self,
        audience: Option<String>,
        expiration: Option<i64>,
    ) -> Result<String, PrepareError> {
        let spec = self.pod.spec.as_ref();
        let account = spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.into_iter().filter(|a| !a.is_empty()).collect(),
                expiration_seconds: Some(expiration.unwrap_or(3607)),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(self.name.to_string()),
                    uid: Some(self.uid.to_string()),
                }),
            },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.shared.client.clone(), self.namespace);
        match api
            .create_token_request(&account, &PostParams::default(), &request)
            .await
        {
            Ok(TokenRequest {
                status: Some(status),
                ..
            }) => Ok(status.token),
            Ok(_) => Err(PrepareError::Config(
                "TokenRequest returned no token".into(),
            )),
            Err(e) => Err(PrepareError::Config(format!(
                "token for serviceaccount {account}: {e}"
            ))),
        }
    }
}

/// The value of a downward-API field path, for the supported ones.
pub(super) fn field_value(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let map_entry = |map: &Option<BTreeMap<String, String>>, rest: &str| {
        let key = rest.strip_prefix("['")?.strip_suffix("']")?;
        Some(map.as_ref()?.get(key).cloned().unwrap_or_default())
    };
    let map_lines = |map: &Option<BTreeMap<String, String>>| {
        map.iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v:?}\n"))
            .collect::<String>()
    };
    Some(match path {
        "metadata.name" => meta.name.clone()?,
        "metadata.namespace" => meta.namespace.clone()?,
        "metadata.uid" => meta.uid.clone()?,
        "metadata.labels" => map_lines(&meta.labels),
        "metadata.annotations" => map_lines(&meta.annotations),
        "spec.nodeName" => spec?.node_name.clone()?,
        "spec.serviceAccountName" => spec?
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.hostIP" => "127.0.0.1".into(),
        other => {
            if let Some(rest) = other.strip_prefix("metadata.labels") {
                map_entry(&meta.labels, rest)?
            } else if let Some(rest) = other.strip_prefix("metadata.annotations") {
                map_entry(&meta.annotations, rest)?
            } else {
                return None;
            }
        }
    })
}

/// A ConfigMap's `data` and `binaryData`, as bytes.
fn config_map_bytes(cm: ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    data.extend(
        cm.binary_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, ByteString(v))| (k, v)),
    );
    data
}

/// A Secret's `data`.
fn secret_bytes(secret: Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, ByteString(v))| (k, v))
        .collect()
}
