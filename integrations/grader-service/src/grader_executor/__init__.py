"""Grader Service 0.12.5 executors that grade with `grader`.

In ``grader_service_config.py``::

    c.RequestHandlerConfig.autograde_executor_class = "grader_executor.GraderAutogradeExecutor"
    c.GraderExecutor.endpoint = "/run/grader/serve.sock"   # optional: a running `grader serve`
    import grader_executor; grader_executor.use_grader_for_feedback()   # feedback too
"""

from grader_executor.executor import (
    GraderAutogradeExecutor,
    GraderExecutor,
    GraderFeedbackExecutor,
    use_grader_for_feedback,
)
from grader_executor.job import build_job

__all__ = [
    "GraderAutogradeExecutor",
    "GraderExecutor",
    "GraderFeedbackExecutor",
    "build_job",
    "use_grader_for_feedback",
]
