//! Kubernetes models from loosely keyed JSON, and merging of changes into them.
//!
//! Configuration (extra pod settings, volumes, tolerations, ...) arrives as JSON whose top-level
//! keys may be Kubernetes API names (`nodeSelector`) or the Python client's attribute names
//! (`node_selector`), as Grader Service accepts both. [`get_k8s_model`] turns such JSON into a
//! k8s-openapi type and [`update_k8s_model`] merges changes into one, reporting which set
//! values were overridden. A key the type does not model is an error at every depth, never
//! silently dropped (k8s-openapi itself ignores unknown keys).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Why a JSON value could not become (or be merged into) a Kubernetes model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A top-level key that is neither an API name nor an attribute name of the type.
    #[error("'{type_name}' has no field '{key}'")]
    UnknownField {
        type_name: &'static str,
        key: String,
    },
    /// A nested key the type does not model (nested keys must be API names); `path` is dotted.
    #[error("'{type_name}' has no field '{path}'")]
    UnknownNestedField {
        type_name: &'static str,
        path: String,
    },
    /// A required field is missing or null (the Python client refuses this too).
    #[error("'{type_name}' requires field '{field}'")]
    MissingField {
        type_name: &'static str,
        field: &'static str,
    },
    /// The JSON given for a model was not an object.
    #[error("expected a JSON object for '{type_name}', got {found}")]
    NotAnObject {
        type_name: &'static str,
        found: &'static str,
    },
    /// A known field held a value of the wrong shape.
    #[error("invalid value for '{type_name}': {source}")]
    InvalidValue {
        type_name: &'static str,
        source: serde_json::Error,
    },
    /// An element of a list parameter was rejected.
    #[error("{list}[{index}]: {source}")]
    InItem {
        list: &'static str,
        index: usize,
        source: Box<ModelError>,
    },
}

/// How the reference decides whether a field value counts as set (Python truthiness).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A nested model object: set whenever present, as Python model objects are always truthy.
    Model,
    /// A scalar, list or map: set unless null, `false`, zero, `""`, `[]` or `{}`.
    Value,
}

/// One field of a Kubernetes model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The name in API JSON, e.g. `hostIPC`.
    pub api_name: &'static str,
    /// The Python client's attribute name, e.g. `host_ipc`.
    pub attribute: &'static str,
    /// How to tell whether a value of this field counts as set.
    pub kind: FieldKind,
    /// Must be present and non-null (k8s-openapi would silently default it).
    pub required: bool,
}

/// A k8s-openapi type that [`get_k8s_model`] and [`update_k8s_model`] support.
///
/// k8s-openapi leaves unset fields out when serializing, so the field list is explicit; it is
/// generated from the k8s-openapi sources and the Python client's `attribute_map` by
/// `scripts/gen-k8s-fields.py`.
pub trait K8sModel: Serialize + DeserializeOwned {
    /// The k8s-openapi type name, e.g. `PodSpec`.
    const TYPE_NAME: &'static str;
    /// Every field, in k8s-openapi's (alphabetical) order.
    const FIELDS: &'static [Field];

    /// The field named `key`, looked up as attribute name first, then as API name (as the
    /// reference does).
    fn field(key: &str) -> Option<&'static Field> {
        Self::FIELDS
            .iter()
            .find(|f| f.attribute == key)
            .or_else(|| Self::FIELDS.iter().find(|f| f.api_name == key))
    }
}

/// Builds a `T` from a JSON object whose top-level keys are API or attribute names.
///
/// Nested objects must use API names. Any key `T` does not model is an error naming the type
/// and the key; when both spellings of one field are given the later one wins.
pub fn get_k8s_model<T: K8sModel>(value: &Value) -> Result<T, ModelError> {
    let object = as_object::<T>(value)?;
    let mut api = Map::with_capacity(object.len());
    let mut keys = Vec::with_capacity(object.len());
    for (key, v) in object {
        let field = field_of::<T>(key)?;
        api.insert(field.api_name.to_owned(), v.clone());
        keys.push(field.api_name);
    }
    if let Some(field) = T::FIELDS
        .iter()
        .find(|f| f.required && api.get(f.api_name).is_none_or(Value::is_null))
    {
        return Err(ModelError::MissingField {
            type_name: T::TYPE_NAME,
            field: field.api_name,
        });
    }
    from_api_json(&Value::Object(api), &keys)
}

