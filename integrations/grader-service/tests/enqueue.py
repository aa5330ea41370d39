"""Enqueue grading the way Grader Service 0.12.5's REST handlers do, in a process of its own.

    python enqueue.py grader_service_config.py '[{"kind": "autograde", "sub_id": 1}, ...]'

Kinds, each with the handler it copies (statuses set first, then the same Celery call):
  autograde  GradingAutogradeHandler.get: auto_status PENDING (feedback GENERATED becomes
             FEEDBACK_OUTDATED), then ``autograde_task.delay(lecture_id, assignment_id, sub_id)``
  feedback   GenerateFeedbackHandler.get: feedback_status GENERATING, then
             ``chain(generate_feedback_task.si(...), lti_sync_task.si(..., feedback_sync=True))()``
  full_auto  SubmissionHandler.post for a ``full_auto`` assignment: auto_status PENDING,
             feedback_status GENERATING, then ``chain(autograde_task.si(...),
             generate_feedback_task.si(...), lti_sync_task.si(..., feedback_sync=True))()``
The Celery app is the service's own (``CeleryApp`` loading the same config file as the
server), so the messages are the ones the server would publish.
"""

import json
import sys


def main() -> None:
    config_file, specs = sys.argv[1], json.loads(sys.argv[2])
    from grader_service.autograding.celery.app import CeleryApp

    celery_app = CeleryApp.instance(config_file=config_file)
    from celery import chain

    from grader_service.autograding.celery.tasks import (
        autograde_task,
        generate_feedback_task,
        lti_sync_task,
    )
    from grader_service.orm.submission import AutoStatus, FeedbackStatus, Submission

    session = celery_app.sessionmaker()
    for spec in specs:
        submission = session.get(Submission, spec["sub_id"])
        assignment = submission.assignment
        lecture = assignment.lecture
        ids = (lecture.id, assignment.id, submission.id)

        def lti():
            return lti_sync_task.si(
                lecture.serialize(),
                assignment.serialize(),
                [submission.serialize_with_user()],
                feedback_sync=True,
            )

        kind = spec["kind"]
        if kind == "autograde":
            submission.auto_status = AutoStatus.PENDING
            if submission.feedback_status == FeedbackStatus.GENERATED:
                submission.feedback_status = FeedbackStatus.FEEDBACK_OUTDATED
            session.commit()
            autograde_task.delay(*ids)
        elif kind == "feedback":
            submission.feedback_status = FeedbackStatus.GENERATING
            session.commit()
            chain(generate_feedback_task.si(*ids), lti())()
        elif kind == "full_auto":
            submission.auto_status = AutoStatus.PENDING
            session.commit()
            submission.feedback_status = FeedbackStatus.GENERATING
            session.commit()
            chain(autograde_task.si(*ids), generate_feedback_task.si(*ids), lti())()
        else:
            raise SystemExit(f"unknown kind {kind!r}")
    session.close()


if __name__ == "__main__":
    main()
