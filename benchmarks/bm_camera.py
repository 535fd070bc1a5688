"""Camera frames at the model's size: frames per second end to end, before and after.

    python benchmarks/bm_camera.py MODEL --out benchmarks/results      # needs no TensorFlow

Before: the camera asked for 1280x720 whatever the model, and every frame was shrunk by one
antialiased resize (`load_image` with `REDUCING_GAP = None`). After: the camera asked for
`sources.capture_size(model input)` (384x216 for 96 px) and `load_image` reduces by an integer
factor first (`REDUCING_GAP = 2.0`). Both run the CLI's path (`FrameSource(camera=True)` ->
`Runner` -> JSON lines to /dev/null) over a stand-in for picamera2 whose `capture_array` copies a
frame of the configured size, as picamera2's does (the real camera's ISP scales in hardware:
that cost is not here, and on a Pi it is off the CPU either way). The two intermediate settings
split the gain between the capture size and the reduction. A 1080p video file (OpenCV, when
installed) shows the reduction alone, since a file's frames keep their size.

Settings alternate within each repetition and the median is reported: compare ratios within one
run. Writes camera.md and camera.json in --out (atomically), with the machine and the command.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bm_common import log, machine_info  # noqa: E402
from bm_live import photo, write_video  # noqa: E402

from edge_runtime import atomic  # noqa: E402
from edge_runtime.inference import preprocess  # noqa: E402
from edge_runtime.inference.classifier import Classifier  # noqa: E402
from edge_runtime.inference.decode import default_workers  # noqa: E402
from edge_runtime.live import sources  # noqa: E402
from edge_runtime.live.output import Format, Writer  # noqa: E402
from edge_runtime.live.runner import RunConfig, Runner  # noqa: E402


def stand_in_picamera2(scene: np.ndarray) -> types.SimpleNamespace:
    """picamera2's interface as the runtime uses it: frames of the configured size, each
    `capture_array` a fresh copy (picamera2 copies out of the camera's buffer)."""

    class Picamera2:
        def __init__(self, index=0):
            self.frame = scene

        def create_video_configuration(self, main):
            return {"main": dict(main)}

        def configure(self, config):
            from PIL import Image

            w, h = config["main"]["size"]
            self.frame = np.asarray(Image.fromarray(scene).resize((w, h)))  # the ISP's work

        def start(self):
            pass

        def capture_array(self, name="main"):
            return self.frame.copy()

        def stop(self):
            pass

        def close(self):
            pass

    return types.SimpleNamespace(Picamera2=Picamera2)


def resize_ms(frame: np.ndarray, size: tuple[int, int], reps: int, calls: int = 50) -> dict:
    """`load_image` of one full-HD frame to the model input: best-of-`reps` ms per call, plain
    and reduced, and the mean absolute pixel difference between the two results."""
    out: dict = {"frame": "1920x1080"}
    results = {}
    for key, gap in (("plain_ms", None), ("reduced_ms", 2.0)):
        preprocess.REDUCING_GAP = gap
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            for _ in range(calls):
                results[key] = preprocess.load_image(frame, size)
            best = min(best, (time.perf_counter() - t0) / calls * 1e3)
        out[key] = best
    diff = np.abs(results["plain_ms"].astype(int) - results["reduced_ms"].astype(int))
    out["mean_abs_diff"], out["max_abs_diff"] = float(diff.mean()), int(diff.max())
    return out


def camera_fps(
    clf: Classifier, capture: tuple[int, int], gap: float | None, frames: int, workers: int
) -> float:
    preprocess.REDUCING_GAP = gap
    src = sources.FrameSource(
        0, camera=True, capture=capture, sampling=sources.Sampling(max_frames=frames)
    )
    with open(os.devnull, "w") as null:
        runner = Runner(
            clf,
            RunConfig(workers=workers),
            Writer(Format.JSON, clf.labels, live=True, out=null),
        )
        t0 = time.perf_counter()
        runner.frames(src)
        secs = time.perf_counter() - t0
    assert runner.summary.frames == frames, runner.summary
    return frames / secs


def video_fps(clf: Classifier, video: Path, gap: float | None, workers: int) -> float:
    preprocess.REDUCING_GAP = gap
    src = sources.FrameSource(str(video))
    t0 = time.perf_counter()
    done = sum(
        o.error is None
        for o in clf.predict_many(src.frames(), workers=workers, image_of=lambda f: f.image)
    )
    secs = time.perf_counter() - t0
    src.close()
    return done / secs


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("model")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--frames", type=int, default=300, help="camera frames per measurement")
    ap.add_argument("--reps", type=int, default=5, help="repetitions (settings alternate)")
    ap.add_argument("--video-frames", type=int, default=120)
    args = ap.parse_args()
    clf = Classifier.from_file(args.model)
    auto = sources.capture_size(clf.input_size)
    legacy = sources.LEGACY_CAPTURE
    scene = np.asarray(photo(np.random.default_rng(0), 1920, 1080))
    sources.import_picamera2 = lambda: stand_in_picamera2(scene)
    settings = {
        "before": (legacy, None),
        "capture size only": (auto, None),
        "reduction only": (legacy, 2.0),
        "after": (auto, 2.0),
    }
    report: dict = {
        "command": " ".join(["python", *sys.argv]),
        "machine": machine_info(),
        "model": args.model,
        "model_input": "x".join(map(str, clf.input_size)),
        "backend": clf.backend,
        "camera": {
            "before_capture": "x".join(map(str, legacy)),
            "after_capture": "x".join(map(str, auto)),
        },
    }
    report["resize"] = resize_ms(scene, clf.input_size, args.reps)
    log(
        f"load_image of a 1920x1080 frame to {report['model_input']}: "
        f"{report['resize']['plain_ms']:.2f} ms plain, {report['resize']['reduced_ms']:.2f} ms "
        f"reduced; mean |difference| {report['resize']['mean_abs_diff']:.2f}/255"
    )
    for workers in sorted({1, default_workers()}):
        runs: dict[str, list[float]] = {k: [] for k in settings}
        camera_fps(clf, auto, 2.0, 30, workers)  # warm-up
        for rep in range(args.reps):
            order = list(settings) if rep % 2 == 0 else list(reversed(settings))
            for name in order:
                runs[name].append(camera_fps(clf, *settings[name], args.frames, workers))
        med = {k: statistics.median(v) for k, v in runs.items()}
        report["camera"][f"{workers}_workers"] = {
            "fps_median": med,
            "fps_runs": runs,
            "speedup_after_vs_before": med["after"] / med["before"],
        }
        log(
            f"camera, {workers} worker(s): "
            + ", ".join(f"{k} {v:.0f} fps" for k, v in med.items())
            + f"; after/before x{med['after'] / med['before']:.2f}"
        )
    try:
        import cv2  # noqa: F401
    except ImportError:
        report["video"] = None
    else:
        with tempfile.TemporaryDirectory(prefix="bm_camera_") as work:
            video = write_video(Path(work) / "1080p.mp4", args.video_frames, 1920, 1080)
            out: dict = {"frames": args.video_frames, "size": "1920x1080"}
            for workers in sorted({1, default_workers()}):
                runs = {"before": [], "after": []}
                for rep in range(args.reps):
                    for name, gap in (("before", None), ("after", 2.0))[
                        :: 1 if rep % 2 == 0 else -1
                    ]:
                        runs[name].append(video_fps(clf, video, gap, workers))
                med = {k: statistics.median(v) for k, v in runs.items()}
                out[f"{workers}_workers"] = {"fps_median": med, "fps_runs": runs}
                log(
                    f"1080p video, {workers} worker(s): before {med['before']:.1f} fps, after {med['after']:.1f} fps"
                )
            report["video"] = out
    preprocess.REDUCING_GAP = 2.0
    outdir = Path(args.out)
    atomic.write_json(outdir / "camera.json", report)
    atomic.write_text(outdir / "camera.md", markdown(report))
    log(f"wrote {outdir / 'camera.md'} and {outdir / 'camera.json'}")


def markdown(r: dict) -> str:
    m, c = r["machine"], r["camera"]
    z = r["resize"]
    lines = [
        "# Camera frames at the model's size: frames per second, before and after",
        "",
        f"Command: `{r['command']}`  ",
        f"Machine: {m['cpu_model']}, {m['usable_cores']} usable cores, load average at start "
        f"{m['load_average_at_start']}; model `{r['model']}` ({r['model_input']} input, "
        f"{r['backend']}). A shared VM: compare ratios within this run.",
        "",
        f"`load_image` of one {z['frame']} frame to {r['model_input']}: {z['plain_ms']:.2f} ms "
        f"with one antialiased resize, {z['reduced_ms']:.2f} ms reduced first (best of the "
        f"repetitions); pixels differ by {z['mean_abs_diff']:.2f}/255 "
        f"on average, {z['max_abs_diff']} at most.",
        "",
        f"Camera (a stand-in for picamera2 copying each frame, as picamera2 does): before = "
        f"{c['before_capture']} frames and one antialiased resize; after = {c['after_capture']} "
        "frames (the camera's scaler shrinks) and an integer reduction before the resize. "
        "Median frames/s end to end (capture, `load_image`, inference, a JSON line):",
        "",
        "| workers | before | capture size only | reduction only | after | after / before |",
        "|---|---|---|---|---|---|",
    ]
    for key, v in c.items():
        if key.endswith("_workers"):
            f = v["fps_median"]
            lines.append(
                f"| {key.split('_')[0]} | {f['before']:.0f} | {f['capture size only']:.0f} | "
                f"{f['reduction only']:.0f} | {f['after']:.0f} | x{v['speedup_after_vs_before']:.2f} |"
            )
    if r.get("video"):
        v = r["video"]
        lines += [
            "",
            f"1080p video file ({v['frames']} frames; its frames keep their size: the reduction "
            "alone), median frames/s:",
            "",
            "| workers | before | after | after / before |",
            "|---|---|---|---|",
        ]
        for key, x in v.items():
            if key.endswith("_workers"):
                f = x["fps_median"]
                lines.append(
                    f"| {key.split('_')[0]} | {f['before']:.1f} | {f['after']:.1f} | "
                    f"x{f['after'] / f['before']:.2f} |"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
