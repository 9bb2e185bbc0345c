"""A small local SMS/IVR gateway: sometimes slow, fails a configurable share of requests."""

from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Gateway:
    """Serves POST /sms and POST /ivr on 127.0.0.1; counts what it delivered."""

    def __init__(self, *, failure_rate: float = 0.1, slow_rate: float = 0.05, slow_seconds: float = 0.3,
                 seed: int | None = None) -> None:
        self.failure_rate = failure_rate
        self.slow_rate = slow_rate
        self.slow_seconds = slow_seconds
        self.delivered: dict[str, int] = {"sms": 0, "ivr": 0}
        self.refused = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="gateway", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Gateway:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _decide(self) -> tuple[bool, float]:
        with self._lock:
            fail = self._random.random() < self.failure_rate
            slow = self.slow_seconds if self._random.random() < self.slow_rate else 0.0
        return fail, slow

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                channel = self.path.strip("/")
                body: dict[str, Any] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fail, slow = gateway._decide()
                if slow:
                    time.sleep(slow)
                if channel not in gateway.delivered or "to" not in body:
                    self._reply(404, {"error": "unknown channel"})
                elif fail:
                    with gateway._lock:
                        gateway.refused += 1
                    self._reply(503, {"error": "gateway busy, try again"})
                else:
                    with gateway._lock:
                        gateway.delivered[channel] += 1
                    self._reply(202, {"status": "queued"})

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
