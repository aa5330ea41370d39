"""Grader Service 0.12.5 executors that hand grading to `grader`.

The worker builds the autograde executor as
``RequestHandlerConfig.autograde_executor_class(grader_service_dir, submission, config=...)``
and calls ``start()``; :class:`GraderAutogradeExecutor` has that interface. Feedback is
hard-coded to ``LocalFeedbackExecutor`` in ``grader_service.autograding.celery.tasks``;
:func:`use_grader_for_feedback` swaps :class:`GraderFeedbackExecutor` in (see the README).

What each writes is what the reference executors write, column for column: autograde sets
``submission_properties.properties`` (the graded gradebook as JSON text), ``grading_score``,
``score`` (= ``score_scaling`` x grading score), ``auto_status``
(``AUTOMATICALLY_GRADED``/``GRADING_FAILED``) and ``submission_logs.logs`` (NUL bytes
stripped; on failure the error appended); feedback sets ``feedback_status``
(``GENERATED``/``GENERATION_FAILED``). Unlike the reference, the database transaction is
ended before grading starts and a new one is opened to write the result, so a long grading
run holds no connection, row snapshot or lock.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
from typing import Any, Optional

from sqlalchemy.orm import Session
from traitlets import Bool, Dict, Float, List, Unicode
from traitlets.config import LoggingConfigurable

from grader_executor.job import AUTOGRADE, FEEDBACK, build_job
from grader_executor.runner import Invocation, Result, configured_backend, grader_env, run_job


def _beside_python(name: str) -> Optional[str]:
    """`name` installed in this environment's scripts directory (where the wheel puts the
    `grader` binary, and where `grader-convert` lives), if it is there."""
    for directory in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


class GraderExecutor(LoggingConfigurable):
    """Settings shared by both executors: ``c.GraderExecutor.<name>`` in
    ``grader_service_config.py`` applies to autograde and feedback alike."""

    endpoint = Unicode(
        "",
        help="A running `grader serve`: its Unix socket (`/run/grader/serve.sock` or "
        "`unix:/path`) or its URL (`http://127.0.0.1:8470`). Empty: run the `grader` binary "
        "once per job.",
    ).tag(config=True)

    token_file = Unicode(
        "", help="Bearer token file for a TCP `endpoint` (passed to `grader submit`)."
    ).tag(config=True)

    fallback_to_binary = Bool(
        True,
        help="When `endpoint` is set but `grader serve` does not answer, grade with the "
        "binary instead (the reason is written at the top of the submission's logs). "
        "False: the job fails with GRADING_FAILED and that reason.",
    ).tag(config=True)

    binary = Unicode(
        help="The `grader` executable. Default: the one the wheel installed next to this "
        "Python, else `grader` on PATH."
    ).tag(config=True)

    backend = Unicode(
        "", help="`local` or `kube` (`grader --backend`); empty: grader's own configuration."
    ).tag(config=True)

    timeout = Float(
        3900.0,
        help="Seconds the worker waits for one job before stopping `grader` (SIGTERM: it "
        "kills the grading process tree or deletes the pod).",
    ).tag(config=True)

    config_files = List(
        Unicode(), help="grader configuration files (`grader --config`), in order."
    ).tag(config=True)

    convert_executable = Unicode(
        help="grader's `convert_executable`. Default with the local backend: `grader-convert` "
        "of this environment when it has one, else grader's own configuration; with the kube "
        "backend (from `backend` or grader's configuration): grader's own configuration, "
        "since the tool runs inside the grading image."
    ).tag(config=True)

    grader_settings = Dict(
        value_trait=Unicode(),
        help="More grader configuration keys, as `grader --set KEY=VALUE`, e.g. "
        "{'local.warm_workers': '1'}.",
    ).tag(config=True)

    extra_args = List(Unicode(), help="Arguments appended to every `grader` command.").tag(
        config=True
    )

    env = Dict(
        value_trait=Unicode(),
        help="Variables added to grader's environment. Grader Service's own `GRADER_*` "
        "variables are always removed (grader would refuse them as unknown keys).",
    ).tag(config=True)

    kind = AUTOGRADE

    def _binary_default(self) -> str:
        return _beside_python("grader") or shutil.which("grader") or "grader"

    def __init__(
        self, grader_service_dir: str, submission: Any, close_session: bool = True, **kwargs
    ):
        super().__init__(**kwargs)
        self.grader_service_dir = grader_service_dir
        self.submission = submission
        self.assignment = submission.assignment
        self.session: Session = Session.object_session(submission)
        self.close_session = close_session
        self.grading_logs: Optional[str] = None
        self.result: Optional[Result] = None

    # -- the interface Grader Service calls ---------------------------------------------------
    def start(self) -> None:
        """Grades the submission and writes the outcome to the database."""
        name = self.__class__.__name__
        sub_id = self.submission.id
        self.log.info("Starting %s job for submission %s in %s", self.kind, sub_id, name)
        try:
            try:
                job = build_job(self.submission, self.kind)
            except Exception as e:  # a submission the service cannot describe: fail it
                self.log.error("Cannot build the job of submission %s: %s", sub_id, e)
                self._write_back(None, f"cannot build the grading job: {e}")
                return
            # Release the transaction (and its pooled connection) while grading runs; the
            # ORM objects are expired and reloaded when the result is written.
            self.session.commit()
            self.result = run_job(self.invocation(), self.kind, job, os.environ)
            self._write_back(self.result.outcome, self.result.failure_text())
        except Exception:
            self.log.error("Failed %s job for submission %s in %s", self.kind, sub_id, name,
                           exc_info=True)
            self.session.rollback()
            raise
        finally:
            if self.close_session:
                self.session.close()

    def invocation(self) -> Invocation:
        """How `grader` is run for this executor's settings."""
        settings = {}
        convert = self.convert_executable
        if not convert and self._grades_here():
            convert = _beside_python("grader-convert")
        if convert:
            settings["convert_executable"] = convert
        settings.update(self.grader_settings)
        return Invocation(
            binary=self.binary or self._binary_default(),
            service_dir=self.grader_service_dir,
            backend=self.backend,
            endpoint=self.endpoint,
            token_file=self.token_file,
            config_files=list(self.config_files),
            settings=settings,
            extra_args=list(self.extra_args),
            env=dict(self.env),
            timeout=self.timeout,
            fallback_to_binary=self.fallback_to_binary,
        )

    def _grades_here(self) -> bool:
        """Whether grading runs on this machine (the local backend), so that this
        environment's `grader-convert` is the tool to run. Not with the kube backend: there
        `convert_executable` names the tool inside the grading image, which grader's own
        configuration (or `convert_executable` here) says. With `backend` unset, grader's
        configuration decides; it is asked (`grader config`, a few milliseconds)."""
        if self.backend:
            return self.backend == "local"
        backend = configured_backend(
            self.binary or self._binary_default(),
            list(self.config_files),
            dict(self.grader_settings),
            grader_env(os.environ, self.env),
        )
        return backend != "kube"

    def _write_back(self, outcome: Optional[dict], failure: str) -> None:
        raise NotImplementedError


