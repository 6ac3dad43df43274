"""Finding processes by name, to show that sandboxed candidates leave none behind."""

from __future__ import annotations

import os


def live_processes(name: str) -> list[int]:
    """Processes called `name` (their comm, as set by prctl(PR_SET_NAME)) that are not zombies."""
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
