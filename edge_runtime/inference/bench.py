"""Latency and memory of a model on this device, in the manner of TFLite's `benchmark_model`.

Reported: interpreter init time, warm-up runs (discarded: the first invokes pay for lazy
allocation and cold caches), then N timed runs of the whole `predict` with min / mean /
percentiles / max, peak resident memory, and a per-stage split of one image's path (decode,
resize, invoke, post-process). Timings use `time.perf_counter`; nothing here asserts speed.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ImageError
from .classifier import Classifier
from .preprocess import decode, finish, load_image


@dataclass(frozen=True)
class BenchConfig:
    """How many timed runs `benchmark` makes, after how many untimed warm-up runs."""

    runs: int = 50
    warmup: int = 5


@dataclass(frozen=True)
class Latency:
    """Summary of repeated timings, in milliseconds."""

    runs: int
    min: float
    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        if ms.size == 0:
            return cls(0, *([math.nan] * 6))
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(
            int(ms.size),
            float(ms.min()),
            float(ms.mean()),
            float(p50),
            float(p90),
            float(p99),
            float(ms.max()),
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BenchResult:
    """One benchmark of one model at one thread count."""

    model: str
    backend: str
    threads: int | None
    input: str  # "synthetic WxH frame" or the image path
    init_ms: float
    warmup: int
    latency: Latency  # whole predict() on the input
    stages: dict[str, float]  # median ms of decode, resize, invoke, postprocess
    peak_rss_mb: float | None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["latency"] = self.latency.to_dict()
        return d


@dataclass(frozen=True)
class DraftComparison:
    """Whole predict from a JPEG with reduced-scale decoding (draft) versus a full decode."""

    image: str
    image_size: tuple[int, int]
    draft_ms: float  # median
    full_ms: float  # median
    speedup: float  # full_ms / draft_ms
    max_abs_score_diff: float

    def to_dict(self) -> dict:
        return asdict(self)


def peak_rss_mb() -> float | None:
    """Peak resident set size of this process so far, in MiB (None where unsupported)."""
    try:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (AttributeError, OSError):  # pragma: no cover - non-POSIX
        return None
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _times(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    return float(np.median(_times(fn, max(runs, 1)))) * 1e3


def benchmark(
    model: str | Path,
    image: str | Path | None = None,
    *,
    runs: int = BenchConfig.runs,
    warmup: int = BenchConfig.warmup,
    threads: int | None = None,
    backend: str | None = None,
    draft: bool = True,
) -> BenchResult:
    """Benchmark `predict` on `image` (or a synthetic frame already at input size)."""
    t0 = time.perf_counter()
    clf = Classifier.from_file(model, threads=threads, backend=backend)
    init_ms = (time.perf_counter() - t0) * 1e3
    size = clf.input_size
    if image is None:
        rng = np.random.default_rng(0)
        source: object = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        label = f"synthetic {size[0]}x{size[1]} frame"
    else:
        source = Path(image)
        label = str(image)
        load_image(source, size, draft=draft)  # fail early with ImageError, not mid-benchmark
    for _ in range(max(warmup, 0)):
        clf.predict(source, draft=draft)
    latency = Latency.of(_times(lambda: clf.predict(source, draft=draft), runs))

    # Stage split: each stage timed on its own, medians (they need not add up to the total).
    n = max(min(runs, 50), 1)
    stages: dict[str, float] = {"decode": 0.0, "resize": 0.0}
    if image is not None:
        stages["decode"] = _median_ms(lambda: decode(Path(image), size, draft=draft), n)
        decoded = decode(Path(image), size, draft=draft)
        stages["resize"] = _median_ms(lambda: finish(decoded, size[0], size[1], name=label), n)
        frame = load_image(source, size, draft=draft)
    else:
        frame = source  # type: ignore[assignment]
    batch = frame[None]
    stages["invoke"] = _median_ms(lambda: clf.scores(batch), n)
    row = clf.scores(batch)[0].tolist()
    thr = clf.thresholds.tolist()
    stages["postprocess"] = _median_ms(lambda: clf.prediction(row, thr), n)
    return BenchResult(
        str(model),
        clf.backend,
        threads,
        label,
        init_ms,
        warmup,
        latency,
        {k: round(v, 4) for k, v in stages.items()},
        peak_rss_mb(),
    )


def thread_sweep(
    model: str | Path, threads: Sequence[int], image: str | Path | None = None, **kwargs
) -> list[BenchResult]:
    """`benchmark` once per thread count (a new interpreter each time)."""
    return [benchmark(model, image, threads=t, **kwargs) for t in threads]


def draft_comparison(
    model: str | Path | Classifier,
    jpeg: str | Path,
    *,
    runs: int = 10,
    threads: int | None = None,
    backend: str | None = None,
) -> DraftComparison:
    """Time the whole predict from a JPEG file with `draft=True` and `draft=False`."""
    clf = (
        model
        if isinstance(model, Classifier)
        else Classifier.from_file(model, threads=threads, backend=backend)
    )
    path = Path(jpeg)
    try:
        with Image.open(path) as img:
            fmt, size = img.format, img.size
    except OSError as exc:
        raise ImageError(path, f"cannot open ({exc})") from None
    if fmt != "JPEG":
        raise ImageError(path, f"draft decoding applies to JPEG only, this is {fmt}")
    a = clf.predict(path, draft=True)
    b = clf.predict(path, draft=False)
    diff = max(abs(a.scores[k] - b.scores[k]) for k in a.scores)
    draft_ms = _median_ms(lambda: clf.predict(path, draft=True), runs)
    full_ms = _median_ms(lambda: clf.predict(path, draft=False), runs)
    return DraftComparison(
        str(path),
        size,
        draft_ms,
        full_ms,
        full_ms / draft_ms if draft_ms else math.nan,
        float(diff),
    )
