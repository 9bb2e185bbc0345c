"""A real HTTP server on 127.0.0.1 for the HTTP services tests: one path per kind of reply.

Every POST is recorded (path, JSON body, headers, start and end on time.monotonic) so tests can check what was sent
and that calls of a service never overlapped.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

JSON = "application/json"
SLOW_SECONDS = 1.5  # /slow answers after this long (tests give it a timeout well under it)
LOCKED_SECONDS = 0.15  # /locked takes this long, so that overlapping calls would be seen

# path -> (status, content type, body)
REPLIES: dict[str, tuple[int, str, str]] = {
    "/success": (200, JSON, json.dumps({"code": "success", "message": "synced 3 devices"})),
    "/idle": (200, JSON, json.dumps({"code": "idle", "message": "nothing to do"})),
    "/error": (200, JSON, json.dumps({"code": "error", "message": "gateway down",
                                      "error_details": ["device 7: no answer", "device 9: refused"]})),
    "/html": (200, "text/html", "<html>oops</html>"),
    "/notjson": (200, JSON, "{not json"),
    "/wrongtype": (200, "text/plain", json.dumps({"code": "success"})),
    "/nocode": (200, JSON, json.dumps({"message": "hello"})),
    "/unknown": (200, JSON, json.dumps({"code": "maybe"})),
    "/http500": (500, JSON, json.dumps({"code": "success"})),
    "/locked": (200, JSON, json.dumps({"code": "success", "message": "locked call"})),
    "/slow": (200, JSON, json.dumps({"code": "success"})),
}


@dataclass
class Call:
    path: str
    body: Any
    start: float
    end: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Stub:
    url: str
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, path: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.path == path and c.end]


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve() -> Iterator[Stub]:
    stub = Stub(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            start = time.monotonic()
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            path = self.path.split("?", 1)[0]
            call = Call(path, json.loads(raw) if raw else None, start, headers=dict(self.headers.items()))
            with stub.lock:
                stub.calls.append(call)
            if path == "/slow":
                time.sleep(SLOW_SECONDS)
            if path == "/locked":
                time.sleep(LOCKED_SECONDS)
            status, content_type, body = REPLIES.get(path, (404, "text/plain", "no such path"))
            data = body.encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (a timeout)
                pass
            call.end = time.monotonic()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
