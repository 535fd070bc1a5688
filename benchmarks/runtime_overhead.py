"""Runtime overhead measurements, printed as JSON (stdlib + numpy + the runtime; no TensorFlow).

1. `Classifier.predict` on a uint8 frame already at input size versus the bare interpreter calls
   (set_tensor + invoke + get_tensor), median over many interleaved rounds in one process;
2. resident memory after 1,000 and after 10,000 predictions (flat = no per-call leak);
3. a 4000x3000 JPEG through the whole `predict` with reduced-scale decoding (draft) versus a full
   decode: speed ratio and the largest score difference.

    python benchmarks/runtime_overhead.py MODEL.tflite [--rounds 40] [--per-round 200]

MODEL is e.g. a fixture model from `python tests/make_fixture_models.py DIR` (DIR/int8.tflite).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from bm_common import time_interleaved

from edge_runtime import Classifier
from edge_runtime.inference.bench import draft_comparison


def overhead(clf: Classifier, rounds: int, per_round: int) -> dict:
    h, w = clf.input_size[1], clf.input_size[0]
    frame = np.random.default_rng(0).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    # The floor: what a hand-written loop has to do (set_tensor + invoke + get_tensor).
    bare = clf.raw_invoker(frame[None])

    def predict():
        return clf.predict(frame)

    # Interleaved blocks, so drifts in clock or load hit both alike; medians per call.
    times = time_interleaved(
        {"bare": bare, "predict": predict},
        warmup=per_round,
        runs=rounds * per_round,
        block=per_round,
    )
    b, p = (float(np.median(times[k])) / 1e3 for k in ("bare", "predict"))
    return {
        "input_dtype": clf.input_dtype.name,
        "bare_us": round(b, 3),
        "predict_us": round(p, 3),
        "overhead_us": round(p - b, 3),
        "ratio": round(p / b, 4),
    }


def _rss_mb() -> float:
    """Current resident set size (Linux /proc; maxrss only ever grows, so it cannot show a plateau)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory(clf: Classifier, n: int) -> dict:
    """RSS after the first 1,000 predictions and after all `n`: flat means no per-call leak."""
    h, w = clf.input_size[1], clf.input_size[0]
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for _ in range(8)]
    warm = min(1000, n)
    for i in range(warm):
        clf.predict(frames[i % 8])
    after_warmup = _rss_mb()
    for i in range(n - warm):
        clf.predict(frames[i % 8])
    end = _rss_mb()
    return {
        "predictions": n,
        "rss_mb_after_1000": round(after_warmup, 2),
        "rss_mb_at_end": round(end, 2),
        "growth_mb": round(end - after_warmup, 2),
    }


def big_jpeg(path: Path, size=(4000, 3000)) -> None:
    """A photo-like JPEG: smooth colour fields with seeded noise (not pure noise)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(small).resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
    big = np.clip(big + rng.integers(-8, 9, size=big.shape, dtype=np.int16), 0, 255).astype(
        np.uint8
    )
    Image.fromarray(big).save(path, quality=90)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--per-round", type=int, default=200)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--backend", default=None)
    ap.add_argument("--jpeg-runs", type=int, default=5)
    ap.add_argument("--memory-predictions", type=int, default=10_000)
    args = ap.parse_args(argv)
    clf = Classifier.from_file(args.model, threads=args.threads, backend=args.backend)
    out = {
        "model": args.model,
        "backend": clf.backend,
        "threads": args.threads,
        "input_size": list(clf.input_size),
        "overhead": overhead(clf, args.rounds, args.per_round),
    }
    out["memory"] = memory(clf, args.memory_predictions)
    with tempfile.TemporaryDirectory() as tmp:
        jpeg = Path(tmp) / "big.jpg"
        big_jpeg(jpeg)
        out["draft"] = draft_comparison(clf, jpeg, runs=args.jpeg_runs).to_dict()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
