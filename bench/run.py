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
    names = [f"user{i:05d}" for i in range(users)]
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


def vm_rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def saslauth_rss(daemon: Saslauth) -> ProcRss:
    pids = {"master": daemon.proc.pid, **daemon.children()}
    out: dict[str, int] = {}
    for role, pid in pids.items():
        kib = vm_rss_kib(pid)
        if kib is not None:
            out[f"{role} {pid}"] = kib
    return ProcRss(out)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def dovecot_rss(server: DovecotAuth) -> tuple[ProcRss, ProcRss]:
    """(auth and auth-worker processes, every process of the instance)."""
    auth: dict[str, int] = {}
    everything: dict[str, int] = {}
    for pid in group_members(server.pid):
        kib = vm_rss_kib(pid)
        if kib is None:
            continue
        # process titles look like "dovecot-<instance_name>/auth [...]"
        title = _cmdline(pid).split(" ")[0].rsplit("/", 1)[-1] or "?"
        role = "master" if pid == server.pid else title
        everything[f"{role} {pid}"] = kib
        if role in ("auth", "auth-worker"):
            auth[f"{role} {pid}"] = kib
    return ProcRss(auth), ProcRss(everything)


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
        dovecot = start_dovecot_auth(workdir / "dovecot", passwd)
        stack.callback(dovecot.stop)
        extra = f"log_level: {args.saslauth_log_level}\nevent_loop: {args.event_loop}\n"
        if args.verifier_threads is not None:
            extra += f"verifier:\n  threads: {args.verifier_threads}\n"
        if cache_on(case, args):
            extra += f"cache:\n  ttl: 5m\n  negative_ttl: 30s\n  size: {max(args.users, 1000)}\n"
        config = write_config(workdir, passwd, failure_delay="0", extra=extra)
        daemon = start_saslauth(config, workdir / "auth")
        stack.callback(daemon.stop)
        daemon.wait_children()
        sockets = {"dovecot": dovecot.address, "saslauth": daemon.address}
        pids: dict[str, Callable[[], list[int]]] = {
            "dovecot": lambda: group_members(dovecot.pid),
            "saslauth": lambda: [daemon.proc.pid, *daemon.children().values()],
        }
        say(
            f"[{case.name}] dovecot pid {dovecot.pid} ({dovecot.address}), "
            f"saslauth pid {daemon.proc.pid} ({daemon.address})"
        )
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
        result.rss["saslauth"] = saslauth_rss(daemon)
        auth_rss, all_rss = dovecot_rss(dovecot)
        result.rss["dovecot-auth"] = auth_rss
        result.rss["dovecot-all"] = all_rss
        result.log_problems["dovecot"] = dovecot_log_problems(dovecot)
        result.log_problems["saslauth"] = saslauth_log_problems(daemon)
    return result


# ---- report --------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def _cores(runs: Sequence[Run], attr: str) -> str:
    return f"{_median([getattr(r, attr) / r.wall_s for r in runs if r.wall_s]):.2f}"


def _per_auth_us(runs: Sequence[Run]) -> str:
    return f"{_median([r.cpu_server_s / r.replies * 1e6 for r in runs if r.replies]):.0f}"


def foreign_load(results: Sequence[CaseResult]) -> float:
    """Median CPU cores used by processes outside the benchmark during the runs."""
    return _median([r.cpu_foreign_s / r.wall_s for res in results for r in res.runs if r.wall_s])


def _rss_text(rss: ProcRss) -> str:
    parts = ", ".join(f"{k} {_mib(v)}" for k, v in rss.processes.items())
    return f"{_mib(rss.total_kib)} ({parts})"


def format_case(res: CaseResult, args: argparse.Namespace) -> str:
    lines = [
        f"== {res.case}: {res.description}",
        f"   {res.users} users, creds file {res.cred_lines} line(s); hashes: {res.hashing}",
        f"   authbench -c {args.conns} -d {args.depth} -t {args.seconds:g} -w {args.warmup:g} "
        f"-r, {args.rounds} round(s) per server, alternating dovecot/saslauth",
        f"   saslauth: verification cache {'on' if cache_on(CASES[res.case], args) else 'off'}, "
        f"event_loop {args.event_loop}; dovecot: default settings (no auth cache)",
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
    lines.append(f"   RSS after the runs: saslauth {_rss_text(res.rss['saslauth'])}")
    lines.append(f"                       dovecot auth {_rss_text(res.rss['dovecot-auth'])}")
    lines.append(
        f"                       (whole dovecot instance: {_mib(res.rss['dovecot-all'].total_kib)})"
    )
    for server, problems in res.log_problems.items():
        if problems:
            lines.append(f"   {server} log: {len(problems)} warning/error line(s), e.g.:")
            lines.extend(f"     {p[:200]}" for p in problems[:5])
    return "\n".join(lines)


def format_summary(results: list[CaseResult]) -> str:
    head = (
        f"{'case':<15}{'dovecot/s':>11}{'saslauth/s':>12}{'ratio':>8}"
        f"{'dc p99 ms':>11}{'sl p99 ms':>11}{'ratio':>8}{'errors d/s':>12}"
    )
    lines = [
        "== summary (medians; ratio = saslauth/dovecot; errors = FAIL+other+closed+silent runs)",
        head,
    ]
    for res in results:
        d, s = res.of("dovecot"), res.of("saslauth")
        dt_, st = _median([r.auth_per_s for r in d]), _median([r.auth_per_s for r in s])
        d99, s99 = _median([r.p99_us for r in d]) / 1000, _median([r.p99_us for r in s]) / 1000
        errs = f"{sum(r.errors for r in d)}/{sum(r.errors for r in s)}"
        lines.append(
            f"{res.case:<15}{dt_:>11.0f}{st:>12.0f}{_ratio(st, dt_):>8}"
            f"{d99:>11.2f}{s99:>11.2f}{_ratio(s99, d99):>8}{errs:>12}"
        )
    return "\n".join(lines)


def environment(binary: Path, src: Path) -> dict[str, Any]:
    def out(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            return ""
        return done.stdout.strip()

    return {
        "dovecot": out(["dovecot", "--version"]),
        "python": sys.version.split()[0],
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
        default="plain,sha512,sha512-repeat",
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
        help="saslauth log_level (info logs one line per authentication)",
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
    for name in ("rounds", "conns", "depth", "users"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.seconds <= 0 or args.warmup < 0:
        p.error("--seconds must be > 0 and --warmup >= 0")
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
        src = find_authbench_src(args.authbench_src)
        if build_authbench(src, args.authbench):
            say(f"compiled {src} -> {args.authbench}")
        env = environment(args.authbench, src)
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
        f"{env['dovecot'] and 'Dovecot ' + env['dovecot']}, Python {env['python']}, "
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
    errors = sum(r.errors for res in results for r in res.runs)
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
        out.append(f"ERRORS: {errors} non-OK replies or closed connections (see above)")
    print("\n".join(out), flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
