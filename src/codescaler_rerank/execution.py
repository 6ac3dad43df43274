"""Run untrusted Python candidates against tests in a sandboxed subprocess.

Each run is a fresh ``python -S -B`` process (stdlib only) in its own session and process group,
with a clean environment (PATH, LANG, HOME/TMPDIR = its working directory, PYTHONHASHSEED=0;
nothing of ours), a temporary working directory that is removed afterwards, resource limits (CPU
time, address space, file size, processes, open files, no core dumps), ``no_new_privs`` (setuid
binaries grant nothing), stdin from /dev/null (function-style runs), stdout/stderr read up to a
cap (the rest is drained and dropped), and a wall-clock timeout after which the whole process
group is killed. Where Linux allows it (as root, or in an unprivileged user namespace) the process
also gets new mount, PID, network and IPC namespaces:

* network: only a loopback device that is down, so no connection of any kind;
* PID: the candidate cannot see or signal any process outside its sandbox (``os.getppid()`` is 0),
  and when the sandbox's first process exits the kernel kills everything it left behind
  (double-forked or ``setsid()`` daemons included);
* mount: the whole host filesystem is read-only (``mount_setattr``), ``/tmp``, ``/var/tmp``,
  ``/dev/shm`` and ``/run/lock`` are private size-capped tmpfs mounts (``/tmp`` is the working
  directory), ``/proc`` is the sandbox's own.

As root the candidate also runs under a throwaway unprivileged uid (random per run): it holds no
capabilities, cannot read root-only files (``/root``...; world-readable files stay readable),
cannot signal our processes, and the process limit (RLIMIT_NPROC, which root ignores) counts its
processes alone, so a fork bomb stops at ``max_processes``; the interpreter's stdlib stays
importable through directory fds opened before the switch. Root without namespaces (a default
Docker container) keeps the throwaway uid, and processes of that uid are killed after the run.
Not root, in a user namespace: the candidate keeps our uid (with capabilities inside its own
namespaces only). Which of these held is in every result (``network_isolated``, ``pid_isolated``,
``fs_isolated``, ``user_isolated``). With none of them (not root, user namespaces disabled) the
network is reachable, the filesystem is writable wherever our uid may write, processes that leave
the process group survive, and the candidate can signal our processes: use a container for
untrusted code there.

Threat model for the pass/fail verdict. Function-style runs (``run_tests``) exec the candidate and
then the tests in one interpreter, and count a pass only when the harness itself reaches the point
after the tests returned: it then reads a per-run nonce (``secrets.token_hex``) from a pipe the
parent filled, and writes it to a separate report pipe. The nonce is in no argument, environment
variable or file, and it is not in the process's memory while candidate code runs before or
during the tests. So these are never a pass: exiting early (``sys.exit(0)``, ``os._exit(0)``,
``SystemExit`` inside the tests, killing its own process or group), printing any marker on
stdout/stderr (verdicts never come from the output streams), replacing ``print``/``sys.stdout``
or builtins (the tests run with a pristine copy of the builtins), reading the tests from disk
(their file is deleted before candidate code starts), or signalling the parent. Exit code 0
alone is never a pass.

Out of scope: code written against this harness in particular. The candidate shares the
interpreter with the tests, so it can read the nonce pipe (its fd number is in ``sys.argv``) and
forge the report, introspect the running tests through frames/``gc``/``ctypes`` (e.g. read
expected values, jump over asserts with a trace function), monkeypatch modules the tests import,
or return objects whose ``__eq__`` is always true. Stdio runs (``run_stdio``) have no such gap: the
expected output never enters the sandbox and is compared by the parent.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import IO, Any, Literal, NamedTuple, Sequence

from pydantic import BaseModel
from tqdm import tqdm

Status = Literal["passed", "failed", "timeout", "error", "killed", "sandbox_error"]

_UID_BASE, _UID_SPAN = 1_000_000_000, 1_000_000  # throwaway uids used when we run as root
_REPORT_CAP = 1 << 16
_SIGNAL_REASONS = {
    signal.SIGKILL: "killed by SIGKILL",
    signal.SIGXCPU: "CPU time limit",
    signal.SIGXFSZ: "file size limit",
    signal.SIGSEGV: "segmentation fault",
}

# The program run in the sandbox, as `python -S -B -c _CHILD <config json>`. It must only use the
# stdlib and must not import this package (no site-packages there).
_CHILD = r'''
import ctypes, json, os, resource, sys

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = (
    0x20000, 0x10000000, 0x8000000, 0x20000000, 0x40000000)
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 0x40000
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 1
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, CAPABILITY_VERSION_3 = 24, 38, 0x20080522
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")

cfg = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
with open("/proc/self/uid_map") as f:  # root of the initial user namespace, not a rootless container
    REAL_ROOT = os.geteuid() == 0 and f.read().split() == ["0", "0", "4294967295"]
libc.syscall.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint,
                         ctypes.c_void_p, ctypes.c_size_t)
_write, _read, _dumps = os.write, os.read, json.dumps  # bound before any candidate code runs


def emit(**event):
    _write(cfg["rep"], (_dumps(event) + "\n").encode())


def unshare():
    """New mount/PID/network/IPC namespaces (in a new user namespace unless root)."""
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC
    if libc.unshare(flags | (0 if REAL_ROOT else CLONE_NEWUSER)) != 0:
        return False
    if not REAL_ROOT:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                           ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    return True


def mount(source, target, fstype, flags, data=None):
    if libc.mount(source, target, fstype, flags, data) != 0:
        raise OSError(ctypes.get_errno(), f"mount {target!r}")


def private_fs():
    """Read-only host filesystem, private tmpfs on the world-writable dirs, own /proc."""
    try:
        mount(None, b"/", None, MS_REC | MS_PRIVATE)  # nothing below propagates to the host
        attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY, 0, 0, 0)
        if libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, attr, ctypes.sizeof(attr)):
            raise OSError(ctypes.get_errno(), "mount_setattr")
        mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        for path in PRIVATE_DIRS:
            if os.path.isdir(path):
                size = f"size={cfg['file_mb']}m,mode=1777".encode()
                mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, size)
    except OSError:
        return False
    return True


def set_limits():
    """Resource limits, and no privilege gain through setuid binaries or file capabilities."""
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    cpu = int(cfg["timeout"]) + 1
    mb = 1 << 20
    for res, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)),
                       (resource.RLIMIT_AS, (cfg["memory_mb"] * mb,) * 2),
                       (resource.RLIMIT_FSIZE, (cfg["file_mb"] * mb,) * 2),
                       (resource.RLIMIT_NPROC, (cfg["nproc"],) * 2),
                       (resource.RLIMIT_NOFILE, (256, 256)),
                       (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(res, value)


def drop_privileges(workdir):
    """As root: become the throwaway uid, keeping the stdlib importable through open dir fds."""
    if not REAL_ROOT:
        return False
    uid = cfg["uid"]
    os.chown(workdir, uid, uid)
    moved = {p: f"/proc/self/fd/{os.open(p, os.O_RDONLY | os.O_DIRECTORY)}"
             for p in sys.path if os.path.isdir(p)}

    def move(path):
        for old, new in moved.items():
            if path == old or path.startswith(old + "/"):
                return new + path[len(old):]
        return path

    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    sys.path[:] = moved.values()
    for module in list(sys.modules.values()):  # packages imported already (encodings, collections)
        if isinstance(getattr(module, "__path__", None), list):
            module.__path__[:] = map(move, module.__path__)
    sys.path_importer_cache.clear()
    return True


def drop_capabilities():
    """Keep no capability (a new user namespace grants all; they could undo the read-only mounts)."""
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # fails harmlessly without CAP_SETPCAP
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    if libc.capset(header, (ctypes.c_uint32 * 6)()) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def describe(exc, tests):
    """'Type: message', with the failing line of the tests when there is one."""
    import traceback
    text = type(exc).__name__
    try:
        text += f": {exc}" if str(exc) else ""
    except BaseException:
        pass
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<tests>"]
    if lines and tests:
        text += f" (tests line {lines[-1]}: {tests.splitlines()[lines[-1] - 1].strip()})"
    return text[:1000]


def flush():
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:
            pass


def fail(exc, phase, tests=None):
    import traceback
    try:
        traceback.print_exception(exc)
    except BaseException:
        pass
    flush()
    emit(event="error", phase=phase, type=type(exc).__name__, error=describe(exc, tests))
    os._exit(1)


def run_tests(code, tests):
    import builtins
    builtins.exit = builtins.quit = sys.exit  # `site` (-S) is what normally defines them
    pristine = dict(vars(builtins))
    scope = {"__name__": "__candidate__", "__builtins__": builtins}
    emit(event="phase", phase="code")
    try:
        exec(compile(code, "<candidate>", "exec"), scope)
    except BaseException as exc:
        fail(exc, "code")
    emit(event="phase", phase="tests")
    try:
        exec(compile(tests, "<tests>", "exec"), dict(scope, __builtins__=pristine))
    except BaseException as exc:
        fail(exc, "tests", tests)
    flush()
    emit(event="passed", nonce=_read(cfg["ctl"], 64).decode())  # nonce: only now, only here
    os._exit(0)


def run_program(code):
    import builtins
    builtins.exit = builtins.quit = sys.exit
    status = 0
    try:
        exec(compile(code, "<candidate>", "exec"), {"__name__": "__main__", "__builtins__": builtins})
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            status = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            status = 1
    except BaseException as exc:
        fail(exc, "run")
    flush()
    os._exit(status)


def main():
    with open("payload.json", encoding="utf-8") as f:
        payload = json.load(f)
    os.unlink("payload.json")  # gone before any candidate code runs
    namespaced = unshare()
    if namespaced and (pid := os.fork()):  # the child is PID 1 of the new namespace
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        os._exit(code if code >= 0 else 128 - code)
    fs = namespaced and private_fs()
    workdir = "/tmp" if fs else os.getcwd()
    os.chdir(workdir)
    os.environ.update(HOME=workdir, TMPDIR=workdir)
    set_limits()
    user = drop_privileges(workdir)
    drop_capabilities()
    emit(event="sandbox", namespaced=namespaced, fs=fs, user=user)
    if payload["tests"] is None:
        run_program(payload["code"])
    else:
        run_tests(payload["code"], payload["tests"])


try:
    main()
except BaseException as exc:
    emit(event="sandbox_error", error=f"{type(exc).__name__}: {exc}")
    raise
'''


class ExecutionResult(BaseModel):
    """Outcome of one sandboxed run (for stdio runs: of the first failing case, or the last case)."""

    passed: bool
    status: Status
    reason: str  # e.g. "AssertionError (tests line 3: assert f(1) == 2)", "timed out after 10.0 s"
    duration: float  # seconds, wall clock (all cases for stdio runs)
    stdout: str  # at most `max_output` bytes, decoded
    stderr: str
    exit_code: int | None = None  # negative: killed by that signal; None: timed out
    truncated: bool = False  # stdout or stderr went over `max_output`
    network_isolated: bool = False  # own network namespace: no network at all
    pid_isolated: bool = False  # own PID namespace: cannot signal outside, leftovers killed
    fs_isolated: bool = False  # host filesystem read-only, private /tmp
    user_isolated: bool = False  # ran as a throwaway unprivileged uid (we were root)


class Job(NamedTuple):
    """One `run_many` job: `tests` for a function-style run, or `cases` for a stdio run."""

    code: str
    tests: str | None = None
    cases: Sequence[tuple[str, str]] | None = None


@dataclass(frozen=True)
class _Limits:
    timeout: float
    memory_mb: int
    max_processes: int
    max_file_mb: int
    max_output: int


class _Raw(NamedTuple):
    """What the parent saw of one process."""

    stdout: bytes
    stderr: bytes
    events: list[dict[str, Any]]
    exit_code: int | None  # None: we killed it at the deadline
    truncated: bool
    duration: float


def run_tests(
    code: str,
    tests: str,
    *,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    max_processes: int = 64,
    max_file_mb: int = 16,
    max_output: int = 1 << 20,
) -> ExecutionResult:
    """Run `code`, then `tests` (Python source whose assertions run after it) in one sandbox.

    HumanEval-style callers append the call themselves: ``tests + f"\\ncheck({entry_point})\\n"``.
    """
    limits = _Limits(timeout, memory_mb, max_processes, max_file_mb, max_output)
    nonce = secrets.token_hex(16)
    raw, sandbox = _execute({"code": code, "tests": tests}, None, limits, nonce)
    flags = _flags(sandbox)
    if sandbox is None:
        return _result(raw, "sandbox_error", _sandbox_error(raw), flags)
    if raw.exit_code is None:
        return _result(raw, "timeout", f"timed out after {timeout:.1f} s", flags)
    if raw.exit_code == 0 and {"event": "passed", "nonce": nonce} in raw.events:
        return _result(raw, "passed", "all tests passed", flags)
    error = _last(raw.events, "error")
    if error is not None:
        if error.get("type") == "MemoryError":
            return _result(raw, "killed", f"memory limit ({memory_mb} MB)", flags)
        status: Status = "error" if error.get("phase") == "code" else "failed"
        return _result(raw, status, str(error.get("error")), flags)
    if (signal_reason := _signal_reason(raw.exit_code)) is not None:
        return _result(raw, "killed", signal_reason, flags)
    phase = (_last(raw.events, "phase") or {}).get("phase", "code")
    when = "before the tests ran" if phase == "code" else "before the tests finished"
    return _result(raw, "error" if phase == "code" else "failed", f"exited with code {raw.exit_code} {when}", flags)


def run_stdio(
    code: str,
    cases: Sequence[tuple[str, str]],
    *,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    max_processes: int = 64,
    max_file_mb: int = 16,
    max_output: int = 1 << 20,
) -> ExecutionResult:
    """Run `code` as a program once per ``(stdin, expected stdout)`` case; pass if every case matches.

    Each case gets its own sandbox and its own `timeout`; the run stops at the first failing case.
    Outputs match when equal after stripping trailing whitespace from every line and trailing
    blank lines; the program must also exit with code 0 (``sys.exit()``/``exit()`` are fine).
    """
    if not cases:
        raise ValueError("run_stdio needs at least one case")
    limits = _Limits(timeout, memory_mb, max_processes, max_file_mb, max_output)
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

    `limits` are the keyword arguments of `run_tests`/`run_stdio`. A job whose sandbox cannot even
    start yields a ``sandbox_error`` result instead of stopping the others.
    """
    if any((job.tests is None) == (job.cases is None) for job in jobs):
        raise ValueError("every Job needs exactly one of `tests` and `cases`")
    results: list[ExecutionResult | None] = [None] * len(jobs)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        futures = {pool.submit(_run_job, job, limits): i for i, job in enumerate(jobs)}
        for future in tqdm(as_completed(futures), total=len(jobs), disable=not progress, desc="sandbox"):
            results[futures[future]] = future.result()
    return results  # type: ignore[return-value]


