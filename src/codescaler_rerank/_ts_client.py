"""The caller's side of the tree-sitter parse worker (`_ts_worker`): one lazily started process, shared by
all threads, restarted after a crash.

A crash (the worker's address-space cap, a segfault) answers `None`: the caller reports `parse_failed`.
`_SAFETY_TIMEOUT_S` only guards against a worker that hangs; verdicts come from the worker's counted limits
(its memory cap, the caller's byte caps), so the timeout never decides a normal answer.
"""

from __future__ import annotations

import atexit
import os
import select
import subprocess
import sys
import threading

from . import _ts_worker as wire

__all__ = ["assemble", "check", "normal"]

_SAFETY_TIMEOUT_S = 30.0


class _Worker:
    """One worker process and the lock that serialises requests to it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None

    def request(self, op: int, language: str, data: bytes) -> tuple[int, bytes] | None:
        """Send one request and read its answer; None (and a stopped worker) if the worker failed."""
        with self.lock:
            if self.proc is None:
                self.proc = subprocess.Popen(
                    [sys.executable, wire.__file__],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,  # a crash message from tree-sitter is of no use to the caller
                    start_new_session=True,  # no Ctrl-C from the caller's terminal; stdin EOF ends it
                )
            assert self.proc.stdin is not None and self.proc.stdout is not None
            try:
                header = wire.REQUEST.pack(op, wire.LANGUAGES.index(language), len(data))
                self.proc.stdin.write(header + data)
                self.proc.stdin.flush()
                fd = self.proc.stdout.fileno()
                status, size = wire.ANSWER.unpack(_read(fd, wire.ANSWER.size))
                return status, _read(fd, size)
            except (OSError, EOFError, TimeoutError):
                self.stop()
                return None

    def stop(self) -> None:
        """End the worker (closing its stdin is enough for a healthy one)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _read(fd: int, size: int) -> bytes:
    """Exactly `size` bytes from `fd`; EOFError if the worker died, TimeoutError if it hangs."""
    chunks, left = [], size
    while left:
        ready, _, _ = select.select([fd], [], [], _SAFETY_TIMEOUT_S)
        if not ready:
            raise TimeoutError
        chunk = os.read(fd, left)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


_worker = _Worker()
_inherited: list[_Worker] = []  # a forked child keeps the parent's handle alive but never touches it


def _after_fork_in_child() -> None:
    """Give a forked child its own worker; close its copies of the parent's pipes so that the parent's
    worker still sees EOF when the parent exits (the file objects are kept, never closed twice)."""
    global _worker
    if _worker.proc is not None:
        for stream in (_worker.proc.stdin, _worker.proc.stdout):
            os.close(stream.fileno())  # type: ignore[union-attr]
    _inherited.append(_worker)
    _worker = _Worker()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(lambda: _worker.stop())


def check(data: bytes, language: str) -> str:
    """Whether `data` parses in `language`: "code", "data" (parses, but only names, literals and comments),
    "syntax_error", or "parse_failed" (the worker crashed: a hostile input ran into its memory cap)."""
    answer = _worker.request(wire.CHECK, language, data)
    if answer is None:
        return "parse_failed"
    return {wire.INVALID: "syntax_error", wire.VALID_DATA: "data", wire.VALID_CODE: "code"}[answer[0]]


def normal(data: bytes, language: str) -> str | None:
    """The worker's normal form of `data` (see `_ts_worker._normal`); None if it does not parse or failed."""
    answer = _worker.request(wire.NORMAL, language, data)
    return answer[1].decode() if answer is not None and answer[0] == wire.TEXT else None


def assemble(blocks: list[bytes], language: str, entry_point: str) -> str | None:
    """The worker's dependency-aware assembly of `blocks` for `entry_point` (see `_ts_assembly`); None if no
    block defines it, the result does not parse, or the worker failed."""
    answer = _worker.request(wire.ASSEMBLE, language, wire.pack([entry_point.encode(), *blocks]))
    return answer[1].decode() if answer is not None and answer[0] == wire.TEXT else None
