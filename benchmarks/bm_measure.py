"""The measurements: latency (Keras, runtime, bare interpreter), end to end from JPEG, accuracy.

Every TFLite timing uses its own interpreter: `Classifier.scores` on a batch of 8 resizes the
interpreter's input, which would take a batch-1 `predict` off its fast path if they shared one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from bm_common import log, stats, time_interleaved
from PIL import Image

from edge_runtime.evaluation.metrics import binarize, multilabel_report
from edge_runtime.inference.classifier import Classifier
from edge_runtime.inference.preprocess import load_image


def bare(data: bytes, threads: int, batch: np.ndarray):
    """The floor: set_tensor + invoke + get_tensor on a fresh interpreter of `data` for `batch`.

    The input is converted to the tensor's dtype once, outside the timed call, so anything the
    runtime adds shows in the ratio.
    """
    return Classifier.from_bytes(data, threads=threads).raw_invoker(batch)


def keras_latency(
    model, frames: np.ndarray, batches: Sequence[int], warmup: int, runs: int
) -> list[dict]:
    """`model.predict` per call and a direct `model(x, training=False)`, per batch size."""
    rows = []
    for b in batches:
        x = frames[:b].astype(np.float32)
        fns = {
            "keras_predict": lambda x=x, b=b: model.predict(x, batch_size=b, verbose=0),
            "keras_call": lambda x=x: np.asarray(model(x, training=False)),
        }
        times = time_interleaved(fns, warmup=warmup, runs=runs)
        for name, ns in times.items():
            rows.append(
                {"impl": name, "mode": "keras", "threads": None, "batch": b, **stats(ns, b)}
            )
        log(
            f"  keras batch {b}: predict p50 {rows[-2]['p50_ms']:.2f} ms, call p50 {rows[-1]['p50_ms']:.2f} ms"
        )
    return rows


def tflite_latency(
    path: Path,
    mode: str,
    frames: np.ndarray,
    threads: Sequence[int],
    batch: int,
    warmup: int,
    runs: int,
) -> list[dict]:
    """Runtime vs bare interpreter for one model file at each thread count.

    Batch 1: `Classifier.predict` on a uint8 frame at input size vs the bare floor.
    Batch `batch`: `Classifier.scores` on a uint8 batch vs the bare floor resized to that batch.
    """
    data = path.read_bytes()
    frame = frames[0]
    big = frames[:batch]
    rows = []
    for t in threads:
        clf1 = Classifier.from_bytes(data, name=path.name, threads=t)
        clf8 = Classifier.from_bytes(data, name=path.name, threads=t)
        clf8.scores(big)  # resize once, outside the timing
        fns = {
            ("predict", 1): lambda c=clf1: c.predict(frame),
            ("bare", 1): bare(data, t, frame[None]),
            ("scores", batch): lambda c=clf8: c.scores(big),
            ("bare", batch): bare(data, t, big),
        }
        times = time_interleaved(
            {f"{k[0]}@{k[1]}": f for k, f in fns.items()}, warmup=warmup, runs=runs
        )
        by = {}
        for impl, b in fns:
            s = stats(times[f"{impl}@{b}"], b)
            by[(impl, b)] = s
            rows.append({"impl": impl, "mode": mode, "threads": t, "batch": b, **s})
        for impl, b in (("predict", 1), ("scores", batch)):
            ratio = by[(impl, b)]["p50_ms"] / by[("bare", b)]["p50_ms"]
            rows.append(
                {"impl": f"{impl}/bare", "mode": mode, "threads": t, "batch": b, "ratio_p50": ratio}
            )
        log(
            f"  {mode} threads {t}: predict p50 {by[('predict', 1)]['p50_ms']:.3f} ms "
            f"(bare {by[('bare', 1)]['p50_ms']:.3f}), scores x{batch} p50 {by[('scores', batch)]['p50_ms']:.3f} ms "
            f"(bare {by[('bare', batch)]['p50_ms']:.3f})"
        )
    return rows


def make_camera_jpegs(
    sources: Sequence[Path], out_dir: Path, size: tuple[int, int], quality: int = 90
) -> list[Path]:
    """Upscale demo images to a camera resolution and save them as JPEG files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, src in enumerate(sources):
        with Image.open(src) as img:
            big = img.convert("RGB").resize(size, Image.Resampling.BICUBIC)
        p = out_dir / f"cam_{size[0]}x{size[1]}_{i:02d}.jpg"
        big.save(p, "JPEG", quality=quality)
        paths.append(p)
    return paths


