"""`edge-infer serve`: a real server process on a loopback port, real HTTP clients.

Concurrent clients get exactly the scores `edge-infer --json` prints for the same files; bad
images, oversized bodies, a missing length and a missing or wrong token are refused with one-line
JSON errors, and the server answers the next request after each; SIGTERM lets a request in
flight finish.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_runtime.cli import main_group

pytestmark = pytest.mark.runtime
TOKEN = "t0ken-Sh0uld-N3ver-Print"


class Server:
    """`edge-infer serve MODEL --port 0 ARGS` in a child process; its URL read from stderr."""

    def __init__(self, model, *args, env: dict | None = None) -> None:
        code = "import sys; from edge_runtime.cli import main; main(sys.argv[1:])"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, "serve", str(model), "--port", "0", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.err: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 60
        while not self.port:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"the server did not start: {''.join(self.err)}")
            time.sleep(0.02)

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.err.append(line)

    @property
    def port(self) -> int | None:
        found = re.search(r"on http://127\.0\.0\.1:(\d+) ", "".join(self.err))
        return int(found.group(1)) if found else None

    def request(self, method, path, body=None, headers=None, conn=None):
        """(status, headers, body) over `conn` (a keep-alive connection) or a new one."""
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            if own:
                conn.close()

    def classify(self, data: bytes, name: str | None = None, conn=None, headers=None):
        path = "/classify" + (f"?name={name}" if name else "")
        status, _, body = self.request("POST", path, data, headers, conn)
        return status, json.loads(body)

    def stop(self, signalled: bool = False) -> tuple[int, str, str]:
        if not signalled:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(30)
        finally:
            self.proc.kill()
        self._reader.join(5)
        return rc, self.proc.stdout.read(), "".join(self.err)


@pytest.fixture(scope="module")
def images(fixture_models, tmp_path_factory) -> list[Path]:
    """The reference frames as PNG and JPEG files of another size (the resize path runs)."""
    folder = tmp_path_factory.mktemp("serve-images")
    frames = np.load(fixture_models["float32"].parent / "reference_frames.npy")
    paths = []
    for i, f in enumerate(frames):
        img = Image.fromarray(f).resize((48, 40))
        img.save(folder / f"{i}.png")
        img.save(folder / f"{i}.jpg", quality=90)
        paths += [folder / f"{i}.png", folder / f"{i}.jpg"]
    return paths


def cli_records(model, paths, *options) -> dict[str, dict]:
    """{file name: record} as `edge-infer --json` prints them, the file named by its name."""
    r = CliRunner().invoke(main_group, [str(model), *map(str, paths), "--json", *options])
    assert r.exit_code == 0, r.output
    records = map(json.loads, r.stdout.splitlines())
    return {Path(rec["file"]).name: {**rec, "file": Path(rec["file"]).name} for rec in records}


@pytest.mark.parametrize("pool", [1, 2])
def test_concurrent_clients_get_the_clis_answers(fixture_models, images, pool):
    model = fixture_models["int8"]
    expected = cli_records(model, images)
    server = Server(model, "--pool", pool)
    try:
        work = [images[i % len(images)] for i in range(8 * 12)]

        def client(k: int) -> list[tuple[str, int, dict]]:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:  # each client keeps its connection, as a real one would
                return [
                    (p.name, *server.classify(p.read_bytes(), p.name, conn)) for p in work[k::8]
                ]
            finally:
                conn.close()

        with ThreadPoolExecutor(8) as pool_of_clients:
            answers = [a for part in pool_of_clients.map(client, range(8)) for a in part]
        assert len(answers) == len(work)
        for name, status, record in answers:
            assert status == 200 and record == expected[name]
        status, _, body = server.request("GET", "/info")
        info = json.loads(body)
        assert status == 200 and info["pool"] == pool and info["labels"] == ["red", "green", "blue"]
        assert info["name"] == "fixture-int8" and info["version"] == "1"
    finally:
        rc, out, err = server.stop()
    assert rc == 0, err
    assert f"stopped: {len(work) + 1} requests answered" in err


def test_refusals_are_one_line_json_and_the_server_keeps_serving(fixture_models, images, tmp_path):
    server = Server(fixture_models["float32"], "--max-mb", "0.01")  # 10,485 bytes
    good = images[0].read_bytes()
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 128, 3), np.uint8))
    big.save(tmp_path / "big.png")
    cases = []
    try:
        ok, first = server.classify(good)
        assert ok == 200 and first["file"] is None
        cases.append(server.classify(b"this is not an image"))
        cases.append(server.classify(good[: len(good) // 2]))  # truncated PNG
        cases.append(server.classify(b""))
        status, headers, body = server.request(
            "POST", "/classify", (tmp_path / "big.png").read_bytes()
        )
        cases.append((status, json.loads(body)))
        assert headers.get("Connection") == "close"
        for path, method in (("/nowhere", "GET"), ("/classify", "GET"), ("/info", "POST")):
            status, _, body = server.request(method, path)
            cases.append((status, json.loads(body)))
        # No Content-Length (chunked): refused, never read without bound.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(
                b"POST /classify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n0\r\n\r\n"
            )
            reply = b""
            while chunk := s.recv(65536):  # the server closes this connection after answering
                reply += chunk
            reply = reply.decode()
        assert reply.startswith("HTTP/1.1 411 ")
        cases.append((411, json.loads(reply.split("\r\n\r\n", 1)[1])))
        # After every refusal the same server answers a good image, on a kept connection too.
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        assert server.classify(b"nope", conn=conn)[0] == 400
        assert server.classify(good, conn=conn) == (200, first)
        conn.close()
        status, _, metrics = server.request("GET", "/metrics")
    finally:
        rc, out, err = server.stop()
    assert [c[0] for c in cases] == [400, 400, 400, 413, 404, 405, 405, 411]
    assert "not an image" in cases[0][1]["error"] and "over the 10,485 cap" in cases[3][1]["error"]
    for _, body in cases:
        assert list(body) == ["error"] and "\n" not in body["error"]
    assert rc == 0 and "Traceback" not in err and out == ""
    text = metrics.decode()
    assert 'edge_errors_total{reason="bad_image"} 4' in text
    assert 'edge_errors_total{reason="too_large"} 1' in text
    assert 'edge_requests_total{endpoint="/classify",code="200"} 2' in text
    assert "edge_classify_seconds_count 2" in text


def test_bearer_token_from_the_environment_never_printed(fixture_models, images):
    server = Server(fixture_models["int8"], env={"EDGE_SERVE_TOKEN": TOKEN})
    good = images[1].read_bytes()
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            status, got, body = server.request("POST", "/classify", good, headers)
            assert status == 401 and json.loads(body) == {"error": "missing or wrong bearer token"}
            assert got["WWW-Authenticate"].startswith("Bearer")
        assert server.request("GET", "/metrics")[0] == 401
        assert server.request("GET", "/health")[:1] == (200,)  # probes need no token
        status, record = server.classify(good, headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and set(record) == {"file", "scores", "labels"}
        assert "bearer token required" in "".join(server.err)
    finally:
        rc, out, err = server.stop()
    assert rc == 0 and TOKEN not in out and TOKEN not in err


def test_metrics_parse_as_prometheus_text(fixture_models, images):
    parser = pytest.importorskip("prometheus_client.parser")
    model, options = fixture_models["float32"], ["--threshold", "0.3", "--no-draft"]
    server = Server(model, *options, "--threads", "1", "--host", "127.0.0.1", "--token", TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        expected = cli_records(model, images[:6], *options)  # the same settings as the CLI's
        for p in images[:6]:
            assert server.classify(p.read_bytes(), p.name, headers=auth) == (200, expected[p.name])
        server.classify(b"junk", headers=auth)
        assert (
            json.loads(server.request("GET", "/info", headers=auth)[2])["thresholds"] == [0.3] * 3
        )
        text = server.request("GET", "/metrics", headers=auth)[2].decode()
    finally:
        rc, out, err = server.stop()
    assert TOKEN not in out + err
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    hist = {s.name: s for s in families["edge_classify_seconds"].samples if "le" not in s.labels}
    assert hist["edge_classify_seconds_count"].value == 6
    buckets = [s.value for s in families["edge_classify_seconds"].samples if "le" in s.labels]
    assert buckets == sorted(buckets) and buckets[-1] == 6  # cumulative, ending at +Inf
    present = {s.labels["label"]: s.value for s in families["edge_label_present"].samples}
    assert present == {
        label: sum(label in r["labels"] for r in expected.values()) for label in present
    }
    errors = {s.labels["reason"]: s.value for s in families["edge_errors"].samples}
    assert errors == {"bad_image": 1}
    (info,) = families["edge_model_info"].samples
    assert info.labels["name"] == "fixture-float32" and info.value == 1


def test_sigterm_lets_the_request_in_flight_finish(fixture_models, images):
    server = Server(fixture_models["float32"])
    good = images[2].read_bytes()
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)  # keep-alive, silent
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        head = f"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Length: {len(good)}\r\n\r\n"
        s.sendall(head.encode() + good[:100])  # the request has started, its body is not whole
        time.sleep(0.2)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        s.sendall(good[100:])
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    started = time.monotonic()
    rc, out, err = server.stop(signalled=True)
    idle.close()
    assert reply.startswith(b"HTTP/1.1 200 "), reply
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["labels"] is not None
    assert rc == 0 and "stopped: 1 requests answered" in err
    assert time.monotonic() - started < 5  # the silent keep-alive connection did not hold it


def test_default_address_is_loopback_and_a_taken_port_is_one_line(fixture_models):
    r = CliRunner().invoke(main_group, ["serve", "--help"])
    assert "127.0.0.1" in r.stdout
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = CliRunner().invoke(
            main_group, ["serve", str(fixture_models["int8"]), "--port", str(port)]
        )
    assert r.exit_code == 2 and r.stderr.startswith(f"Error: cannot listen on 127.0.0.1:{port}")


def test_the_serve_benchmark_runs_and_finds_nothing_dropped(fixture_models, tmp_path):
    bm = Path(__file__).resolve().parents[1] / "benchmarks" / "bm_serve.py"
    args = ["--out", tmp_path, "--duration", "1", "--settings", "1", "--clients", "2"]
    r = subprocess.run(
        [sys.executable, bm, fixture_models["int8"], *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    (run,) = json.loads((tmp_path / "serve.json").read_text())["runs"]
    assert run["requests"] > 0 and run["failed"] == 0 and run["rss_mib"]
    assert set(run["answer"]) == {"file", "scores", "labels"}
    assert "| 1 | default | " in (tmp_path / "serve.md").read_text()
