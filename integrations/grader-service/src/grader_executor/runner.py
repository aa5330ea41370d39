"""Running `grader` for one job: the binary (`grader autograde|feedback`) or a running
`grader serve` through `grader submit --wait`, so there is one client implementation.

Everything here is independent of Grader Service's database, so it can be tested alone.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

log = logging.getLogger(__name__)

#: `grader`'s exit codes (README, "Using it").
EXIT_GRADED, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

#: Grader Service's own variables: `grader` treats every `GRADER_*` variable as one of its
#: configuration keys and refuses unknown ones, so these must not reach it.
_GRADER_PREFIX = "GRADER_"


@dataclass
class Invocation:
    """How to run `grader` for one job."""

    binary: str
    service_dir: str
    backend: str = ""
    endpoint: str = ""
    token_file: str = ""
    config_files: Sequence[str] = ()
    settings: Mapping[str, str] = field(default_factory=dict)
    extra_args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 3900.0
    kill_grace: float = 30.0
    fallback_to_binary: bool = True


@dataclass
class Result:
    """What one run gave: the outcome JSON (None when `grader` printed none), how it ran."""

    outcome: Optional[dict]
    exit_code: Optional[int]
    stderr: str
    via: str  # "binary", "serve", or "binary (serve unreachable)"
    notes: list = field(default_factory=list)

    def failure_text(self) -> str:
        """Why the run failed, for the submission's logs (empty when it did not)."""
        parts = list(self.notes)
        if self.outcome is None:
            parts.append(
                f"grader ({self.via}) exited with {self.exit_code} and printed no outcome"
            )
            if self.stderr.strip():
                parts.append(self.stderr.strip())
        return "\n".join(parts)


def grader_env(base: Mapping[str, str], extra: Mapping[str, str]) -> dict:
    """The worker's environment without Grader Service's `GRADER_*` variables (database URL,
    cookie secret, service directory: `grader` would refuse them as unknown keys, and they
    are credentials it has no use for), plus the operator's `extra`."""
    env = {k: v for k, v in base.items() if not k.startswith(_GRADER_PREFIX)}
    env.update(extra)
    return env


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def socket_path(endpoint: str) -> Optional[str]:
    """The Unix socket an endpoint names (`unix:/run/grader/serve.sock` or an absolute path);
    None for an `http(s)://` URL."""
    if endpoint.startswith("unix:"):
        return endpoint[len("unix:") :]
    if endpoint.startswith("/"):
        return endpoint
    return None


def command(inv: Invocation, kind: str, job_path: str, via_serve: bool) -> list:
    """The argument list for one run (never a shell)."""
    cmd = [inv.binary]
    for path in inv.config_files:
        cmd += ["--config", path]
    for key, value in inv.settings.items():
        cmd += ["--set", f"{key}={value}"]
    if via_serve:
        cmd += ["submit", "--job", job_path, "--wait"]
        sock = socket_path(inv.endpoint)
        if sock is not None:
            cmd += ["--socket", sock]
        else:
            cmd += ["--url", inv.endpoint]
            if inv.token_file:
                cmd += ["--token-file", inv.token_file]
        if kind == "feedback":
            cmd += ["--feedback"]
    else:
        cmd += [kind, "--job", job_path, "--service-dir", inv.service_dir]
        if inv.backend:
            cmd += ["--backend", inv.backend]
    cmd += list(inv.extra_args)
    return cmd


def configured_backend(binary: str, config_files: Sequence[str], settings: Mapping[str, str],
                       env: Mapping[str, str], timeout: float = 30.0) -> Optional[str]:
    """The backend (`local` or `kube`) grader's own configuration selects for these config
    files, settings and environment, as `grader config` reports it; None when it cannot
    tell (grader missing, a configuration it refuses: the job run reports that)."""
    cmd = [binary]
    for path in config_files:
        cmd += ["--config", path]
    for key, value in settings.items():
        cmd += ["--set", f"{key}={value}"]
    cmd.append("config")
    try:
        with tempfile.TemporaryDirectory(prefix="grader-config-") as cwd:
            out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                 errors="replace", cwd=cwd, env=dict(env), timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("cannot ask %s for its backend: %s", binary, e)
        return None
    if out.returncode != 0:
        return None
    for line in out.stdout.splitlines():
        line = line.strip()
        if line.startswith("["):
            break  # past the top-level keys
        key, _, rest = line.partition("=")
        if key.strip() == "backend":
            value = rest.split("#", 1)[0].strip().strip('"')
            return value or None
    return None


