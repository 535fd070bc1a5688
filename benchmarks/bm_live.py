"""The device, live: what issue 9 asks to measure, on any TFLite model, without TensorFlow.

    python tests/make_fixture_models.py /tmp/fixtures          # or any exported model
    python benchmarks/bm_live.py /tmp/fixtures/int8.tflite --out benchmarks/results

1. a folder of 1920x1080 JPEGs (quality 90): images/s through `Classifier.predict_many` at
   --workers 1 and at the default (the core count), with reduced-scale (draft) JPEG decoding
   (the default) and at full scale; runs of the two settings alternate, the median is reported;
2. frames/s from a 1080p video file (mp4v) through `FrameSource` + the same pipeline, next to
   OpenCV's bare read rate;
3. resident memory (VmRSS) every 1,000 frames over 20,000 frames of a live run (the CLI's
   Runner writing JSON lines to /dev/null);
4. the watch's CPU time per poll with 100,000 files in the folder, OS notification vs listing.

Writes live.md and live.json in --out (atomically), with the machine and the exact command.
Needs the `video` and `watch` extras (OpenCV, watchdog). Timings on a shared machine are noisy:
compare ratios within one run. Nothing here asserts speed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bm_common import log, machine_info  # noqa: E402

from edge_runtime import atomic  # noqa: E402
from edge_runtime.inference.classifier import Classifier  # noqa: E402
from edge_runtime.inference.decode import default_workers  # noqa: E402
from edge_runtime.live.output import Format, Writer  # noqa: E402
from edge_runtime.live.runner import RunConfig, Runner  # noqa: E402
from edge_runtime.live.sources import FrameSource  # noqa: E402
from edge_runtime.live.watch import WatchConfig, Watcher  # noqa: E402


def photo(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A camera-like picture: smooth gradient, noise and a few shapes (compresses like a photo)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([x / w * 255, y / h * 255, (x + y) / (w + h) * 255], axis=-1)
    base += rng.normal(0, 12, (h, w, 3))
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 200)), int(rng.integers(0, h - 200))
        draw.ellipse(
            [x0, y0, x0 + int(rng.integers(50, 400)), y0 + int(rng.integers(50, 400))],
            fill=tuple(int(v) for v in rng.integers(0, 256, 3)),
        )
    return img


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ------------------------------------------------------------------------------ 1. folder
_HASH_DATA = os.urandom(8 << 20)


def control_time(threads: int, tasks: int = 32) -> float:
    """Seconds for `tasks` SHA-256 hashes of 8 MiB on `threads` threads (about as long as a folder
    run, as the scheduler favours short bursts): work that releases the
    GIL, so its 1-vs-N ratio is the most any thread pool can gain on this machine right now (on a
    shared VM with Linux's autogroup scheduling, other sessions' load caps it below the cores)."""
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: hashlib.sha256(_HASH_DATA).digest(), range(tasks)))
    return time.perf_counter() - t0


def bench_folder(clf: Classifier, work: Path, n: int, reps: int) -> dict:
    rng = np.random.default_rng(0)
    folder = work / "jpegs"
    folder.mkdir()
    for i in range(n):
        photo(rng, 1920, 1080).save(folder / f"{i:05d}.jpg", quality=90)
    paths = sorted(str(p) for p in folder.iterdir())
    default = default_workers()
    out: dict = {
        "images": n,
        "size": "1920x1080",
        "jpeg_quality": 90,
        "default_workers": default,
        "runs": reps,
    }

    def rate(workers: int, draft: bool) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        done = sum(o.error is None for o in clf.predict_many(paths, workers=workers, draft=draft))
        wall = time.perf_counter() - t0
        return done / wall, (time.process_time() - c0) / wall  # images/s, cores kept busy

    for draft in (True, False):
        # The load on a shared machine changes within seconds: measure in adjacent pairs (order
        # alternating), each next to a control pair, and report medians of the per-pair ratios.
        pairs, controls, runs = [], [], {1: [], default: []}
        for rep in range(reps):
            order = (1, default) if rep % 2 == 0 else (default, 1)
            c = {k: control_time(k) for k in order}
            r = {k: rate(k, draft) for k in order}
            controls.append(c[1] / c[default])
            pairs.append(r[default][0] / r[1][0])
            for k in order:
                runs[k].append(r[k])
        key = "draft" if draft else "full_decode"
        med = {k: statistics.median(x[0] for x in v) for k, v in runs.items()}
        busy = {k: statistics.median(x[1] for x in v) for k, v in runs.items()}
        out[key] = {
            "images_per_s_1_worker": med[1],
            f"images_per_s_{default}_workers": med[default],
            "speedup": statistics.median(pairs),
            "control_speedup": statistics.median(controls),
            "cores_busy_1_worker": busy[1],
            f"cores_busy_{default}_workers": busy[default],
            "pair_speedups": pairs,
            "control_speedups": controls,
        }
        log(
            f"folder ({key}): {med[1]:.1f} img/s at 1 worker, {med[default]:.1f} at {default}: pairs "
            f"x{out[key]['speedup']:.2f} (control x{out[key]['control_speedup']:.2f}); cores busy "
            f"{busy[1]:.2f} vs {busy[default]:.2f}"
        )
    return out


# ------------------------------------------------------------------------------ 2. video
def write_video(path: Path, frames: int, w: int, h: int, moving: bool = True) -> Path:
    import cv2

    rng = np.random.default_rng(1)
    base = np.asarray(photo(rng, w, h))[..., ::-1]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h))
    for i in range(frames):
        out.write(np.ascontiguousarray(np.roll(base, 4 * i, axis=1)) if moving else base)
    out.release()
    return path


def bench_video(clf: Classifier, work: Path, frames: int) -> dict:
    import cv2

    video = write_video(work / "1080p.mp4", frames, 1920, 1080)
    cap = cv2.VideoCapture(str(video))
    t0, n = time.perf_counter(), 0
    while cap.read()[0]:
        n += 1
    bare = n / (time.perf_counter() - t0)
    cap.release()
    out: dict = {
        "frames": frames,
        "size": "1920x1080",
        "codec": "mp4v",
        "opencv_read_only_fps": bare,
    }
    for workers in (1, default_workers()):
        src = FrameSource(str(video))
        t0 = time.perf_counter()
        done = sum(
            o.error is None
            for o in clf.predict_many(src.frames(), workers=workers, image_of=lambda f: f.image)
        )
        out[f"classified_fps_{workers}_workers"] = done / (time.perf_counter() - t0)
        src.close()
    log(
        f"video 1080p: OpenCV read {bare:.1f} fps; classified "
        + ", ".join(f"{v:.1f} fps ({k})" for k, v in out.items() if k.startswith("classified"))
    )
    return out


# ------------------------------------------------------------------------------ 3. memory
def bench_memory(clf: Classifier, work: Path, total: int) -> dict:
    video = write_video(work / "rss.mp4", 500, 320, 240)
    samples: list[tuple[int, float]] = []
    frames = 0
    runner = Runner(
        clf, RunConfig(), Writer(Format.JSON, clf.labels, live=True, out=open(os.devnull, "w"))
    )
    t0 = time.perf_counter()
    while frames < total:  # the 500-frame clip again and again: 20,000 frames through one runner
        src = FrameSource(str(video))
        before = runner.summary.frames
        runner.frames(src)
        for k in range(before, runner.summary.frames):
            if (k + 1) % 1000 == 0:
                samples.append((k + 1, rss_mib()))
        frames = runner.summary.frames
    secs = time.perf_counter() - t0
    first, last = samples[0][1], samples[-1][1]
    log(
        f"memory: {frames} frames in {secs:.0f} s; RSS {first:.1f} MiB at 1,000 frames, {last:.1f} at {frames}, "
        f"max {max(r for _, r in samples):.1f}"
    )
    return {
        "frames": frames,
        "frame_size": "320x240",
        "seconds": secs,
        "rss_mib_every_1000": samples,
        "rss_mib_first": first,
        "rss_mib_last": last,
        "rss_mib_max": max(r for _, r in samples),
        "growth_mib": last - first,
    }


# ------------------------------------------------------------------------------ 4. watch
def bench_watch(work: Path, files: int, polls: int) -> dict:
    folder = work / "watched"
    folder.mkdir()
    t0 = time.perf_counter()
    for i in range(files):
        (folder / f"{i:06d}.jpg").write_bytes(b"x")
    log(f"watch: {files} files made in {time.perf_counter() - t0:.0f} s")
    out: dict = {"files": files, "polls": polls}
    for notify in (True, False):
        cfg = WatchConfig(str(folder), settle=0.0, interval=0.0, notify=notify)
        c0, t0 = time.process_time(), time.perf_counter()
        with Watcher(cfg) as w:
            start_cpu = time.process_time() - c0
            # CPU of the whole process (the notification thread included) over polls 50 ms apart
            c0 = time.process_time()
            for _ in range(polls):
                w.poll()
                time.sleep(0.05)
            idle = (time.process_time() - c0) / polls
            # one new image per poll: the usual case; every one must be handed out
            c0, handed = time.process_time(), 0
            for i in range(polls):
                (folder / f"new{i}.jpg").write_bytes(b"y")
                handed += len(w.poll())
                time.sleep(0.05)
            busy = (time.process_time() - c0) / polls
            for _ in range(10):  # the last arrivals settle
                handed += len(w.poll())
                time.sleep(0.05)
            mode, tracked = w.mode, w.tracked
        for i in range(polls):
            (folder / f"new{i}.jpg").unlink()
        out[mode] = {
            "start_cpu_ms": start_cpu * 1e3,
            "idle_poll_cpu_ms": idle * 1e3,
            "poll_with_one_new_file_cpu_ms": busy * 1e3,
            "paths_tracked": tracked,
            "new_files": polls,
            "new_files_handed_out": handed,
        }
        log(
            f"watch ({mode}): start {start_cpu * 1e3:.0f} ms CPU, idle poll {idle * 1e3:.3f} ms CPU, "
            f"poll with a new file {busy * 1e3:.3f} ms CPU, {handed}/{polls} new files handed out, "
            f"{tracked} paths tracked"
        )
    return out


# ------------------------------------------------------------------------------ report
def markdown(r: dict) -> str:
    f, v, m, w = r["folder"], r["video"], r["memory"], r["watch"]
    d = f["default_workers"]
    lines = [
        "# The device, live: benchmark",
        "",
        f"Command: `{r['command']}`  ",
        f"Machine: {r['machine']['cpu_model']}, {r['machine']['usable_cores']} usable cores, "
        f"load average at start {r['machine']['load_average_at_start']}; model `{r['model']}` "
        f"({r['model_input']} input). A shared VM: compare ratios within this run.",
        "",
        f"## Folder of {f['images']} {f['size']} JPEGs (quality {f['jpeg_quality']}), `predict_many`",
        "",
        f"| decoding | 1 worker (img/s) | {d} workers (img/s) | speed-up | control speed-up | "
        f"cores busy, 1 / {d} workers |",
        "|---|---|---|---|---|---|",
    ]
    for key in ("draft", "full_decode"):
        x = f[key]
        lines.append(
            f"| {key.replace('_', ' ')} | {x['images_per_s_1_worker']:.1f} | "
            f"{x[f'images_per_s_{d}_workers']:.1f} | x{x['speedup']:.2f} | x{x['control_speedup']:.2f} | "
            f"{x['cores_busy_1_worker']:.2f} / {x[f'cores_busy_{d}_workers']:.2f} |"
        )
    lines += [
        "",
        f"{f['runs']} adjacent pairs of runs per setting (order alternating); speed-ups are medians "
        "of the per-pair ratios. Control: the same thread counts hashing with SHA-256 (GIL released), "
        "measured next to each pair: the most any thread pool could gain on this machine at that "
        "moment. Cores busy = this process's CPU seconds per wall-clock second.",
        "",
        f"## 1080p video ({v['frames']} frames, {v['codec']})",
        "",
        f"OpenCV read alone: {v['opencv_read_only_fps']:.1f} frames/s; classified: "
        + ", ".join(
            f"{val:.1f} frames/s at {k.split('_')[2]} worker(s)"
            for k, val in v.items()
            if k.startswith("classified")
        )
        + ".",
        "",
        f"## Memory over {m['frames']:,} frames ({m['frame_size']}, JSON lines to /dev/null)",
        "",
        f"RSS {m['rss_mib_first']:.1f} MiB after 1,000 frames, {m['rss_mib_last']:.1f} MiB after "
        f"{m['frames']:,} (max {m['rss_mib_max']:.1f}, growth {m['growth_mib']:+.1f} MiB).",
        "",
        f"## Watch CPU per poll, {w['files']:,} files in the folder",
        "",
        "Polls 50 ms apart; CPU time of the whole process (the notification thread included).",
        "",
        "| mode | start (ms CPU) | idle poll (ms CPU) | poll with one new file (ms CPU) | new files handed out | paths tracked |",
        "|---|---|---|---|---|---|",
    ]
    for mode in ("inotify", "notify", "polling"):
        if mode in w:
            x = w[mode]
            lines.append(
                f"| {mode} | {x['start_cpu_ms']:.0f} | {x['idle_poll_cpu_ms']:.3f} | "
                f"{x['poll_with_one_new_file_cpu_ms']:.3f} | {x['new_files_handed_out']}/{x['new_files']} | "
                f"{x['paths_tracked']:,} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("model")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--images", type=int, default=32, help="JPEGs in the folder")
    ap.add_argument("--reps", type=int, default=9, help="pairs of runs per folder setting")
    ap.add_argument("--video-frames", type=int, default=150)
    ap.add_argument("--rss-frames", type=int, default=20_000)
    ap.add_argument("--watch-files", type=int, default=100_000)
    ap.add_argument("--polls", type=int, default=50)
    args = ap.parse_args()
    clf = Classifier.from_file(args.model)
    report = {
        "command": " ".join(["python", *sys.argv]),
        "machine": machine_info(),
        "model": args.model,
        "model_input": "x".join(map(str, clf.input_size)),
    }
    work = Path(tempfile.mkdtemp(prefix="bm_live_"))
    try:
        report["folder"] = bench_folder(clf, work, args.images, args.reps)
        report["video"] = bench_video(clf, work, args.video_frames)
        report["memory"] = bench_memory(clf, work, args.rss_frames)
        report["watch"] = bench_watch(work, args.watch_files, args.polls)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    atomic.write_json(out / "live.json", report)
    atomic.write_text(out / "live.md", markdown(report))
    log(f"wrote {out / 'live.md'} and {out / 'live.json'}")


if __name__ == "__main__":
    main()
