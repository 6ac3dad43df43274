"""The program that runs inside the sandbox (``python -S -B -c <this source> <config json>``).

Never imported by the package: `execution` reads this file as text. It uses the stdlib only (no
site-packages there). Process tree, outermost first:

* the started process (in the caller's PID namespace) joins the run's cgroup, unshares the
  namespaces and forks;
* init (PID 1 of the new PID namespace, never runs candidate code): builds the filesystem view,
  forks the candidate, reaps, and reports the candidate's real wait status on a pipe only it holds;
  when it exits the kernel kills whatever the candidate left behind;
* the candidate process: limits, throwaway uid, no capabilities, then the candidate's code.

Without namespaces (``require_isolation=False`` on a host that has none) the started process is
the candidate process.
"""

import ctypes
import json
import os
import platform
import resource
import sys

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = (
    0x20000, 0x10000000, 0x8000000, 0x20000000, 0x40000000)
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 0x1000, 0x4000, 0x40000
MNT_DETACH, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 2, -100, 0x8000, 1
SYS_MOUNT_SETATTR = 442
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(platform.machine())
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_SET_DUMPABLE, CAPABILITY_VERSION_3 = 24, 38, 4, 0x20080522
# What the minimal root holds of the host, read-only (plus the interpreter's own directories).
HOST_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom")

cfg = {}  # the run's configuration, from argv (see `execution._execute`)
libc = ctypes.CDLL(None, use_errno=True)
with open("/proc/self/uid_map") as f:  # root of the initial user namespace, not a rootless container
    REAL_ROOT = os.geteuid() == 0 and f.read().split() == ["0", "0", "4294967295"]
mount_setattr, pivot_root = libc["syscall"], libc["syscall"]  # two prototypes of syscall(2)
mount_setattr.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint, ctypes.c_void_p,
                          ctypes.c_size_t)
pivot_root.argtypes = (ctypes.c_long, ctypes.c_char_p, ctypes.c_char_p)
_write, _dumps, _exit = os.write, json.dumps, os._exit  # bound before any candidate code runs


class Unavailable(OSError):
    """Isolation that the run requires is missing (the parent raises SandboxUnavailable)."""


def emit(**event):
    _write(cfg["rep"], (_dumps(event) + "\n").encode())


def check(result, what):
    if result != 0:
        raise OSError(ctypes.get_errno(), what)


def mount(source, target, fstype=None, flags=0, data=None):
    encode = lambda s: None if s is None else s.encode()  # noqa: E731
    check(libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)), f"mount {target}")


def join_cgroups():
    for procs in cfg["cgroups"]:
        with open(procs, "w") as f:
            f.write("0")


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