def _signal(proc: subprocess.Popen, sig: int) -> None:
    """Signals `grader`'s process group (it was started in a session of its own), so a
    wrapper script's children are reached too."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _run(cmd: list, env: dict, cwd: str, timeout: float, grace: float) -> tuple:
    """Runs `cmd`; past `timeout` sends SIGTERM (grader then kills the grading process tree
    or deletes the pod), SIGKILL after `grace`. Returns (exit code, stdout, stderr, timed out)."""
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err, False
    except subprocess.TimeoutExpired:
        _signal(proc, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL)
            out, err = proc.communicate()
        return proc.returncode, out, err, True
    except BaseException:
        # The Celery task was revoked or the worker is stopping: grader cleans up on SIGTERM.
        _signal(proc, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL)
        raise


def _parse_outcome(stdout: str) -> Optional[dict]:
    text = stdout.strip()
    if not text:
        return None
    try:
        outcome = json.loads(text)
    except json.JSONDecodeError:
        # A single outcome is one JSON document; take the last line if anything preceded it.
        try:
            outcome = json.loads(text.splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            return None
    return outcome if isinstance(outcome, dict) and "status" in outcome else None


def run_job(inv: Invocation, kind: str, job: dict, base_env: Mapping[str, str]) -> Result:
    """Grades `job` once: through `grader serve` when an endpoint is set and reachable, else
    (or when it is unreachable and `fallback_to_binary` is on) with the binary."""
    env = grader_env(base_env, inv.env)
    notes: list = []
    with tempfile.TemporaryDirectory(prefix="grader-job-") as tmp:
        job_path = os.path.join(tmp, "job.json")
        with open(job_path, "w", encoding="utf-8") as f:
            json.dump(job, f)
        if inv.endpoint:
            sock = socket_path(inv.endpoint)
            reachable = sock is None or _is_socket(sock)
            if reachable:
                started = time.monotonic()
                code, out, err, timed_out = _run(
                    command(inv, kind, job_path, True), env, tmp, inv.timeout, inv.kill_grace
                )
                outcome = _parse_outcome(out)
                if timed_out:
                    notes.append(f"grader submit: no outcome within timeout={inv.timeout:g}s")
                if outcome is not None or timed_out or code == EXIT_INTERRUPTED:
                    return Result(outcome, code, err, "serve", notes)
                why = err.strip() or f"exit code {code}"
                notes.append(f"grader serve at {inv.endpoint} did not answer: {why}")
                log.warning("grader serve at %s did not answer: %s", inv.endpoint, why)
                remaining = inv.timeout - (time.monotonic() - started)
            else:
                why = f"grader serve is not running: {sock} is not a socket"
                notes.append(why)
                log.warning("%s", why)
                remaining = inv.timeout
            if not inv.fallback_to_binary:
                return Result(None, None, "", "serve", notes)
            notes.append("graded with the grader binary instead (fallback_to_binary)")
            code, out, err, timed_out = _run(
                command(inv, kind, job_path, False), env, tmp, max(remaining, 1.0), inv.kill_grace
            )
            if timed_out:
                notes.append(f"grader: no outcome within timeout={inv.timeout:g}s")
            return Result(_parse_outcome(out), code, err, "binary (serve unreachable)", notes)
        code, out, err, timed_out = _run(
            command(inv, kind, job_path, False), env, tmp, inv.timeout, inv.kill_grace
        )
        if timed_out:
            notes.append(f"grader: no outcome within timeout={inv.timeout:g}s")
        return Result(_parse_outcome(out), code, err, "binary", notes)
