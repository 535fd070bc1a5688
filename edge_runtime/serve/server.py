"""`edge-infer serve`: classify images posted over HTTP, on the standard library's server.

Why `http.server.ThreadingHTTPServer` and no framework: the device installs nothing more, the
endpoints are four, and the cost of a request is the image decode and the model, not the
server (see benchmarks/bm_serve.py). A thread per connection, HTTP/1.1 keep-alive.

    POST /classify   body: the encoded image (JPEG, PNG, ...) -> the JSON `--json` prints
                     (`file` is the `?name=` of the request, else null)
    GET  /info       the model: labels, thresholds, input, metadata name and version, backend
    GET  /health     {"status": "ok"} (never needs the token: for probes)
    GET  /metrics    Prometheus text format: requests, errors, latency histogram, labels

Errors are one-line JSON objects `{"error": "..."}`: 400 (not an image), 401 (bearer token
missing or wrong), 404, 405, 411 (no Content-Length), 413 (body over the cap: refused before
it is read), 500 (a bug: logged, the server goes on).

The interpreter is not thread-safe: decoding runs in the request's thread (Pillow releases the
GIL), the model runs on one of `pool` Classifiers taken from a queue (pool 1: a lock).
"""

from __future__ import annotations

import hmac
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .. import atomic
from ..errors import EdgeError, ImageError
from ..inference.classifier import Classifier
from ..inference.decode import default_workers
from ..inference.preprocess import load_image
from .metrics import CONTENT_TYPE, Metrics, render

DEFAULT_PORT = 8080
DEFAULT_MAX_BYTES = 10 << 20  # a 12 MP JPEG is 3-6 MB
DISCARD = 16 << 20  # bytes of a refused body read and dropped before closing (see _classify)
IDLE_TIMEOUT = 10.0  # seconds a keep-alive connection may sit silent (and a slow body may take)


class ServeError(EdgeError):
    """An unusable serve setting, or the address cannot be bound."""


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"  # loopback unless told otherwise: no token is the default
    port: int = DEFAULT_PORT  # 0: any free port (printed)
    max_bytes: int = DEFAULT_MAX_BYTES
    # Classifiers (interpreters); 1 = one behind a lock. Two where the process has two cores:
    # with the default EfficientNet-Lite0 int8 model on the 2-core VM, idle, a pool of two served
    # 269 requests/s at p99 75 ms against 226/s at 129 ms (+11 MiB); a tiny model gained nothing
    # and lost nothing (benchmarks/results/serve*.md).
    pool: int = field(default_factory=lambda: min(2, default_workers()))
    threads: int | None = None  # interpreter threads each
    threshold: float | None = None
    draft: bool = True
    backend: str | None = None  # interpreter package (default: the first available)
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ServeError(f"port {self.port} is not in 0-65535")
        if self.max_bytes < 1:
            raise ServeError("the request size cap must be positive")
        if not 1 <= self.pool <= 64:
            raise ServeError(f"pool {self.pool} is not in 1-64")
        if self.token is not None and (not self.token or not self.token.isprintable()):
            raise ServeError("the bearer token must be printable and not empty")


