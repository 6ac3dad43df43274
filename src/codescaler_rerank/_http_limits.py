"""Connection limits of the proxy's uvicorn server: request read deadlines and a cap on open connections.

uvicorn has no deadline for receiving a request: `timeout_keep_alive` only covers the idle time between two
requests and every received byte resets it, and a fresh connection that sends nothing is never closed. So a
client that trickles its headers or body (slowloris), or just opens connections, holds them forever.
`limited_protocol` subclasses uvicorn's h11 protocol with

- a header deadline: the request line and headers must be complete `header_timeout` seconds after the connection
  opened (or after the first byte of the next request on a kept-alive connection);
- a body deadline: the whole body must be in `body_timeout` seconds after the headers;
- a connection cap: a new connection that makes more than `max_connections` open closes the longest-idle ones
  (no request in progress, slow headers included), so a flood of idle connections cannot lock clients out.

A deadline that passes before any response started is answered `408 Request Timeout`; the connection is closed.
Requests while every connection is busy get uvicorn's `503` (`limit_concurrency`).
"""

from __future__ import annotations

import heapq
import logging
import resource
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("codescaler_rerank.server")

FD_RESERVE = 64  # descriptors kept for everything but client connections (model files, logs, ...)


def _timeout_response(message: str) -> bytes:
    body = message.encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with read deadlines and idle-connection eviction (see the module docstring)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        self._timer: Any = None
        self._phase = ""
        self._received = False  # bytes of the current request arrived
        self._idle_since = 0.0
        super().connection_made(transport)
        self._idle_since = self.loop.time()
        self._evict_idle()
        self._arm("headers")

    def data_received(self, data: bytes) -> None:
        if self._timer is None and self.conn.their_state is h11.IDLE:
            self._arm("headers")  # the next request on a kept-alive connection
        self._received = True
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        self._idle_since = self.loop.time()
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    @property
    def idle(self) -> bool:
        """No request in progress: nothing received yet, headers still coming, or the last response sent."""
        no_cycle = self.cycle is None or self.cycle.response_complete
        return no_cycle and self.conn.their_state is h11.IDLE and not self.transport.is_closing()

    def _follow(self) -> None:
        """Move the deadline along with the request: the body's after the headers, none once it is all in."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self._phase == "headers":
                self._arm("body")
        elif state is not h11.IDLE:
            self._disarm()

    def _arm(self, phase: str) -> None:
        self._disarm()
        if phase == "headers":
            self._received = False
        timeout = self.header_timeout if phase == "headers" else self.body_timeout
        self._phase = phase
        self._timer = self.loop.call_later(timeout, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._phase = None, ""

    def _expired(self) -> None:
        phase, self._timer = self._phase, None
        if self.transport.is_closing():
            return
        timeout = self.header_timeout if phase == "headers" else self.body_timeout
        log.warning("closing a connection from %s: request %s not received within %ss", self.client, phase, timeout)
        cycle = self.cycle if phase == "body" else None
        if cycle is not None:  # the app waits for the body: it gets a disconnect
            started = cycle.response_started
            cycle.disconnected = True
            cycle.message_event.set()
        else:
            started = not self._received  # an idle connection is just closed, like uvicorn's keep-alive timeout
        if not started:
            self.transport.write(_timeout_response(f"request {phase} not received within {timeout:g}s"))
        self.transport.close()

    def _evict_idle(self) -> None:
        """Close the longest-idle connections while more than `max_connections` are open."""
        excess = len(self.connections) - self.max_connections
        if excess <= 0:
            return
        idle = [c for c in self.connections if c is not self and isinstance(c, LimitedH11Protocol) and c.idle]
        victims = heapq.nsmallest(excess, idle, key=lambda c: c._idle_since)
        for victim in victims:
            self.connections.discard(victim)
            victim._disarm()
            victim.transport.close()
        if victims:
            log.warning("%d connections open: closed the %d longest idle", len(self.connections) + len(victims), len(victims))


def limited_protocol(header_timeout: float, body_timeout: float, max_connections: int) -> type[LimitedH11Protocol]:
    """A `LimitedH11Protocol` subclass with these limits, for `uvicorn.Config(http=...)`."""
    attrs = {"header_timeout": header_timeout, "body_timeout": body_timeout, "max_connections": max_connections}
    return type("ProxyH11Protocol", (LimitedH11Protocol,), attrs)


def connection_budget(wanted: int, reserve: int = FD_RESERVE) -> int:
    """Client connections this process can hold: `wanted`, less when the open-files limit is lower.

    Raises the soft RLIMIT_NOFILE towards the hard one first (`wanted + reserve` descriptors); `reserve`
    descriptors stay for everything else (model files, upstream connections, logs).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + reserve
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - reserve))
