"""A keep-alive JSON request handler shared by the real test servers on 127.0.0.1."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any


class JSONRequestHandler(BaseHTTPRequestHandler):
    """Quiet HTTP/1.1 handler with `_send(status, payload)` that tolerates clients that gave up."""

    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

    def log_message(self, *args: Any) -> None:  # quiet test output
        pass

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            self.close_connection = True