class Engine:
    """`pool` Classifiers for one model file, and the work of one request."""

    def __init__(self, model: str, config: ServeConfig) -> None:
        self.config = config
        clfs = [
            Classifier.from_file(model, threads=config.threads, backend=config.backend)
            for _ in range(config.pool)
        ]
        self.first = clfs[0]
        self._free: queue.SimpleQueue[Classifier] = queue.SimpleQueue()
        for clf in clfs:
            self._free.put(clf)
        n = len(self.first.labels)
        self._thr = None if config.threshold is None else [config.threshold] * n

    def classify(self, data: bytes, name: str | None) -> dict:
        """The `--json` record for an encoded image; ImageError for one that is not usable."""
        frame = load_image(data, self.first.input_size, draft=self.config.draft)
        clf = self._free.get()  # blocks while every interpreter is busy
        try:
            row = clf.scores(frame[None])[0].tolist()
        finally:
            self._free.put(clf)
        return clf.prediction(row, self._thr, name).to_dict()

    def info(self, model: str) -> dict:
        clf, std = self.first, self.first.standard_metadata or {}
        width, height = clf.input_size
        return {
            "model": model,
            "name": std.get("name"),
            "version": std.get("version"),
            "labels": clf.labels,
            "thresholds": [round(float(t), 6) for t in clf.thresholds]
            if self._thr is None
            else self._thr,
            "input": {"width": width, "height": height, "dtype": clf.input_dtype.name},
            "backend": clf.backend,
            "pool": self.config.pool,
            "max_bytes": self.config.max_bytes,
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the requests in flight
    block_on_close = True
    request_queue_size = 64

    def __init__(self, address, handler, app: App) -> None:
        self.app = app
        self.idle: dict[socket.socket, bool] = {}  # connection -> between two requests
        self.idle_lock = threading.Lock()
        self.stopping = False
        super().__init__(address, handler)

    def process_request_thread(self, request, client_address):
        with self.idle_lock:
            self.idle[request] = True
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.idle_lock:
                self.idle.pop(request, None)

    def set_busy(self, request, busy: bool) -> None:
        with self.idle_lock:
            if request in self.idle:
                self.idle[request] = not busy

    def wake_idle(self) -> None:
        """Stopping: end the keep-alive connections that wait for a next request."""
        with self.idle_lock:
            for conn, idle in self.idle.items():
                if idle:
                    try:
                        conn.shutdown(socket.SHUT_RD)
                    except OSError:
                        pass


class App:
    """The model, its metrics, and the HTTP server answering for it."""

    def __init__(
        self,
        model: str,
        config: ServeConfig,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.model, self.config = model, config
        self.engine = Engine(model, config)
        std = self.engine.first.standard_metadata or {}
        self.metrics = Metrics(
            self.engine.first.labels,
            {
                "name": str(std.get("name") or ""),
                "version": str(std.get("version") or ""),
                "backend": self.engine.first.backend,
            },
        )
        self.log = log or (lambda message: None)
        try:
            self.server = _Server((config.host, config.port), _Handler, self)
        except OSError as exc:
            raise ServeError(
                f"cannot listen on {config.host}:{config.port} ({exc.strerror or exc})"
            ) from None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        """From another thread: stop accepting, let requests in flight finish, close."""
        self.server.stopping = True
        self.server.shutdown()  # returns once serve_forever has returned
        self.server.wake_idle()
        self.server.server_close()  # joins the request threads

    def authorized(self, header: str | None) -> bool:
        token = self.config.token
        if token is None:
            return True
        scheme, _, given = (header or "").partition(" ")
        # Constant time: how much of a guess matched must not show in the answer's timing.
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client's next request skips the handshake
    timeout = IDLE_TIMEOUT
    # The answer leaves in two writes (headers, body): with Nagle's algorithm the second waits
    # for the client's delayed ACK (40 ms on Linux) on every request. bm_serve, 8 clients, 5 s,
    # fixture int8 model: 122 req/s at p50 47.8 ms with Nagle, 566 req/s at 11.9 ms without.
    disable_nagle_algorithm = True
    server: _Server

    def version_string(self) -> str:
        return "edge-infer"

    def send_error(self, code, message=None, explain=None) -> None:
        """The standard library's own refusals (bad request line, unknown method, headers too
        long) as the same one-line JSON as ours, not an HTML page (and not in the metrics:
        they come before any endpoint)."""
        self.close_connection = True
        self._counted = True
        self._json(code, {"error": message or HTTPStatus(code).phrase})

    def log_message(self, format, *args) -> None:
        pass  # no access log: a busy device would fill its journal; /metrics counts requests

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        app = self.server.app
        self.server.set_busy(self.connection, True)
        app.metrics.started()
        path = urlsplit(self.path).path
        self._endpoint = path if path in ("/classify", "/info", "/health", "/metrics") else "other"
        self._reason: str | None = None
        self._counted = False
        try:
            self._answer(app, method, path)
        except OSError:  # the client went away mid-answer: nothing to tell it
            self.close_connection = True
        except Exception as exc:  # a bug: answer 500, say it on stderr, keep serving
            app.log(f"Error: {method} {path}: {type(exc).__name__}: {exc}")
            self.close_connection = True
            if not self._counted:
                self._reason = "internal"
                self._json(500, {"error": "internal error"})
        finally:
            if not self._counted:
                self._count(500 if self._reason is None else 400)
            if self.server.stopping:
                self.close_connection = True
            self.server.set_busy(self.connection, False)

    def _count(self, code: int) -> None:
        """Into the metrics before the answer leaves: a client reading /metrics right after
        its answer must find that answer counted."""
        self._counted = True
        self.server.app.metrics.finished(self._endpoint, code, self._reason)

    def _answer(self, app: App, method: str, path: str) -> None:
        allowed = {"/classify": "POST", "/info": "GET", "/health": "GET", "/metrics": "GET"}
        if path not in allowed:
            return self._fail(404, "not_found", f"no such endpoint {path}; see /info")
        if method != allowed[path]:
            return self._fail(405, "method", f"{path} takes {allowed[path]}")
        if path == "/health":
            return self._json(200, {"status": "ok"})
        if not app.authorized(self.headers.get("Authorization")):
            return self._fail(401, "unauthorized", "missing or wrong bearer token")
        if path == "/info":
            return self._json(200, app.engine.info(app.model))
        if path == "/metrics":
            body = render(app.metrics.snapshot()).encode()
            return self._send(200, body, CONTENT_TYPE)
        return self._classify(app)

    def _classify(self, app: App) -> None:
        try:
            if self.headers.get("Transfer-Encoding"):
                raise ValueError("chunked")
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True  # whatever body follows is not read
            return self._fail(411, "length_required", "send the image with a Content-Length")
        if length > app.config.max_bytes or length < 0:
            # Refused unread, and this connection ends here. What the client already sent is
            # read and thrown away for a moment (at most DISCARD bytes): closing a socket with
            # unread data resets it, and the client might never see the 413.
            self.close_connection = True
            answer = self._fail(
                413,
                "too_large",
                f"body of {length:,} bytes is over the {app.config.max_bytes:,} cap",
            )
            self._discard(min(length, DISCARD))
            return answer
        data = self.rfile.read(length)
        if len(data) != length:
            self.close_connection = True
            return self._fail(400, "bad_request", "body shorter than its Content-Length")
        name = (parse_qs(urlsplit(self.path).query).get("name") or [None])[0]
        start = time.perf_counter()
        try:
            record = app.engine.classify(data, name)
        except ImageError as exc:
            return self._fail(400, "bad_image", exc.problem)
        app.metrics.classified(time.perf_counter() - start, record["labels"])
        return self._json(200, record)

    def _discard(self, n: int) -> None:
        self.connection.settimeout(1.0)
        try:
            while n > 0:
                chunk = self.rfile.read1(min(n, 65536))
                if not chunk:
                    break
                n -= len(chunk)
        except OSError:
            pass

    def _fail(self, code: int, reason: str, message: str) -> None:
        self._reason = reason
        extra = {"WWW-Authenticate": 'Bearer realm="edge-infer"'} if code == 401 else {}
        self._json(code, {"error": message}, extra)

    def _json(self, code: int, obj: dict, headers: dict | None = None) -> None:
        self._send(code, (atomic.dumps(obj) + "\n").encode(), "application/json", headers)

    def _send(self, code: int, body: bytes, content_type: str, headers=None) -> None:
        if hasattr(self, "_counted") and not self._counted:
            self._count(code)
        self.send_response(code, HTTPStatus(code).phrase)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
