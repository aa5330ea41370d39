"""Warm grading worker: imports a console-script grading tool once, then forks a fresh child of
that pristine state for every job.

Started by `grader` (grader-local/src/warm/worker.rs), which sends this source as the first line
of the worker's stdin (a JSON string) to `python -c BOOTSTRAP`, so that no file on disk decides
what a worker runs. Arguments: --entry-point NAME (a console script such as grader-convert, or
module:function), --argv0 (sys.argv[0] of the jobs), --protocol VERSION.

Protocol (version 2): line-delimited JSON, requests on stdin, events on stdout.
  worker   {"event": "hello", "v": 2, "ok": true, "pid": N, "tool": ..., "tool_version": ...,
            "python": ...}   or   {"event": "hello", "v": 2, "ok": false, "error": "..."}
  grader   {"op": "run", "id": N, "argv": [...], "env": {...}, "cwd": "...", "log_path": "...",
            "log_head": H, "log_tail": T}
  worker   {"event": "started", "id": N, "pid": P}, later
           {"event": "exited", "id": N, "exit_code": C | "signal": S, "strays": K,
            "log_dropped": D}
  grader   {"op": "kill", "id": N}      the job's process tree is killed; "exited" follows
  grader   {"op": "ping", "id": N}      answered by {"event": "pong", "id": N, "busy": bool}
  worker   {"event": "error", "id": N | null, "message": "..."} for a request it cannot take
End of stdin (or the parent's death) stops the worker; it kills a running job first.

One job at a time. The worker never runs tool or student code itself: each job is a forked
child in its own session and process group, with its own environment and working directory,
none of the worker's descriptors and no capabilities (it drops them all when the worker has
any, as root does: root with CAP_SYS_PTRACE could read the environment and memory of grader
and of the worker through /proc). The child's stdout and stderr are one pipe that the worker
drains into the job's log file, bounded like grader's logs: the first H bytes are written as
they come, the last T bytes are kept in memory and written when the job ends, and the D bytes
in between are only counted, so the file never exceeds H + T bytes however much a job writes
and a job never waits for its log. The worker is a child subreaper, so whatever a job leaves
behind (also in other sessions, such as Jupyter kernels) becomes the worker's child and is
killed before "exited" is reported. Standard library only.
"""

import argparse
import atexit
import errno
import gc
import json
import os
import platform
import selectors
import signal
import sys
import threading
import time
import traceback

PROTOCOL = 2
MAX_LINE = 1 << 20  # bytes of one request
TICK = 0.5  # seconds between checks that the parent is alive
SWEEP_WAIT = 5.0  # seconds to wait for killed leftovers to be reaped
LOG_CHUNK = 1 << 16  # bytes of a job's output read at once
LOG_READS = 16  # reads of a job's output per turn of the loop, so that requests still get in
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAPABILITY_VERSION_3 = 0x20080522  # capset(2): two 32-bit words per set
CAPABILITY_SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
MAX_FD = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536


def libc():
    import ctypes

    lib = ctypes.CDLL(None, use_errno=True)
    # Every argument as a full unsigned long, as the kernel reads them.
    lib.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    lib.prctl.restype = ctypes.c_int
    return lib


def prctl(option, value):
    """Best effort: False where prctl is unavailable."""
    try:
        return libc().prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def capabilities():
    """The capability sets of this process (CapInh, CapPrm, ...), as integers."""
    sets = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in CAPABILITY_SETS:
                sets[name] = int(value, 16)
    return sets


def drop_privileges():
    """Makes this process (a job's child) and everything it executes unprivileged: no new
    privileges on exec, and, when it has any capability (root has them all), an empty bounding
    set, no ambient capabilities and empty inheritable, permitted and effective sets. Root
    without capabilities cannot read the environment or memory of non-dumpable processes
    (grader, the worker) through /proc. Raises OSError when a step fails."""
    import ctypes

    lib = libc()

    def check(what, result):
        if result != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    check("PR_SET_NO_NEW_PRIVS", lib.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
    # Ambient capabilities would survive exec even for other users; clearing needs no privilege.
    check("PR_CAP_AMBIENT_CLEAR_ALL", lib.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0))
    if os.geteuid() != 0 and not any(v for k, v in capabilities().items() if k != "CapBnd"):
        return  # nothing to drop; the bounding set only limits what exec could grant
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = 63
    # The bounding set first: dropping from it needs CAP_SETPCAP, which capset then removes.
    # Without CAP_SETPCAP it stays: no_new_privs already keeps exec from granting anything
    # beyond the (then empty) permitted set, even to root.
    bounding = True
    for cap in range(last + 1):
        if lib.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            if ctypes.get_errno() != errno.EPERM:
                check(f"PR_CAPBSET_DROP {cap}", -1)
            bounding = False
            break
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable; twice; all zero
    check("capset", lib.capset(header, data))
    left = {k: f"{v:x}" for k, v in capabilities().items() if v and (bounding or k != "CapBnd")}
    if left:
        raise OSError(0, f"capabilities left after dropping them: {left}")


