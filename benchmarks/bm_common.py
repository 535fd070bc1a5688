"""Shared pieces of the benchmark suite: progress logging, timing, machine description.

Timings use `time.perf_counter_ns`. Every measured callable is warmed up first (the first calls
pay for lazy allocation, graph tracing and cold caches), then timed call by call. Callables that
are compared with each other (a runtime call and its bare-interpreter floor, say) are timed in
interleaved blocks in the same process, so a load change on a shared machine hits them alike and
their ratio stays meaningful even when the absolute numbers drift. Nothing here asserts speed.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Mapping
from importlib import metadata as importlib_metadata

import numpy as np

from edge_runtime.inference.bench import Latency

_T0 = time.perf_counter()
MODES = ("float32", "float16", "dynamic", "int8")  # every export mode, in the report's order


def log(msg: str) -> None:
    """One progress line on stderr, prefixed with the seconds since start."""
    print(f"[bench {time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def stats(ns: list[int] | np.ndarray, batch: int = 1) -> dict:
    """Percentiles of per-call times (ms) and throughput in images/s at the median.

    The statistics are the runtime's own (`edge_runtime.inference.bench.Latency`), so a benchmark figure and
    an `edge-infer bench` figure mean the same thing.
    """
    lat = Latency.of(np.asarray(ns, dtype=np.float64) / 1e9)
    return {
        "runs": lat.runs,
        "batch": int(batch),
        "p50_ms": lat.p50,
        "p90_ms": lat.p90,
        "p99_ms": lat.p99,
        "mean_ms": lat.mean,
        "min_ms": lat.min,
        "images_per_s": float(batch * 1e3 / lat.p50) if lat.p50 > 0 else float("nan"),
    }


def time_interleaved(
    fns: Mapping[str, Callable[[], object]], *, warmup: int, runs: int, block: int = 10
) -> dict[str, list[int]]:
    """Per-call nanoseconds of each callable: warm-up, then `runs` calls in interleaved blocks."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[int]] = {k: [] for k in fns}
    clock = time.perf_counter_ns
    while any(len(t) < runs for t in times.values()):
        for name, fn in fns.items():
            out = times[name]
            for _ in range(min(block, runs - len(out))):
                t0 = clock()
                fn()
                out.append(clock() - t0)
    return times


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(*dists: str) -> str | None:
    for d in dists:
        try:
            return importlib_metadata.version(d)
        except importlib_metadata.PackageNotFoundError:
            continue
    return None


def machine_info() -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    try:
        load = list(os.getloadavg())
    except (AttributeError, OSError):
        load = None
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": load,
        "versions": {
            "tensorflow": _version("tensorflow-cpu", "tensorflow"),
            "keras": _version("keras"),
            "ai-edge-litert": _version("ai-edge-litert"),
            "tflite-runtime": _version("tflite-runtime"),
            "numpy": _version("numpy"),
            "pillow": _version("pillow", "Pillow"),
            "matplotlib": _version("matplotlib"),
        },
    }
