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

Kernels started ahead of need (--prestart-kernels): as soon as a job has started, the worker
forks the next job's child, which starts that job's kernel zygote: a fresh python of the
kernelspec's interpreter (this python) that imported what `python -m ipykernel_launcher`
imports, ipykernel.kernelapp and the modules a starting kernel imports after it, and nothing
else, without capabilities, in a session of its own. Until it has made itself non-dumpable its
parent traces it (no other process can then trace it); the running job can neither trace it nor
the waiting child, and what it can do with signals (stop, kill) is undone after its sweep or
ends in the next job's kernels being launched as in a plain run. The next job's child holds the
only end of the zygote's control socket and the zygote dies with that job (sweep, PDEATHSIG).
In the job's tool run a kernel provisioner (PrestartProvisioner, registered in-process as the
default provisioner) asks the zygote to fork one fresh kernel per notebook with the very argv
(after `-m ipykernel_launcher`), environment, working directory and stdout/stderr the tool's
own LocalProvisioner would give it; the kernel becomes the tool process's child, as its own
kernel is. Whatever it cannot match (another kernelspec, other start-up variables, extra Popen
arguments, a zygote that is gone or does not answer) is launched by the LocalProvisioner as in
a plain run. A kernel is never reused. Before the first job the worker also pays the tool's
first-kernel costs that are the same for every job (warm_up_kernel_machinery).

--phase-timings: the job's child writes one line `grader-warm-phases: {json}` to its log
when it ends: milliseconds of the tool's steps (each notebook's conversion, kernel start and
readiness, every cell, kernel shutdown), measured from the child's start.
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
import socket
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
PR_SET_NAME = 15
# The names (/proc/PID/comm) of a waiting next-job child and of a kernel zygote, which are
# all an idle worker has below it.
WAITING_NAME = b"grader-next-job"
ZYGOTE_NAME = b"grader-zygote"
PR_CAPBSET_DROP = 24
PTRACE_TRACEME = 0
PTRACE_CONT = 7
PTRACE_DETACH = 17
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAPABILITY_VERSION_3 = 0x20080522  # capset(2): two 32-bit words per set
CAPABILITY_SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
MAX_FD = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536
ZYGOTE_FD = 3  # the job child's end of its kernel zygote's control socket
ASK_TIMEOUT = 30.0  # seconds a kernel request waits for the zygote (it may still be importing)
PROVISIONER_NAME = "grader-prestarted-provisioner"
# Variables an interpreter reads when it starts: a zygote serves only kernels whose
# environment has the same values (others are launched as in a plain run).
STARTUP_VARS = ("HOME", "LANG", "LC_ALL", "LC_CTYPE")
# Prefixes of variables read by the interpreter or by what the zygote imports (debugpy's
# pydevd) when they are imported.
STARTUP_PREFIXES = ("PYTHON", "PYDEVD", "DEBUGPY")


def startup_var(name):
    """Whether a kernel's environment must agree with the zygote's on `name`."""
    return name.startswith(STARTUP_PREFIXES) or name in STARTUP_VARS


def libc():
    import ctypes

    lib = ctypes.CDLL(None, use_errno=True)
    # Every argument as a full unsigned long, as the kernel reads them.
    lib.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
    lib.prctl.restype = ctypes.c_int
    return lib


