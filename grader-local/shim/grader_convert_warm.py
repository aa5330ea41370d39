"""Warm fork server for a console-script grading tool (`grader-convert`).

Importing the converter costs seconds; this server pays it once and then forks a fresh child
of the pristine, post-import process for every grading run. Started by `grader`
(grader-local/src/warm.rs) as

    {venv python} grader_convert_warm.py --socket PATH [--entry-point grader-convert]

Protocol: one Unix-socket connection per run, newline-delimited JSON.
    request  {"argv": [...], "env": {...}, "cwd": "...", "log_path": "..."}
    replies  {"pid": N}  at once, then  {"exit_code": N} | {"signal": N}  when the run ends,
             or {"error": "..."} if the request is refused.
Closing the connection before the end kills the run's process tree.

The server is single-threaded (a selector loop; SIGCHLD wakes it) so that forking never
copies a lock held by another thread. It exits on SIGTERM, when its parent dies or when its
socket file disappears, killing the runs it started. Standard library only.
"""

import argparse
import atexit
import gc
import json
import os
import selectors
import signal
import socket
import sys
import threading
import traceback

MAX_REQUEST = 1 << 20  # bytes of one request line
TICK = 0.5  # seconds between checks of the parent and the socket file


def set_dumpable(flag):
    """prctl(PR_SET_DUMPABLE): a non-dumpable process cannot be ptraced or have its memory read
    by other processes of the same user (student code included). Best effort."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, int(flag), 0, 0, 0)  # 4 = PR_SET_DUMPABLE
    except (OSError, AttributeError):
        pass


def load_entry(name):
    """The callable behind console script `name` (what its generated wrapper imports)."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="console_scripts", name=name):
        return ep.load()
    sys.exit(f"grader_convert_warm: no console script {name!r} is installed in {sys.prefix}")


# --- process trees (the runs start Jupyter kernels in new sessions) ---------------------------


def _descendants(root):
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


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def kill_tree(root):
    """Freeze `root` and its descendants (a stopped process cannot fork), then SIGKILL them."""
    _signal(root, signal.SIGSTOP)
    frozen = set()
    for _ in range(16):
        new = _descendants(root) - frozen
        if not new:
            break
        for pid in new:
            _signal(pid, signal.SIGSTOP)
        frozen |= new
    try:
        os.killpg(root, signal.SIGKILL)
    except OSError:
        pass
    for pid in frozen | {root}:
        _signal(pid, signal.SIGKILL)


# --- the child: one grading run --------------------------------------------------------------


