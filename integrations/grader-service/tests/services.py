"""PostgreSQL 15 and RabbitMQ started for the tests only, on loopback, and stopped after.

Each server gets its own data directory, a free port and a name of its own (PostgreSQL's
`cluster_name`, RabbitMQ's node name and Erlang port mapper port). Before a test talks to a
server it checks that the server answering on that port carries that name, so the suite never
writes into a server it did not start.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

PG_BIN = Path(os.environ.get("GS_E2E_PG_BIN", "/usr/lib/postgresql/15/bin"))
RABBIT_BIN = Path(os.environ.get("GS_E2E_RABBIT_BIN", "/usr/lib/rabbitmq/bin"))


#: Erlang's distribution listener bound to 127.0.0.1 (kernel `inet_dist_use_interface`).
LOOPBACK_DIST = "-kernel inet_dist_use_interface {127,0,0,1}"


class ServiceError(RuntimeError):
    """A test server could not be started, or is not the one this suite started."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def missing_components() -> list:
    """What is not installed (empty: both servers can start)."""
    missing = []
    if not (PG_BIN / "postgres").exists():
        missing.append(f"PostgreSQL 15 ({PG_BIN}/postgres; Debian package postgresql-15)")
    if not (RABBIT_BIN / "rabbitmq-server").exists():
        missing.append(f"RabbitMQ ({RABBIT_BIN}/rabbitmq-server; Debian package rabbitmq-server)")
    return missing


