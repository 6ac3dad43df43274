"""A pooling server on 127.0.0.1 backed by a real `RewardModel`: vLLM's `/v1/models` and `/classify` over token ids.

The scores are the model's own raw logits (`RewardModel.score_token_ids`), so a `RemoteRewardModel` pointed at it
must give exactly the in-process model's scores. `posts` counts the `/classify` requests.
"""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from json_http import JSONRequestHandler


class RewardModelServer:
    def __init__(self, reward_model: Any, root: str, *, model: str = "codescaler-rm") -> None:
        self.reward_model = reward_model
        self.root = root
        self.model = model
        self.posts = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> RewardModelServer:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def classify(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("model") != self.model or body.get("use_activation") is not False:
            return 400, {"error": {"message": "wrong model or activation", "type": "BadRequestError", "code": 400}}
        with self._lock:
            self.posts += 1
        scores = self.reward_model.score_token_ids(body["input"])
        data = [{"index": i, "probs": [s]} for i, s in enumerate(scores)]
        return 200, {"object": "list", "model": self.model, "data": data}


def _handler(server: RewardModelServer) -> type[JSONRequestHandler]:
    class Handler(JSONRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/v1/models":
                self._send(404, {"detail": "Not Found"})
                return
            card = {"id": server.model, "root": server.root, "max_model_len": server.reward_model.max_length}
            self._send(200, {"object": "list", "data": [card]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            if self.path != "/classify":
                self._send(404, {"detail": "Not Found"})
                return
            self._send(*server.classify(body))

    return Handler