def minimal_root(new_root):
    """Pivot into a root that holds only the interpreter's needs, read-only, with a private /tmp.

    `new_root` (our empty working directory) gets a tmpfs with read-only binds of `HOST_DIRS` and of
    the interpreter's `sys.path` directories, a few device nodes, empty tmpfs over the paths in
    ``cfg["hide"]`` (this package, the caller's site-packages) and over the interpreter's own
    site-packages, then its own /proc, /tmp and /dev/shm.
    """
    mount(None, "/", flags=MS_REC | MS_PRIVATE)  # nothing below propagates to the host
    mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    inside = lambda path: new_root + path  # noqa: E731
    wanted = list(HOST_DIRS) + [p for p in sys.path if not any(p.startswith(d + "/") for d in HOST_DIRS)]
    for path in wanted:
        if os.path.islink(path) and os.path.dirname(path) == "/":
            os.symlink(os.readlink(path), inside(path))  # merged /usr: /lib -> usr/lib
        elif os.path.isdir(path) and not os.path.exists(inside(path)):
            os.makedirs(inside(path))
            mount(path, inside(path), flags=MS_BIND | MS_REC)
    stdlib_packages = [os.path.join(p, name) for p in sys.path for name in ("site-packages", "dist-packages")]
    for path in cfg["hide"] + stdlib_packages:
        if os.path.isdir(inside(path)):
            mount("tmpfs", inside(path), "tmpfs", MS_NOSUID | MS_NODEV, "size=4k,mode=755")
    for name in ("proc", "tmp", "dev/shm", "run", "var/tmp"):
        os.makedirs(inside("/" + name), exist_ok=True)
    for name in DEVICES:
        open(inside(f"/dev/{name}"), "w").close()
        mount(f"/dev/{name}", inside(f"/dev/{name}"), flags=MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, inside(f"/dev/{name}"))
    attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY, 0, 0, 0)
    check(mount_setattr(SYS_MOUNT_SETATTR, AT_FDCWD, new_root.encode(), AT_RECURSIVE, attr, ctypes.sizeof(attr)),
          "mount_setattr")
    size = f"size={cfg['file_mb']}m,mode=1777"
    for path in ("/tmp", "/dev/shm"):
        mount("tmpfs", inside(path), "tmpfs", MS_NOSUID | MS_NODEV, size)
    mount("proc", inside("/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.chdir(new_root)
    if SYS_PIVOT_ROOT is None:
        raise OSError(0, f"pivot_root: unknown syscall number on {platform.machine()}")
    check(pivot_root(SYS_PIVOT_ROOT, b".", b"."), "pivot_root")  # the old root is now stacked under "."
    check(libc.umount2(b".", MNT_DETACH), "detach the old root")
    os.chdir("/tmp")


def set_limits():
    """Resource limits, and no privilege gain through setuid binaries or file capabilities."""
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
    cpu = int(cfg["timeout"]) + 1
    mb = 1 << 20
    for res, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)),
                       (resource.RLIMIT_AS, (cfg["memory_mb"] * mb,) * 2),
                       (resource.RLIMIT_FSIZE, (cfg["file_mb"] * mb,) * 2),
                       (resource.RLIMIT_NPROC, (cfg["nproc"],) * 2),
                       (resource.RLIMIT_NOFILE, (256, 256)),
                       (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(res, value)


def drop_privileges(fs):
    """As root: become the throwaway uid, keeping the stdlib importable through open dir fds."""
    if not REAL_ROOT:
        return False
    uid = cfg["uid"]
    if not fs:
        os.chown(os.getcwd(), uid, uid)  # the host working directory (the private /tmp is 1777)
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
    check(libc.capset(header, (ctypes.c_uint32 * 6)()), "capset")


def describe(exc, tests=None):
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
    _exit(1)


def encode(value, depth=0):
    """Plain data as type-tagged JSON (decoded by `calls.decode_value`); anything else raises TypeError."""
    kind = type(value)
    if depth > 100:
        raise TypeError("result nested too deeply")
    if value is None or kind in (bool, int, float, str):
        return value
    if kind is list:
        return [encode(v, depth + 1) for v in value]
    if kind in (tuple, set, frozenset):
        return {kind.__name__: [encode(v, depth + 1) for v in value]}
    if kind is dict:
        return {"dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if kind is bytes:
        return {"bytes": value.hex()}
    if kind is complex:
        return {"complex": [value.real, value.imag]}
    raise TypeError(f"result of type {kind.__module__}.{kind.__qualname__} is not plain data")


def candidate_scope(code, name):
    """The candidate's globals after running its code, and a copy of the builtins from before."""
    import builtins
    builtins.exit = builtins.quit = sys.exit  # `site` (-S) is what normally defines them
    pristine = dict(vars(builtins))
    scope = {"__name__": name, "__builtins__": builtins}
    emit(event="phase", phase="code")
    try:
        exec(compile(code, "<candidate>", "exec"), scope)
    except BaseException as exc:
        fail(exc, "code")
    return scope, pristine


def run_calls(scope, entry_point, calls, literal_eval):
    """Call the entry point once per call; report each result (or what it raised) as plain data."""
    function = scope.get(entry_point)
    if not callable(function):
        fail(NameError(f"the code defines no function {entry_point!r}"), "code")
    emit(event="phase", phase="calls")
    for seq, payload in enumerate(calls):
        args, kwargs = literal_eval(payload)
        try:
            record = {"seq": seq, "value": encode(function(*args, **kwargs))}
        except BaseException as exc:
            record = {"seq": seq, "raised": describe(exc)}
        if seq == len(calls) - 1:
            flush()
        try:
            text = _dumps(record, allow_nan=True)
        except BaseException as exc:
            text = _dumps({"seq": seq, "raised": describe(exc)})
        _write(cfg["rep"], (text + "\n").encode())


def run_tests(scope, pristine, tests):
    emit(event="phase", phase="tests")
    try:
        exec(compile(tests, "<tests>", "exec"), dict(scope, __builtins__=pristine))
    except BaseException as exc:
        fail(exc, "tests", tests)
    flush()
    emit(event="passed", nonce=os.read(cfg["ctl"], 64).decode())  # nonce: only now, only here


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
    _exit(status)


def candidate(payload, fs):
    """The candidate process: limits, uid, capabilities, then its code."""
    os.environ.update(HOME=os.getcwd(), TMPDIR=os.getcwd())
    set_limits()
    user = drop_privileges(fs)
    drop_capabilities()
    emit(event="sandbox", namespaced=cfg["namespaced"], fs=fs, user=user)
    if payload["mode"] == "program":
        run_program(payload["code"])
    from ast import literal_eval  # before the candidate's code, which may use up every fd
    scope, pristine = candidate_scope(payload["code"], "__candidate__")
    if payload["calls"] is not None:
        run_calls(scope, payload["entry_point"], payload["calls"], literal_eval)
    if payload["tests"] is not None:
        run_tests(scope, pristine, payload["tests"])
    _exit(0)


def init(payload):
    """PID 1: build the filesystem, run the candidate as PID 2, report its wait status, exit."""
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # /proc/1 stays closed to the candidate
    try:
        minimal_root(os.getcwd())
        fs = True
    except OSError as exc:
        if cfg["require"]:
            raise Unavailable(exc.errno, f"no private filesystem view ({exc})") from None
        fs = False
    pid = os.fork()
    if pid == 0:
        os.close(cfg["status"])
        guarded(candidate, payload, fs)
    while True:
        child, status = os.wait()
        if child == pid:
            _write(cfg["status"], f"{status}\n".encode())
            _exit(0)


def guarded(function, *args):
    try:
        function(*args)
    except BaseException as exc:
        emit(event="sandbox_error", error=f"{type(exc).__name__}: {exc}", missing=isinstance(exc, Unavailable))
        _exit(125)


def main():
    with open("payload.json", encoding="utf-8") as f:
        payload = json.load(f)
    os.unlink("payload.json")  # gone before any candidate code runs
    join_cgroups()
    namespaced = unshare()
    if cfg["require"] and not namespaced:
        raise Unavailable(ctypes.get_errno(), "no namespaces (unshare failed: user namespaces disabled?)")
    cfg["namespaced"] = namespaced
    if not namespaced:
        os.close(cfg["status"])
        candidate(payload, False)
    pid = os.fork()
    if pid == 0:
        guarded(init, payload)
    os.close(cfg["status"])
    os.waitpid(pid, 0)
    _exit(0)


if __name__ == "__main__":  # `python -c`; importing this file by mistake runs nothing
    cfg.update(json.loads(sys.argv[1]))
    guarded(main)
