"""`edge-infer serve` under load: requests/s and latency with concurrent clients on loopback.

    python tests/make_fixture_models.py /tmp/fixtures          # or any exported model
    python benchmarks/bm_serve.py /tmp/fixtures/int8.tflite --out benchmarks/results

For each server setting (--settings, default "1,2": one interpreter behind a lock, then a pool of
two; "1x2" is one interpreter with two threads), a real server process (`edge-infer serve MODEL
--port 0 --pool N [--threads T]`) is started and --clients clients
(default 8, processes), each with its own keep-alive connection, POST the same camera-like JPEG
(--size, default 640x480) to /classify for --duration seconds (default 60). Reported: requests/s,
latency percentiles, every answer checked (status 200 and the same scores as the first: nothing
dropped, nothing wrong), the server's resident memory sampled every second (flat or not) and its
CPU use. The clients run on the same machine: their cost is part of the figure.

Writes serve.md and serve.json (--tag) in --out (atomically), with the machine and the exact
command. A model whose inference outweighs the decode: the default EfficientNet-Lite0 int8 export
(`edge-train DATA --out RUN && edge-export RUN --out MODEL`).
Nothing here asserts speed; timings on a shared machine are noisy, compare within one run.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import multiprocessing
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bm_common import log, machine_info, stats  # noqa: E402

from edge_runtime import atomic  # noqa: E402


def camera_jpeg(width: int, height: int) -> bytes:
    """A photo-like JPEG (gradient, noise, shapes): decodes like a camera's."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], -1)
    img += rng.normal(0, 12, img.shape)
    for _ in range(5):
        cy, cx, r = rng.integers(0, height), rng.integers(0, width), rng.integers(20, 120)
        img[max(0, cy - r) : cy + r, max(0, cx - r) : cx + r] = rng.integers(0, 256, 3)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def proc_stats(pid: int) -> tuple[float, float]:
    """(resident MiB, CPU seconds) of process `pid`, from /proc."""
    rss = 0.0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss, (int(fields[11]) + int(fields[12])) / ticks


class ServerProcess:
    def __init__(self, model: str, pool: int, threads: int | None) -> None:
        args = ["serve", model, "--port", "0", "--pool", str(pool)]
        if threads:
            args += ["--threads", str(threads)]
        code = "import sys; from edge_runtime.cli import main; main(sys.argv[1:])"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.port = None
        for line in self.proc.stderr:
            found = re.search(r"on http://127\.0\.0\.1:(\d+) ", line)
            if found:
                self.port = int(found.group(1))
                break
        if self.port is None:
            raise SystemExit(f"the server did not start (exit {self.proc.wait()})")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(60)


