"""Stand-in grading tool for the warm worker tests (grader-local/tests/warm_pool.rs).

Entry point `standin:main`; what a job does is its first argument. Imported once by a worker,
so module state set by one job must not reach the next.
"""

import json
import os
import signal
import subprocess
import sys
import time

TAMPERED = []


def dumpable():
    import ctypes

    return ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE


def report(path):
    """Writes what this child can see: ids, descriptors, environment, module state."""
    fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
    info = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pgid": os.getpgid(0),
        "sid": os.getsid(0),
        "cwd": os.getcwd(),
        "argv": sys.argv,
        "env": dict(os.environ),
        "fds": {str(fd): os.readlink(f"/proc/self/fd/{fd}") for fd in fds if os.path.exists(f"/proc/self/fd/{fd}")},
        "tampered": list(TAMPERED),
        "json_dumps_patched": getattr(json.dumps, "patched", False),
        "signals": {
            name: str(signal.getsignal(getattr(signal, name)))
            for name in ("SIGINT", "SIGTERM", "SIGCHLD", "SIGPIPE")
        },
        "dumpable": dumpable(),
    }
    with open(path, "w") as f:
        json.dump(info, f)


def main():
    op, args = sys.argv[1], sys.argv[2:]
    print(f"standin {op} on stdout")
    print(f"standin {op} on stderr", file=sys.stderr)
    if op == "report":
        report(args[0])
    elif op == "exit":
        return int(args[0])
    elif op == "crash":
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGSEGV)
    elif op == "sleep":
        time.sleep(float(args[0]))
    elif op == "stray":
        # One leftover in the job's process group, one in a session of its own (like a kernel).
        a = subprocess.Popen(["sleep", "1000"])
        b = subprocess.Popen(["sleep", "1000"], start_new_session=True)
        with open(args[0], "w") as f:
            json.dump([a.pid, b.pid], f)
    elif op == "tamper":
        TAMPERED.append("yes")
        patched = lambda *a, **k: "patched"  # noqa: E731
        patched.patched = True
        json.dumps = patched
        os.environ["LEAK"] = "1"
    elif op == "kill-worker":
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(1000)
    elif op == "sleep-tree":
        subprocess.Popen(["sleep", "1000"], start_new_session=True)
        time.sleep(1000)
    return 0
