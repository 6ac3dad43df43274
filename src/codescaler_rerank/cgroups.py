"""One cgroup per sandbox run: a memory limit over all its processes together, and a process cap.

cgroup v2 where the caller's cgroup delegates the ``memory`` and ``pids`` controllers to its
children (a systemd scope with ``Delegate=yes``, a container whose cgroup is its own), else the v1
``memory`` (and ``pids``) hierarchies, each under the caller's own cgroup. None of these can be made
(not root and nothing delegated, no cgroup filesystem): `RunCgroup.kind` is None and only the
per-process rlimits bound the run.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from typing import Literal

Kind = Literal["v2", "v1"]


@functools.cache
def _mounts() -> dict[str, str]:
    """Mount points by hierarchy: ``"v2"``, and v1 controllers (``"memory"``, ``"pids"``)."""
    found: dict[str, str] = {}
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        sep = fields.index("-")
        point, fstype, options = fields[4], fields[sep + 1], fields[sep + 3].split(",")
        if fstype == "cgroup2":
            found.setdefault("v2", point)
        elif fstype == "cgroup":
            for controller in ("memory", "pids"):
                if controller in options:
                    found.setdefault(controller, point)
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per hierarchy (``"v2"`` for the unified one), from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        for line in f.read().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else ["v2"]:
                paths[name] = path
    return paths


def _write(path: str, value: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(value)


class RunCgroup:
    """A fresh cgroup for one run (`procs`: the files its first process writes itself into)."""

    def __init__(self, name: str, memory_bytes: int, max_processes: int) -> None:
        self.kind: Kind | None = None
        self.dirs: list[str] = []
        for make in (self._make_v2, self._make_v1):
            try:
                make(name, memory_bytes, max_processes)
                return
            except (OSError, KeyError, ValueError):
                self.remove()

    @property
    def procs(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self.dirs]

    def _make_v2(self, name: str, memory_bytes: int, max_processes: int) -> None:
        base = _mounts()["v2"] + _own_paths()["v2"]
        with open(os.path.join(base, "cgroup.subtree_control"), encoding="ascii") as f:
            enabled = f.read().split()
        if not {"memory", "pids"} <= set(enabled):
            _write(os.path.join(base, "cgroup.subtree_control"), "+memory +pids")
        path = os.path.join(base, name)
        os.mkdir(path)
        self.dirs.append(path)
        _write(os.path.join(path, "memory.max"), str(memory_bytes))
        if os.path.exists(os.path.join(path, "memory.swap.max")):
            _write(os.path.join(path, "memory.swap.max"), "0")
        _write(os.path.join(path, "pids.max"), str(max_processes))
        self.kind = "v2"

    def _make_v1(self, name: str, memory_bytes: int, max_processes: int) -> None:
        mounts, own = _mounts(), _own_paths()
        memory = os.path.join(mounts["memory"] + own["memory"], name)
        os.mkdir(memory)
        self.dirs.append(memory)
        _write(os.path.join(memory, "memory.limit_in_bytes"), str(memory_bytes))
        if os.path.exists(os.path.join(memory, "memory.memsw.limit_in_bytes")):
            _write(os.path.join(memory, "memory.memsw.limit_in_bytes"), str(memory_bytes))  # no swap either
        if "pids" in mounts and "pids" in own:
            pids = os.path.join(mounts["pids"] + own["pids"], name)
            os.mkdir(pids)
            self.dirs.append(pids)
            _write(os.path.join(pids, "pids.max"), str(max_processes))
        self.kind = "v1"

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this cgroup for going over its memory limit."""
        if not self.dirs:
            return False
        name = "memory.events" if self.kind == "v2" else "memory.oom_control"
        try:
            with open(os.path.join(self.dirs[0], name), encoding="ascii") as f:
                counters = dict(line.split() for line in f if len(line.split()) == 2)
        except OSError:
            return False
        return int(counters.get("oom_kill", "0")) > 0

    def remove(self) -> None:
        """Kill every process left in the cgroup, then delete it."""
        for path in reversed(self.dirs):
            for _ in range(500):
                if self._empty(path):
                    break
                time.sleep(0.002)
            try:
                os.rmdir(path)
            except OSError:
                pass  # a process we could not kill: the directory stays, the run is reported anyway
        self.dirs = []

    @staticmethod
    def _empty(path: str) -> bool:
        """Whether no process is left in `path` (SIGKILL to each one that is)."""
        try:
            with open(os.path.join(path, "cgroup.procs"), encoding="ascii") as f:
                pids = [int(line) for line in f if line.strip()]
        except OSError:
            return True
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return not pids
