"""The job file `grader` reads, built from Grader Service's ORM objects.

Kept free of database writes: `build_job` only reads attributes, so it can be tested with
plain stand-in objects and called before the executor releases its transaction.
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
from typing import Any

AUTOGRADE = "autograde"
FEEDBACK = "feedback"


def _enum_value(value: Any) -> Any:
    """`AutoStatus.NOT_GRADED` -> "not_graded" (the job file's spelling); other values as given."""
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    if isinstance(obj, enum.Enum):
        return obj.value
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    raise TypeError(f"cannot put a {type(obj).__name__} into a job file")


def _drop_nulls(value: Any) -> Any:
    """Settings the service leaves unset are `null`; the job file leaves them out instead."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def assignment_settings(assignment: Any) -> dict:
    """The assignment's settings as plain JSON (dates as ISO text, unset keys left out).

    Reads the model the reference executor reads (`assignment.settings`, an
    `AssignmentSettings`), falling back to the raw `settings` column text.
    """
    settings = getattr(assignment, "settings", None)
    if settings is None:
        return {}
    if isinstance(settings, dict):
        raw = settings
    elif callable(getattr(settings, "to_dict", None)):
        raw = settings.to_dict()
    else:
        raw = json.loads(str(settings) or "{}")
    return _drop_nulls(json.loads(json.dumps(raw, default=_json_default)))


def build_job(submission: Any, kind: str = AUTOGRADE) -> dict:
    """The job `grader autograde`/`grader feedback` needs for `submission`.

    Mirrors what Grader Service 0.12.5's `LocalAutogradeExecutor` reads: the lecture code,
    the assignment id, name, settings and properties (its gradebook), the submission id,
    commit hash, edited flag, statuses and score scaling, the user's name, and the
    submission's properties (its gradebook) when it was graded by hand (autograde carries
    those grades over) or for feedback.
    """
    if kind not in (AUTOGRADE, FEEDBACK):
        raise ValueError(f"unknown job kind {kind!r}")
    assignment = submission.assignment
    lecture = assignment.lecture
    if assignment.properties is None:
        raise ValueError(f"assignment {assignment.id} has no properties (gradebook)")
    manual_status = _enum_value(submission.manual_status)
    sub: dict[str, Any] = {
        "id": int(submission.id),
        "commit_hash": submission.commit_hash,
        "username": submission.user.name,
        "edited": bool(submission.edited),
        "auto_status": _enum_value(submission.auto_status),
        "manual_status": manual_status,
        "feedback_status": _enum_value(submission.feedback_status),
        "score_scaling": float(
            submission.score_scaling if submission.score_scaling is not None else 1.0
        ),
    }
    wants_grades = kind == FEEDBACK or manual_status != "not_graded"
    properties = getattr(submission, "properties", None)
    if wants_grades and properties is not None and properties.properties:
        sub["gradebook"] = json.loads(properties.properties)
    return {
        "lecture": {"code": lecture.code},
        "assignment": {
            "id": int(assignment.id),
            "name": assignment.name,
            "settings": assignment_settings(assignment),
            "gradebook": json.loads(assignment.properties),
        },
        "submission": sub,
    }
