#!/usr/bin/env python3
"""Regenerate grader-model/testdata/reference/*.json from the Python reference.

Needs grader-service==0.12.5 (and its `kubernetes` client) importable, e.g.

    /root/.cache/grader/venv-0.12.5/bin/python scripts/regen-reference.py [OUT_DIR]

OUT_DIR defaults to grader-model/testdata/reference. Inputs are drawn from a seeded random
generator plus fixed cases, so repeated runs give identical files. Every object given to or
returned by the reference is written in Kubernetes API JSON (camelCase keys), as the API
client would send it.
"""

import json
import os
import random
import re
import sys

from kubernetes.client import ApiClient, V1Container, V1EnvVar, V1ObjectMeta, V1PodSpec

from grader_service.autograding.kube.util import (
    generate_hashed_slug,
    get_k8s_model,
    make_pod,
    update_k8s_model,
)

SEED = 20250512
MODELS = {"V1PodSpec": V1PodSpec, "V1Container": V1Container, "V1ObjectMeta": V1ObjectMeta}
API = ApiClient()


def api_json(model):
    return API.sanitize_for_serialization(model)


def write(out_dir, name, source, cases):
    path = os.path.join(out_dir, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"source": source, "cases": cases}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {path}")


# --- hashed slugs -------------------------------------------------------------------------

ASCII = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
PUNCT = "-_.@ "
# Characters whose lowercasing is special: final sigma, dotted/dotless i, titlecase digraphs,
# sharp s, plus a few that do not change at all.
UNICODE = "ÄÅÈÖÜßäçéñöøüİıǅǈΣςσЖж中字文😀"


def random_slug(rng, limit, hash_length):
    threshold = limit - hash_length
    length = rng.choice(
        [0, 1, rng.randint(1, threshold), threshold - 1, threshold, threshold + 1,
         rng.randint(threshold, limit * 2)]
    )
    alphabet = rng.choice([ASCII, ASCII + PUNCT, ASCII + PUNCT + UNICODE * 2])
    return "".join(rng.choice(alphabet) for _ in range(max(length, 0)))


def hashed_slug_cases(rng):
    cases = []
    for _ in range(200):
        limit = rng.choice([20, 30, 40, 63, 63, 253])
        hash_length = rng.choice([4, 6, 6, 8, 10])
        slug = random_slug(rng, limit, hash_length)
        cases.append(
            {
                "input": slug,
                "limit": limit,
                "hash_length": hash_length,
                "output": generate_hashed_slug(slug, limit=limit, hash_length=hash_length),
            }
        )
    return cases


# --- update_k8s_model ---------------------------------------------------------------------