def load_entry(spec):
    """The callable behind `spec` and the distribution that provides it (name, version)."""
    from importlib import import_module
    from importlib.metadata import PackageNotFoundError, entry_points, version

    if ":" in spec:
        module, _, attr = spec.partition(":")
        target = import_module(module)
        for part in attr.split("."):
            target = getattr(target, part)
        top = module.split(".")[0]
        try:
            return target, top, version(top)
        except PackageNotFoundError:
            return target, top, None
    for ep in entry_points(group="console_scripts", name=spec):
        dist = ep.dist
        return (
            ep.load(),
            dist.name if dist else spec,
            dist.version if dist else None,
        )
    raise LookupError(f"no console script {spec!r} is installed in {sys.prefix}")


# --- process trees ----------------------------------------------------------------------------


def descendants(root):
    """Every process below `root`, found through /proc parent links."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may contain anything; fields follow the last ")".
        fields = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def send_signal(pid, sig):
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def kill_below(root, include_root):
    """Freezes the tree under `root` (a stopped process cannot fork), then SIGKILLs it. Returns
    how many processes were signalled besides `root`."""
    if include_root:
        send_signal(root, signal.SIGSTOP)
    frozen = set()
    for _ in range(16):
        new = descendants(root) - frozen
        if not new:
            break
        for pid in new:
            send_signal(pid, signal.SIGSTOP)
        frozen |= new
    if include_root:
        try:
            os.killpg(root, signal.SIGKILL)
        except OSError:
            pass
        send_signal(root, signal.SIGKILL)
    for pid in frozen:
        send_signal(pid, signal.SIGKILL)
    return len(frozen)


def reap_all():
    """Reaps children until none is left (they were all killed), for at most SWEEP_WAIT."""
    deadline = time.monotonic() + SWEEP_WAIT
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.01)


# --- a job's child ----------------------------------------------------------------------------


def exit_code(value):
    """The process exit code of `sys.exit(value)`."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def run_child(entry, argv0, req, worker, output):
    """Runs one job in this forked child of `worker` (its pid), its stdout and stderr going to
    the pipe `output`; never returns."""
    code = 1
    try:
        # Dies with the worker (which cannot kill it any more then); a worker already gone
        # before this took effect is seen in getppid.
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != worker:
            os._exit(1)
        # Signal handling as in a freshly started interpreter. The child stays non-dumpable
        # like the worker, so other jobs' code cannot trace it or read its memory (programs
        # it executes, such as kernels, are dumpable again).
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        prctl(PR_SET_CHILD_SUBREAPER, 0)
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(output, 1)
        os.dup2(output, 2)
        # Only stdin, stdout and stderr: nothing the worker or an import had open.
        os.closerange(3, MAX_FD)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        sys.argv = [argv0] + req["argv"]
        try:
            drop_privileges()
        except OSError as e:
            # Never run student code with the power to read grader: fail the job instead.
            print(f"grader warm worker: could not drop privileges: {e}", file=sys.stderr)
            os._exit(1)
        try:
            code = exit_code(entry())  # what a console-script wrapper does: sys.exit(main())
        except SystemExit as e:
            code = exit_code(e.code)
        # A normal interpreter exit: wait for non-daemon threads, run atexit handlers.
        for t in threading.enumerate():
            if t is not threading.main_thread() and not t.daemon:
                t.join()
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(code)


def check_run(req):
    ok = (
        isinstance(req.get("id"), int)
        and isinstance(req.get("argv"), list)
        and all(isinstance(a, str) for a in req["argv"])
        and isinstance(req.get("env"), dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in req["env"].items())
        and isinstance(req.get("cwd"), str)
        and isinstance(req.get("log_path"), str)
        and all(isinstance(req.get(k), int) and req[k] >= 0 for k in ("log_head", "log_tail"))
    )
    if not ok:
        raise ValueError(
            "run needs id (integer), argv (strings), env (strings), cwd, log_path, "
            "log_head and log_tail (byte counts)"
        )