def normalize_output(text: str) -> str:
    """Strip trailing whitespace from every line and trailing blank lines."""
    return "\n".join(line.rstrip() for line in text.splitlines()).rstrip("\n")


def _run_job(job: Job, limits: dict[str, Any]) -> ExecutionResult:
    try:
        if job.cases is not None:
            return run_stdio(job.code, job.cases, **limits)
        return run_tests(job.code, job.tests, **limits)  # type: ignore[arg-type]
    except OSError as exc:  # could not start a process, pipes, temp dirs...
        return ExecutionResult(
            passed=False, status="sandbox_error", reason=f"{type(exc).__name__}: {exc}",
            duration=0.0, stdout="", stderr="",
        )


def _run_case(code: str, stdin: str, expected: str, limits: _Limits) -> ExecutionResult:
    with tempfile.TemporaryFile() as stdin_file:
        stdin_file.write(stdin.encode())
        stdin_file.seek(0)
        raw, sandbox = _execute({"code": code, "tests": None}, stdin_file, limits, None)
    flags = _flags(sandbox)
    if sandbox is None:
        return _result(raw, "sandbox_error", _sandbox_error(raw), flags)
    if raw.exit_code is None:
        return _result(raw, "timeout", f"timed out after {limits.timeout:.1f} s", flags)
    error = _last(raw.events, "error")
    if error is not None and error.get("type") == "MemoryError":
        return _result(raw, "killed", f"memory limit ({limits.memory_mb} MB)", flags)
    if error is not None:
        return _result(raw, "error", str(error.get("error")), flags)
    if (signal_reason := _signal_reason(raw.exit_code)) is not None:
        return _result(raw, "killed", signal_reason, flags)
    if raw.exit_code != 0:
        return _result(raw, "error", f"exited with code {raw.exit_code}", flags)
    if raw.truncated:
        return _result(raw, "failed", f"output over {limits.max_output} bytes", flags)
    if normalize_output(raw.stdout.decode("utf-8", "replace")) != normalize_output(expected):
        return _result(raw, "failed", "wrong answer", flags)
    return _result(raw, "passed", "all cases passed", flags)