def set_name(name):
    """Sets this process's name (/proc/PID/comm), best effort."""
    import ctypes

    try:
        libc().prctl(PR_SET_NAME, ctypes.cast(ctypes.c_char_p(name), ctypes.c_void_p).value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


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


def kill_below(root, include_root, spare=None):
    """Freezes the tree under `root` (a stopped process cannot fork), then SIGKILLs it, except
    the process `spare` and what is below it (the next job's waiting child, forked by the worker
    before this job ended: nothing of this job can be below it). Returns how many processes
    were signalled besides `root`."""
    if include_root:
        send_signal(root, signal.SIGSTOP)
    frozen = set()
    for _ in range(16):
        new = descendants(root) - frozen
        if spare is not None:
            new -= {spare} | descendants(spare)
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


def reap_all(spare=None):
    """Reaps children until none is left but `spare` (they were all killed), for at most
    SWEEP_WAIT. Returns False when `spare` itself was reaped (it had died)."""
    alive = True
    deadline = time.monotonic() + SWEEP_WAIT
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid != 0 and pid == spare:
            alive, spare = False, None
        elif pid == 0:
            if spare is not None and descendants(os.getpid()) <= {spare} | descendants(spare):
                break
            time.sleep(0.01)
    return alive


# --- kernels started ahead of need ------------------------------------------------------------

# What a kernel zygote runs (`python -c`, control socket on fd 3): the imports of
# `python -m ipykernel_launcher`, then one forked kernel per request. A kernel child returns
# from serve() and runs ipykernel_launcher as `-m` would, in the zygote's fresh interpreter.
ZYGOTE = r"""
import ctypes, os, sys
# Non-dumpable before anything else (no process of the same user can trace it or read its
# memory); while it was not, its parent was its tracer, which lets go of it at this stop.
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
if sys.argv[1:] == ["traced"]:
    os.kill(os.getpid(), 19)
def serve():
    import json, socket
    prctl = ctypes.CDLL(None).prctl
    with open("/proc/self/comm", "rb") as f:
        comm = f.read().strip()
    prctl(15, ctypes.c_char_p(b"grader-zygote"), 0, 0, 0)
    ctl = socket.socket(fileno=3)
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(ctl, 1 << 20, 3)
        except OSError:
            os._exit(0)
        if not data:
            os._exit(0)
        try:
            req = json.loads(data)
            ident = req["id"]
        except (ValueError, KeyError, TypeError):
            for fd in fds:
                os.close(fd)
            continue
        # The kernel is forked by a short-lived intermediate process: once that has exited
        # (waited for below) the kernel is the child of the tool's process, its subreaper
        # then, as the kernel of a plain run is.
        r, w = os.pipe()
        try:
            middle = os.fork()
        except OSError as e:
            middle = None
            answer = {"id": ident, "error": str(e)}
        if middle == 0:
            try:
                pid = os.fork()
            except OSError:
                os._exit(71)
            if pid:
                os.write(w, str(pid).encode())
                os._exit(0)
            try:
                ctl.close()
                os.close(r)
                os.close(w)
                prctl(15, ctypes.c_char_p(comm), 0, 0, 0)
                prctl(4, 1, 0, 0, 0)  # dumpable, as a kernel that was executed is
                os.setsid()
                for target, fd in enumerate(fds):
                    os.dup2(fd, target)
                os.closerange(3, os.sysconf("SC_OPEN_MAX"))
                os.chdir(req["cwd"])
                os.environ.clear()
                os.environ.update(req["env"])
                os.environ.update(imported_env)
                # What ipykernel read from the environment when the zygote imported it.
                from ipykernel.kernelapp import IPKernelApp
                static = getattr(IPKernelApp, "_static_immutable_initial_values", {})
                for trait, var in (("parent_handle", "JPY_PARENT_PID"), ("interrupt", "JPY_INTERRUPT_EVENT")):
                    value = int(os.environ.get(var) or 0)
                    IPKernelApp.class_traits()[trait].default_value = value
                    if trait in static:
                        static[trait] = value
                sys.argv = ["-m"] + req["argv"]
                sys.orig_argv = [sys.executable, "-m", "ipykernel_launcher"] + req["argv"]
                sys.path[0] = os.getcwd()
            except BaseException:
                os._exit(70)
            return
        os.close(w)
        for fd in fds:
            os.close(fd)
        if middle:
            pid = os.read(r, 64)
            os.waitpid(middle, 0)
            answer = {"id": ident, "pid": int(pid)} if pid else {"id": ident, "error": "no kernel was forked"}
        os.close(r)
        ctl.send(json.dumps(answer).encode())
import ipykernel.kernelapp
# What a starting kernel imports after ipykernel.kernelapp (`python -X importtime -m
# ipykernel_launcher` with an `ipc` connection file: over TCP it also imports psutil), in
# that order: imported once here instead of in every kernel. What is
# not installed fails here as it fails there. What they set in the environment (debugpy sets
# PYDEVD_USE_FRAME_EVAL when unset) is set again in each kernel's environment.
environ_before = dict(os.environ)
for name in ("argcomplete", "pdb", "IPython.core.debugger", "tornado.platform.asyncio",
             "faulthandler", "ipykernel.debugger", "IPython.core.oinspect", "sqlite3",
             "IPython.core.completerlib"):
    try:
        __import__(name)
    except Exception:
        pass
del name
imported_env = {k: v for k, v in os.environ.items() if environ_before.get(k) != v}
del environ_before
# A stall of ipykernel's own (7.x): at exit, the IOPub thread's atexit handler stops it while
# the control thread may still be flushing stdout after its shutdown reply; that flush then
# waits out its 10 s timeout, and the kernel ends only when its manager terminates it (about
# one kernel in forty, in a plain run too). An atexit handler registered when the kernel
# starts runs before those (atexit is last in, first out) and stops the control thread first,
# so its flush gets through. Only the order of the kernel's exit changes, never what it ran
# or sent before it.
def _control_first(start):
    def start_stopping_control_first(app):
        def stop_control():
            control = getattr(app, "control_thread", None)
            if control is not None and control.is_alive():
                control.stop()
                control.join(5)
        __import__("atexit").register(stop_control)
        return start(app)
    return start_stopping_control_first
ipykernel.kernelapp.IPKernelApp.start = _control_first(ipykernel.kernelapp.IPKernelApp.start)
del _control_first
# What the zygote holds now (the imports above) lives as long as any kernel forked from it:
# moved out of the collector's reach, so that no collection in a kernel walks it, which would
# write to (copy) every page it shares with the zygote. The cold kernel has not imported `gc`:
# neither does a forked one, as far as sys.modules shows.
if "gc" in sys.modules:
    sys.modules["gc"].freeze()
else:
    __import__("gc").freeze()
    del sys.modules["gc"]
serve()
del serve, imported_env
import runpy
runpy._run_module_as_main("ipykernel_launcher")
"""


def start_zygote(worker):
    """Forks and execs a kernel zygote (see ZYGOTE) with the worker's environment; returns its
    pid and the worker's end of its control socket, or None when it cannot start.

    A freshly executed program is dumpable until its first line makes it not: another job of
    the same user could trace it in that moment and, through it, the next job's kernels. So the
    zygote is traced by this process (the only tracer a process can have) from its exec until
    it has made itself non-dumpable and stopped; then it is let go. Where tracing is refused,
    no zygote starts (the tool then launches its kernels itself)."""
    try:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        told_r, told_w = os.pipe2(os.O_CLOEXEC)
    except OSError:
        return None
    try:
        pid = os.fork()
    except OSError:
        for end in (ours, theirs):
            end.close()
        for fd in (told_r, told_w):
            os.close(fd)
        return None
    if pid == 0:
        try:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != worker:
                os._exit(1)
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.dup2(theirs.fileno(), ZYGOTE_FD)
            drop_privileges()
            traced = ptrace(PTRACE_TRACEME, 0, 0)
            os.write(told_w, b"1" if traced else b"0")
            if not traced:
                os._exit(1)
            os.closerange(ZYGOTE_FD + 1, MAX_FD)
            os.execve(sys.executable, [sys.executable, "-c", ZYGOTE, "traced"], dict(os.environ))
        except BaseException:
            pass
        os._exit(127)
    theirs.close()
    os.close(told_w)
    told = os.read(told_r, 1)
    os.close(told_r)
    if told != b"1" or not let_go_after_exec(pid):
        if told == b"0":
            print("grader warm worker: tracing is refused; no kernels are started ahead", file=sys.stderr)
        send_signal(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        ours.close()
        return None
    return pid, ours


def ptrace(request, pid, data):
    """ptrace(2) with no address argument; True when it succeeded."""
    import ctypes

    lib = libc()
    lib.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    lib.ptrace.restype = ctypes.c_long
    return lib.ptrace(request, pid, None, ctypes.c_void_p(data)) == 0


def let_go_after_exec(pid):
    """Follows the traced child `pid` through its exec (a SIGTRAP stop) to the SIGSTOP it sends
    itself once non-dumpable, and detaches there (the stop is dropped). Other signals are
    passed on. False when the child ended or could not be let go."""
    execed = False
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return False
        if not os.WIFSTOPPED(status):
            return False
        sig = os.WSTOPSIG(status)
        if sig == signal.SIGTRAP and not execed:
            execed = True
            ok = ptrace(PTRACE_CONT, pid, 0)
        elif sig == signal.SIGSTOP and execed:
            return ptrace(PTRACE_DETACH, pid, 0)
        else:
            ok = ptrace(PTRACE_CONT, pid, sig)
        if not ok:
            return False


def install_prestart_provisioner(zygote_env):
    """Makes the tool's kernels come from the zygote on ZYGOTE_FD: registers
    PrestartProvisioner in-process and makes it the default provisioner."""
    import asyncio
    import json as jsonmod
    import pathlib
    import select
    import subprocess

    from jupyter_client.provisioning.factory import KernelProvisionerFactory
    from jupyter_client.provisioning.local_provisioner import LocalProvisioner

    ctl = socket.socket(fileno=ZYGOTE_FD)

    asked = iter(range(1, 1 << 62))

    def ask(msg, fds=()):
        """One request to the zygote and its answer; None when the zygote is gone or has not
        answered within ASK_TIMEOUT (stopped by someone: the kernel is then launched as in a
        plain run)."""
        ident = next(asked)
        try:
            socket.send_fds(ctl, [jsonmod.dumps({**msg, "id": ident}).encode()], list(fds))
            deadline = time.monotonic() + ASK_TIMEOUT
            while select.select([ctl], [], [], max(0.0, deadline - time.monotonic()))[0]:
                data = ctl.recv(1 << 16)
                if not data:
                    return None
                answer = jsonmod.loads(data)
                if isinstance(answer, dict) and answer.get("id") == ident:
                    return answer
            return None
        except (OSError, ValueError):
            return None

    class ForkedKernel:
        """What LocalProvisioner keeps of its kernel's Popen, for a kernel the zygote forked
        (a child of this process, like a Popen's)."""

        def __init__(self, pid, stdin):
            self.pid, self.stdin = pid, stdin
            self.stdout = self.stderr = None
            self.returncode = None
            self.pidfd = os.pidfd_open(pid)

        def ended(self, timeout):
            return bool(select.select([self.pidfd], [], [], timeout)[0])

        def collect(self):
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, 0
            if pid == 0:
                return  # exiting, not yet a zombie
            self.returncode = os.waitstatus_to_exitcode(status)
            os.close(self.pidfd)
            self.pidfd = None

        def poll(self):
            if self.returncode is None and self.ended(0):
                self.collect()
            return self.returncode

        def wait(self, timeout=None):
            while self.returncode is None:
                if not self.ended(timeout):
                    raise subprocess.TimeoutExpired([str(self.pid)], timeout)
                self.collect()
            return self.returncode

        def send_signal(self, sig):
            if self.returncode is None:
                os.kill(self.pid, sig)

        def terminate(self):
            self.send_signal(signal.SIGTERM)

        def kill(self):
            self.send_signal(signal.SIGKILL)

    class PrestartProvisioner(LocalProvisioner):
        """LocalProvisioner whose python kernels are forked by a zygote that started before
        the notebook needed it, with the launch arguments the LocalProvisioner would use."""

        shutting_down = False

        def zygote_can_launch(self, cmd, kwargs):
            env = kwargs.get("env")
            return (
                len(cmd) >= 3
                and cmd[0] == sys.executable
                and cmd[1:3] == ["-m", "ipykernel_launcher"]
                and isinstance(env, dict)
                and all(kwargs.get(k) is None for k in ("stdin", "stdout", "stderr"))
                and not kwargs.get("independent")
                and not (set(kwargs) - {"env", "cwd", "kernel_id", "extra_arguments"})
                and {k: v for k, v in env.items() if startup_var(k)}
                == {k: v for k, v in zygote_env.items() if startup_var(k)}
            )

        async def launch_kernel(self, cmd, **kwargs):
            cmd = [os.path.expanduser(s) for s in cmd]
            if not self.zygote_can_launch(cmd, kwargs):
                return await super().launch_kernel(cmd, **kwargs)
            env = dict(kwargs["env"])
            env["JPY_PARENT_PID"] = str(os.getpid())  # as launch_kernel sets it
            cwd = kwargs.get("cwd")
            cwd = os.fspath(cwd) if cwd is not None else os.getcwd()
            stdin_r, stdin_w = os.pipe()  # launch_kernel always gives the kernel a pipe
            # Only while the zygote forks: its kernel becomes our child, not the worker's.
            prctl(PR_SET_CHILD_SUBREAPER, 1)
            try:
                answer = ask({"argv": cmd[3:], "env": env, "cwd": cwd}, (stdin_r, 1, 2))
            finally:
                prctl(PR_SET_CHILD_SUBREAPER, 0)
                os.close(stdin_r)
            if not answer or "pid" not in answer:
                os.close(stdin_w)
                return await super().launch_kernel(cmd, **kwargs)
            pid = answer["pid"]
            self.process = ForkedKernel(pid, os.fdopen(stdin_w, "wb"))
            self.pid = self.pgid = pid  # the kernel leads its own session, as with Popen
            self.cwd = kwargs.get("cwd", pathlib.Path.cwd())
            return self.connection_info

        def get_shutdown_wait_time(self, recommended=5.0):
            # A kernel that has not ended 1 s after its shutdown request (the odd one hangs
            # until the manager's SIGTERM) is terminated then, not after 2.5 s.
            return min(recommended, 2.0)

        async def shutdown_requested(self, restart=False):
            self.shutting_down = True
            await super().shutdown_requested(restart=restart)

        async def poll(self):
            # After a shutdown request the manager polls every 0.1 s; notice the exit at once.
            process = self.process
            if self.shutting_down and isinstance(process, ForkedKernel) and process.pidfd is not None:
                loop = asyncio.get_running_loop()
                ended = loop.create_future()
                loop.add_reader(process.pidfd, lambda: ended.done() or ended.set_result(None))
                try:
                    await asyncio.wait_for(ended, 1.0)
                except asyncio.TimeoutError:
                    pass
                finally:
                    loop.remove_reader(process.pidfd)
            return await super().poll()

    class Registered:
        """The entry point jupyter_client would find for PrestartProvisioner."""

        name = PROVISIONER_NAME
        value = "grader_warm_worker:PrestartProvisioner"
        group = KernelProvisionerFactory.GROUP_NAME

        def load(self):
            return PrestartProvisioner

    factory = KernelProvisionerFactory.instance()
    factory.provisioners[PROVISIONER_NAME] = Registered()
    factory.default_provisioner_name = PROVISIONER_NAME
    return PrestartProvisioner


def install_quick_ready():
    """Returns the tool arguments that make its kernel clients skip the 0.2 s of IOPub
    silence jupyter_client waits for once a kernel answered (messages of that time belong
    to no cell: nbclient ignores them by their parent)."""
    import types

    from jupyter_client.asynchronous import AsyncKernelClient

    class QuickReadyClient(AsyncKernelClient):
        ready = False

        def _handle_kernel_info_reply(self, msg):
            # From here on wait_for_ready only flushes IOPub: take what is there, no waiting.
            self.ready = True
            return super()._handle_kernel_info_reply(msg)

        async def wait_for_ready(self, timeout=None):
            channel = self.iopub_channel
            get_msg = channel.get_msg

            async def flush_without_waiting(timeout=None):
                return await get_msg(timeout=0 if self.ready else timeout)

            channel.get_msg = flush_without_waiting
            try:
                return await super().wait_for_ready(timeout)
            finally:
                del channel.get_msg

    module = types.ModuleType("grader_warm_kernels")
    module.QuickReadyClient = QuickReadyClient
    sys.modules[module.__name__] = module
    return ["--AsyncKernelManager.client_class=grader_warm_kernels.QuickReadyClient"]


class Phases:
    """Opt-in timings of a job's tool run (--phase-timings): wraps the tool's steps and
    writes one line to the job's log when the child ends."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.marks = []

    def ms(self):
        return round((time.monotonic() - self.t0) * 1000, 1)

    def wrap(self, cls, name, label):
        original = getattr(cls, name)

        def timed(obj, *args, **kwargs):
            start = self.ms()
            try:
                return original(obj, *args, **kwargs)
            finally:
                self.marks.append((label, start, self.ms()))

        setattr(cls, name, timed)

    def wrap_async(self, cls, name, label):
        original = getattr(cls, name)

        async def timed(obj, *args, **kwargs):
            start = self.ms()
            try:
                return await original(obj, *args, **kwargs)
            finally:
                self.marks.append((label, start, self.ms()))

        setattr(cls, name, timed)

    def install(self, provisioner=None):
        import nbclient.client as nbc

        for name, label in (
            ("start_new_kernel", "kernel_start"),
            ("start_new_kernel_client", "kernel_ready"),
            ("execute_cell", "cell"),
            ("_cleanup_kernel", "kernel_shutdown"),
        ):
            self.wrap(nbc.NotebookClient, name, label)
        # Inside kernel_start: the provisioner's preparation and launch.
        from jupyter_client.provisioning.local_provisioner import LocalProvisioner

        self.wrap_async(LocalProvisioner, "pre_launch", "kernel_pre_launch")
        self.wrap_async(provisioner or LocalProvisioner, "launch_kernel", "kernel_launch")
        try:
            from grader_service.convert.converters.base import BaseConverter

            self.wrap(BaseConverter, "convert_single_notebook", "notebook")
        except ImportError:
            pass

    def report(self):
        totals = {}
        for label, start, end in self.marks:
            totals[label] = round(totals.get(label, 0) + end - start, 1)
        line = {"total": self.ms(), "sums": totals, "spans": self.marks}
        print("grader-warm-phases: " + json.dumps(line), file=sys.stderr)


# --- a job's child ----------------------------------------------------------------------------


def exit_code(value):
    """The process exit code of `sys.exit(value)`."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def run_child(entry, argv0, req, worker, output, zygote=None, zygote_env=None, phases=False):
    """Runs one job in this forked child of `worker` (its pid), its stdout and stderr going to
    the pipe `output`; never returns. `zygote`: the control socket (fd) of the job's kernel
    zygote, whose kernels the tool then uses; `phases`: log the tool's phase timings."""
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
        # Only stdin, stdout and stderr (and the zygote's socket, which no program the tool
        # executes inherits): nothing the worker or an import had open.
        if zygote is not None:
            if zygote != ZYGOTE_FD:
                os.dup2(zygote, ZYGOTE_FD)
            os.set_inheritable(ZYGOTE_FD, False)
            os.closerange(ZYGOTE_FD + 1, MAX_FD)
        else:
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
        provisioner = None
        if zygote is not None:
            try:
                provisioner = install_prestart_provisioner(zygote_env)
                sys.argv += install_quick_ready()
            except Exception as e:  # the tool then starts its kernels itself
                print(f"grader warm worker: kernels started ahead are off: {e!r}", file=sys.stderr)
        timings = None
        if phases:
            timings = Phases()
            timings.install(provisioner)
            atexit.register(timings.report)
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


def waiting_child(entry, argv0, worker, req_r, output, prestart, zygote_env, phases, comm):
    """The next job's child, forked ahead of its request: with kernels started ahead, it
    starts the job's kernel zygote (its own child), then waits for the request on `req_r` and
    runs the job (run_child) under the worker's name `comm`. Never returns; exits quietly
    when the worker drops it."""
    zygote = None
    try:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != worker:
            os._exit(1)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        if prestart:
            zygote = start_zygote(os.getpid())
        data = b""
        while True:
            chunk = os.read(req_r, 1 << 16)
            if not chunk:
                break
            data += chunk
        os.close(req_r)
        if not data:
            os._exit(0)
        req = json.loads(data)
        set_name(comm)
    except BaseException:
        os._exit(1)
    run_child(
        entry,
        argv0,
        req,
        worker,
        output,
        zygote=zygote[1].fileno() if zygote else None,
        zygote_env=zygote_env,
        phases=phases,
    )


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
    def __init__(self, entry, argv0, proto_in, proto_out, prestart=False, phases=False):
        self.entry, self.argv0 = entry, argv0
        self.prestart, self.phases = prestart, phases
        self.next = None  # (pid, request pipe, output pipe) of the next job's waiting child
        self.zygote_env = dict(os.environ)
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

    def prepare_next(self):
        """Forks the next job's child ahead of its request: as soon as the previous job has
        started, so that the kernel zygote it starts is ready when the next job needs it. The
        running job cannot trace either (non-dumpable; the zygote is traced by the child until
        it is); what it can do to them with signals is undone or replaced after its sweep (see
        reap)."""
        if self.next is not None:
            return
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        try:
            req_r, req_w = os.pipe2(os.O_CLOEXEC)
        except OSError:
            return
        try:
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
        except OSError:
            os.close(req_r)
            os.close(req_w)
            return
        worker = os.getpid()
        # The child is named at fork (the name is inherited), so that nobody looking at the
        # worker's children right after the fork mistakes it for a job's leftover.
        with open("/proc/self/comm", "rb") as f:
            own_name = f.read().strip()
        set_name(WAITING_NAME)
        try:
            pid = os.fork()
        except OSError:
            set_name(own_name)
            for fd in (req_r, req_w, out_r, out_w):
                os.close(fd)
            return
        if pid != 0:
            set_name(own_name)
        if pid == 0:
            self.sel.close()
            os.close(req_w)
            os.close(out_r)
            waiting_child(
                self.entry,
                self.argv0,
                worker,
                req_r,
                out_w,
                self.prestart,
                self.zygote_env,
                self.phases,
                own_name,
            )
        os.close(req_r)
        os.close(out_w)
        self.next = (pid, req_w, out_r)

    def drop_next(self):
        """Closes the waiting child's pipes (it exits, or is gone already)."""
        if self.next is not None:
            _, req_w, out_r = self.next
            self.next = None
            for fd in (req_w, out_r):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def serve(self):
        self.prepare_next()
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
        self.prepare_next()
        if self.next is None:
            log.close()
            raise ValueError("cannot fork the job's child")
        pid, req_w, out_r = self.next
        self.next = None
        try:
            data = json.dumps(req).encode()
            while data:
                data = data[os.write(req_w, data) :]
        except OSError as e:
            os.close(req_w)
            os.close(out_r)
            log.close()
            send_signal(pid, signal.SIGKILL)
            raise ValueError(f"the job's child did not take the job: {e}") from None
        os.close(req_w)
        os.set_blocking(out_r, False)
        self.output = (out_r, log)
        self.sel.register(out_r, selectors.EVENT_READ, "output")
        self.job = (req["id"], pid)
        self.kill_sent = False
        self.send({"event": "started", "id": req["id"], "pid": pid})
        self.prepare_next()

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
            if self.next is not None and pid == self.next[0]:
                self.drop_next()  # the waiting child died; another is forked when needed
            elif self.job is not None and pid == self.job[1]:
                job_id = self.job[0]
                strays = self.sweep(pid)
                self.job = None
                self.resume_next()
                dropped = self.close_output()
                msg = {"event": "exited", "id": job_id, "strays": strays, "log_dropped": dropped}
                if os.WIFSIGNALED(status):
                    msg["signal"] = os.WTERMSIG(status)
                else:
                    msg["exit_code"] = os.waitstatus_to_exitcode(status)
                self.send(msg)
                self.prepare_next()

    def sweep(self, leader):
        """Kills the ended job's process group and every other process below the worker (as
        subreaper it inherits the job's orphans) but the next job's waiting child, and reaps
        them."""
        try:
            os.killpg(leader, signal.SIGKILL)
        except OSError:
            pass
        spare = self.next[0] if self.next is not None else None
        strays = kill_below(os.getpid(), include_root=False, spare=spare)
        if not reap_all(spare):
            self.drop_next()  # the job killed it; another is forked after this sweep
        return strays

    def resume_next(self):
        """Continues the next job's waiting child and its zygote, in case the job that just
        ended stopped them (a process of the same user may signal them; one it killed is
        reaped and replaced)."""
        if self.next is not None:
            for pid in {self.next[0]} | descendants(self.next[0]):
                send_signal(pid, signal.SIGCONT)

    def shutdown(self):
        self.drop_next()
        if self.job is not None:
            kill_below(self.job[1], include_root=True)
        kill_below(os.getpid(), include_root=False)
        reap_all()
        self.close_output()


def warm_up_kernel_machinery():
    """Pays once, in the worker, what the tool's first kernel start costs every job alike,
    leaving only caches that are a function of the installed files: jupyter_client's kernelspec
    lookup imports IPython (for its kernels directory), the kernel manager lists the machine's
    addresses once per process, and nbformat compiles a JSON-schema validator per notebook
    format version on first use. No threads, loops or descriptors are left behind. Best
    effort: whatever fails here is done by the job as before."""
    steps = (
        lambda: __import__("IPython.paths"),
        lambda: __import__("jupyter_client.localinterfaces", fromlist=["local_ips"]).local_ips(),
        warm_up_validators,
    )
    for step in steps:
        try:
            step()
        except Exception:
            pass


def warm_up_validators():
    """nbformat's compiled validators for every minor version of format 4, strict and relaxed."""
    from nbformat import v4
    from nbformat.validator import get_validator

    for minor in range(v4.nbformat_minor + 1):
        for relax in (False, True):
            get_validator(version=4, version_minor=minor, relax_add_props=relax)


def has_kernel_machinery():
    """True when jupyter_client's provisioners and ipykernel can be imported here."""
    from importlib.util import find_spec

    try:
        return all(find_spec(m) is not None for m in ("jupyter_client.provisioning", "ipykernel"))
    except (ImportError, ValueError):
        return False


def main():
    parser = argparse.ArgumentParser(prog="grader-warm-worker")
    parser.add_argument("--entry-point", required=True)
    parser.add_argument("--argv0")
    parser.add_argument("--protocol", type=int, default=PROTOCOL)
    parser.add_argument("--prestart-kernels", action="store_true")
    parser.add_argument("--phase-timings", action="store_true")
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
    if has_kernel_machinery():
        warm_up_kernel_machinery()
    # Keep what the import allocated out of the collector's reach: children then do not touch
    # (and so copy) those pages when they collect.
    gc.collect()
    gc.freeze()
    # Kernels can be started ahead only where the tool's environment has Jupyter's kernel
    # machinery (a tool that runs no notebooks has none: then every job runs as it would).
    worker = Worker(
        entry,
        args.argv0 or args.entry_point,
        proto_in,
        proto_out,
        prestart=args.prestart_kernels and has_kernel_machinery(),
        phases=args.phase_timings,
    )
    hello(
        ok=True,
        pid=os.getpid(),
        tool=tool,
        tool_version=tool_version,
        python=platform.python_version(),
        subreaper=subreaper,
        prestart_kernels=worker.prestart,
    )
    worker.serve()


if __name__ == "__main__":
    main()