/// Changes for [`update_k8s_model`].
#[derive(Debug, Clone, PartialEq)]
pub enum Changes<T> {
    /// Every key is applied; JSON null clears the field.
    Map(Map<String, Value>),
    /// Only fields that are set and non-empty are applied (None, `""`, `[]`, `{}`, 0 and
    /// `false` are skipped), as a typed model cannot tell "unset" from "default".
    Model(T),
}

impl<T> TryFrom<Value> for Changes<T> {
    type Error = ModelError;

    fn try_from(value: Value) -> Result<Self, ModelError> {
        match value {
            Value::Object(map) => Ok(Changes::Map(map)),
            other => Err(ModelError::NotAnObject {
                type_name: "changes",
                found: json_type(&other),
            }),
        }
    }
}

impl<T> From<Map<String, Value>> for Changes<T> {
    fn from(map: Map<String, Value>) -> Self {
        Changes::Map(map)
    }
}

/// A field of the target that held a set (truthy) value and was replaced.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The Python client's attribute name, e.g. `node_selector`, for messages like
    /// `pod.spec.node_selector overridden by extra_pod_config`.
    pub attribute: &'static str,
    /// The API name, e.g. `nodeSelector`.
    pub api_name: &'static str,
    /// The value before the change (API JSON).
    pub previous: Value,
    /// The value applied (API JSON; null when cleared).
    pub new: Value,
}

/// Merges `changes` into `target` field by field (top level only, as the reference), returning
/// the fields whose set value was overridden, in the order they were applied.
///
/// Fails without touching `target` on an unknown key or an invalid value.
pub fn update_k8s_model<T: K8sModel>(
    target: &mut T,
    changes: Changes<T>,
) -> Result<Vec<Override>, ModelError> {
    let mut current = to_object(&*target)?;
    let mut applied: Vec<(&'static Field, Value)> = Vec::new();
    let from_map = matches!(changes, Changes::Map(_));
    match changes {
        Changes::Map(map) => {
            for (key, value) in map {
                let field = field_of::<T>(&key)?;
                match applied
                    .iter_mut()
                    .find(|(f, _)| f.api_name == field.api_name)
                {
                    Some(slot) => slot.1 = value,
                    None => applied.push((field, value)),
                }
            }
        }
        Changes::Model(model) => {
            let mut values = to_object(&model)?;
            for field in T::FIELDS {
                if let Some(value) = values.remove(field.api_name)
                    && is_truthy(field.kind, &value)
                {
                    applied.push((field, value));
                }
            }
        }
    }

    if let Some((field, _)) = applied.iter().find(|(f, v)| f.required && v.is_null()) {
        return Err(ModelError::MissingField {
            type_name: T::TYPE_NAME,
            field: field.api_name,
        });
    }

    let mut overrides = Vec::new();
    for (field, value) in &applied {
        if let Some(previous) = current.get(field.api_name)
            && is_truthy(field.kind, previous)
        {
            overrides.push(Override {
                attribute: field.attribute,
                api_name: field.api_name,
                previous: previous.clone(),
                new: value.clone(),
            });
        }
        current.insert(field.api_name.to_owned(), value.clone());
    }

    let checked: Vec<&str> = if from_map {
        applied.iter().map(|(f, _)| f.api_name).collect()
    } else {
        Vec::new()
    };
    *target = from_api_json(&Value::Object(current), &checked)?;
    Ok(overrides)
}

/// Python truthiness of a field value in API JSON.
pub fn is_truthy(kind: FieldKind, value: &Value) -> bool {
    match (kind, value) {
        (_, Value::Null) => false,
        (FieldKind::Model, _) => true,
        (FieldKind::Value, Value::Bool(b)) => *b,
        (FieldKind::Value, Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        (FieldKind::Value, Value::String(s)) => !s.is_empty(),
        (FieldKind::Value, Value::Array(a)) => !a.is_empty(),
        (FieldKind::Value, Value::Object(o)) => !o.is_empty(),
    }
}

fn field_of<T: K8sModel>(key: &str) -> Result<&'static Field, ModelError> {
    T::field(key).ok_or_else(|| ModelError::UnknownField {
        type_name: T::TYPE_NAME,
        key: key.to_owned(),
    })
}

fn as_object<T: K8sModel>(value: &Value) -> Result<&Map<String, Value>, ModelError> {
    value.as_object().ok_or(ModelError::NotAnObject {
        type_name: T::TYPE_NAME,
        found: json_type(value),
    })
}

fn to_object<T: K8sModel>(model: &T) -> Result<Map<String, Value>, ModelError> {
    match serde_json::to_value(model) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ModelError::NotAnObject {
            type_name: T::TYPE_NAME,
            found: json_type(&other),
        }),
        Err(source) => Err(ModelError::InvalidValue {
            type_name: T::TYPE_NAME,
            source,
        }),
    }
}

