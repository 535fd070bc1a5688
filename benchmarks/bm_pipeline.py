"""Small data sets: does streaming from shards cost anything against decoding into RAM?

    python benchmarks/bm_pipeline.py --out benchmarks/results               # 300, 1,000, 3,000 images
    python benchmarks/bm_pipeline.py --out /tmp/bm --sizes 200 --epochs 2 --repeats 1   # wiring

The question behind issue 19 (one training input pipeline): `--in-memory` decoded the whole set
into one array for "small sets", beside the default that streams decoded shards from disk. If
streaming costs nothing at a few hundred to a few thousand images, the in-memory pipeline has
no reason to exist. Measured as a user runs it: `edge-train DATA.csv --out RUN` in a child
process, at `--size` px on the first N demo images, without `--cache-dir` (every run decodes
its images: into temporary shards beside the run, or into RAM), the two modes alternating so
that load changes on a shared machine hit both alike. Per run: wall seconds of the whole
command, the seconds `edge-train` prints for each epoch (training steps plus the epoch's
validation pass; epoch 1 also traces the graphs) and peak RSS (`/usr/bin/time -f %M`).
The report gives, per size, the best of the repeats for each figure and the ratio
streamed / in-memory (below 1: streaming is faster).

Writes pipeline.md and pipeline.json to --out atomically, with the machine, the commit and the
exact command. Data and runs stay in --work (default: a folder in the system temp dir).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bm_common import log, machine_info  # noqa: E402
from bm_scale import make_data, run_train  # noqa: E402

from edge_runtime import atomic  # noqa: E402

MODES = {"streamed": [], "in_memory": ["--in-memory"]}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(HERE / "results"), help="report folder")
    p.add_argument(
        "--work",
        default=str(Path(tempfile.gettempdir()) / "edge-bm-pipeline"),
        help="data and runs (kept for re-runs)",
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[300, 1000, 3000])
    p.add_argument("--size", type=int, default=96, help="demo image side and model input (px)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2, help="runs per mode and size")
    return p.parse_args(argv)


def measure(csv_path: Path, work: Path, n: int, size: int, epochs: int, repeats: int) -> dict:
    # A fixed number of epochs at a constant rate: both modes do the same work.
    common = ["--epochs", str(epochs), "--no-early-stop", "--input-size", str(size)]
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    for i in range(repeats):
        order = list(MODES) if i % 2 == 0 else list(reversed(MODES))  # neither always goes first
        for mode in order:
            r = run_train(csv_path, work / "runs" / f"{n}-{mode}-{i}", common + MODES[mode])
            runs[mode].append(r)
            log(
                f"{n} images, {mode} run {i + 1}/{repeats}: wall {r['wall_s']} s, "
                f"epochs {r['epoch_seconds']}, peak RSS {r['peak_rss_mb']:.0f} MB"
            )

    def best(mode: str, key) -> float:
        return min(key(r) for r in runs[mode])

    figures = {
        "wall_s": lambda r: r["wall_s"],
        "epoch1_s": lambda r: r["epoch_seconds"][1],
        "later_epoch_s": lambda r: min(s for e, s in r["epoch_seconds"].items() if e > 1),
        "peak_rss_mb": lambda r: r["peak_rss_mb"],
    }
    res = {"n_train": runs["streamed"][0]["n_train"], "n_val": runs["streamed"][0]["n_val"]}
    for name, key in figures.items():
        s, m = best("streamed", key), best("in_memory", key)
        res[name] = {"streamed": s, "in_memory": m, "ratio": s / m}
    res["runs"] = runs
    return res


def report_md(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# Small data sets: streamed shards vs `--in-memory` training",
        "",
        f"Machine: {m['cpu_model']}, {m['usable_cores']} usable cores ({m['platform']}), shared "
        f"with other jobs (load average at start {m['load_average_at_start']}, at the end "
        f"{r['load_average_at_end']}); Python {m['python']}, TensorFlow "
        f"{m['versions']['tensorflow']}, Keras {m['versions']['keras']}.",
        f"Command: `{r['command']}` at commit {r['commit']} ({r['seconds'] / 60:.0f} min). "
        f"Demo images at {r['size']} px, {r['epochs']} epochs at a constant rate "
        "(`--no-early-stop`), no `--cache-dir` (every run decodes its images), "
        f"best of {r['repeats']} alternated runs per mode.",
        "",
        "| images (train / val) | figure | streamed | in-memory | streamed / in-memory |",
        "|---|---|---|---|---|",
    ]
    names = {
        "wall_s": "whole command, s",
        "epoch1_s": "epoch 1 (with tracing), s",
        "later_epoch_s": "best later epoch, s",
        "peak_rss_mb": "peak RSS, MB",
    }
    for res in r["sizes"].values():
        for key, label in names.items():
            x = res[key]
            lines.append(
                f"| {res['n_train']:,} / {res['n_val']:,} | {label} | {x['streamed']:,.1f} | "
                f"{x['in_memory']:,.1f} | {x['ratio']:.2f}x |"
            )
    lines += [
        "",
        "Epoch seconds are those `edge-train` prints (training steps plus the epoch's validation "
        "pass). Timings on a shared machine are noisy: read the ratios, not the seconds.",
        "",
    ]
    return "\n".join(lines)


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    import os

    a = parse_args(argv)
    t0 = time.perf_counter()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/bm_pipeline.py " + " ".join(
        shlex.quote(x) for x in (argv or sys.argv[1:])
    )
    result = {
        "command": command,
        "commit": _commit(),
        "machine": machine_info(),
        "size": a.size,
        "epochs": a.epochs,
        "repeats": a.repeats,
        "sizes": {},
    }
    for n in a.sizes:
        csv_path, _ = make_data(work, max(a.sizes), n, a.size)
        result["sizes"][n] = measure(csv_path, work, n, a.size, a.epochs, a.repeats)
    result["seconds"] = time.perf_counter() - t0
    result["load_average_at_end"] = list(os.getloadavg())
    out = Path(a.out)
    atomic.write_json(out / "pipeline.json", result)
    atomic.write_text(out / "pipeline.md", report_md(result))
    log(f"wrote {out / 'pipeline.md'} and {out / 'pipeline.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
