"""The sandbox against ordinary and hostile candidates (short timeouts: the file runs in seconds)."""

from __future__ import annotations

import os
import socket
import time
import uuid

import pytest

from codescaler_rerank.execution import Job, normalize_output, run_many, run_stdio, run_tests

SQUARE_TESTS = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(3) == 9\n\ncheck(square)\n"
SQUARE = "def square(x):\n    return x * x\n"


@pytest.fixture(scope="module")
def isolation():
    """What this machine's sandbox enforces (flags of a trivial run)."""
    return run_tests(SQUARE, SQUARE_TESTS)


def named(code: str) -> tuple[str, str]:
    """`code` prefixed with naming its process (and so its children) something unique; that name."""
    name = f"csr{uuid.uuid4().hex[:12]}"
    return f"import ctypes\nctypes.CDLL(None).prctl(15, b'{name}', 0, 0, 0)\n{code}", name


def live_processes(name: str) -> list[int]:
    """Processes called `name` that are not zombies."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
        if comm == name and state != "Z":
            pids.append(int(pid))
    return pids


def test_pass(isolation):
    assert isolation.passed and isolation.status == "passed"
    assert isolation.exit_code == 0 and isolation.duration < 5


def test_failed_assert_names_the_line():
    result = run_tests("def square(x):\n    return x + 2\n", SQUARE_TESTS)
    assert not result.passed and result.status == "failed"
    assert result.reason.startswith("AssertionError") and "assert candidate(3) == 9" in result.reason


def test_syntax_error_is_an_error_before_the_tests():
    result = run_tests("def square(x) return x", SQUARE_TESTS)
    assert result.status == "error" and result.reason.startswith("SyntaxError")


def test_stdout_and_stderr_are_captured():
    result = run_tests(SQUARE + "print('hello')\nimport sys\nprint('oops', file=sys.stderr)\n", SQUARE_TESTS)
    assert result.passed and result.stdout == "hello\n" and result.stderr == "oops\n"


@pytest.mark.parametrize(
    "code",
    [
        "import sys\nsys.exit(0)\n" + SQUARE,
        "exit()\n" + SQUARE,
        "import os\nos._exit(0)\n",
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    ],
    ids=["sys.exit", "exit", "os._exit", "kill-self"],
)
def test_exiting_before_the_tests_is_not_a_pass(code):
    result = run_tests(code, SQUARE_TESTS)
    assert not result.passed and result.status in {"error", "killed", "failed"}


def test_exit_inside_the_tests_is_not_a_pass():
    code = "import os, sys\ndef square(x):\n    sys.exit(0) if x == 3 else os._exit(0)\n"
    assert run_tests(code, SQUARE_TESTS).status == "failed"
    code = "import sys\ndef square(x):\n    if x == 3:\n        sys.exit(0)\n    return x * x\n"
    result = run_tests(code, SQUARE_TESTS)
    assert result.status == "failed" and result.reason.startswith("SystemExit")


def test_printed_or_forged_markers_are_not_a_pass():
    fake = 'print("PASSED")\nprint(\'{"event": "passed", "nonce": "0"}\')\nimport os\nos._exit(0)\n'
    assert not run_tests(fake, SQUARE_TESTS).passed
    # The report pipe is findable (its fd is in argv), but without the nonce a report is worthless.
    forged = (
        "import json, os, sys\n"
        "fd = json.loads(sys.argv[1])['rep']\n"
        "os.write(fd, b'{\"event\": \"passed\", \"nonce\": \"' + b'0' * 32 + b'\"}\\n')\n"
        "os._exit(0)\n"
    )
    assert not run_tests(forged, SQUARE_TESTS).passed


def test_patched_builtins_do_not_reach_the_tests():
    code = (
        "import builtins, sys\n"
        "builtins.abs = lambda x: 0\n"
        "builtins.AssertionError = type('Quiet', (Exception,), {})\n"
        "builtins.print = lambda *a, **k: None\n"
        "sys.stdout = None\n"
        "def half(x):\n    return 0\n"
    )
    tests = "assert abs(half(3) - 1.5) < 1e-9\n"
    result = run_tests(code, tests)
    assert result.status == "failed" and result.reason.startswith("AssertionError")


def test_tests_are_not_on_disk_and_the_workdir_is_fresh():
    code = "import os\nassert os.listdir('.') == [], os.listdir('.')\nopen('scratch.txt', 'w').write('x')\n" + SQUARE
    for _ in range(2):  # the second run must not see the first one's file
        assert run_tests(code, SQUARE_TESTS).passed


def test_environment_is_clean(monkeypatch):
    monkeypatch.setenv("CODESCALER_TEST_SECRET", "hunter2")
    code = (
        "import os\n"
        "assert 'CODESCALER_TEST_SECRET' not in os.environ\n"
        "assert not any('hunter2' in v for v in os.environ.values())\n" + SQUARE
    )
    result = run_tests(code, SQUARE_TESTS)
    assert result.passed, result.reason


def test_no_capabilities_and_no_privilege_gain():
    code = (
        "status = dict(line.split(':', 1) for line in open('/proc/self/status'))\n"
        "assert int(status['CapEff'], 16) == int(status['CapPrm'], 16) == 0, status['CapEff']\n"
        "assert int(status['NoNewPrivs']) == 1\n" + SQUARE
    )
    result = run_tests(code, SQUARE_TESTS)
    assert result.passed, result.reason


def test_read_only_mounts_cannot_be_undone(isolation):
    if not isolation.fs_isolated:
        pytest.skip("no private mount namespace here")
    code = (
        "import ctypes\n"
        "attr = (ctypes.c_uint64 * 4)(0, 1, 0, 0)  # clear MOUNT_ATTR_RDONLY\n"
        "assert ctypes.CDLL(None).syscall(442, -100, b'/', 0x8000, attr, 32) != 0\n" + SQUARE
    )
    assert run_tests(code, SQUARE_TESTS).passed


def test_infinite_loop_times_out():
    start = time.monotonic()
    result = run_tests("while True:\n    pass\n", SQUARE_TESTS, timeout=1.5)
    assert result.status == "timeout" and result.exit_code is None
    assert 1.5 <= result.duration < 4 and time.monotonic() - start < 5


def test_blocking_on_stdin_gets_eof():
    result = run_tests("input()\n", SQUARE_TESTS, timeout=2)
    assert result.status == "error" and result.reason.startswith("EOFError")


def test_closing_the_outputs_still_times_out():
    code = "import os, sys\nprint('bye')\nsys.stdout.flush()\nos.close(1)\nos.close(2)\nwhile True:\n    pass\n"
    result = run_tests(code, SQUARE_TESTS, timeout=1.5)
    assert result.status == "timeout" and result.stdout == "bye\n"


def test_fork_bomb_is_contained():
    code, name = named("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n")
    start = time.monotonic()
    result = run_tests(code, SQUARE_TESTS, timeout=1.5, max_processes=32)
    assert not result.passed and result.status in {"timeout", "killed"}
    assert time.monotonic() - start < 10
    time.sleep(0.2)
    assert live_processes(name) == []


def test_daemons_do_not_outlive_the_run(isolation):
    if not (isolation.pid_isolated or isolation.user_isolated):
        pytest.skip("leftovers can only be found and killed with a PID namespace or a throwaway uid")
    code, name = named(
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(600)\n"
        "    os._exit(0)\n" + SQUARE
    )
    assert run_tests(code, SQUARE_TESTS, timeout=3).passed
    time.sleep(0.2)
    assert live_processes(name) == []


def test_huge_allocation_hits_the_memory_limit():
    result = run_tests("x = bytearray(8 << 30)\n", SQUARE_TESTS, memory_mb=512)
    assert result.status == "killed" and "memory limit" in result.reason
    result = run_tests("x = [0] * 10**9\n", SQUARE_TESTS, memory_mb=512)
    assert result.status == "killed"


def test_huge_output_is_capped():
    code = "while True:\n    print('spam' * 1000)\n"
    result = run_tests(code, SQUARE_TESTS, timeout=1.5, max_output=1 << 16)
    assert result.truncated and len(result.stdout) == 1 << 16 and result.status == "timeout"


def test_file_size_limit():
    result = run_tests("open('big', 'wb').write(b'x' * (8 << 20))\n", SQUARE_TESTS, max_file_mb=1)
    assert result.status == "error" and "File too large" in result.reason


def test_writes_outside_the_workdir(isolation, tmp_path):
    name = f"codescaler-escape-{uuid.uuid4().hex}"
    here = os.path.dirname(os.path.abspath(__file__))
    code = (
        "def attempt(path):\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "    except OSError:\n"
        "        pass\n"
        f"attempt('/tmp/{name}')\n"
        f"attempt({os.path.join(here, name)!r})\n"
        f"attempt({str(tmp_path / name)!r})\n" + SQUARE
    )
    assert run_tests(code, SQUARE_TESTS).passed
    if isolation.fs_isolated:
        assert not os.path.exists(f"/tmp/{name}")  # the sandbox's /tmp is its own
    if isolation.fs_isolated or isolation.user_isolated:
        assert not os.path.exists(os.path.join(here, name))
        assert not (tmp_path / name).exists()
    for path in (f"/tmp/{name}", os.path.join(here, name)):
        if os.path.exists(path):
            os.unlink(path)


def test_killing_the_parent_does_not_reach_us(isolation):
    if not (isolation.pid_isolated or isolation.user_isolated):
        pytest.skip("without a PID namespace or a throwaway uid the candidate could kill this test process")
    code = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n" + SQUARE
    run_tests(code, SQUARE_TESTS)
    assert os.getpid() > 0  # still here


def test_network(isolation):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).close()\n" + SQUARE
        result = run_tests(code, SQUARE_TESTS, timeout=5)
    if isolation.network_isolated:
        assert result.status == "error" and "OSError" in result.reason
    else:
        assert result.passed  # reported honestly: the network is reachable here


def test_stdio_pass_and_normalisation():
    code = "a, b = map(int, input().split())\nprint(a + b, ' ')\nprint()\n"
    result = run_stdio(code, [("1 2\n", "3"), ("10 20", "30\n\n")])
    assert result.passed and result.status == "passed"
    assert normalize_output("1  \n2\t\n\n\n") == "1\n2"


def test_stdio_wrong_answer_names_the_case():
    result = run_stdio("print(int(input()) * 2)\n", [("2", "4"), ("3", "7")])
    assert not result.passed and result.status == "failed" and result.reason == "case 2/2: wrong answer"


def test_stdio_exit_codes_and_errors():
    assert run_stdio("import sys\nprint(1)\nsys.exit()\n", [("", "1")]).passed
    assert run_stdio("print(1)\nexit(0)\n", [("", "1")]).passed
    result = run_stdio("print(1)\nraise SystemExit(3)\n", [("", "1")])
    assert result.status == "error" and "exited with code 3" in result.reason
    result = run_stdio("print(1 / 0)\n", [("", "1")])
    assert result.status == "error" and "ZeroDivisionError" in result.reason


def test_stdio_timeout_is_per_case():
    result = run_stdio("import time\ntime.sleep(float(input()))\nprint('ok')\n", [("0", "ok"), ("30", "ok")], timeout=1)
    assert result.status == "timeout" and result.reason.startswith("case 2/2") and result.duration < 5


def test_run_many_survives_a_hanging_job():
    jobs = [
        Job(SQUARE, tests=SQUARE_TESTS),
        Job("while True:\n    pass\n", tests=SQUARE_TESTS),
        Job("def square(x):\n    return 0\n", tests=SQUARE_TESTS),
        Job("print(input()[::-1])\n", cases=[("abc", "cba")]),
        Job(SQUARE, tests=SQUARE_TESTS),
    ]
    start = time.monotonic()
    results = run_many(jobs, workers=2, timeout=2)
    assert [r.status for r in results] == ["passed", "timeout", "failed", "passed", "passed"]
    assert time.monotonic() - start < 8


def test_run_many_rejects_ambiguous_jobs():
    with pytest.raises(ValueError):
        run_many([Job("pass")])