/// Deserializes API JSON into `T`, then serializes it back to find keys under `checked`
/// top-level fields that k8s-openapi silently ignored.
fn from_api_json<T: K8sModel>(value: &Value, checked: &[&str]) -> Result<T, ModelError> {
    let model = T::deserialize(value).map_err(|source| ModelError::InvalidValue {
        type_name: T::TYPE_NAME,
        source,
    })?;
    if checked.is_empty() {
        return Ok(model);
    }
    let back = to_object(&model)?;
    for key in checked {
        let (Some(given), Some(kept)) = (value.get(*key), back.get(*key)) else {
            continue;
        };
        let mut path = (*key).to_owned();
        if find_dropped(given, kept, &mut path) {
            return Err(ModelError::UnknownNestedField {
                type_name: T::TYPE_NAME,
                path,
            });
        }
    }
    Ok(model)
}

/// Whether `given` holds a non-null key that `kept` lacks; `path` is left pointing at it.
fn find_dropped(given: &Value, kept: &Value, path: &mut String) -> bool {
    match (given, kept) {
        (Value::Object(given), Value::Object(kept)) => {
            for (key, value) in given {
                if value.is_null() {
                    continue;
                }
                let len = path.len();
                path.push('.');
                path.push_str(key);
                match kept.get(key) {
                    None => return true,
                    Some(inner) if find_dropped(value, inner, path) => return true,
                    Some(_) => path.truncate(len),
                }
            }
            false
        }
        (Value::Array(given), Value::Array(kept)) if given.len() == kept.len() => {
            for (index, (value, inner)) in given.iter().zip(kept).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                if find_dropped(value, inner, path) {
                    return true;
                }
                path.truncate(len);
            }
            false
        }
        _ => false,
    }
}

/// How an error message names the JSON type of `value` (`an object`, `a string`, ...).
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

macro_rules! k8s_models {
    ($($ty:ty as $name:literal {
        $($api:literal => $attr:literal, $kind:ident, $presence:ident;)*
    })*) => {
        $(
            impl K8sModel for $ty {
                const TYPE_NAME: &'static str = $name;
                const FIELDS: &'static [Field] = &[
                    $(Field {
                        api_name: $api,
                        attribute: $attr,
                        kind: FieldKind::$kind,
                        required: k8s_models!(@$presence),
                    },)*
                ];
            }
        )*
    };
    (@required) => { true };
    (@optional) => { false };
}