class GraderAutogradeExecutor(GraderExecutor):
    """Autograding through `grader`: set
    ``c.RequestHandlerConfig.autograde_executor_class = "grader_executor.GraderAutogradeExecutor"``."""

    kind = AUTOGRADE

    def _write_back(self, outcome: Optional[dict], failure: str) -> None:
        from grader_service.orm.submission import AutoStatus
        from grader_service.orm.submission_logs import SubmissionLogs
        from grader_service.orm.submission_properties import SubmissionProperties

        sub = self.submission
        graded = outcome is not None and outcome.get("status") == "automatically_graded"
        logs = (outcome or {}).get("logs") or ""
        if failure:
            # Why grader ran the way it did (serve unreachable, fallback, no outcome) on top.
            logs = f"{failure}\n{logs}" if logs else failure
        if graded and outcome.get("gradebook") is not None:
            # The reference stores gradebook.json's text as grader-convert wrote it
            # (json.dumps with default separators); the outcome carries the same document
            # in the same key order, so dumping it again gives the same text.
            text = json.dumps(outcome["gradebook"])
            self.session.merge(SubmissionProperties(properties=text, sub_id=sub.id))
            grading_score = outcome["grading_score"]
            sub.grading_score = grading_score
            sub.score = sub.score_scaling * grading_score
            self.session.commit()
            sub.auto_status = AutoStatus.AUTOMATICALLY_GRADED
        else:
            error = (outcome or {}).get("error")
            if error and error not in logs:
                logs = f"{logs}\n{error}" if logs else error
            sub.auto_status = AutoStatus.GRADING_FAILED
        self.session.commit()
        self.grading_logs = logs.replace("\x00", "")
        self.session.merge(SubmissionLogs(logs=self.grading_logs, sub_id=sub.id))
        self.session.commit()
        self.log.info(
            "%s: submission %s %s via %s",
            self.__class__.__name__,
            sub.id,
            "graded" if graded else "failed",
            self.result.via if self.result else "-",
        )


class GraderFeedbackExecutor(GraderExecutor):
    """Feedback through `grader feedback`, writing ``feedback_status`` as the reference's
    ``LocalFeedbackExecutor`` does (no logs, no properties)."""

    kind = FEEDBACK

    def _write_back(self, outcome: Optional[dict], failure: str) -> None:
        from grader_service.orm.submission import FeedbackStatus

        generated = outcome is not None and outcome.get("status") == "generated"
        if not generated:
            why = failure or (outcome or {}).get("error") or ""
            self.log.error("Feedback of submission %s failed: %s", self.submission.id, why)
        self.submission.feedback_status = (
            FeedbackStatus.GENERATED if generated else FeedbackStatus.GENERATION_FAILED
        )
        self.session.commit()


def use_grader_for_feedback() -> None:
    """Make the worker's ``generate_feedback_task`` run :class:`GraderFeedbackExecutor`.

    Grader Service 0.12.5 names ``LocalFeedbackExecutor`` in ``tasks.py`` and looks the name
    up in that module when each task runs, so rebinding it there switches every later
    feedback task. Call it from ``grader_service_config.py`` (loaded by ``grader-worker``
    before it starts consuming): it only rebinds a name, it touches no database or broker.
    """
    from grader_service.autograding.celery import tasks

    tasks.LocalFeedbackExecutor = GraderFeedbackExecutor