def client(port: int, body: bytes, until: float, out) -> None:
    """One client process: POST `body` until `until` (time.time()); (latencies, failures,
    answers differing from its first) into the queue `out`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "image/jpeg"}
    lat, bad, first = [], [], None
    while time.time() < until:
        t0 = time.perf_counter_ns()
        try:
            conn.request("POST", "/classify", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            bad.append(f"{type(exc).__name__}: {exc}")
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        lat.append(time.perf_counter_ns() - t0)
        if resp.status != 200:
            bad.append(f"HTTP {resp.status}: {data[:200]!r}")
        elif first is None:
            first = data
        elif data != first:
            bad.append(f"different answer: {data[:200]!r}")
    conn.close()
    out.put((lat, bad, first))


def load(port: int, body: bytes, clients: int, duration: float, pid: int) -> dict:
    """`clients` processes POSTing `body` for `duration` s; latencies, failures, RSS samples.

    Processes, not threads: eight Python clients sharing one interpreter lock would measure
    the lock; as processes they are eight independent clients, as on a network."""
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    start_wall = time.time() + 0.5  # every client is up before the clock starts
    until = start_wall + duration
    procs = [ctx.Process(target=client, args=(port, body, until, results)) for _ in range(clients)]
    for proc in procs:
        proc.start()
    time.sleep(max(0.0, start_wall - time.time()))
    rss, cpu0 = [], proc_stats(pid)[1]
    start = time.perf_counter()
    while (left := until - time.time()) > 0:
        time.sleep(min(1.0, left))
        rss.append(round(proc_stats(pid)[0], 1))
    cpu = proc_stats(pid)[1] - cpu0
    wall = time.perf_counter() - start
    parts = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    ns = [v for lat, _, _ in parts for v in lat]
    bad = [b for _, part, _ in parts for b in part]
    firsts = {first for _, _, first in parts if first is not None}
    if len(firsts) > 1:
        bad.append("clients got different answers for the same image")
    return {
        "requests": len(ns),
        "requests_per_s": len(ns) / wall,
        "latency": stats(ns),
        "failed": len(bad),
        "failures": bad[:5],
        "rss_mib": rss,
        "server_cores_busy": cpu / wall,
        "answer": json.loads(next(iter(firsts))) if firsts else None,
    }


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# `edge-infer serve` under load: benchmark",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {m['cpu_model']}, {m['usable_cores']} usable cores, load average at start "
        f"{[round(v, 2) for v in m['load_average_at_start'] or []]}; model `{report['model']}`; "
        f"{report['clients']} client processes with a keep-alive connection each, POSTing one "
        f"{report['image']} JPEG ({report['image_bytes']:,} bytes) for {report['duration']} s "
        "per setting, on loopback; the clients run on the same cores.",
        "",
        "| pool | threads | requests | req/s | p50 ms | p90 ms | p99 ms | failed "
        "| server cores busy | RSS first / last / max (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        lat, rss = r["latency"], r["rss_mib"]
        lines.append(
            f"| {r['pool']} | {r['threads'] or 'default'} | {r['requests']:,} "
            f"| {r['requests_per_s']:.1f} | {lat['p50_ms']:.2f} "
            f"| {lat['p90_ms']:.2f} | {lat['p99_ms']:.2f} | {r['failed']} "
            f"| {r['server_cores_busy']:.2f} | {rss[0]} / {rss[-1]} / {max(rss)} |"
        )
    lines += [
        "",
        "Failed: answers that were not HTTP 200 with the same JSON as the first answer, or a "
        "connection error (none means nothing dropped). RSS: the server's resident memory, "
        "sampled every second. Pool 1 is one interpreter behind a lock; pool N, N interpreters "
        "(decoding runs in the request threads in both).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--duration", type=float, default=60.0, help="seconds per pool size")
    p.add_argument(
        "--settings",
        default="1,2",
        help="server settings to compare: POOL or POOLxTHREADS (interpreter threads), e.g. 1,2,1x2",
    )
    p.add_argument("--size", default="640x480", help="JPEG size WxH")
    p.add_argument("--tag", default="serve", help="output files TAG.md and TAG.json")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    body = camera_jpeg(width, height)
    report = {
        "command": "python benchmarks/bm_serve.py " + " ".join(argv or sys.argv[1:]),
        "machine": machine_info(),
        "model": args.model,
        "clients": args.clients,
        "duration": args.duration,
        "image": f"{width}x{height}",
        "image_bytes": len(body),
        "runs": [],
    }
    for setting in args.settings.split(","):
        pool, _, threads = setting.partition("x")
        pool, threads = int(pool), int(threads) if threads else None
        server = ServerProcess(args.model, pool, threads)
        log(f"{setting}: {args.clients} clients for {args.duration} s on port {server.port}")
        try:
            run = load(server.port, body, args.clients, args.duration, server.proc.pid)
        finally:
            rc = server.stop()
        run.update(pool=pool, threads=threads, exit_code=rc)
        log(
            f"{setting}: {run['requests_per_s']:.1f} req/s, p99 {run['latency']['p99_ms']:.2f} ms, "
            f"{run['failed']} failed, RSS {run['rss_mib'][0]} -> {run['rss_mib'][-1]} MiB"
        )
        report["runs"].append(run)
    out = Path(args.out)
    atomic.write_json(out / f"{args.tag}.json", report)
    atomic.write_text(out / f"{args.tag}.md", markdown(report))
    log(f"wrote {out / args.tag}.md and .json")
    return 1 if any(r["failed"] or r["exit_code"] for r in report["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