def _execute(
    payload: dict[str, Any], stdin: IO[bytes] | None, limits: _Limits, nonce: str | None
) -> tuple[_Raw, dict[str, Any] | None]:
    """Start the sandbox, feed it, collect its output until it ends or the deadline; clean up.

    Returns what was seen and the sandbox's own first report (None if it never got that far).
    """
    uid = _UID_BASE + secrets.randbelow(_UID_SPAN)
    workdir = tempfile.mkdtemp(prefix="codescaler-sandbox-")
    ctl_r, ctl_w = os.pipe()
    rep_r, rep_w = os.pipe()
    try:
        with open(os.path.join(workdir, "payload.json"), "w", encoding="utf-8") as f:
            json.dump(payload, f)
        config = {
            "ctl": ctl_r, "rep": rep_w, "uid": uid, "timeout": limits.timeout,
            "memory_mb": limits.memory_mb, "file_mb": limits.max_file_mb, "nproc": limits.max_processes,
        }
        start = time.monotonic()
        with subprocess.Popen(
            [sys.executable, "-S", "-B", "-c", _CHILD, json.dumps(config)],
            cwd=workdir, env=_environment(workdir), stdin=stdin or subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(ctl_r, rep_w), start_new_session=True,
        ) as proc:
            for fd in (ctl_r, rep_w):
                os.close(fd)
            ctl_r = rep_w = -1
            os.write(ctl_w, (nonce or "").encode())  # fits the pipe buffer; read only after the tests
            os.close(ctl_w)
            ctl_w = -1
            try:
                raw = _collect(proc, rep_r, start, limits)
            finally:
                _kill_group(proc)
        first = raw.events[0] if raw.events else {}
        sandbox = first if first.get("event") == "sandbox" else None
        if sandbox is not None and sandbox.get("user") and not sandbox.get("namespaced"):
            _kill_uid(uid)  # no PID namespace: also end what left the process group
        return raw, sandbox
    finally:
        for fd in (ctl_r, ctl_w, rep_r, rep_w):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(workdir, ignore_errors=True)