POD_SPEC_TARGETS = [
    {"containers": [{"name": "autograde", "image": "img:1"}], "restartPolicy": "Never"},
    {
        "containers": [{"name": "autograde", "image": "img:1"}],
        "restartPolicy": "Never",
        "nodeSelector": {"disk": "ssd"},
    },
    {
        "containers": [{"name": "autograde", "image": "img:1"}],
        "restartPolicy": "Never",
        "serviceAccountName": "grader",
    },
    {
        "containers": [{"name": "autograde", "image": "img:1"}],
        "restartPolicy": "Never",
        "nodeSelector": {"disk": "ssd"},
        "serviceAccountName": "grader",
    },
]
POD_SPEC_CHANGES = [
    {"nodeSelector": {"gpu": "true"}},
    {"node_selector": {"zone": "a"}},
    {"restartPolicy": "OnFailure"},
    {"serviceAccountName": "other"},
    {"activeDeadlineSeconds": 600},
    {"tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]},
    {"priorityClassName": "low", "runtimeClassName": "gvisor"},
    {"nodeSelector": None},
    {"automountServiceAccountToken": False},
    {"hostNetwork": False, "dnsPolicy": "None"},
    {"imagePullSecrets": [{"name": "regcred"}]},
    {"securityContext": {"runAsNonRoot": True, "fsGroup": 100}},
]
POD_SPEC_MODEL_CHANGES = [
    {"containers": [], "nodeSelector": {"x": "y"}, "serviceAccountName": "sa"},
    {"containers": []},
    {"containers": [], "restartPolicy": "Always", "serviceAccountName": "sa"},
]
CONTAINER_TARGETS = [
    {"name": "autograde", "image": "cs101_image", "args": ["grader-convert", "autograde"]},
    {
        "name": "autograde",
        "image": "cs101_image",
        "args": ["grader-convert", "autograde"],
        "workingDir": "/",
    },
    {
        "name": "autograde",
        "image": "cs101_image",
        "args": ["grader-convert", "autograde"],
        "env": [{"name": "A", "value": "1"}],
    },
    {
        "name": "autograde",
        "image": "cs101_image",
        "args": ["grader-convert", "autograde"],
        "workingDir": "/",
        "env": [{"name": "A", "value": "1"}],
    },
]
CONTAINER_CHANGES = [
    {"image": "custom:2"},
    {"imagePullPolicy": "IfNotPresent"},
    {"working_dir": "/home/jovyan"},
    {"resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}},
    {"env": [{"name": "B", "value": "2"}]},
    {"args": []},
    {"command": ["/bin/sh", "-c"]},
    {"securityContext": {"allowPrivilegeEscalation": False, "runAsUser": 1000}},
]
META_TARGETS = [
    {"name": "autograde-job-alice-1"},
    {"name": "autograde-job-alice-1", "labels": {"app": "grader"}},
]
META_CHANGES = [
    {"labels": {"team": "x"}},
    {"annotations": {"a": "b"}},
    {"namespace": "grading"},
    {"generateName": "job-"},
    {"labels": None},
]
ERROR_CASES = [
    ("V1PodSpec", POD_SPEC_TARGETS[0], {"nodeSelectr": {"a": "b"}}),
    ("V1Container", CONTAINER_TARGETS[2], {"imagePullPolicyy": "Always"}),
    ("V1ObjectMeta", META_TARGETS[0], {"label": {"a": "b"}}),
]


class RecordingLogger:
    def __init__(self):
        self.messages = []

    def warning(self, message):
        self.messages.append(message)


def update_case(model_name, target, changes, changes_is_model):
    model_type = MODELS[model_name]
    target_model = get_k8s_model(model_type, target)
    case = {"model": model_name, "target": api_json(target_model)}
    given = get_k8s_model(model_type, changes) if changes_is_model else changes
    case["changes"] = api_json(given) if changes_is_model else changes
    case["changes_is_model"] = changes_is_model
    logger = RecordingLogger()
    try:
        update_k8s_model(
            target_model, given, logger=logger, target_name="target", changes_name="changes"
        )
    except ValueError as e:
        case["error"] = str(e)
        return case
    case["result"] = api_json(target_model)
    case["warnings"] = len(logger.messages)
    case["overridden"] = [re.match(r"'target\.(\w+)'", m).group(1) for m in logger.messages]
    return case


def update_cases(rng):
    cases = []
    for targets, changes, model in [
        (POD_SPEC_TARGETS, POD_SPEC_CHANGES, "V1PodSpec"),
        (CONTAINER_TARGETS, CONTAINER_CHANGES, "V1Container"),
        (META_TARGETS, META_CHANGES, "V1ObjectMeta"),
    ]:
        for change in changes:
            cases.append(update_case(model, rng.choice(targets), change, False))
    for change in POD_SPEC_MODEL_CHANGES:
        cases.append(update_case("V1PodSpec", rng.choice(POD_SPEC_TARGETS), change, True))
    for model, target, change in ERROR_CASES:
        cases.append(update_case(model, target, change, False))
    return cases


# --- make_pod -----------------------------------------------------------------------------

VOLUME = {"name": "data", "persistentVolumeClaim": {"claimName": "grader-data"}}
MOUNTS = [
    {"name": "data", "mountPath": "/in", "subPath": "convert_in/submission_1"},
    {"name": "data", "mountPath": "/out", "subPath": "convert_out/submission_1"},
]
TOLERATION = {"key": "grading", "operator": "Equal", "value": "true", "effect": "NoSchedule"}


def make_pod_cases(rng):
    cases = []
    for i in range(6):
        timeout = rng.choice([10, 300, 900])
        args = {
            "name": f"autograde-job-user{i}-{10 + i}",
            "cmd": [
                "grader-convert", "autograde", "-i", "/in", "-o", "/out", "-p", "*.ipynb",
                "--log-level=INFO", f"--ExecutePreprocessor.timeout={timeout}",
            ],
            "env": [{"name": "ASSIGNMENT_SETTINGS", "value": json.dumps({"cell_timeout": 300})}],
            "image": rng.choice(["cs101_image", "registry.example.org/grading/py311:3"]),
            "image_pull_policy": rng.choice(["Always", "IfNotPresent"]),
            "image_pull_secrets": rng.choice([None, [], [{"name": "regcred"}]]),
            "working_dir": rng.choice([None, "/", "/"]),
            "volumes": rng.choice([None, [VOLUME]]),
            "volume_mounts": rng.choice([None, MOUNTS]),
            "labels": rng.choice([None, {"app": "grader"}]),
            "annotations": rng.choice([None, {"note": "x"}]),
            "tolerations": rng.choice([None, None, [TOLERATION]]),
            "run_as_user": rng.choice([None, 1000, 1000]),
        }
        call = dict(args)
        call["env"] = [V1EnvVar(**e) for e in args["env"]]
        cases.append({"args": args, "pod": api_json(make_pod(**call))})
    return cases


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, "..", "grader-model", "testdata", "reference")
    out_dir = sys.argv[1] if len(sys.argv) > 1 else default
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(SEED)
    write(out_dir, "hashed_slug.json", "grader-service 0.12.5 generate_hashed_slug",
          hashed_slug_cases(rng))
    write(out_dir, "update_k8s_model.json",
          "grader-service 0.12.5 update_k8s_model; 'overridden' lists snake_case attribute names",
          update_cases(rng))
    write(out_dir, "make_pod.json", "grader-service 0.12.5 make_pod", make_pod_cases(rng))


if __name__ == "__main__":
    main()