def _exit_code(value):
    """The process exit code of `sys.exit(value)`."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def run_child(entry, prog, req, close_server):
    """Runs one grading in this forked child; never returns."""
    code = 1
    try:
        # Undo the server's signal setup; the tool gets what a fresh interpreter has.
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        close_server()  # the server's sockets must not outlive it in a run
        set_dumpable(True)  # a run is as open to inspection as a normally started tool
        os.setsid()  # own session and process group, like the local backend's child
        log = os.open(req["log_path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        sys.argv = [prog] + req["argv"]
        try:
            code = _exit_code(entry())  # what the console-script wrapper does: sys.exit(main())
        except SystemExit as e:
            code = _exit_code(e.code)
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


def parse_request(line):
    req = json.loads(line)
    ok = (
        isinstance(req, dict)
        and isinstance(req.get("argv"), list)
        and all(isinstance(a, str) for a in req["argv"])
        and isinstance(req.get("env"), dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in req["env"].items())
        and isinstance(req.get("cwd"), str)
        and isinstance(req.get("log_path"), str)
    )
    if not ok:
        raise ValueError("request needs argv (strings), env (strings), cwd and log_path")
    return req


# --- the server -------------------------------------------------------------------------------


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.pid = None  # the run's pid once forked


class Server:
    def __init__(self, entry, prog, path):
        self.entry, self.prog, self.path = entry, prog, path
        self.sel = selectors.DefaultSelector()
        self.runs = {}  # pid -> Conn (conn.sock is None once the client is gone)
        self.stopping = False

        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.inode = os.stat(path).st_ino
        self.sel.register(self.listener, selectors.EVENT_READ, "listen")

        # SIGCHLD and SIGTERM only write to this pipe (and set a flag); the loop does the work.
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_term)
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")

    def _on_term(self, *_):
        self.stopping = True

    def _socket_is_ours(self):
        try:
            return os.stat(self.path).st_ino == self.inode
        except OSError:
            return False

    def serve(self, ppid):
        while not self.stopping:
            for key, _ in self.sel.select(TICK):
                if key.data == "listen":
                    self._accept()
                elif key.data == "wake":
                    try:
                        while os.read(self.wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                else:
                    self._readable(key.data)
            self._reap()
            if os.getppid() != ppid or not self._socket_is_ours():
                self.stopping = True
        self.shutdown()

    def _accept(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            self.sel.register(sock, selectors.EVENT_READ, Conn(sock))

    def _send(self, conn, msg):
        """Sends one reply line; False if the client is gone."""
        try:
            conn.sock.setblocking(True)
            conn.sock.settimeout(5)
            conn.sock.sendall(json.dumps(msg).encode() + b"\n")
            conn.sock.setblocking(False)
            return True
        except OSError:
            return False

    def _drop(self, conn):
        self.sel.unregister(conn.sock)
        conn.sock.close()
        conn.sock = None

    def _readable(self, conn):
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if conn.pid is not None:
            if not data:  # the client left before the run ended
                kill_tree(conn.pid)
                self._drop(conn)
            return  # anything else sent during a run is ignored
        if not data:
            self._drop(conn)
            return
        conn.buf += data
        if b"\n" not in conn.buf:
            if len(conn.buf) > MAX_REQUEST:
                self._send(conn, {"error": "request too large"})
                self._drop(conn)
            return
        try:
            req = parse_request(conn.buf.split(b"\n", 1)[0])
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            self._send(conn, {"error": f"bad request: {e}"})
            self._drop(conn)
            return
        self._fork(conn, req)

    def _fork(self, conn, req):
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the child would write the server's buffered output again
        pid = os.fork()
        if pid == 0:
            run_child(self.entry, self.prog, req, self._close_all)
        conn.pid = pid
        self.runs[pid] = conn
        if not self._send(conn, {"pid": pid}):
            kill_tree(pid)
            self._drop(conn)

    def _close_all(self):
        """In a run: closes every descriptor of the server (through its objects, so that none
        is closed twice)."""
        socks = [k.fileobj for k in self.sel.get_map().values() if isinstance(k.data, Conn)]
        self.sel.close()
        for sock in socks + [self.listener]:
            sock.close()
        os.close(self.wake_r)
        os.close(self.wake_w)

    def _reap(self):
        for pid, conn in list(self.runs.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, None
            if not done:
                continue
            del self.runs[pid]
            if conn.sock is None:
                continue
            if status is not None and os.WIFSIGNALED(status):
                self._send(conn, {"signal": os.WTERMSIG(status)})
            elif status is not None:
                self._send(conn, {"exit_code": os.WEXITSTATUS(status)})
            else:
                self._send(conn, {"error": "the run's exit status was lost"})
            self._drop(conn)

    def shutdown(self):
        for pid in list(self.runs):
            kill_tree(pid)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        if self._socket_is_ours():
            os.unlink(self.path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--socket", required=True, help="Unix socket path to listen on")
    parser.add_argument("--entry-point", default="grader-convert", help="console script to run")
    parser.add_argument("--argv0", help="sys.argv[0] of the runs (default: the entry point)")
    args = parser.parse_args()
    ppid = os.getppid()
    # The long-lived server keeps the pristine state every run is forked from: keep student
    # code (same user) from tampering with it.
    set_dumpable(False)

    entry = load_entry(args.entry_point)  # the expensive import, paid once
    # Move everything imported so far out of the collector's reach: children then do not
    # touch (and copy) these pages when they collect.
    gc.collect()
    gc.freeze()

    server = Server(entry, args.argv0 or args.entry_point, args.socket)
    print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
    server.serve(ppid)


if __name__ == "__main__":
    main()