def _collect(proc: subprocess.Popen[bytes], rep_r: int, start: float, limits: _Limits) -> _Raw:
    """Read stdout, stderr and the report pipe (each capped) until the process ends or time runs out."""
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.fileno(), proc.stderr.fileno()
    caps = {out: limits.max_output, err: limits.max_output, rep_r: _REPORT_CAP}
    data = {fd: bytearray() for fd in caps}
    truncated = False
    deadline = start + limits.timeout
    exited_at: float | None = None
    with selectors.DefaultSelector() as selector:
        for fd in caps:
            selector.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if exited_at is None and _has_exited(proc):
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
                truncated |= len(chunk) > room and key.fd != rep_r
                data[key.fd] += chunk[:room]  # past the cap: keep draining, keep nothing
    timed_out = exited_at is None
    _kill_group(proc)
    exit_code = proc.wait()
    return _Raw(
        bytes(data[out]), bytes(data[err]), _parse_events(bytes(data[rep_r])),
        None if timed_out else exit_code, truncated, time.monotonic() - start,
    )


def _parse_events(report: bytes) -> list[dict[str, Any]]:
    """The JSON objects of the report pipe, one per line (anything else is skipped)."""
    events = []
    for line in report.splitlines():
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


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


def _flags(sandbox: dict[str, Any] | None) -> dict[str, bool]:
    sandbox = sandbox or {}
    namespaced = sandbox.get("namespaced") is True
    return {
        "network_isolated": namespaced,
        "pid_isolated": namespaced,
        "fs_isolated": sandbox.get("fs") is True,
        "user_isolated": sandbox.get("user") is True,
    }


