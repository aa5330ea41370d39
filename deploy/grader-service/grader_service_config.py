# The lines grader_executor adds to Grader Service's grader_service_config.py (the worker's
# and the server's; the server ignores them). Everything else stays as it is.
c.RequestHandlerConfig.autograde_executor_class = "grader_executor.GraderAutogradeExecutor"
# A running `grader serve` (grader-serve.service / the sidecar): its socket. Leave it out to
# run one `grader autograde` process per submission instead.
c.GraderExecutor.endpoint = "/run/grader/grader.sock"
c.GraderExecutor.fallback_to_binary = True   # serve down: grade with the binary, say so in the logs
c.GraderExecutor.timeout = 3900              # seconds the worker waits for one job
# c.GraderExecutor.backend = "kube"          # or grader's own /etc/grader/grader.toml
# c.GraderExecutor.config_files = ["/etc/grader/grader.toml"]

# Feedback through `grader feedback` too (rebinds the name tasks.py uses):
import grader_executor  # noqa: E402

grader_executor.use_grader_for_feedback()
