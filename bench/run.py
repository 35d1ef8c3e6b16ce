#!/usr/bin/env python3
"""Benchmark saslauth against Dovecot's auth service with the same passwd-file and load.

For every case a throwaway Dovecot 2.3 auth service and a ``saslauth serve`` daemon are
started on one generated passwd-file; ``authbench`` (a C load generator,
``/work/shared/tools/authbench.c``) then drives them in alternation -- dovecot, saslauth,
dovecot, saslauth, ... -- so that drifts of the machine hit both servers alike.  The table
shows medians over the rounds, every run's values, the reply counts (anything but OK is
an error here: every login is valid) and the ratios saslauth/dovecot.  Raw results go to
``bench/results/<timestamp>.json``.  See ``bench/README.md``.

Run from the repository root: ``python3 bench/run.py`` (``--smoke`` for a short CI run).
Exit status: 0 all runs clean, 1 some run saw FAIL/other replies or closed connections,
2 the benchmark could not run (compile error, a server did not start, ...).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "src"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench.paired import paired_line  # noqa: E402
from tests.fixtures.dovecot import DovecotAuth, start_dovecot_auth  # noqa: E402
from tests.fixtures.ports import group_members, public_dir  # noqa: E402
from tests.fixtures.saslauth import Saslauth, start_saslauth, write_config  # noqa: E402

BENCH: Final = REPO / "bench"
DEFAULT_AUTHBENCH_SRC: Final = REPO.parent / "shared" / "tools" / "authbench.c"
DEFAULT_AUTHBENCH_BIN: Final = BENCH / "authbench"
DEFAULT_RESULTS: Final = BENCH / "results"
SERVERS: Final = ("dovecot", "saslauth")
DOVEADM_DISTINCT: Final = 20  # distinct SHA512-CRYPT hashes made by doveadm, then reused
IDLE_SAMPLE_EVERY: Final = 100  # after the runs every 100th idle connection sends one AUTH
FD_MARGIN: Final = 256  # descriptors beyond the idle connections (authbench, logs, pipes)


@dataclass(frozen=True)
class Case:
    name: str
    scheme: str  # Dovecot scheme name, written as {SCHEME} in the passwd-file
    repeat: bool  # authbench cycles through one user only
    description: str
    idle: bool = False  # hold --idle-conns idle client connections open during the runs


CASES: Final[dict[str, Case]] = {
    c.name: c
    for c in (
        Case("plain", "PLAIN", False, "{PLAIN} passwords: protocol and process overhead"),
        Case("sha512", "SHA512-CRYPT", False, "{SHA512-CRYPT}: CPU-bound hashing, all users"),
        Case(
            "sha512-repeat",
            "SHA512-CRYPT",
            True,
            "{SHA512-CRYPT}, one user/password repeated (creds file of one line)",
        ),
        Case(
            "idle",
            "PLAIN",
            False,
            "{PLAIN} passwords, load as in plain while idle client connections stay open",
            idle=True,
        ),
    )
}
DEFAULT_CASES: Final = "plain,sha512,sha512-repeat,idle"


@dataclass
class Run:
    """One authbench run against one server."""

    server: str
    round: int
    ok: int
    fail: int
    other: int
    closed: int
    auth_per_s: float
    p50_us: float
    p99_us: float
    max_us: float
    wall_s: float
    raw: dict[str, Any] = field(default_factory=dict)
    # CPU seconds during the run (warm-up included), from /proc and getrusage
    cpu_server_s: float = 0.0  # the server under test, all its processes
    cpu_idle_server_s: float = 0.0  # the other server (should be ~0)
    cpu_authbench_s: float = 0.0
    cpu_foreign_s: float = 0.0  # everything else on the machine: skews the results

    @property
    def replies(self) -> int:
        return self.ok + self.fail + self.other

    @property
    def errors(self) -> int:
        """FAIL + other replies + closed connections, and 1 for a run without any reply."""
        return self.fail + self.other + self.closed + (0 if self.replies else 1)


@dataclass
class IdleCheck:
    """The idle connections of one server, checked after its runs."""

    opened: int  # connections that completed the handshake (up to DONE)
    open_s: float  # seconds it took to open them all
    still_open: int = 0  # silent and open after the runs
    closed: int = 0  # closed by the server meanwhile
    unexpected: int = 0  # sent something although nobody asked
    sampled: int = 0  # connections that sent one AUTH after the runs
    sample_ok: int = 0  # ... and got OK for it
    sample_failures: list[str] = field(default_factory=list)  # the other answers (a few)

    @property
    def errors(self) -> int:
        return self.closed + self.unexpected + (self.sampled - self.sample_ok)


@dataclass
class ProcKib:
    """One memory figure (VmRSS or Pss, KiB) per process of one server."""

    processes: dict[str, int]  # "role pid" -> KiB

    @property
    def total_kib(self) -> int:
        return sum(self.processes.values())


@dataclass
class CaseResult:
    case: str
    scheme: str
    description: str
    users: int
    cred_lines: int
    hashing: str
    runs: list[Run] = field(default_factory=list)
    # "saslauth" (master, fronts, verifier), "dovecot-auth" (auth, auth-worker), "dovecot-all"
    rss: dict[str, ProcKib] = field(default_factory=dict)  # VmRSS: shared pages in every process
    pss: dict[str, ProcKib] = field(default_factory=dict)  # Pss: shared pages divided among them
    idle: dict[str, IdleCheck] = field(default_factory=dict)  # idle case: per server
    dovecot_conf: list[str] = field(default_factory=list)  # deviations from Dovecot's defaults
    log_problems: dict[str, list[str]] = field(default_factory=dict)

    def of(self, server: str) -> list[Run]:
        return [r for r in self.runs if r.server == server]

    def errors_of(self, server: str) -> int:
        idle = self.idle.get(server)
        return sum(r.errors for r in self.of(server)) + (idle.errors if idle else 0)


class BenchError(Exception):
    """The benchmark cannot go on (reported, exit status 2)."""


# ---- authbench -----------------------------------------------------------------------


def find_authbench_src(given: Path | None) -> Path:
    candidates = (
        [given]
        if given is not None
        else [
            DEFAULT_AUTHBENCH_SRC,
            Path("/work/shared/tools/authbench.c"),
        ]
    )
    for path in candidates:
        if path is not None and path.is_file():
            return path.resolve()
    raise BenchError(
        "authbench.c not found (looked at "
        + ", ".join(str(p) for p in candidates if p is not None)
        + "); pass --authbench-src"
    )


def build_authbench(src: Path, binary: Path) -> bool:
    """Compile ``src`` into ``binary`` if missing or older; return True if it compiled."""
    if binary.exists() and binary.stat().st_mtime >= src.stat().st_mtime:
        return False
    cc = shutil.which("cc")
    if cc is None:
        raise BenchError("no C compiler: cc not found on PATH (apt-get install gcc)")
    binary.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".authbench-", dir=binary.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        done = subprocess.run(
            [cc, "-O2", "-o", str(tmp), str(src)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise BenchError(f"cc failed on {src}:\n{done.stderr}{done.stdout}")
        tmp.chmod(0o755)
        os.replace(tmp, binary)  # atomic: a concurrent run never sees half a binary
    finally:
        tmp.unlink(missing_ok=True)
    return True


def run_authbench(
    binary: Path, socket: str, creds: Path, args: argparse.Namespace, server: str, rnd: int
) -> Run:
    cmd = [
        str(binary), "-s", socket, "-f", str(creds), "-c", str(args.conns),
        "-d", str(args.depth), "-t", str(args.seconds), "-w", str(args.warmup), "-r",
    ]  # fmt: skip
    timeout = args.seconds + args.warmup + 60
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"authbench against {server} timed out after {timeout:.0f}s") from exc
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise BenchError(
            f"authbench against {server} exited {done.returncode}: {done.stderr.strip()}"
        )
    try:
        raw: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise BenchError(f"authbench printed no JSON: {done.stdout!r} {done.stderr!r}") from exc
    return Run(
        server=server,
        round=rnd,
        ok=int(raw["ok"]),
        fail=int(raw["fail"]),
        other=int(raw["other"]),
        closed=int(raw["closed"]),
        auth_per_s=float(raw["auth_per_s"]),
        p50_us=float(raw["p50_us"]),
        p99_us=float(raw["p99_us"]),
        max_us=float(raw["max_us"]),
        wall_s=round(wall, 3),
        raw=raw,
    )


# ---- passwd-file ---------------------------------------------------------------------


def password_for(index: int) -> str:
    """Deterministic, distinct password of user ``index`` (reproducible runs)."""
    return "pw-" + hashlib.sha256(f"saslauth-bench:{index}".encode()).hexdigest()[:16]


def _saslauth_generator() -> Callable[..., str] | None:
    try:
        from saslauth import schemes
    except ImportError:
        return None
    generate: Callable[..., str] | None = getattr(schemes, "generate", None)
    return generate if callable(generate) else None


def _doveadm_hash(scheme: str, password: str, rounds: int | None) -> str:
    cmd = ["doveadm", "pw", "-s", scheme, "-p", password]
    if rounds is not None:
        cmd += ["-r", str(rounds)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0 or not done.stdout.startswith("{"):
        raise BenchError(f"doveadm pw -s {scheme} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def make_hashes(
    scheme: str, users: int, rounds: int, hasher: str
) -> tuple[list[tuple[str, str]], str]:
    """(password, hashed) per user, and a note on how the hashes were made."""
    passwords = [password_for(i) for i in range(users)]
    if scheme == "PLAIN":
        return [(p, "{PLAIN}" + p) for p in passwords], "{PLAIN}pw written directly"
    if hasher in ("auto", "saslauth"):
        generate = _saslauth_generator()
        if generate is not None:
            try:
                out = []
                for p in passwords:
                    h = generate(scheme, p.encode(), rounds=rounds)
                    out.append((p, h if h.startswith("{") else f"{{{scheme}}}{h}"))
            except Exception as exc:
                if hasher == "saslauth":
                    raise BenchError(f"saslauth.schemes.generate failed: {exc!r}") from exc
            else:
                return out, (
                    f"{users} distinct hashes from saslauth.schemes.generate "
                    f"({scheme}, rounds={rounds})"
                )
        elif hasher == "saslauth":
            raise BenchError("saslauth.schemes.generate is not importable")
    distinct = min(DOVEADM_DISTINCT, users)
    made = [(passwords[i], _doveadm_hash(scheme, passwords[i], rounds)) for i in range(distinct)]
    return [made[i % distinct] for i in range(users)], (
        f"{distinct} distinct hashes from doveadm pw -s {scheme} -r {rounds}, reused "
        f"round-robin over {users} users (user i has password i mod {distinct})"
    )


def write_files(
    workdir: Path, case: Case, users: int, rounds: int, hasher: str
) -> tuple[Path, Path, int, str]:
    """Write the passwd-file and authbench creds; return (passwd, creds, cred_lines, note)."""
    pairs, note = make_hashes(case.scheme, users, rounds, hasher)
    names = [credentials(i)[0] for i in range(users)]
    passwd = workdir / "users.passwd"
    passwd.write_text("".join(f"{u}:{h}\n" for u, (_, h) in zip(names, pairs, strict=True)))
    passwd.chmod(0o600)
    creds = workdir / "creds.txt"
    rows = [f"{u}:{p}\n" for u, (p, _) in zip(names, pairs, strict=True)]
    if case.repeat:
        rows = rows[:1]
    creds.write_text("".join(rows))
    return passwd, creds, len(rows), note


# ---- CPU accounting --------------------------------------------------------------------

_CLK_TCK: Final = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """utime + stime of one process in seconds (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()  # fields[0] is the state (field 3)
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def machine_busy_s() -> float:
    """CPU seconds spent busy (not idle/iowait) on all cores since boot."""
    cols = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = cols
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


@dataclass(frozen=True)
class CpuSample:
    busy: float
    servers: dict[str, float]
    children: float
    me: float


def sample_cpu(pids: dict[str, Callable[[], list[int]]]) -> CpuSample:
    return CpuSample(
        busy=machine_busy_s(),
        servers={name: sum(proc_cpu_s(p) for p in get()) for name, get in pids.items()},
        children=children_cpu_s(),
        me=self_cpu_s(),
    )


# ---- process memory ------------------------------------------------------------------


def _status_kib(pid: int, path: str, key: str) -> int | None:
    """The ``key:`` line of ``/proc/PID/<path>`` in KiB (None if the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def vm_rss_kib(pid: int) -> int | None:
    return _status_kib(pid, "status", "VmRSS:")


def pss_kib(pid: int) -> int | None:
    """Proportional set size: private pages plus each shared page divided by its sharers."""
    return _status_kib(pid, "smaps_rollup", "Pss:")


def memory(processes: Sequence[tuple[str, int]]) -> tuple[ProcKib, ProcKib]:
    """(VmRSS, Pss) of ``(role, pid)`` processes, keyed "role pid"; gone ones are left out."""
    rss: dict[str, int] = {}
    pss: dict[str, int] = {}
    for role, pid in processes:
        r, p = vm_rss_kib(pid), pss_kib(pid)
        if r is not None and p is not None:
            rss[f"{role} {pid}"] = r
            pss[f"{role} {pid}"] = p
    return ProcKib(rss), ProcKib(pss)


def saslauth_processes(daemon: Saslauth) -> list[tuple[str, int]]:
    """The master, every front (there may be several) and the verifier, as (role, pid)."""
    children = [(role.rstrip("0123456789"), pid) for role, pid in daemon.children().items()]
    return [("master", daemon.proc.pid), *sorted(children)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def dovecot_processes(server: DovecotAuth) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(auth and auth-worker processes, every process of the instance) as (role, pid)."""
    auth: list[tuple[str, int]] = []
    everything: list[tuple[str, int]] = []
    for pid in group_members(server.pid):
        # process titles look like "dovecot-<instance_name>/auth [...]"
        title = _cmdline(pid).split(" ")[0].rsplit("/", 1)[-1] or "?"
        role = "master" if pid == server.pid else title
        everything.append((role, pid))
        if role in ("auth", "auth-worker"):
            auth.append((role, pid))
    return auth, everything


# ---- idle connections ----------------------------------------------------------------


class IdleConnections:
    """Client connections that completed the handshake and then stay silent.

    Plain non-blocking sockets and one selector, used only while opening and checking:
    during the runs the bench process does nothing for them.  Each connection sends its
    own ``CPID`` (Dovecot refuses a CPID that another open connection already gave);
    the numbers lie above any real pid, so they never meet authbench's (its pid + i).
    """

    CPID_BASE: Final = 1_000_000_000

    def __init__(self, address: str) -> None:
        self.address = address
        self.socks: list[socket.socket] = []

    def open(self, count: int, timeout: float) -> float:
        """Open ``count`` connections, each read up to ``DONE``; return the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        sel = selectors.DefaultSelector()
        pending: dict[socket.socket, bytes] = {}  # socket -> greeting bytes read so far
        try:
            for i in range(count):
                sock = self._connect(sel, pending, deadline)
                self.socks.append(sock)
                sock.send(b"VERSION\t1\t0\nCPID\t%d\n" % (self.CPID_BASE + i))
                pending[sock] = b""
                sel.register(sock, selectors.EVENT_READ)
                self._greetings(sel, pending, 0)
            while pending and time.monotonic() < deadline:
                self._greetings(sel, pending, deadline - time.monotonic())
        except OSError as exc:
            raise BenchError(
                f"idle connection {len(self.socks) + 1}/{count} to {self.address}: {exc}"
            ) from exc
        finally:
            sel.close()
        if pending:
            raise BenchError(
                f"only {count - len(pending)} of {count} idle connections to {self.address} "
                f"got the server's handshake up to DONE within {timeout:.0f}s"
            )
        return time.monotonic() - started

    def _connect(
        self, sel: selectors.BaseSelector, pending: dict[socket.socket, bytes], deadline: float
    ) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        while True:
            try:
                sock.connect(self.address)
                return sock
            except BlockingIOError:  # the listen queue is full: read greetings meanwhile
                if time.monotonic() >= deadline:
                    sock.close()
                    raise BenchError(
                        f"{self.address} accepts no more connections: {len(self.socks)} "
                        f"open, {len(pending)} of them still without a full handshake"
                    ) from None
                self._greetings(sel, pending, 0.01)
            except BaseException:
                sock.close()
                raise

    @staticmethod
    def _greetings(
        sel: selectors.BaseSelector, pending: dict[socket.socket, bytes], timeout: float
    ) -> None:
        for key, _ in sel.select(max(timeout, 0)):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            data = sock.recv(65536)
            if not data:
                raise ConnectionResetError("closed by the server during the handshake")
            got = pending[sock] + data
            if got.startswith(b"DONE\n") or b"\nDONE\n" in got:
                del pending[sock]
                sel.unregister(sock)
            else:
                pending[sock] = got

    def check(
        self, credentials: Callable[[int], tuple[str, str]], every: int, timeout: float
    ) -> IdleCheck:
        """Are they all still open and silent?  Then one AUTH on every ``every``-th."""
        result = IdleCheck(opened=len(self.socks), open_s=0.0)
        alive: list[tuple[int, socket.socket]] = []
        for i, sock in enumerate(self.socks):
            try:
                data = sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                result.still_open += 1
                alive.append((i, sock))
                continue
            except OSError:
                data = b""
            if data:
                result.unexpected += 1
            else:
                result.closed += 1
        sel = selectors.DefaultSelector()
        replies: dict[socket.socket, bytes] = {}
        try:
            for i, sock in alive[::every]:
                user, password = credentials(i)
                resp = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
                line = f"AUTH\t1\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\tresp={resp}\n"
                result.sampled += 1
                try:
                    sock.send(line.encode())
                except OSError as exc:
                    result.sample_failures.append(f"send: {exc}")
                    continue
                replies[sock] = b""
                sel.register(sock, selectors.EVENT_READ)
            deadline = time.monotonic() + timeout
            while sel.get_map() and time.monotonic() < deadline:
                for key, _ in sel.select(max(deadline - time.monotonic(), 0)):
                    conn = key.fileobj
                    assert isinstance(conn, socket.socket)
                    try:
                        data = conn.recv(4096)
                    except OSError as exc:
                        data, replies[conn] = b"", f"<{exc}>".encode()
                    replies[conn] += data or (b"" if replies[conn] else b"<closed>")
                    if b"\n" in replies[conn] or not data:
                        sel.unregister(conn)
        finally:
            sel.close()
        for got in replies.values():
            line = got.split(b"\n", 1)[0].decode(errors="replace")
            if line.startswith("OK\t1"):
                result.sample_ok += 1
            else:
                result.sample_failures.append(line or ("<no reply>" if not got else "<closed>"))
        return result

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks.clear()


def raise_fd_limit(needed: int) -> None:
    """Raise this process's RLIMIT_NOFILE (inherited by the servers) to at least ``needed``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))  # root only
            return
        except (ValueError, OSError) as exc:
            raise BenchError(
                f"need {needed} file descriptors, the hard limit is {hard} "
                f"and cannot be raised ({exc}); lower --idle-conns or raise ulimit -Hn"
            ) from exc
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


# ---- logs ----------------------------------------------------------------------------


def dovecot_log_problems(server: DovecotAuth) -> list[str]:
    keys = ("Error:", "Panic:", "Fatal:", "Warning:")
    return [line for line in server.log_text().splitlines() if any(k in line for k in keys)]


def saslauth_log_problems(daemon: Saslauth) -> list[str]:
    problems: list[str] = []
    with daemon.log.open(errors="replace") as handle:
        for line in handle:
            if " auth: " in line and " result=ok" in line:
                continue  # the common case: skip cheaply
            low = line.lower()
            if any(k in low for k in ("warning", "error", "traceback", "critical", "fail")):
                problems.append(line.rstrip("\n"))
    return problems


# ---- one case ------------------------------------------------------------------------


def cache_on(case: Case, args: argparse.Namespace) -> bool:
    """Whether saslauth runs ``case`` with its verification cache (``--saslauth-cache``)."""
    return args.saslauth_cache == "all" or (args.saslauth_cache == "repeat" and case.repeat)


def credentials(index: int) -> tuple[str, str]:
    """(user, password) of user ``index`` in a ``{PLAIN}`` passwd-file (``write_files``)."""
    return f"user{index:05d}", password_for(index)


def run_case(
    case: Case, args: argparse.Namespace, binary: Path, workroot: Path, say: Callable[[str], None]
) -> CaseResult:
    workdir = workroot / case.name
    workdir.mkdir(mode=0o755)
    say(f"[{case.name}] writing {args.users} users ({case.scheme}) ...")
    passwd, creds, cred_lines, note = write_files(
        workdir, case, args.users, args.sha512_rounds, args.hasher
    )
    result = CaseResult(
        case=case.name, scheme=case.scheme, description=case.description,
        users=args.users, cred_lines=cred_lines, hashing=note,
    )  # fmt: skip
    say(f"[{case.name}] hashes: {note}")
    with contextlib.ExitStack() as stack:
        client_limit: int | None = None
        if case.idle:
            # Dovecot's auth service takes default_client_limit = 1000 connections per
            # process (and runs one process): without this the idle case cannot run at all
            client_limit = args.idle_conns + args.conns + 100
            result.dovecot_conf.append(f"service auth {{ client_limit = {client_limit} }}")
        dovecot = start_dovecot_auth(workdir / "dovecot", passwd, client_limit=client_limit)
        stack.callback(dovecot.stop)
        extra = f"log_level: {args.saslauth_log_level}\nevent_loop: {args.event_loop}\n"
        extra += f"auth_log: {args.saslauth_auth_log}\n"
        if args.verifier_threads is not None:
            extra += f"verifier:\n  threads: {args.verifier_threads}\n"
        extra += f"fronts: {args.fronts}\npin_fronts: {args.pin_fronts}\n"
        if cache_on(case, args):
            extra += f"cache:\n  ttl: 5m\n  negative_ttl: 30s\n  size: {max(args.users, 1000)}\n"
        config = write_config(workdir, passwd, failure_delay="0", extra=extra)
        daemon = start_saslauth(config, workdir / "auth", python=args.python)
        stack.callback(daemon.stop)
        daemon.wait_children()
        sockets = {"dovecot": dovecot.address, "saslauth": daemon.address}
        pids: dict[str, Callable[[], list[int]]] = {
            "dovecot": lambda: group_members(dovecot.pid),
            "saslauth": lambda: [pid for _, pid in saslauth_processes(daemon)],
        }
        say(
            f"[{case.name}] dovecot pid {dovecot.pid} ({dovecot.address}), "
            f"saslauth pid {daemon.proc.pid} ({daemon.address})"
        )
        idle: dict[str, IdleConnections] = {}
        if case.idle:
            for server in SERVERS:
                conns = idle[server] = IdleConnections(sockets[server])
                stack.callback(conns.close)
                took = conns.open(args.idle_conns, timeout=60.0)
                result.idle[server] = IdleCheck(opened=len(conns.socks), open_s=round(took, 2))
                say(f"[{case.name}] {len(conns.socks)} idle connections to {server} ({took:.1f}s)")
        for rnd in range(1, args.rounds + 1):
            for server in SERVERS:
                before = sample_cpu(pids)
                run = run_authbench(binary, sockets[server], creds, args, server, rnd)
                after = sample_cpu(pids)
                other = "saslauth" if server == "dovecot" else "dovecot"
                run.cpu_server_s = round(after.servers[server] - before.servers[server], 2)
                run.cpu_idle_server_s = round(after.servers[other] - before.servers[other], 2)
                run.cpu_authbench_s = round(after.children - before.children, 2)
                known = (
                    run.cpu_server_s + run.cpu_idle_server_s + run.cpu_authbench_s
                    + (after.me - before.me)
                )  # fmt: skip
                run.cpu_foreign_s = round(max(0.0, after.busy - before.busy - known), 2)
                result.runs.append(run)
                say(
                    f"[{case.name}] round {rnd}/{args.rounds} {server:8} "
                    f"{run.auth_per_s:9.0f} auth/s  p50 {run.p50_us / 1000:7.2f} ms  "
                    f"p99 {run.p99_us / 1000:7.2f} ms  OK={run.ok} FAIL={run.fail} "
                    f"other={run.other} closed={run.closed}  CPU cores: server "
                    f"{run.cpu_server_s / run.wall_s:.2f} authbench "
                    f"{run.cpu_authbench_s / run.wall_s:.2f} foreign "
                    f"{run.cpu_foreign_s / run.wall_s:.2f}"
                )
                for proc, name in ((dovecot.process, "dovecot"), (daemon.proc, "saslauth")):
                    if proc.poll() is not None:
                        raise BenchError(f"{name} exited ({proc.returncode}) during the run")
        # memory after the runs, with the idle connections (if any) still open
        auth_procs, all_procs = dovecot_processes(dovecot)
        for name, procs in (
            ("saslauth", saslauth_processes(daemon)),
            ("dovecot-auth", auth_procs),
            ("dovecot-all", all_procs),
        ):
            result.rss[name], result.pss[name] = memory(procs)
        for server, conns in idle.items():
            check = conns.check(
                lambda i: credentials(i % args.users), IDLE_SAMPLE_EVERY, timeout=10.0
            )
            check.open_s = result.idle[server].open_s
            result.idle[server] = check
            say(
                f"[{case.name}] idle connections to {server}: {check.still_open} open, "
                f"{check.closed} closed, {check.unexpected} unexpected data; "
                f"sample AUTH OK {check.sample_ok}/{check.sampled}"
            )
        result.log_problems["dovecot"] = dovecot_log_problems(dovecot)
        result.log_problems["saslauth"] = saslauth_log_problems(daemon)
    return result


# ---- report --------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def _cores(runs: Sequence[Run], attr: str) -> str:
    return f"{_median([getattr(r, attr) / r.wall_s for r in runs if r.wall_s]):.2f}"


def _per_auth_us(runs: Sequence[Run]) -> str:
    return f"{_median([r.cpu_server_s / r.replies * 1e6 for r in runs if r.replies]):.0f}"


def foreign_load(results: Sequence[CaseResult]) -> float:
    """Median CPU cores used by processes outside the benchmark during the runs."""
    return _median([r.cpu_foreign_s / r.wall_s for res in results for r in res.runs if r.wall_s])


def _memory_lines(res: CaseResult) -> list[str]:
    lines = ["   memory after the runs, RSS / PSS (PSS divides shared pages among their sharers):"]
    for name, label in (
        ("saslauth", "saslauth"),
        ("dovecot-auth", "dovecot auth"),
        ("dovecot-all", "dovecot all"),
    ):
        rss, pss = res.rss[name], res.pss[name]
        total = f"{rss.total_kib / 1024:6.1f} / {pss.total_kib / 1024:6.1f} MiB"
        if name == "dovecot-all":
            parts = "whole instance: " + ", ".join(k.split()[0] for k in rss.processes)
        else:
            parts = ", ".join(
                f"{k} {v / 1024:.1f}/{pss.processes.get(k, 0) / 1024:.1f}"
                for k, v in rss.processes.items()
            )
        lines.append(f"     {label:<13}{total}  ({parts})")
    return lines


def _idle_lines(res: CaseResult) -> list[str]:
    lines = []
    for server, chk in res.idle.items():
        lines.append(
            f"   {server:<9}idle connections: {chk.opened} opened in {chk.open_s:.1f}s; after the "
            f"runs {chk.still_open} open, {chk.closed} closed, {chk.unexpected} with unexpected "
            f"data; AUTH on every {IDLE_SAMPLE_EVERY}th: OK {chk.sample_ok}/{chk.sampled}"
        )
        if chk.sample_failures:
            lines.append(f"   {server:<9}  other answers: {'; '.join(chk.sample_failures[:5])}")
    return lines


def format_case(res: CaseResult, args: argparse.Namespace) -> str:
    lines = [
        f"== {res.case}: {res.description}",
        f"   {res.users} users, creds file {res.cred_lines} line(s); hashes: {res.hashing}",
        f"   authbench -c {args.conns} -d {args.depth} -t {args.seconds:g} -w {args.warmup:g} "
        f"-r, {args.rounds} round(s) per server, alternating dovecot/saslauth"
        + (
            f"; plus {args.idle_conns} idle connections to each server, opened before the "
            "first round"
            if res.idle
            else ""
        ),
        f"   saslauth: verification cache {'on' if cache_on(CASES[res.case], args) else 'off'}, "
        f"event_loop {args.event_loop}, fronts {args.fronts}"
        f", pin_fronts {args.pin_fronts}, auth_log {args.saslauth_auth_log}, "
        f"Python {args.python_version}; "
        "dovecot: "
        + (
            f"default settings except {', '.join(res.dovecot_conf)} (default 1000: too few for "
            f"the idle connections)"
            if res.dovecot_conf
            else "default settings (no auth cache)"
        ),
        "",
        f"   {'server':<9}{'auth/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        "   per-run auth/s | p50 ms | p99 ms",
    ]
    med: dict[str, tuple[float, float, float]] = {}
    for server in SERVERS:
        runs = res.of(server)
        tput = _median([r.auth_per_s for r in runs])
        p50 = _median([r.p50_us for r in runs]) / 1000
        p99 = _median([r.p99_us for r in runs]) / 1000
        med[server] = (tput, p50, p99)
        per_run = (
            " ".join(f"{r.auth_per_s:.0f}" for r in runs)
            + " | " + " ".join(f"{r.p50_us / 1000:.2f}" for r in runs)
            + " | " + " ".join(f"{r.p99_us / 1000:.2f}" for r in runs)
        )  # fmt: skip
        lines.append(f"   {server:<9}{tput:>10.0f}{p50:>9.2f}{p99:>9.2f}   {per_run}")
    lines.append("")
    for server in SERVERS:
        runs = res.of(server)
        lines.append(
            f"   {server:<9}replies: OK={sum(r.ok for r in runs)} FAIL={sum(r.fail for r in runs)}"
            f" other={sum(r.other for r in runs)} closed={sum(r.closed for r in runs)}"
            f"  max latency {max((r.max_us for r in runs), default=0) / 1000:.1f} ms"
        )
        lines.append(
            f"   {server:<9}CPU cores (median): server {_cores(runs, 'cpu_server_s')}"
            f"  authbench {_cores(runs, 'cpu_authbench_s')}"
            f"  other processes {_cores(runs, 'cpu_foreign_s')}"
            f"  => {_per_auth_us(runs)} us server CPU per auth"
        )
        silent = [r.round for r in runs if not r.replies]
        if silent:
            lines.append(f"   {server:<9}NO REPLY AT ALL in round(s) {silent}: server stalled?")
    (dt_, _, d99), (st, _, s99) = med["dovecot"], med["saslauth"]
    lines.append(f"   ratio saslauth/dovecot: throughput {_ratio(st, dt_)}  p99 {_ratio(s99, d99)}")
    lines.append(f"   paired by round: {paired_line([asdict(run) for run in res.runs])}")
    lines.extend(_idle_lines(res))
    lines.extend(_memory_lines(res))
    for server, problems in res.log_problems.items():
        if problems:
            lines.append(f"   {server} log: {len(problems)} warning/error line(s), e.g.:")
            lines.extend(f"     {p[:200]}" for p in problems[:5])
    return "\n".join(lines)


def format_summary(results: list[CaseResult]) -> str:
    head = (
        f"{'case':<15}{'dovecot/s':>11}{'saslauth/s':>12}{'ratio':>8}"
        f"{'dc p99 ms':>11}{'sl p99 ms':>11}{'ratio':>8}{'errors d/s':>12}"
        f"{'PSS MiB dc/sl':>15}"
    )
    lines = [
        "== summary (medians; ratio = saslauth/dovecot; errors = FAIL+other+closed+silent runs"
        " + idle connections lost or failing; PSS = dovecot auth / all saslauth processes)",
        head,
    ]
    for res in results:
        d, s = res.of("dovecot"), res.of("saslauth")
        dt_, st = _median([r.auth_per_s for r in d]), _median([r.auth_per_s for r in s])
        d99, s99 = _median([r.p99_us for r in d]) / 1000, _median([r.p99_us for r in s]) / 1000
        errs = f"{res.errors_of('dovecot')}/{res.errors_of('saslauth')}"
        pss = f"{res.pss['dovecot-auth'].total_kib / 1024:.1f}/"
        pss += f"{res.pss['saslauth'].total_kib / 1024:.1f}"
        lines.append(
            f"{res.case:<15}{dt_:>11.0f}{st:>12.0f}{_ratio(st, dt_):>8}"
            f"{d99:>11.2f}{s99:>11.2f}{_ratio(s99, d99):>8}{errs:>12}{pss:>15}"
        )
    lines.append(
        "== paired (bench/paired.py): geometric mean of each round's saslauth run over the"
        " Dovecot run just before it"
    )
    lines.extend(f"{res.case:<15}{paired_line([asdict(r) for r in res.runs])}" for res in results)
    return "\n".join(lines)


def environment(binary: Path, src: Path, args: argparse.Namespace) -> dict[str, Any]:
    def out(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            return ""
        return done.stdout.strip()

    return {
        "dovecot": out(["dovecot", "--version"]),
        "python": sys.version.split()[0],
        "saslauth_python": f"{args.python} ({args.python_version})",
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_start": list(os.getloadavg()),
        "git_commit": out(["git", "-C", str(REPO), "rev-parse", "HEAD"]),
        "git_dirty": bool(out(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"])),
        "authbench_src": str(src),
        "authbench_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
        "authbench_bin": str(binary),
        "cc": out(["cc", "--version"]).splitlines()[0] if out(["cc", "--version"]) else "",
    }


# ---- main ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Benchmark saslauth against Dovecot's auth service (see bench/README.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--cases",
        default=DEFAULT_CASES,
        help=f"comma-separated cases out of: {', '.join(CASES)}",
    )
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run")
    p.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="unmeasured warm-up seconds at the start of each run (authbench -w)",
    )
    p.add_argument("--rounds", type=int, default=3, help="runs per server per case")
    p.add_argument("--conns", type=int, default=50, help="client connections (authbench -c)")
    p.add_argument(
        "--depth", type=int, default=1, help="requests in flight per connection (authbench -d)"
    )
    p.add_argument("--users", type=int, default=1000, help="users in each passwd-file")
    p.add_argument(
        "--idle-conns",
        type=int,
        default=2000,
        help="case idle: idle client connections held open to each server during its runs",
    )
    p.add_argument("--sha512-rounds", type=int, default=5000, help="SHA512-CRYPT rounds")
    p.add_argument(
        "--hasher",
        choices=("auto", "saslauth", "doveadm"),
        default="auto",
        help="how SHA512-CRYPT hashes are made: auto = saslauth.schemes.generate "
        f"if importable, else {DOVEADM_DISTINCT} doveadm hashes reused",
    )
    p.add_argument(
        "--saslauth-log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="saslauth log_level (info: the auth: lines of --saslauth-auth-log)",
    )
    p.add_argument(
        "--saslauth-auth-log",
        default="failures",
        choices=("all", "failures"),
        help="saslauth auth_log (default failures, saslauth's default: no line for a successful"
        " authentication; all: a line for every one)",
    )
    p.add_argument(
        "--saslauth-cache",
        choices=("off", "repeat", "all"),
        default="repeat",
        help="saslauth's verification cache (ttl 5m): off, on for the repeat case only "
        "(the issue's target), or on for every case",
    )
    p.add_argument(
        "--event-loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="saslauth event_loop (auto: uvloop when installed)",
    )
    p.add_argument(
        "--fronts",
        default="auto",
        help="saslauth fronts: front processes (auto: one per CPU core, as saslauth's default)",
    )
    p.add_argument(
        "--pin-fronts",
        choices=("auto", "true", "false"),
        nargs="?",
        const="true",
        default="auto",
        help="saslauth pin_fronts (auto, its default: each front on a CPU of its own while no "
        "other work crowds it; --pin-fronts alone: true)",
    )
    p.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter saslauth runs on (default: this one); it needs saslauth's "
        "dependencies, e.g. a virtualenv of Debian's /usr/bin/python3",
    )
    p.add_argument(
        "--verifier-threads",
        type=int,
        default=None,
        help="saslauth verifier.threads (None: saslauth's default, one per CPU core)",
    )
    p.add_argument(
        "--authbench-src",
        type=Path,
        default=None,
        help=f"authbench.c (None: {DEFAULT_AUTHBENCH_SRC}, next to the repository)",
    )
    p.add_argument(
        "--authbench",
        type=Path,
        default=DEFAULT_AUTHBENCH_BIN,
        help="where the compiled authbench goes",
    )
    p.add_argument(
        "--results-dir",
        type=Path,
        default=DEFAULT_RESULTS,
        help="raw JSON results are written here as <timestamp>.json",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the work directory (passwd-files, configs, server logs)",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="very short CI run: 1 round of 1 s, 5 conns, 50 users, case plain; "
        "overrides the options above",
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.rounds, args.seconds, args.warmup = 1, 1.0, 0.2
        args.conns, args.depth, args.users, args.cases = 5, 1, 50, "plain"
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown or not names:
        p.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    args.case_list = [CASES[c] for c in names]
    for name in ("rounds", "conns", "depth", "users", "idle_conns"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.seconds <= 0 or args.warmup < 0:
        p.error("--seconds must be > 0 and --warmup >= 0")
    try:
        args.python_version = subprocess.run(
            [args.python, "-c", "import platform, saslauth; print(platform.python_version())"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        p.error(f"--python {args.python}: cannot run it, or it cannot import saslauth")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the servers


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    started = dt.datetime.now(dt.UTC)
    results: list[CaseResult] = []
    try:
        if any(case.idle for case in args.case_list):
            # both sets of idle connections live in this process; the servers inherit it
            raise_fd_limit(2 * args.idle_conns + args.conns + FD_MARGIN)
        src = find_authbench_src(args.authbench_src)
        if build_authbench(src, args.authbench):
            say(f"compiled {src} -> {args.authbench}")
        env = environment(args.authbench, src, args)
        workroot = public_dir("saslbench-")
        try:
            for case in args.case_list:
                results.append(run_case(case, args, args.authbench, workroot, say))
        finally:
            if args.keep:
                say(f"work directory kept: {workroot}")
            else:
                shutil.rmtree(workroot, ignore_errors=True)
    except (BenchError, RuntimeError, TimeoutError, OSError) as exc:
        print(f"bench/run.py: {exc}", file=sys.stderr)
        return 2

    out = [
        f"saslauth vs Dovecot auth benchmark, {started:%Y-%m-%d %H:%M:%S} UTC; "
        f"{env['dovecot'] and 'Dovecot ' + env['dovecot']}, saslauth on Python "
        f"{args.python_version} ({args.python}), "
        f"{env['cpus']} CPU(s), load average at start {env['loadavg_start'][0]:.2f}",
        "",
    ]
    for res in results:
        out += [format_case(res, args), ""]
    out.append(format_summary(results))
    foreign = foreign_load(results)
    if foreign >= 0.1:
        out += [
            "",
            f"WARNING: other processes used {foreign:.2f} CPU cores (median) during the runs;",
            "         the numbers are skewed, rerun on a quiet machine.",
        ]
    errors = sum(res.errors_of(server) for res in results for server in SERVERS)
    payload = {
        "started": started.isoformat(),
        "finished": dt.datetime.now(dt.UTC).isoformat(),
        "argv": sys.argv,
        "settings": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k != "case_list"
        },
        "environment": env,
        "cases": [asdict(res) for res in results],
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"{started:%Y%m%dT%H%M%SZ}.json"
    if path.exists():  # two runs within one second
        path = path.with_name(f"{started:%Y%m%dT%H%M%S.%fZ}.json")
    path.write_text(json.dumps(payload, indent=2) + "\n")
    out += ["", f"raw results: {path}"]
    if errors:
        out.append(
            f"ERRORS: {errors} non-OK replies, closed connections or failed idle connections "
            "(see above)"
        )
    print("\n".join(out), flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
