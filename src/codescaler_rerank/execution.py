"""Run untrusted Python candidates against tests in a sandboxed subprocess; the parent judges.

Verdicts. For call-style tests (`run_calls`, and `run_tests` when every assertion of the tests
converts, see `calls.calls_from_asserts`) the sandbox only calls the entry point on arguments it
is given and writes back each result as plain data; this process compares them with expected
values that never enter the sandbox, type-strictly, and kills the run at the first wrong result.
A candidate that forges the report channel can at most claim results, which are still checked;
one record per call, in order, and nothing else is accepted. These verdicts are ``trusted=True``,
as are stdio verdicts (`run_stdio`: expected output compared here). Tests that stay assert-style
run in the candidate's own interpreter and count a pass when the harness reaches the end of them
and returns a per-run nonce: ``trusted=False``, since code sharing the interpreter can reach
anything in it (the nonce pipe, frames, ``gc``, ``ctypes``).

Isolation (each flag in the result says whether it held; with ``require_isolation=True``, the
default, a run that cannot get the first four raises `SandboxUnavailable` before any candidate
code runs):

* network (``network_isolated``): own network namespace, no device up: no TCP/UDP, and no abstract
  unix sockets of the host;
* processes (``pid_isolated``): own PID namespace whose init is ours: the candidate sees and signals
  nothing outside, and whatever it leaves behind (daemons, ``setsid()``) dies with the run;
* filesystem (``fs_isolated``): a minimal root (``pivot_root``): read-only binds of /usr, /bin,
  /sbin, /lib*, /etc and the interpreter's stdlib only, five device nodes, private size-capped
  /tmp (the working directory) and /dev/shm, its own /proc; the package's data and every
  site-packages directory are covered by empty mounts. /run, /home, /root, /work, /var, /sys and the
  caller's files do not exist inside, nor any unix socket of the host;
* user (``user_isolated``, as root): a throwaway uid allocated per run (never shared by two live
  runs, across processes too), no capabilities, ``no_new_privs``;
* limits: CPU time, address space, file size, processes and open files per process, and, where a
  cgroup can be made (``memory_limit="cgroup"``), memory and processes of the whole run together
  (``"rlimit"``: per process only); stdout/stderr/report read up to caps, a wall-clock timeout.

Out of scope: kernel exploits; side channels (timing, CPU load); what is readable under /usr and
/etc; candidates that memorise the tests; the ``trusted=False`` gap above.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import secrets
import selectors
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Literal, NamedTuple, Sequence

from pydantic import BaseModel
from tqdm import tqdm

from .calls import Call, calls_from_asserts, decode_value, guess_entry_point
from .cgroups import RunCgroup

Status = Literal["passed", "failed", "timeout", "error", "killed", "sandbox_error"]

_CHILD = (Path(__file__).parent / "sandbox_child.py").read_text(encoding="utf-8")
_UID_BASE = 1_000_000_000  # throwaway uids used when we run as root: _UID_BASE + slot
# One lock file per slot in use (flock), shared by every process of this host: the first of these that can be made.
_UID_LOCK_DIRS = ("/run/codescaler-rerank/uids", os.path.join(tempfile.gettempdir(), "codescaler-rerank-uids"))
_REPORT_CAP = 1 << 22
_SIGNAL_REASONS = {
    signal.SIGKILL: "killed by SIGKILL",
    signal.SIGXCPU: "CPU time limit",
    signal.SIGXFSZ: "file size limit",
    signal.SIGSEGV: "segmentation fault",
}


class SandboxUnavailable(RuntimeError):
    """The isolation a run requires is missing on this host (the message says what)."""


class ExecutionResult(BaseModel):
    """Outcome of one sandboxed run (for stdio runs: of the first failing case, or the last case)."""

    passed: bool
    status: Status
    reason: str  # e.g. "call 2/3: assert f(3) == 9: returned 6", "timed out after 10.0 s"
    duration: float  # seconds, wall clock (all cases for stdio runs)
    stdout: str  # at most `max_output` bytes, decoded
    stderr: str
    exit_code: int | None = None  # negative: killed by that signal; None: stopped by us (timeout, wrong result)
    truncated: bool = False  # stdout or stderr went over `max_output` (only stdout decides a stdio verdict)
    trusted: bool = False  # the verdict was decided here (calls, stdio), not by asserts inside the sandbox
    memory_limit: Literal["cgroup", "rlimit"] = "rlimit"  # whole run (cgroup) or per process only
    network_isolated: bool = False  # own network namespace: no network at all
    pid_isolated: bool = False  # own PID namespace: cannot signal outside, leftovers killed
    fs_isolated: bool = False  # minimal read-only root, private /tmp
    user_isolated: bool = False  # ran as a throwaway unprivileged uid (we were root)


class Job(NamedTuple):
    """One `run_many` job: `tests` (with `entry_point`, converted to calls where possible), `calls`
    (with `entry_point`), or `cases` for a stdio run."""

    code: str
    tests: str | None = None
    cases: Sequence[tuple[str, str]] | None = None
    entry_point: str | None = None
    calls: Sequence[Call] | None = None


@dataclass(frozen=True)
class _Limits:
    timeout: float = 10.0
    memory_mb: int = 1024
    max_processes: int = 64
    max_file_mb: int = 16
    max_output: int = 1 << 20
    require_isolation: bool = True


@dataclass
class _Raw:
    """What the parent saw of one process."""

    stdout: bytes = b""
    stderr: bytes = b""
    events: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None  # None: we killed it (deadline, or decided early)
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration: float = 0.0
    oom: bool = False
    memory_limit: Literal["cgroup", "rlimit"] = "rlimit"


def run_tests(
    code: str,
    tests: str,
    *,
    entry_point: str | None = None,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    max_processes: int = 64,
    max_file_mb: int = 16,
    max_output: int = 1 << 20,
    require_isolation: bool = True,
) -> ExecutionResult:
    """Run `code`, then `tests` (Python source whose assertions run after it) in one sandbox.

    Assertions that call `entry_point` (default: `guess_entry_point`) on literals are judged here
    (`calls_from_asserts`); the verdict is ``trusted`` when nothing else is left of `tests`, else
    the rest runs after the calls, in the sandbox, as before. HumanEval-style callers append the checker's call themselves:
    ``tests + f"\\ncheck({entry_point})\\n"``.
    """
    limits = _Limits(timeout, memory_mb, max_processes, max_file_mb, max_output, require_isolation)
    calls: list[Call] = []
    residual: str | None = tests
    entry_point = entry_point or guess_entry_point(tests)
    if entry_point is not None:
        try:
            calls, residual = calls_from_asserts(tests, entry_point)
        except SyntaxError:
            pass  # reported by the sandbox as before
    return _run_function(code, entry_point, calls, residual, limits)


def run_calls(
    code: str,
    entry_point: str,
    calls: Sequence[Call],
    *,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    max_processes: int = 64,
    max_file_mb: int = 16,
    max_output: int = 1 << 20,
    require_isolation: bool = True,
) -> ExecutionResult:
    """Run `code`, call `entry_point` once per `Call`, judge each result here (``trusted=True``)."""
    if not calls:
        raise ValueError("run_calls needs at least one call")
    limits = _Limits(timeout, memory_mb, max_processes, max_file_mb, max_output, require_isolation)
    return _run_function(code, entry_point, list(calls), None, limits)


def run_stdio(
    code: str,
    cases: Sequence[tuple[str, str]],
    *,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    max_processes: int = 64,
    max_file_mb: int = 16,
    max_output: int = 1 << 20,
    require_isolation: bool = True,
) -> ExecutionResult:
    """Run `code` as a program once per ``(stdin, expected stdout)`` case; pass if every case matches.

    Each case gets its own sandbox and its own `timeout`; the run stops at the first failing case.
    Outputs match when equal after stripping trailing whitespace from every line and trailing
    blank lines; the program must also exit with code 0 (``sys.exit()``/``exit()`` are fine).
    Only stdout counts: stderr over `max_output` is cut, never a failure.
    """
    if not cases:
        raise ValueError("run_stdio needs at least one case")
    limits = _Limits(timeout, memory_mb, max_processes, max_file_mb, max_output, require_isolation)
    start = time.monotonic()
    for index, (stdin, expected) in enumerate(cases, 1):
        result = _run_case(code, stdin, expected, limits)
        if not result.passed:
            result.reason = f"case {index}/{len(cases)}: {result.reason}"
            break
    result.duration = time.monotonic() - start
    return result


def run_many(
    jobs: Sequence[Job], *, workers: int | None = None, progress: bool = False, **limits: Any
) -> list[ExecutionResult]:
    """Run jobs on a pool of `workers` threads (default: CPU count); results in input order.

    `limits` are the keyword arguments of `run_tests`/`run_stdio` (``require_isolation`` included).
    A job whose sandbox cannot even start yields a ``sandbox_error`` result instead of stopping the
    others; missing isolation raises `SandboxUnavailable` for the whole batch.
    """
    for job in jobs:
        if sum(x is not None for x in (job.tests, job.cases, job.calls)) != 1:
            raise ValueError("every Job needs exactly one of `tests`, `cases` and `calls`")
        if job.calls is not None and job.entry_point is None:
            raise ValueError("a Job with `calls` needs its `entry_point`")
    results: list[ExecutionResult | None] = [None] * len(jobs)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        futures = {pool.submit(_run_job, job, limits): i for i, job in enumerate(jobs)}
        try:
            for future in tqdm(as_completed(futures), total=len(jobs), disable=not progress, desc="sandbox"):
                results[futures[future]] = future.result()
        except SandboxUnavailable:
            for future in futures:
                future.cancel()
            raise
    return results  # type: ignore[return-value]


def normalize_output(text: str) -> str:
    """Strip trailing whitespace from every line and trailing blank lines."""
    return "\n".join(line.rstrip() for line in text.splitlines()).rstrip("\n")


def _run_job(job: Job, limits: dict[str, Any]) -> ExecutionResult:
    try:
        if job.cases is not None:
            return run_stdio(job.code, job.cases, **limits)
        if job.calls is not None:
            return run_calls(job.code, job.entry_point, job.calls, **limits)  # type: ignore[arg-type]
        return run_tests(job.code, job.tests, entry_point=job.entry_point, **limits)  # type: ignore[arg-type]
    except OSError as exc:  # could not start a process, pipes, temp dirs...
        return ExecutionResult(
            passed=False, status="sandbox_error", reason=f"{type(exc).__name__}: {exc}",
            duration=0.0, stdout="", stderr="",
        )


class _CallJudge:
    """Checks the call records of a report as they arrive: one per call, in order, nothing else."""

    def __init__(self, calls: Sequence[Call]) -> None:
        self.calls = calls
        self.matched = 0
        self.failure: str | None = None

    @property
    def decided(self) -> bool:
        return self.failure is not None

    def feed(self, record: dict[str, Any]) -> None:
        if self.failure is not None:
            return
        index, total = self.matched, len(self.calls)
        if record.get("seq") != index or index >= total or not ({"value"} == record.keys() - {"seq"}
                                                                   or {"raised"} == record.keys() - {"seq"}):
            self.failure = "malformed report from the sandbox (records out of order or extra)"
            return
        call = self.calls[index]
        where = f"call {index + 1}/{total}: {call.describe()}"
        if "raised" in record:
            self.failure = f"{where}: raised {str(record['raised'])[:300]}"
            return
        try:
            value = decode_value(record["value"])
        except (ValueError, RecursionError):
            self.failure = f"{where}: malformed result"
            return
        if not call.judge(value):
            self.failure = f"{where}: returned {_short(value)}"
            return
        self.matched += 1

    def malformed(self) -> None:
        if self.failure is None:
            self.failure = "malformed report from the sandbox (a line that is not a record)"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _run_function(
    code: str, entry_point: str | None, calls: list[Call], residual: str | None, limits: _Limits
) -> ExecutionResult:
    nonce = secrets.token_hex(16) if residual is not None else None
    payload = {"mode": "function", "code": code, "entry_point": entry_point,
               "calls": [c.payload() for c in calls] if calls else None, "tests": residual}
    judge = _CallJudge(calls)
    raw, sandbox = _execute(payload, None, limits, nonce, judge)
    flags = _flags(sandbox, raw)
    trusted = residual is None
    if sandbox is None:
        return _result(raw, "sandbox_error", _sandbox_error(raw), flags)
    if judge.failure is not None:
        return _result(raw, "failed", judge.failure, flags, trusted)
    if raw.exit_code is None:
        return _result(raw, "timeout", f"timed out after {limits.timeout:.1f} s", flags, trusted)
    all_calls = judge.matched == len(calls)
    nonce_ok = nonce is None or {"event": "passed", "nonce": nonce} in raw.events
    if raw.exit_code == 0 and all_calls and nonce_ok:
        reason = "all calls returned the expected results" if trusted else "all tests passed"
        return _result(raw, "passed", reason, flags, trusted)
    error = _last(raw.events, "error")
    if raw.oom or (error is not None and error.get("type") == "MemoryError"):
        return _result(raw, "killed", f"memory limit ({limits.memory_mb} MB)", flags, trusted)
    if error is not None:
        status: Status = "error" if error.get("phase") == "code" else "failed"
        return _result(raw, status, str(error.get("error")), flags, trusted)
    if (signal_reason := _signal_reason(raw.exit_code)) is not None:
        return _result(raw, "killed", signal_reason, flags, trusted)
    phase = (_last(raw.events, "phase") or {}).get("phase", "code")
    when = "before the tests ran" if phase == "code" else "before the tests finished"
    status = "error" if phase == "code" else "failed"
    return _result(raw, status, f"exited with code {raw.exit_code} {when}", flags, trusted)


def _run_case(code: str, stdin: str, expected: str, limits: _Limits) -> ExecutionResult:
    with tempfile.TemporaryFile() as stdin_file:
        stdin_file.write(stdin.encode())
        stdin_file.seek(0)
        payload = {"mode": "program", "code": code, "entry_point": None, "calls": None, "tests": None}
        raw, sandbox = _execute(payload, stdin_file, limits, None, None)
    flags = _flags(sandbox, raw)
    if sandbox is None:
        return _result(raw, "sandbox_error", _sandbox_error(raw), flags)
    if raw.exit_code is None:
        return _result(raw, "timeout", f"timed out after {limits.timeout:.1f} s", flags, True)
    error = _last(raw.events, "error")
    if raw.oom or (error is not None and error.get("type") == "MemoryError"):
        return _result(raw, "killed", f"memory limit ({limits.memory_mb} MB)", flags, True)
    if error is not None:
        return _result(raw, "error", str(error.get("error")), flags, True)
    if (signal_reason := _signal_reason(raw.exit_code)) is not None:
        return _result(raw, "killed", signal_reason, flags, True)
    if raw.exit_code != 0:
        return _result(raw, "error", f"exited with code {raw.exit_code}", flags, True)
    if raw.stdout_truncated:
        return _result(raw, "failed", f"output over {limits.max_output} bytes", flags, True)
    if normalize_output(raw.stdout.decode("utf-8", "replace")) != normalize_output(expected):
        return _result(raw, "failed", "wrong answer", flags, True)
    return _result(raw, "passed", "all cases passed", flags, True)


class _UidSlots:
    """Throwaway uids, one per live run: a slot is ours while we hold its lock file (flock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[int] = set()

    @functools.cached_property
    def directory(self) -> str:
        for path in _UID_LOCK_DIRS:
            try:
                os.makedirs(path, mode=0o700, exist_ok=True)
                return path
            except OSError:
                continue
        raise OSError(f"no directory for throwaway-uid locks among {', '.join(_UID_LOCK_DIRS)}")

    def acquire(self) -> tuple[int, int]:
        """(uid, lock fd) of the lowest free slot; release with `release`."""
        slot = 0
        while True:
            with self._lock:
                while slot in self._held:
                    slot += 1
                self._held.add(slot)
            fd = os.open(os.path.join(self.directory, str(slot)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return _UID_BASE + slot, fd
            except BlockingIOError:  # another process's run holds it
                os.close(fd)
                slot += 1
                with self._lock:
                    self._held.discard(slot - 1)

    def release(self, uid: int, fd: int) -> None:
        os.close(fd)
        with self._lock:
            self._held.discard(uid - _UID_BASE)


_UIDS = _UidSlots()


def _hidden_paths() -> list[str]:
    """Host directories covered inside the sandbox: this package (its data) and all site-packages."""
    paths = {str(Path(__file__).resolve().parent), *site.getsitepackages(), site.getusersitepackages()}
    return sorted(p for p in paths if os.path.isdir(p))


def _execute(
    payload: dict[str, Any], stdin: IO[bytes] | None, limits: _Limits, nonce: str | None,
    judge: _CallJudge | None,
) -> tuple[_Raw, dict[str, Any] | None]:
    """Start the sandbox, feed it, collect its output until it ends, the deadline, or a wrong result.

    Returns what was seen and the sandbox's own first report (None if it never got that far).
    Raises `SandboxUnavailable` when isolation is required and missing.
    """
    root = os.geteuid() == 0
    uid, uid_lock = _UIDS.acquire() if root else (-1, -1)
    workdir = tempfile.mkdtemp(prefix="codescaler-sandbox-")
    cgroup = RunCgroup(f"codescaler-{os.getpid()}-{os.path.basename(workdir)}", limits.memory_mb << 20,
                       limits.max_processes + 2)  # + the started process and init
    fds: dict[str, int] = {}
    namespaced = False
    try:
        fds["ctl_r"], fds["ctl_w"] = os.pipe()
        fds["rep_r"], fds["rep_w"] = os.pipe()
        fds["st_r"], fds["st_w"] = os.pipe()
        with open(os.path.join(workdir, "payload.json"), "w", encoding="utf-8") as f:
            json.dump(payload, f)
        config = {
            "ctl": fds["ctl_r"], "rep": fds["rep_w"], "status": fds["st_w"], "uid": uid,
            "timeout": limits.timeout, "memory_mb": limits.memory_mb, "file_mb": limits.max_file_mb,
            "nproc": limits.max_processes, "cgroups": cgroup.procs, "hide": _hidden_paths(),
            "require": limits.require_isolation,
        }
        start = time.monotonic()
        with subprocess.Popen(
            [sys.executable, "-S", "-B", "-c", _CHILD, json.dumps(config)],
            cwd=workdir, env=_environment(workdir), stdin=stdin or subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(fds["ctl_r"], fds["rep_w"], fds["st_w"]),
            start_new_session=True,
        ) as proc:
            for name in ("ctl_r", "rep_w", "st_w"):
                os.close(fds.pop(name))
            os.write(fds["ctl_w"], (nonce or "").encode())  # fits the pipe buffer; read only after the tests
            os.close(fds.pop("ctl_w"))
            try:
                raw = _collect(proc, fds["rep_r"], fds["st_r"], start, limits, judge)
            finally:
                _kill_group(proc)
        raw.oom = cgroup.oom_killed()
        raw.memory_limit = "cgroup" if cgroup.kind is not None else "rlimit"
        first = raw.events[0] if raw.events else {}
        sandbox = first if first.get("event") == "sandbox" else None
        namespaced = bool(sandbox and sandbox.get("namespaced"))
        if sandbox is None and limits.require_isolation:
            unavailable = next((e for e in raw.events if e.get("event") == "sandbox_error" and e.get("missing")), None)
            if unavailable is not None:
                raise SandboxUnavailable(
                    f"sandbox isolation unavailable: {unavailable.get('error')} "
                    "(pass require_isolation=False to run with what this host allows)"
                )
        return raw, sandbox
    finally:
        cgroup.remove()
        if root:
            if not namespaced and cgroup.kind is None:
                _kill_uid(uid)  # nothing else ends what left the process group
            _UIDS.release(uid, uid_lock)
        for fd in fds.values():
            os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)


def _collect(
    proc: subprocess.Popen[bytes], rep_r: int, st_r: int, start: float, limits: _Limits,
    judge: _CallJudge | None,
) -> _Raw:
    """Read stdout, stderr, the report and the status pipe (each capped) until the process ends,
    time runs out or `judge` has found a wrong result."""
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.fileno(), proc.stderr.fileno()
    caps = {out: limits.max_output, err: limits.max_output, rep_r: _REPORT_CAP, st_r: 64}
    data = {fd: bytearray() for fd in caps}
    over = dict.fromkeys(caps, False)
    report = _ReportReader(judge)
    deadline = start + limits.timeout
    exited_at: float | None = None
    stopped = False
    with selectors.DefaultSelector() as selector:
        for fd in caps:
            selector.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if exited_at is None and (_has_exited(proc) or (judge is not None and judge.decided)):
                stopped = not _has_exited(proc)
                exited_at = time.monotonic()
                _kill_group(proc)  # leftovers that may hold our pipes open
            if exited_at is not None and (not selector.get_map() or time.monotonic() - exited_at > 1.0):
                break
            for key, _ in selector.select(min(deadline - time.monotonic(), 0.05)):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                room = max(caps[key.fd] - len(data[key.fd]), 0)
                over[key.fd] |= len(chunk) > room
                data[key.fd] += chunk[:room]  # past the cap: keep draining, keep nothing
                if key.fd == rep_r:
                    report.feed(chunk[:room])
    timed_out = exited_at is None
    _kill_group(proc)
    exit_code = proc.wait()
    report.close(over[rep_r])
    status = bytes(data[st_r]).strip()
    if status.isdigit():  # the namespace's init saw the candidate end: its real wait status
        exit_code = os.waitstatus_to_exitcode(int(status))
    return _Raw(
        stdout=bytes(data[out]), stderr=bytes(data[err]), events=report.events,
        exit_code=None if timed_out or (stopped and not status.isdigit()) else exit_code,
        stdout_truncated=over[out], stderr_truncated=over[err], duration=time.monotonic() - start,
    )


class _ReportReader:
    """Splits the report stream into lines: events (``{"event": ...}``) and call records (to `judge`)."""

    def __init__(self, judge: _CallJudge | None) -> None:
        self.judge = judge
        self.events: list[dict[str, Any]] = []
        self._pending = b""

    def feed(self, chunk: bytes) -> None:
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        for line in lines:
            self._line(line)

    def close(self, overflowed: bool) -> None:
        if self._pending or overflowed:
            self._line(self._pending, malformed=True)

    def _line(self, line: bytes, malformed: bool = False) -> None:
        try:
            record = None if malformed else json.loads(line)
        except (ValueError, RecursionError):
            record = None
        if isinstance(record, dict) and isinstance(record.get("event"), str):
            self.events.append(record)
        elif self.judge is not None and isinstance(record, dict) and "seq" in record:
            self.judge.feed(record)
        elif self.judge is not None and self.judge.calls:
            self.judge.malformed()


def _has_exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the process ended, without reaping it (its pid keeps naming the process group)."""
    return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.returncode is None:  # not reaped yet, so the group id is still ours
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _kill_uid(uid: int) -> None:
    """SIGKILL every live process of the throwaway `uid`, until none is left (NPROC bounds them)."""
    for _ in range(20):
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit() and _live_uid(name) == uid]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def _live_uid(pid: str) -> int | None:
    """Real uid of a process that is not a zombie, from /proc/PID/status."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return None
    if fields.get("State", "Z").split()[0] == "Z" or "Uid" not in fields:
        return None
    return int(fields["Uid"].split()[0])


def _environment(workdir: str) -> dict[str, str]:
    """The sandbox's whole environment: nothing inherited from ours."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": workdir,
        "PYTHONHASHSEED": "0",
        "PYTHONUTF8": "1",
        "PYTHONSAFEPATH": "1",
    }


def _flags(sandbox: dict[str, Any] | None, raw: _Raw) -> dict[str, Any]:
    sandbox = sandbox or {}
    namespaced = sandbox.get("namespaced") is True
    return {
        "network_isolated": namespaced,
        "pid_isolated": namespaced,
        "fs_isolated": sandbox.get("fs") is True,
        "user_isolated": sandbox.get("user") is True,
        "memory_limit": raw.memory_limit,
    }


def _last(events: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    """The harness's latest event of `kind` (events[0] is the sandbox report)."""
    return next((e for e in reversed(events[1:]) if e.get("event") == kind), None)


def _signal_reason(exit_code: int | None) -> str | None:
    """Why a process died from a signal (a negative exit code: the OS said it was signalled)."""
    if exit_code is None or exit_code >= 0:
        return None
    try:
        sig = signal.Signals(-exit_code)
    except ValueError:
        return f"killed by signal {-exit_code}"
    return _SIGNAL_REASONS.get(sig, f"killed by {sig.name}")


def _sandbox_error(raw: _Raw) -> str:
    error = next((e for e in raw.events if e.get("event") == "sandbox_error"), None)
    if error is not None:
        return str(error.get("error"))
    tail = raw.stderr.decode("utf-8", "replace").strip().splitlines()
    return tail[-1] if tail else f"sandbox did not start (exit code {raw.exit_code})"


def _result(raw: _Raw, status: Status, reason: str, flags: dict[str, Any], trusted: bool = False) -> ExecutionResult:
    return ExecutionResult(
        passed=status == "passed",
        status=status,
        reason=reason,
        duration=raw.duration,
        stdout=raw.stdout.decode("utf-8", "replace"),
        stderr=raw.stderr.decode("utf-8", "replace"),
        exit_code=raw.exit_code,
        truncated=raw.stdout_truncated or raw.stderr_truncated,
        trusted=trusted,
        **flags,
    )


def sandbox_runner(ray: bool) -> Callable[..., list[ExecutionResult]]:
    """`run_many` of the Ray integration (tasks on the cluster) when `ray`, else the local sandbox pool."""
    if ray:
        from .integrations.ray import run_many as on_ray

        return on_ray
    return run_many
