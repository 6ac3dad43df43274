"""Hostile candidates (forge, escape, exhaust, leave behind, fd tricks, signals, floods), each with
its expected verdict; all of them run once, in parallel, through `run_many` (real subprocesses).

Function-style cases define ``square`` against SQUARE_TESTS (converted to parent-judged calls):
a case that *tries* something and then answers correctly is expected to pass, which shows the
attempt was contained; a case that *is* the attack (a forged result) is expected to fail.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import NamedTuple

import pytest

from processes import live_processes

from codescaler_rerank.datasets import bundled_path
from codescaler_rerank.execution import ExecutionResult, Job, run_many

SQUARE = "def square(x):\n    return x * x\n"
SQUARE_TESTS = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(3) == 9\n\ncheck(square)\n"
TAG = f"hst{uuid.uuid4().hex[:10]}"  # process name of every case (children inherit it)
RUN_SOCKET = f"/run/codescaler-hostile-{TAG}.sock"
ABSTRACT_SOCKET = f"\0codescaler-hostile-{TAG}"
DATA_FILE = str(bundled_path("humaneval"))


class Case(NamedTuple):
    name: str
    code: str
    statuses: frozenset[str]  # acceptable statuses; "passed" means the attack was contained
    stdio: tuple[str, str] | None = None  # (stdin, expected stdout): a stdio run instead of calls


def attempt(body: str) -> str:
    """Code that runs `body` (exceptions swallowed) at import, then defines a correct square."""
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    return f"try:\n{indented}\nexcept BaseException:\n    pass\n{SQUARE}"


def returning(expr: str, prelude: str = "") -> str:
    return f"{prelude}def square(x):\n    return {expr}\n"


PASS, FAIL = frozenset({"passed"}), frozenset({"failed"})
NOT_PASS = frozenset({"failed", "error", "killed", "timeout"})
REP = "__import__('json').loads(__import__('sys').argv[1])['rep']"

CASES = [
    # forge: the verdict must not move without correct results
    Case("forge-nonce-from-argv", "import json, os, sys\ncfg = json.loads(sys.argv[1])\n"
         "os.write(cfg['rep'], json.dumps({'event': 'passed', 'nonce': os.read(cfg['ctl'], 64).decode()}).encode()"
         " + b'\\n')\nos._exit(0)\n", NOT_PASS),
    Case("forge-records-then-exit", f"import os\nfd = {REP}\nfor i in range(2):\n"
         "    os.write(fd, ('{\"seq\": %d, \"value\": 0}\\n' % i).encode())\nos._exit(0)\n", NOT_PASS),
    Case("forge-records-then-correct", f"import os\nfd = {REP}\nos.write(fd, b'{{\"seq\": 0, \"value\": 1}}\\n')\n"
         + SQUARE, FAIL),
    Case("forge-garbage-line", f"import os\nos.write({REP}, b'garbage\\n')\n" + SQUARE, FAIL),
    Case("forge-partial-line", f"import os\nos.write({REP}, b'{{\"seq\": ')\n" + SQUARE, FAIL),
    Case("forge-report-flood", f"import os\nfd = {REP}\nfor _ in range(100):\n    os.write(fd, b'x' * 65536)\n"
         + SQUARE, FAIL),
    Case("forge-stdout-dup-to-report", f"import os, sys\nos.dup2({REP}, 1)\nprint('{{\"seq\": 0, \"value\": 4}}')\n"
         "sys.stdout.flush()\n" + returning("0"), FAIL),
    Case("forge-patched-json", returning("0", "import json\njson.dumps = lambda *a, **k: '{\"seq\": 0, \"value\": 4}'\n"),
         FAIL),
    Case("forge-always-equal", returning("type('E', (), {'__eq__': lambda s, o: True})()"), FAIL),
    Case("forge-int-subclass", returning("type('I', (int,), {'__eq__': lambda s, o: True})(x * x)"), FAIL),
    Case("forge-str-repr", returning("type('R', (), {'__repr__': lambda s: str(x * x)})()"), FAIL),
    Case("forge-bool-for-int", returning("True"), FAIL),
    Case("forge-float-for-int", returning("float(x * x)"), FAIL),
    Case("forge-gc-search-tests", returning("0", "import gc\nFOUND = [o for o in gc.get_objects() "
         "if isinstance(o, str) and 'candidate(3)' in o]\n"), FAIL),
    Case("forge-print-marker", "print('PASSED')\nprint('{\"event\": \"passed\"}')\n" + returning("0"), FAIL),
    Case("forge-close-report-fd", f"import os\nos.close({REP})\n" + SQUARE, NOT_PASS),
    Case("forge-sys-exit-at-import", "import sys\nsys.exit(0)\n" + SQUARE, frozenset({"error"})),
    Case("forge-os-exit-at-import", "import os\nos._exit(0)\n", frozenset({"error"})),
    Case("forge-exit-inside-call", returning("__import__('os')._exit(0)"), NOT_PASS),
    Case("forge-systemexit-inside-call", returning("__import__('sys').exit(0)"), FAIL),
    Case("forge-generator-result", returning("(i for i in [x * x])"), FAIL),
    Case("forge-self-containing-list", "def square(x):\n    a = []\n    a.append(a)\n    return a\n", FAIL),
    Case("forge-deep-result", "def square(x):\n    a = x * x\n    for _ in range(10000):\n        a = [a]\n"
         "    return a\n", FAIL),
    Case("forge-huge-result", returning("list(range(10 ** 7))"), NOT_PASS),
    # escape: each attempt must fail inside, so the correct square that follows passes
    Case("escape-read-bundled-labels", f"if __import__('os').path.exists({DATA_FILE!r}):\n    raise SystemExit\n"
         + SQUARE, PASS),
    Case("escape-unix-socket-under-run", "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ntry:\n"
         f"    s.connect({RUN_SOCKET!r})\n    sys.exit(1)\nexcept OSError:\n    pass\n" + SQUARE, PASS),
    Case("escape-abstract-unix-socket", "import socket, sys\ns = socket.socket(socket.AF_UNIX)\ntry:\n"
         f"    s.connect({ABSTRACT_SOCKET!r})\n    sys.exit(1)\nexcept OSError:\n    pass\n" + SQUARE, PASS),
    Case("escape-tcp-loopback", "import socket, sys\ntry:\n"
         "    socket.create_connection(('127.0.0.1', 22), timeout=1)\n    sys.exit(1)\nexcept OSError:\n    pass\n"
         + SQUARE, PASS),
    Case("escape-list-run-and-work", "import os\nif os.listdir('/run') or os.path.exists('/work') "
         "or os.path.exists('/sys/fs/cgroup'):\n    raise SystemExit\n" + SQUARE, PASS),
    Case("escape-read-shadow", attempt("open('/etc/shadow').read()\nraise SystemExit"), PASS),
    Case("escape-write-usr", attempt("open('/usr/codescaler-x', 'w')\nraise SystemExit"), PASS),
    Case("escape-remount-rw", "import ctypes\nattr = (ctypes.c_uint64 * 4)(0, 1, 0, 0)\n"
         "if ctypes.CDLL(None).syscall(442, -100, b'/', 0x8000, attr, 32) == 0:\n    raise SystemExit\n" + SQUARE,
         PASS),
    Case("escape-proc-of-init", attempt("os = __import__('os')\nos.listdir('/proc/1/fd')\nraise SystemExit"), PASS),
    Case("escape-new-user-namespace", "import ctypes, os\n"
         "if ctypes.CDLL(None).unshare(0x10000000 | 0x20000) == 0 and os.path.exists('/work'):\n"
         "    raise SystemExit\n" + SQUARE, PASS),
    Case("escape-environment", "import os\nif any('PYTEST' in k or 'VIRTUAL_ENV' in k for k in os.environ):\n"
         "    raise SystemExit\n" + SQUARE, PASS),
    # signals: nothing outside the sandbox can be reached; the OS-reported status is what counts
    Case("signal-kill-init", attempt("import os, signal\nos.kill(1, signal.SIGKILL)"), PASS),
    Case("signal-kill-everyone", attempt("import os, signal\nos.kill(-1, signal.SIGKILL)"), PASS),
    Case("signal-kill-parent", attempt("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"), PASS),
    Case("signal-kill-self", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n" + SQUARE,
         frozenset({"killed"})),
    Case("signal-stop-self", "import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)\n" + SQUARE,
         frozenset({"timeout"})),
    Case("signal-segfault", "import ctypes\nctypes.string_at(0)\n" + SQUARE, frozenset({"killed"})),
    # exhaust: limits hold and the run still ends
    Case("exhaust-fork-bomb", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
         frozenset({"timeout", "killed"})),
    Case("exhaust-thread-bomb", attempt("import threading, time\nwhile True:\n"
         "    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()"), PASS),
    Case("exhaust-fds", attempt("keep = []\nwhile True:\n    keep.append(open('/dev/null'))"), PASS),
    Case("exhaust-fill-tmp", attempt("f = open('/tmp/fill', 'wb')\nwhile True:\n    f.write(b'x' * (1 << 20))"), PASS),
    Case("exhaust-fill-shm", attempt("f = open('/dev/shm/fill', 'wb')\nwhile True:\n    f.write(b'x' * (1 << 20))"),
         PASS),
    Case("exhaust-huge-allocation", "x = bytearray(8 << 30)\n" + SQUARE, frozenset({"killed"})),
    Case("exhaust-forked-allocations", "import os, time\nfor _ in range(6):\n    if os.fork() == 0:\n"
         "        b = b'x' * (200 << 20)\n        time.sleep(30)\ntime.sleep(30)\n", frozenset({"timeout", "killed"})),
    Case("exhaust-infinite-loop", "while True:\n    pass\n", frozenset({"timeout"})),
    Case("exhaust-sleep-in-call", returning("__import__('time').sleep(60)"), frozenset({"timeout"})),
    Case("exhaust-recursion", "def square(x):\n    return square(x)\n", FAIL),
    # leave behind: processes that try to outlive the run (checked after the suite)
    Case("leave-double-fork-daemon", "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
         "        time.sleep(600)\n    os._exit(0)\n" + SQUARE, PASS),
    Case("leave-orphan-ignoring-signals", "import os, signal, time\nif os.fork() == 0:\n"
         "    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):\n        signal.signal(s, signal.SIG_IGN)\n"
         "    time.sleep(600)\n" + SQUARE, PASS),
    # output floods
    Case("flood-stdout", "while True:\n    print('spam' * 1000)\n", frozenset({"timeout"})),
    Case("flood-stderr-correct-stdout", "import sys\nsys.stderr.write('e' * (3 << 20))\nprint(int(input()) * 2)\n",
         PASS, stdio=("21", "42")),
    Case("flood-stdout-stdio", "print('x' * (3 << 20))\n", FAIL, stdio=("", "x")),
    Case("exit-137-is-an-exit-code", "import os\nos._exit(137)\n", frozenset({"error"}), stdio=("", "")),
    Case("close-outputs-then-loop", "import os\nos.close(1)\nos.close(2)\nwhile True:\n    pass\n",
         frozenset({"timeout"})),
    Case("stdin-read-blocks", returning("input()"), FAIL),
]


def named(code: str) -> str:
    return f"import ctypes\nctypes.CDLL(None).prctl(15, b'{TAG}', 0, 0, 0)\n{code}"


@pytest.fixture(scope="module")
def verdicts() -> dict[str, ExecutionResult]:
    """Every case's result, from one parallel `run_many` (with sockets listening on the host)."""
    jobs = [
        Job(named(c.code), cases=[c.stdio]) if c.stdio else Job(named(c.code), tests=SQUARE_TESTS, entry_point="square")
        for c in CASES
    ]
    unix, abstract = socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)
    with unix, abstract:
        made_run_socket = os.path.isdir("/run") and os.access("/run", os.W_OK)
        if made_run_socket:
            unix.bind(RUN_SOCKET)
            unix.listen()
        abstract.bind(ABSTRACT_SOCKET)
        abstract.listen()
        try:
            results = run_many(jobs, workers=4, timeout=3, memory_mb=512, max_processes=32, max_file_mb=4,
                               max_output=1 << 20)
        finally:
            if made_run_socket:
                os.unlink(RUN_SOCKET)
    return {c.name: r for c, r in zip(CASES, results)}