class JobLog:
    """A job's output on its way to the job's log file: the first `head` bytes are written as
    they come, the last `tail` bytes are kept here and written by `close`, and what lies
    between is only counted. Errors writing the file are ignored (the job goes on)."""

    def __init__(self, path, head, tail):
        self.fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        self.head, self.tail_cap = head, tail
        self.tail = bytearray()
        self.dropped = 0

    def write(self, data):
        while data:
            try:
                data = data[os.write(self.fd, data) :]
            except InterruptedError:
                pass
            except OSError:
                return

    def add(self, data):
        if self.head:
            first = data[: self.head]
            self.write(first)
            self.head -= len(first)
            data = data[len(first) :]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self.tail_cap:  # trimmed now and then, not on every read
                self.trim()

    def trim(self):
        excess = len(self.tail) - self.tail_cap
        if excess > 0:
            del self.tail[:excess]
            self.dropped += excess

    def close(self):
        """Writes the tail and closes the file; returns how many bytes were left out."""
        self.trim()
        self.write(bytes(self.tail))
        self.tail = bytearray()
        os.close(self.fd)
        return self.dropped


# --- the worker -------------------------------------------------------------------------------


class Worker:
    def __init__(self, entry, argv0, proto_in, proto_out):
        self.entry, self.argv0 = entry, argv0
        self.proto_in, self.proto_out = proto_in, proto_out
        self.buf = b""
        self.job = None  # (id, pid) of the running job
        self.output = None  # (read end of the job's output pipe, JobLog)
        self.kill_sent = False
        self.ppid = os.getppid()
        self.stopping = False
        os.set_blocking(proto_in, False)
        # SIGCHLD and SIGTERM only write to this pipe; the loop does the work.
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self.on_term)
        self.sel = selectors.DefaultSelector()
        self.sel.register(proto_in, selectors.EVENT_READ, "in")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")

    def on_term(self, *_):
        self.stopping = True

    def send(self, msg):
        data = json.dumps(msg).encode() + b"\n"
        while data:
            try:
                data = data[os.write(self.proto_out, data) :]
            except InterruptedError:
                pass

    def serve(self):
        while not self.stopping:
            for key, _ in self.sel.select(TICK):
                if key.data == "in":
                    self.read_requests()
                elif key.data == "output":
                    self.read_output(LOG_READS)
                else:
                    try:
                        while os.read(self.wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
            self.reap()
            if os.getppid() != self.ppid:
                self.stopping = True
        self.shutdown()

    def read_requests(self):
        try:
            data = os.read(self.proto_in, 65536)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            self.stopping = True
            return
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            self.handle(line)
        if len(self.buf) > MAX_LINE:
            self.buf = b""
            self.send({"event": "error", "id": None, "message": "request too large"})

    def handle(self, line):
        req_id = None
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("a request is a JSON object")
            req_id = req.get("id")
            op = req.get("op")
            if op == "run":
                check_run(req)
                if self.job is not None:
                    raise ValueError(f"job {self.job[0]} is still running")
                self.start(req)
            elif op == "kill":
                if self.job is not None and self.job[0] == req_id:
                    self.kill_sent = True
                    kill_below(self.job[1], include_root=True)
            elif op == "ping":
                self.send({"event": "pong", "id": req_id, "busy": self.job is not None})
            else:
                raise ValueError(f"unknown op {op!r}")
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            self.send({"event": "error", "id": req_id, "message": f"bad request: {e}"})

    def start(self, req):
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the child would write the worker's buffered output again
        try:
            log = JobLog(req["log_path"], req["log_head"], req["log_tail"])
        except OSError as e:
            raise ValueError(f"cannot open the log {req['log_path']!r}: {e}") from None
        try:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
        except OSError as e:
            log.close()
            raise ValueError(f"no pipe for the job's output: {e}") from None
        worker = os.getpid()
        try:
            pid = os.fork()
        except OSError as e:
            for fd in (out_r, out_w):
                os.close(fd)
            log.close()
            raise ValueError(f"cannot fork the job's child: {e}") from None
        if pid == 0:
            self.sel.close()
            run_child(self.entry, self.argv0, req, worker, out_w)
        os.close(out_w)
        os.set_blocking(out_r, False)
        self.output = (out_r, log)
        self.sel.register(out_r, selectors.EVENT_READ, "output")
        self.job = (req["id"], pid)
        self.kill_sent = False
        self.send({"event": "started", "id": req["id"], "pid": pid})

    def read_output(self, reads):
        """Moves up to `reads` chunks of the job's output into its log (None: all there is
        now). Never waits: leftovers holding the pipe open cannot hold up the worker."""
        if self.output is None:
            return
        fd, log = self.output
        if fd is None:
            return
        while reads is None or reads > 0:
            try:
                data = os.read(fd, LOG_CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                # End of output: every writer is gone.
                self.sel.unregister(fd)
                self.output = (None, log)
                os.close(fd)
                return
            log.add(data)
            if reads is not None:
                reads -= 1

    def close_output(self):
        """Takes the rest of the ended job's output and closes its log; returns the bytes the
        log left out."""
        if self.output is None:
            return 0
        if self.output[0] is not None:
            self.read_output(None)
        fd, log = self.output
        if fd is not None:
            self.sel.unregister(fd)
            os.close(fd)
        self.output = None
        return log.close()

    def reap(self):
        """Reaps every ended child; reports the job once its child has ended and whatever it
        left behind is gone."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.job is not None and pid == self.job[1]:
                job_id = self.job[0]
                strays = self.sweep(pid)
                self.job = None
                dropped = self.close_output()
                msg = {"event": "exited", "id": job_id, "strays": strays, "log_dropped": dropped}
                if os.WIFSIGNALED(status):
                    msg["signal"] = os.WTERMSIG(status)
                else:
                    msg["exit_code"] = os.waitstatus_to_exitcode(status)
                self.send(msg)

    def sweep(self, leader):
        """Kills the ended job's process group and every other process below the worker (as
        subreaper it inherits the job's orphans), and reaps them."""
        try:
            os.killpg(leader, signal.SIGKILL)
        except OSError:
            pass
        strays = kill_below(os.getpid(), include_root=False)
        reap_all()
        return strays

    def shutdown(self):
        if self.job is not None:
            kill_below(self.job[1], include_root=True)
        kill_below(os.getpid(), include_root=False)
        reap_all()
        self.close_output()


def main():
    parser = argparse.ArgumentParser(prog="grader-warm-worker")
    parser.add_argument("--entry-point", required=True)
    parser.add_argument("--argv0")
    parser.add_argument("--protocol", type=int, default=PROTOCOL)
    args = parser.parse_args()

    # The protocol gets descriptors of its own; fd 1 then goes to stderr, so that whatever the
    # tool prints while it is imported cannot corrupt the protocol.
    proto_in, proto_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    # Descriptors inherited from grader's parents (a jobserver, ...) are no business of jobs.
    for fd in map(int, os.listdir("/proc/self/fd")):
        if fd > 2 and fd not in (proto_in, proto_out):
            try:
                os.close(fd)
            except OSError:
                pass

    def hello(**fields):
        os.write(proto_out, json.dumps({"event": "hello", "v": PROTOCOL, **fields}).encode() + b"\n")

    if args.protocol != PROTOCOL:
        hello(ok=False, error=f"grader asked for protocol {args.protocol}; this worker speaks {PROTOCOL}")
        sys.exit(2)
    # The worker keeps the state every job is forked from: keep processes of the same user
    # (student code) from reading or tracing it.
    prctl(PR_SET_DUMPABLE, 0)
    subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1)
    try:
        entry, tool, tool_version = load_entry(args.entry_point)  # the expensive import, paid once
    except BaseException as e:
        traceback.print_exc()
        hello(ok=False, error=f"cannot load {args.entry_point!r}: {type(e).__name__}: {e}")
        sys.exit(3)
    # Keep what the import allocated out of the collector's reach: children then do not touch
    # (and so copy) those pages when they collect.
    gc.collect()
    gc.freeze()
    worker = Worker(entry, args.argv0 or args.entry_point, proto_in, proto_out)
    hello(
        ok=True,
        pid=os.getpid(),
        tool=tool,
        tool_version=tool_version,
        python=platform.python_version(),
        subreaper=subreaper,
    )
    worker.serve()


if __name__ == "__main__":
    main()