def end_to_end(
    clf: Classifier,
    files: Sequence[Path],
    warmup: int,
    runs: int,
    float_clf: Classifier | None = None,
) -> dict:
    """Images/s of predict(path) and of load_image alone, with and without draft decoding.

    Also the largest differences draft vs full: in the decoded input frame (0-255), in the
    scores of `clf` (an int8 model moves in steps of 1/256) and of `float_clf` if given.
    """
    size = clf.input_size
    n = len(files)
    it = {"i": 0}

    def cycling(fn):
        def call():
            f = files[it["i"] % n]
            it["i"] += 1
            return fn(f)

        return call

    fns = {
        "predict_draft": cycling(lambda f: clf.predict(f, draft=True)),
        "predict_full": cycling(lambda f: clf.predict(f, draft=False)),
        "decode_draft": cycling(lambda f: load_image(f, size, draft=True)),
        "decode_full": cycling(lambda f: load_image(f, size, draft=False)),
    }
    times = time_interleaved(fns, warmup=warmup, runs=max(runs, n), block=n)
    out = {k: stats(v, 1) for k, v in times.items()}
    diffs, fdiffs, pix, flips = [], [], [], 0
    for f in files:
        a, b = clf.predict(f, draft=True), clf.predict(f, draft=False)
        diffs.append(max(abs(a.scores[k] - b.scores[k]) for k in a.scores))
        flips += int(set(a.labels) != set(b.labels))
        d = np.abs(
            load_image(f, size, draft=True).astype(np.int16) - load_image(f, size, draft=False)
        )
        pix.append((int(d.max()), float(d.mean())))
        if float_clf is not None:
            fa, fb = float_clf.predict(f, draft=True), float_clf.predict(f, draft=False)
            fdiffs.append(max(abs(fa.scores[k] - fb.scores[k]) for k in fa.scores))
    with Image.open(files[0]) as img:
        w, h = img.size
    out.update(
        {
            "resolution": f"{w}x{h}",
            "files": n,
            "mean_file_kib": float(np.mean([f.stat().st_size for f in files]) / 1024),
            "max_abs_score_diff": float(max(diffs)),
            "float32_max_abs_score_diff": float(max(fdiffs)) if fdiffs else None,
            "max_abs_pixel_diff": max(p[0] for p in pix),
            "mean_abs_pixel_diff": float(np.mean([p[1] for p in pix])),
            "images_with_different_labels": flips,
            "speedup_predict_p50": out["predict_full"]["p50_ms"] / out["predict_draft"]["p50_ms"],
        }
    )
    return out


def load_split(table, size: tuple[int, int]) -> np.ndarray:
    """The split's images through the one preprocessing path (the trainer's parallel loader)."""
    from edge_common.images import load_images

    x, failures = load_images(table.paths, size)
    if failures:
        raise RuntimeError(f"unreadable test images: {failures[:3]}")
    return x


def tflite_scores(path: Path, x: np.ndarray, chunk: int = 32) -> tuple[np.ndarray, Classifier]:
    clf = Classifier.from_file(path, threads=None)
    return np.concatenate([clf.scores(x[i : i + chunk]) for i in range(0, len(x), chunk)]), clf


def accuracy_row(
    y: np.ndarray,
    scores: np.ndarray,
    thresholds: np.ndarray,
    labels: list[str],
    keras_scores: np.ndarray,
    keras_thr: np.ndarray,
) -> dict:
    rep = multilabel_report(y, scores, thresholds, labels)
    keras_dec = binarize(keras_scores, keras_thr)
    agree = float(np.mean(binarize(scores, thresholds) == keras_dec))
    # The exporter re-calibrates thresholds on the exported model's outputs: agreement at the
    # Keras thresholds isolates the score change from the threshold change.
    same_thr = float(np.mean(binarize(scores, keras_thr) == keras_dec))
    return {
        "map": rep["map"],
        "micro_f1": rep["micro_f1"],
        "macro_f1": rep["macro_f1"],
        "test_agreement_with_keras": agree,
        "test_agreement_at_keras_thresholds": same_thr,
        "max_threshold_shift": float(
            np.max(np.abs(np.asarray(thresholds, np.float64) - keras_thr))
        ),
        "test_max_abs_diff_vs_keras": float(np.max(np.abs(scores - keras_scores))),
    }