def test_enough_cases():
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_verdict(case: Case, verdicts: dict[str, ExecutionResult]) -> None:
    result = verdicts[case.name]
    if not (result.network_isolated and result.pid_isolated and result.fs_isolated):
        pytest.skip("this host gives the sandbox no namespaces")
    assert result.status in case.statuses, (result.status, result.reason)
    if not case.stdio:
        assert result.trusted


def test_specific_reasons(verdicts: dict[str, ExecutionResult]) -> None:
    assert verdicts["exit-137-is-an-exit-code"].exit_code == 137
    assert "exited with code 137" in verdicts["exit-137-is-an-exit-code"].reason
    assert verdicts["signal-kill-self"].exit_code == -9
    assert verdicts["signal-segfault"].reason == "segmentation fault"
    assert "memory limit" in verdicts["exhaust-huge-allocation"].reason
    assert "malformed report" in verdicts["forge-garbage-line"].reason
    assert verdicts["flood-stdout-stdio"].reason == "case 1/1: output over 1048576 bytes"
    assert verdicts["flood-stderr-correct-stdout"].truncated


def test_nothing_outlives_the_suite(verdicts: dict[str, ExecutionResult]) -> None:
    assert verdicts  # every run has ended
    for _ in range(50):
        if not live_processes(TAG):
            break
        time.sleep(0.1)
    assert live_processes(TAG) == []
