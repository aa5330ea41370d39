#!/usr/bin/env python3
"""Regenerate the field tables of grader-model/src/k8s.rs.

The tables list, for every Kubernetes type that `grader_model::k8s` supports, each field's
API name (as k8s-openapi serializes it), its attribute name (the snake_case name used by the
Python `kubernetes` client, which the reference `grader-service` accepts as a top-level key)
whether the field holds a nested model object (relevant for Python truthiness) and whether
it is required (by the Python client where it knows the field, else by k8s-openapi).

Field names come from the k8s-openapi sources (the Rust types are what we deserialize into);
attribute names come from the Python client's `attribute_map` where it knows the field, and
otherwise from the camelCase -> snake_case rule of the Python client generator.

Run with the reference venv's interpreter (it has the `kubernetes` package):

    /root/.cache/grader/venv-0.12.5/bin/python scripts/gen-k8s-fields.py

The block between the `@generated` markers in grader-model/src/k8s.rs is replaced in place.
"""

import glob
import os
import re
import sys

import kubernetes.client as kc

K8S_OPENAPI_VERSION = "0.29.0"
K8S_API_VERSION = "v1_34"

# (Rust type name, source file relative to src/<K8S_API_VERSION>/)
TYPES = [
    ("Affinity", "api/core/v1/affinity.rs"),
    ("Capabilities", "api/core/v1/capabilities.rs"),
    ("ConfigMapVolumeSource", "api/core/v1/config_map_volume_source.rs"),
    ("Container", "api/core/v1/container.rs"),
    ("ContainerPort", "api/core/v1/container_port.rs"),
    ("EmptyDirVolumeSource", "api/core/v1/empty_dir_volume_source.rs"),
    ("EnvFromSource", "api/core/v1/env_from_source.rs"),
    ("EnvVar", "api/core/v1/env_var.rs"),
    ("EnvVarSource", "api/core/v1/env_var_source.rs"),
    ("HostAlias", "api/core/v1/host_alias.rs"),
    ("HostPathVolumeSource", "api/core/v1/host_path_volume_source.rs"),
    ("LocalObjectReference", "api/core/v1/local_object_reference.rs"),
    ("NodeAffinity", "api/core/v1/node_affinity.rs"),
    ("ObjectMeta", "apimachinery/pkg/apis/meta/v1/object_meta.rs"),
    ("PersistentVolumeClaimVolumeSource", "api/core/v1/persistent_volume_claim_volume_source.rs"),
    ("Pod", "api/core/v1/pod.rs"),
    ("PodDNSConfig", "api/core/v1/pod_dns_config.rs"),
    ("PodSecurityContext", "api/core/v1/pod_security_context.rs"),
    ("PodSpec", "api/core/v1/pod_spec.rs"),
    ("PodStatus", "api/core/v1/pod_status.rs"),
    ("Probe", "api/core/v1/probe.rs"),
    ("ResourceRequirements", "api/core/v1/resource_requirements.rs"),
    ("SeccompProfile", "api/core/v1/seccomp_profile.rs"),
    ("SecretVolumeSource", "api/core/v1/secret_volume_source.rs"),
    ("SecurityContext", "api/core/v1/security_context.rs"),
    ("Toleration", "api/core/v1/toleration.rs"),
    ("TopologySpreadConstraint", "api/core/v1/topology_spread_constraint.rs"),
    ("Volume", "api/core/v1/volume.rs"),
    ("VolumeMount", "api/core/v1/volume_mount.rs"),
]

# k8s-openapi types under `crate::` that serialize as JSON scalars, not as objects.
SCALAR_TYPES = ("Quantity", "Time", "MicroTime", "IntOrString", "ByteString")

ARM = re.compile(r'^\s*"([^"]+)" => Field::Key_(\w+),\s*$')
FIELD = re.compile(r"^    pub (\w+): (.+),\s*$")
MODULE = {
    "api/core/v1/": "k8s_openapi::api::core::v1",
    "apimachinery/pkg/apis/meta/v1/": "k8s_openapi::apimachinery::pkg::apis::meta::v1",
}


def snake_case(name):
    """The Python client generator's rule: 'hostIPC' -> 'host_ipc', 'podIPs' -> 'pod_i_ps'."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    name = re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name)
    return name.replace("-", "_").lower()


def is_optional(rust_type):
    return rust_type.startswith("Option<")


def is_model(rust_type):
    inner = rust_type
    if inner.startswith("Option<") and inner.endswith(">"):
        inner = inner[len("Option<") : -1]
    if not inner.startswith("crate::"):
        return False
    return inner.rsplit("::", 1)[-1] not in SCALAR_TYPES


def python_field(py_cls, attr, api):
    """The pydantic field of a Python client model ('_exec' is stored as 'var_exec')."""
    for key, field in py_cls.model_fields.items():
        if key == attr or field.alias == attr or field.serialization_alias == api:
            return field
    sys.exit(f"{py_cls.__name__}: no pydantic field for {attr!r}")


def source_root():
    env = os.environ.get("K8S_OPENAPI_SRC")
    if env:
        return env
    pattern = os.path.expanduser(f"~/.cargo/registry/src/*/k8s-openapi-{K8S_OPENAPI_VERSION}/src")
    found = sorted(glob.glob(pattern))
    if not found:
        sys.exit(f"k8s-openapi {K8S_OPENAPI_VERSION} sources not found ({pattern}); set K8S_OPENAPI_SRC")
    return found[-1]


def fields_of(root, rel):
    text = open(os.path.join(root, K8S_API_VERSION, rel), encoding="utf-8").read()
    types = {}
    for line in text.splitlines():
        m = FIELD.match(line)
        if m:
            types[m.group(1)] = m.group(2)
    arms = []
    for line in text.splitlines():
        m = ARM.match(line)
        if m and (m.group(1), m.group(2)) not in arms:
            arms.append((m.group(1), m.group(2)))
    return [
        (api, rust, is_model(types.get(rust, "")), not is_optional(types.get(rust, "Option<>")))
        for api, rust in arms
    ]


def render(root):
    out = []
    for name, rel in TYPES:
        module = next(v for k, v in MODULE.items() if rel.startswith(k))
        py_cls = getattr(kc, "V1" + name, None)
        by_api = {}
        if py_cls is not None:
            by_api = {api: attr for attr, api in py_cls.attribute_map.items()}
        out.append(f'    {module}::{name} as "{name}" {{')
        for api, rust, model, rust_required in fields_of(root, rel):
            attr = by_api.get(api) or snake_case(api)
            required = rust_required
            if py_cls is not None and api in by_api:
                required = python_field(py_cls, attr, api).is_required()
            if attr != rust:
                print(f"note: {name}.{api}: attribute {attr!r}, Rust field {rust!r}", file=sys.stderr)
            kind = "Model" if model else "Value"
            presence = "required" if required else "optional"
            out.append(f'        "{api}" => "{attr}", {kind}, {presence};')
        out.append("    }")
    return "\n".join(out) + "\n"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    target = os.path.join(here, "..", "grader-model", "src", "k8s.rs")
    text = open(target, encoding="utf-8").read()
    begin = "    // @generated begin by scripts/gen-k8s-fields.py\n"
    end = "    // @generated end\n"
    start = text.index(begin) + len(begin)
    stop = text.index(end)
    new = text[:start] + render(source_root()) + text[stop:]
    open(target, "w", encoding="utf-8").write(new)


if __name__ == "__main__":
    main()