def _last(events: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    """The harness's latest event of `kind` (events[0] is the sandbox report)."""
    return next((e for e in reversed(events[1:]) if e.get("event") == kind), None)


def _signal_reason(exit_code: int | None) -> str | None:
    """Why a process died from a signal (negative code, or 128 + signal from the namespace's init)."""
    if exit_code is None or not (exit_code < 0 or 128 < exit_code < 128 + 65):
        return None
    number = -exit_code if exit_code < 0 else exit_code - 128
    try:
        sig = signal.Signals(number)
    except ValueError:
        return f"killed by signal {number}"
    return _SIGNAL_REASONS.get(sig, f"killed by {sig.name}")


def _sandbox_error(raw: _Raw) -> str:
    error = next((e for e in raw.events if e.get("event") == "sandbox_error"), None)
    if error is not None:
        return str(error.get("error"))
    tail = raw.stderr.decode("utf-8", "replace").strip().splitlines()
    return tail[-1] if tail else f"sandbox did not start (exit code {raw.exit_code})"


def _result(raw: _Raw, status: Status, reason: str, flags: dict[str, bool]) -> ExecutionResult:
    return ExecutionResult(
        passed=status == "passed",
        status=status,
        reason=reason,
        duration=raw.duration,
        stdout=raw.stdout.decode("utf-8", "replace"),
        stderr=raw.stderr.decode("utf-8", "replace"),
        exit_code=raw.exit_code,
        truncated=raw.truncated,
        **flags,
    )