class Postgres:
    """A PostgreSQL 15 cluster in `base/pg`, run as the `postgres` user (PostgreSQL refuses
    root), listening on 127.0.0.1 and a socket in its own directory only."""

    def __init__(self, base: Path):
        self.base = base
        self.data = base / "pg" / "data"
        self.sockdir = base / "pg" / "run"
        self.port = free_port()
        self.name = f"grader_e2e_{secrets.token_hex(4)}"
        self.user = "grader"
        self.started = False

    def _as_pg(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = list(cmd)
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, check=check, capture_output=True, text=True)

    def start(self) -> None:
        if port_in_use(self.port):
            raise ServiceError(f"port {self.port} is taken; refusing to share it")
        (self.base / "pg").mkdir(parents=True)
        self.sockdir.mkdir()
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            os.chmod(self.base, 0o755)
            for p in (self.base / "pg", self.sockdir):
                os.chown(p, pg.pw_uid, pg.pw_gid)
        self._as_pg(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", self.user,
                    "--auth=trust", "-E", "UTF8", "--no-instructions")
        opts = (f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 "
                f"-c cluster_name={self.name} -c fsync=off -c max_connections=60")
        self._as_pg(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts,
                    "-l", str(self.base / "pg" / "server.log"), "-w", "start")
        self.started = True
        self.verify()
        self.psql("postgres", "CREATE DATABASE gs_reference")
        self.psql("postgres", "CREATE DATABASE gs_grader")

    def psql(self, db: str, sql: str) -> str:
        out = subprocess.run(
            [str(PG_BIN / "psql"), "-X", "-At", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", self.user, "-d", db, "-c", sql],
            check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def verify(self) -> None:
        """The server on our port is ours: it reports our cluster name and data directory."""
        name = self.psql("postgres", "SHOW cluster_name")
        data = self.psql("postgres", "SHOW data_directory")
        if name != self.name or Path(data) != self.data:
            raise ServiceError(f"the PostgreSQL on port {self.port} is not ours ({name}, {data})")

    def url(self, db: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        if self.started:
            self._as_pg(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w",
                        "stop", check=False)
            self.started = False


class Rabbit:
    """A RabbitMQ node with its own node name, ports (AMQP, distribution, Erlang port mapper)
    and directories; two virtual hosts, one per Grader Service deployment of the test."""

    def __init__(self, base: Path):
        self.base = base / "rabbit"
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.node = f"grader-e2e-{secrets.token_hex(4)}@localhost"
        self.proc: Optional[subprocess.Popen] = None
        self.env = dict(os.environ)
        self.env.update({
            "HOME": str(self.base / "home"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            # Erlang distribution on loopback only (the default is every interface), for every
            # Erlang node this starts: the broker, each rabbitmqctl's own node, and the
            # short-lived "epmd starter" node the broker spawns at boot. ERL_AFLAGS is read
            # by every `erl`, so it reaches the ones started without the scripts' arguments.
            "ERL_AFLAGS": LOOPBACK_DIST,
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.base / "rabbit.pid"),
            "RABBITMQ_LOGS": str(self.base / "log" / "rabbit.log"),
        })
        self.env.pop("RABBITMQ_SERVER_START_ARGS", None)
        self.epmd_started = False

    def ctl(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        out = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args],
                             env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise ServiceError(f"rabbitmqctl {' '.join(args)}: {out.stderr or out.stdout}")
        return out.stdout

    def ok(self, *args: str) -> bool:
        try:
            out = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args],
                                 env=self.env, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            return False
        return out.returncode == 0

    def start(self, first: bool = True) -> None:
        for port in (self.port, self.dist_port):
            if port_in_use(port):
                raise ServiceError(f"port {port} is taken; refusing to share it")
        if first:
            if port_in_use(self.epmd_port):
                raise ServiceError(f"port {self.epmd_port} is taken; refusing to share it")
            for d in ("home", "mnesia", "log"):
                (self.base / d).mkdir(parents=True, exist_ok=True)
            (self.base / "rabbitmq.conf").write_text(
                "loopback_users.guest = true\nlisteners.tcp.default = 127.0.0.1:%d\n"
                "management_agent.disable_metrics_collector = true\n" % self.port)
            (self.base / "enabled_plugins").write_text("[].\n")
            (self.base / "rabbitmq-env.conf").write_text("")
            self.epmd_started = True
        log = open(self.base / "log" / "startup.log", "ab")
        self.proc = subprocess.Popen([str(RABBIT_BIN / "rabbitmq-server")], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(f"rabbitmq-server exited with {self.proc.returncode}; "
                                   f"see {self.base / 'log'}")
            if self.ok("await_startup", "--timeout", "5") and port_in_use(self.port):
                break
            time.sleep(1)
        else:
            raise ServiceError("rabbitmq-server did not start within 90 s")
        self.verify()
        if first:
            for vhost in ("reference", "grader"):
                self.ctl("add_vhost", vhost)
                self.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")

    def verify(self) -> None:
        """The broker on our port is our node (asked through our own node name and cookie)."""
        status = self.ctl("status")
        if str(self.port) not in status:
            raise ServiceError(f"node {self.node} does not listen on {self.port}")

    def url(self, vhost: str) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{vhost}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.ctl("stop", check=False, timeout=60)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start(first=False)

    def shutdown(self) -> None:
        """Stop the node and the Erlang port mapper it started on its own port."""
        self.stop()
        if self.epmd_started:
            epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
            subprocess.run([epmd, "-kill"], env=self.env, capture_output=True, check=False)
            self.epmd_started = False


# -- which addresses the suite's processes listen on -------------------------------------------
def _address(hex_addr: str) -> str:
    """An address of /proc/net/tcp{,6} (hex, in host byte order per 32-bit word) as text."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def tcp_listeners() -> dict:
    """Every listening TCP socket of this machine: inode -> (address, port)."""
    listeners = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A: LISTEN
                continue
            addr, port = fields[1].rsplit(":", 1)
            listeners[int(fields[9])] = (_address(addr), int(port, 16))
    return listeners


def proc_stats():
    """(pid, command name, the fields of /proc/PID/stat after the name) of every process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) is in parentheses and may hold spaces.
        yield int(entry.name), stat[stat.index("(") + 1:stat.rindex(")")], stat.rsplit(")", 1)[1].split()


def _ppids() -> dict:
    """pid -> parent pid of every process."""
    out = {}
    for pid, _, fields in proc_stats():
        out[pid] = int(fields[1])
    return out


def process_tree(roots) -> set:
    """`roots` and all their descendants (processes alive now)."""
    children: dict = {}
    for pid, ppid in _ppids().items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = set(), [r for r in roots if r]
    while todo:
        pid = todo.pop()
        if pid in tree:
            continue
        tree.add(pid)
        todo.extend(children.get(pid, ()))
    return tree


def sockets_of(pids) -> dict:
    """The socket inodes the processes `pids` hold: inode -> pid."""
    owners = {}
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            fds = list(fd_dir.iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[int(target[8:-1])] = pid
    return owners


def listeners_of(pids) -> list:
    """(address, port, pid, command) of every TCP socket the processes `pids` listen on."""
    listening = tcp_listeners()
    out = []
    for inode, pid in sockets_of(pids).items():
        if inode in listening:
            address, port = listening[inode]
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                comm = "?"
            out.append((address, port, pid, comm))
    return out


def owner_of_port(port: int) -> Optional[int]:
    """The pid listening on TCP `port` (of the processes this user can see), if any."""
    inodes = {i for i, (_, p) in tcp_listeners().items() if p == port}
    for inode, pid in sockets_of(_ppids().keys()).items():
        if inode in inodes:
            return pid
    return None


def postmaster_pid(pg: "Postgres") -> Optional[int]:
    try:
        return int((pg.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