k8s_models! {
    // @generated begin by scripts/gen-k8s-fields.py
    k8s_openapi::api::core::v1::Affinity as "Affinity" {
        "nodeAffinity" => "node_affinity", Model, optional;
        "podAffinity" => "pod_affinity", Model, optional;
        "podAntiAffinity" => "pod_anti_affinity", Model, optional;
    }
    k8s_openapi::api::core::v1::Capabilities as "Capabilities" {
        "add" => "add", Value, optional;
        "drop" => "drop", Value, optional;
    }
    k8s_openapi::api::core::v1::ConfigMapVolumeSource as "ConfigMapVolumeSource" {
        "defaultMode" => "default_mode", Value, optional;
        "items" => "items", Value, optional;
        "name" => "name", Value, optional;
        "optional" => "optional", Value, optional;
    }
    k8s_openapi::api::core::v1::Container as "Container" {
        "args" => "args", Value, optional;
        "command" => "command", Value, optional;
        "env" => "env", Value, optional;
        "envFrom" => "env_from", Value, optional;
        "image" => "image", Value, optional;
        "imagePullPolicy" => "image_pull_policy", Value, optional;
        "lifecycle" => "lifecycle", Model, optional;
        "livenessProbe" => "liveness_probe", Model, optional;
        "name" => "name", Value, required;
        "ports" => "ports", Value, optional;
        "readinessProbe" => "readiness_probe", Model, optional;
        "resizePolicy" => "resize_policy", Value, optional;
        "resources" => "resources", Model, optional;
        "restartPolicy" => "restart_policy", Value, optional;
        "restartPolicyRules" => "restart_policy_rules", Value, optional;
        "securityContext" => "security_context", Model, optional;
        "startupProbe" => "startup_probe", Model, optional;
        "stdin" => "stdin", Value, optional;
        "stdinOnce" => "stdin_once", Value, optional;
        "terminationMessagePath" => "termination_message_path", Value, optional;
        "terminationMessagePolicy" => "termination_message_policy", Value, optional;
        "tty" => "tty", Value, optional;
        "volumeDevices" => "volume_devices", Value, optional;
        "volumeMounts" => "volume_mounts", Value, optional;
        "workingDir" => "working_dir", Value, optional;
    }
    k8s_openapi::api::core::v1::ContainerPort as "ContainerPort" {
        "containerPort" => "container_port", Value, required;
        "hostIP" => "host_ip", Value, optional;
        "hostPort" => "host_port", Value, optional;
        "name" => "name", Value, optional;
        "protocol" => "protocol", Value, optional;
    }
    k8s_openapi::api::core::v1::EmptyDirVolumeSource as "EmptyDirVolumeSource" {
        "medium" => "medium", Value, optional;
        "sizeLimit" => "size_limit", Value, optional;
    }
    k8s_openapi::api::core::v1::EnvFromSource as "EnvFromSource" {
        "configMapRef" => "config_map_ref", Model, optional;
        "prefix" => "prefix", Value, optional;
        "secretRef" => "secret_ref", Model, optional;
    }
    k8s_openapi::api::core::v1::EnvVar as "EnvVar" {
        "name" => "name", Value, required;
        "value" => "value", Value, optional;
        "valueFrom" => "value_from", Model, optional;
    }
    k8s_openapi::api::core::v1::EnvVarSource as "EnvVarSource" {
        "configMapKeyRef" => "config_map_key_ref", Model, optional;
        "fieldRef" => "field_ref", Model, optional;
        "fileKeyRef" => "file_key_ref", Model, optional;
        "resourceFieldRef" => "resource_field_ref", Model, optional;
        "secretKeyRef" => "secret_key_ref", Model, optional;
    }
    k8s_openapi::api::core::v1::HostAlias as "HostAlias" {
        "hostnames" => "hostnames", Value, optional;
        "ip" => "ip", Value, required;
    }
    k8s_openapi::api::core::v1::HostPathVolumeSource as "HostPathVolumeSource" {
        "path" => "path", Value, required;
        "type" => "type", Value, optional;
    }
    k8s_openapi::api::core::v1::LocalObjectReference as "LocalObjectReference" {
        "name" => "name", Value, optional;
    }
    k8s_openapi::api::core::v1::NodeAffinity as "NodeAffinity" {
        "preferredDuringSchedulingIgnoredDuringExecution" => "preferred_during_scheduling_ignored_during_execution", Value, optional;
        "requiredDuringSchedulingIgnoredDuringExecution" => "required_during_scheduling_ignored_during_execution", Model, optional;
    }
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta as "ObjectMeta" {
        "annotations" => "annotations", Value, optional;
        "creationTimestamp" => "creation_timestamp", Value, optional;
        "deletionGracePeriodSeconds" => "deletion_grace_period_seconds", Value, optional;
        "deletionTimestamp" => "deletion_timestamp", Value, optional;
        "finalizers" => "finalizers", Value, optional;
        "generateName" => "generate_name", Value, optional;
        "generation" => "generation", Value, optional;
        "labels" => "labels", Value, optional;
        "managedFields" => "managed_fields", Value, optional;
        "name" => "name", Value, optional;
        "namespace" => "namespace", Value, optional;
        "ownerReferences" => "owner_references", Value, optional;
        "resourceVersion" => "resource_version", Value, optional;
        "selfLink" => "self_link", Value, optional;
        "uid" => "uid", Value, optional;
    }
    k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource as "PersistentVolumeClaimVolumeSource" {
        "claimName" => "claim_name", Value, required;
        "readOnly" => "read_only", Value, optional;
    }
    k8s_openapi::api::core::v1::Pod as "Pod" {
        "apiVersion" => "api_version", Value, optional;
        "kind" => "kind", Value, optional;
        "metadata" => "metadata", Model, optional;
        "spec" => "spec", Model, optional;
        "status" => "status", Model, optional;
    }
    k8s_openapi::api::core::v1::PodDNSConfig as "PodDNSConfig" {
        "nameservers" => "nameservers", Value, optional;
        "options" => "options", Value, optional;
        "searches" => "searches", Value, optional;
    }
    k8s_openapi::api::core::v1::PodSecurityContext as "PodSecurityContext" {
        "appArmorProfile" => "app_armor_profile", Model, optional;
        "fsGroup" => "fs_group", Value, optional;
        "fsGroupChangePolicy" => "fs_group_change_policy", Value, optional;
        "runAsGroup" => "run_as_group", Value, optional;
        "runAsNonRoot" => "run_as_non_root", Value, optional;
        "runAsUser" => "run_as_user", Value, optional;
        "seLinuxChangePolicy" => "se_linux_change_policy", Value, optional;
        "seLinuxOptions" => "se_linux_options", Model, optional;
        "seccompProfile" => "seccomp_profile", Model, optional;
        "supplementalGroups" => "supplemental_groups", Value, optional;
        "supplementalGroupsPolicy" => "supplemental_groups_policy", Value, optional;
        "sysctls" => "sysctls", Value, optional;
        "windowsOptions" => "windows_options", Model, optional;
    }
    k8s_openapi::api::core::v1::PodSpec as "PodSpec" {
        "activeDeadlineSeconds" => "active_deadline_seconds", Value, optional;
        "affinity" => "affinity", Model, optional;
        "automountServiceAccountToken" => "automount_service_account_token", Value, optional;
        "containers" => "containers", Value, required;
        "dnsConfig" => "dns_config", Model, optional;
        "dnsPolicy" => "dns_policy", Value, optional;
        "enableServiceLinks" => "enable_service_links", Value, optional;
        "ephemeralContainers" => "ephemeral_containers", Value, optional;
        "hostAliases" => "host_aliases", Value, optional;
        "hostIPC" => "host_ipc", Value, optional;
        "hostNetwork" => "host_network", Value, optional;
        "hostPID" => "host_pid", Value, optional;
        "hostUsers" => "host_users", Value, optional;
        "hostname" => "hostname", Value, optional;
        "hostnameOverride" => "hostname_override", Value, optional;
        "imagePullSecrets" => "image_pull_secrets", Value, optional;
        "initContainers" => "init_containers", Value, optional;
        "nodeName" => "node_name", Value, optional;
        "nodeSelector" => "node_selector", Value, optional;
        "os" => "os", Model, optional;
        "overhead" => "overhead", Value, optional;
        "preemptionPolicy" => "preemption_policy", Value, optional;
        "priority" => "priority", Value, optional;
        "priorityClassName" => "priority_class_name", Value, optional;
        "readinessGates" => "readiness_gates", Value, optional;
        "resourceClaims" => "resource_claims", Value, optional;
        "resources" => "resources", Model, optional;
        "restartPolicy" => "restart_policy", Value, optional;
        "runtimeClassName" => "runtime_class_name", Value, optional;
        "schedulerName" => "scheduler_name", Value, optional;
        "schedulingGates" => "scheduling_gates", Value, optional;
        "securityContext" => "security_context", Model, optional;
        "serviceAccount" => "service_account", Value, optional;
        "serviceAccountName" => "service_account_name", Value, optional;
        "setHostnameAsFQDN" => "set_hostname_as_fqdn", Value, optional;
        "shareProcessNamespace" => "share_process_namespace", Value, optional;
        "subdomain" => "subdomain", Value, optional;
        "terminationGracePeriodSeconds" => "termination_grace_period_seconds", Value, optional;
        "tolerations" => "tolerations", Value, optional;
        "topologySpreadConstraints" => "topology_spread_constraints", Value, optional;
        "volumes" => "volumes", Value, optional;
    }
    k8s_openapi::api::core::v1::PodStatus as "PodStatus" {
        "conditions" => "conditions", Value, optional;
        "containerStatuses" => "container_statuses", Value, optional;
        "ephemeralContainerStatuses" => "ephemeral_container_statuses", Value, optional;
        "extendedResourceClaimStatus" => "extended_resource_claim_status", Model, optional;
        "hostIP" => "host_ip", Value, optional;
        "hostIPs" => "host_ips", Value, optional;
        "initContainerStatuses" => "init_container_statuses", Value, optional;
        "message" => "message", Value, optional;
        "nominatedNodeName" => "nominated_node_name", Value, optional;
        "observedGeneration" => "observed_generation", Value, optional;
        "phase" => "phase", Value, optional;
        "podIP" => "pod_ip", Value, optional;
        "podIPs" => "pod_ips", Value, optional;
        "qosClass" => "qos_class", Value, optional;
        "reason" => "reason", Value, optional;
        "resize" => "resize", Value, optional;
        "resourceClaimStatuses" => "resource_claim_statuses", Value, optional;
        "startTime" => "start_time", Value, optional;
    }
    k8s_openapi::api::core::v1::Probe as "Probe" {
        "exec" => "_exec", Model, optional;
        "failureThreshold" => "failure_threshold", Value, optional;
        "grpc" => "grpc", Model, optional;
        "httpGet" => "http_get", Model, optional;
        "initialDelaySeconds" => "initial_delay_seconds", Value, optional;
        "periodSeconds" => "period_seconds", Value, optional;
        "successThreshold" => "success_threshold", Value, optional;
        "tcpSocket" => "tcp_socket", Model, optional;
        "terminationGracePeriodSeconds" => "termination_grace_period_seconds", Value, optional;
        "timeoutSeconds" => "timeout_seconds", Value, optional;
    }
    k8s_openapi::api::core::v1::ResourceRequirements as "ResourceRequirements" {
        "claims" => "claims", Value, optional;
        "limits" => "limits", Value, optional;
        "requests" => "requests", Value, optional;
    }
    k8s_openapi::api::core::v1::SeccompProfile as "SeccompProfile" {
        "localhostProfile" => "localhost_profile", Value, optional;
        "type" => "type", Value, required;
    }
    k8s_openapi::api::core::v1::SecretVolumeSource as "SecretVolumeSource" {
        "defaultMode" => "default_mode", Value, optional;
        "items" => "items", Value, optional;
        "optional" => "optional", Value, optional;
        "secretName" => "secret_name", Value, optional;
    }
    k8s_openapi::api::core::v1::SecurityContext as "SecurityContext" {
        "allowPrivilegeEscalation" => "allow_privilege_escalation", Value, optional;
        "appArmorProfile" => "app_armor_profile", Model, optional;
        "capabilities" => "capabilities", Model, optional;
        "privileged" => "privileged", Value, optional;
        "procMount" => "proc_mount", Value, optional;
        "readOnlyRootFilesystem" => "read_only_root_filesystem", Value, optional;
        "runAsGroup" => "run_as_group", Value, optional;
        "runAsNonRoot" => "run_as_non_root", Value, optional;
        "runAsUser" => "run_as_user", Value, optional;
        "seLinuxOptions" => "se_linux_options", Model, optional;
        "seccompProfile" => "seccomp_profile", Model, optional;
        "windowsOptions" => "windows_options", Model, optional;
    }
    k8s_openapi::api::core::v1::Toleration as "Toleration" {
        "effect" => "effect", Value, optional;
        "key" => "key", Value, optional;
        "operator" => "operator", Value, optional;
        "tolerationSeconds" => "toleration_seconds", Value, optional;
        "value" => "value", Value, optional;
    }
    k8s_openapi::api::core::v1::TopologySpreadConstraint as "TopologySpreadConstraint" {
        "labelSelector" => "label_selector", Model, optional;
        "matchLabelKeys" => "match_label_keys", Value, optional;
        "maxSkew" => "max_skew", Value, required;
        "minDomains" => "min_domains", Value, optional;
        "nodeAffinityPolicy" => "node_affinity_policy", Value, optional;
        "nodeTaintsPolicy" => "node_taints_policy", Value, optional;
        "topologyKey" => "topology_key", Value, required;
        "whenUnsatisfiable" => "when_unsatisfiable", Value, required;
    }
    k8s_openapi::api::core::v1::Volume as "Volume" {
        "awsElasticBlockStore" => "aws_elastic_block_store", Model, optional;
        "azureDisk" => "azure_disk", Model, optional;
        "azureFile" => "azure_file", Model, optional;
        "cephfs" => "cephfs", Model, optional;
        "cinder" => "cinder", Model, optional;
        "configMap" => "config_map", Model, optional;
        "csi" => "csi", Model, optional;
        "downwardAPI" => "downward_api", Model, optional;
        "emptyDir" => "empty_dir", Model, optional;
        "ephemeral" => "ephemeral", Model, optional;
        "fc" => "fc", Model, optional;
        "flexVolume" => "flex_volume", Model, optional;
        "flocker" => "flocker", Model, optional;
        "gcePersistentDisk" => "gce_persistent_disk", Model, optional;
        "gitRepo" => "git_repo", Model, optional;
        "glusterfs" => "glusterfs", Model, optional;
        "hostPath" => "host_path", Model, optional;
        "image" => "image", Model, optional;
        "iscsi" => "iscsi", Model, optional;
        "name" => "name", Value, required;
        "nfs" => "nfs", Model, optional;
        "persistentVolumeClaim" => "persistent_volume_claim", Model, optional;
        "photonPersistentDisk" => "photon_persistent_disk", Model, optional;
        "portworxVolume" => "portworx_volume", Model, optional;
        "projected" => "projected", Model, optional;
        "quobyte" => "quobyte", Model, optional;
        "rbd" => "rbd", Model, optional;
        "scaleIO" => "scale_io", Model, optional;
        "secret" => "secret", Model, optional;
        "storageos" => "storageos", Model, optional;
        "vsphereVolume" => "vsphere_volume", Model, optional;
    }
    k8s_openapi::api::core::v1::VolumeMount as "VolumeMount" {
        "mountPath" => "mount_path", Value, required;
        "mountPropagation" => "mount_propagation", Value, optional;
        "name" => "name", Value, required;
        "readOnly" => "read_only", Value, optional;
        "recursiveReadOnly" => "recursive_read_only", Value, optional;
        "subPath" => "sub_path", Value, optional;
        "subPathExpr" => "sub_path_expr", Value, optional;
    }
    // @generated end
}
