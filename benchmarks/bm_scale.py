"""Training past one machine's memory: peak RSS, epoch throughput and accuracy of streamed training.

    python benchmarks/bm_scale.py --out benchmarks/results              # full (about an hour on 2 cores)
    python benchmarks/bm_scale.py --out /tmp/bm --n-small 500 --n-large 2000 --size 48 --skip-accuracy

Measured as a user runs it, `edge-train` in a child process under `/usr/bin/time -f %M`:

1. peak RSS of `edge-train DATA.csv --out RUN --epochs 1` (streamed shards) on the first
   `--n-small` and on all `--n-large` demo images at `--size` px (target: within 1.3x);
2. images/s of a training epoch on the small set (the epoch seconds that `edge-train` prints,
   which include the epoch's validation pass; best of `--repeats` runs);
3. test mAP of the default demo training (`make-demo` defaults, default epochs and early
   stopping);
4. the shard format: tf.data read rate of the same pixels as .npy shards through
   `FixedLengthRecordDataset` (what the trainer uses), as TFRecord `tf.train.Example`s, and as
   memory-mapped .npy through a Python generator.

Writes scale.md and scale.json to --out atomically, with the machine and the exact command.
(Until issue 19 this also ran the in-memory pipeline, `--in-memory`, beside the streamed one:
benchmarks/results/scale.md is that version's report; bm_pipeline's results/pipeline.md has the
small-size comparison that retired it.)
Data and runs stay in --work (default: a folder in the system temp dir) for re-runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bm_common import log, machine_info  # noqa: E402

from edge_common.run import MANIFEST_FILE, open_run, read_manifest  # noqa: E402
from edge_runtime import atomic  # noqa: E402

EDGE_TRAIN = Path(sys.executable).with_name("edge-train")
EPOCH_LINE = re.compile(r"^epoch (\d+)/\d+ .* ([0-9.]+)s$", re.M)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--out", default=str(HERE / "results"), help="report folder (default benchmarks/results)"
    )
    p.add_argument(
        "--work",
        default=str(Path(tempfile.gettempdir()) / "edge-bm-scale"),
        help="data and runs (kept for re-runs)",
    )
    p.add_argument("--n-small", type=int, default=5000)
    p.add_argument("--n-large", type=int, default=50000)
    p.add_argument("--size", type=int, default=96, help="demo image side and model input (px)")
    p.add_argument("--repeats", type=int, default=2, help="throughput runs per mode")
    p.add_argument(
        "--skip-accuracy", action="store_true", help="no demo-training accuracy comparison"
    )
    return p.parse_args(argv)


def make_data(work: Path, n_large: int, n_small: int, size: int) -> tuple[Path, Path]:
    """The large demo set (generated once) and a CSV of its first `n_small` rows beside it."""
    from trainer.demo.demo_data import DemoConfig, make_demo_dataset

    folder = work / f"demo-{n_large}-{size}"
    train_csv = folder / "train.csv"
    if not (train_csv.is_file() and _rows(train_csv) == n_large):
        log(f"generating {n_large} demo images at {size} px in {folder} (minutes)")
        shutil.rmtree(folder, ignore_errors=True)
        make_demo_dataset(
            DemoConfig(str(folder), n_train=n_large, n_test=8, image_size=size, seed=0)
        )
    small_csv = folder / f"first-{n_small}.csv"
    with open(train_csv, newline="") as fh:
        rows = list(csv.reader(fh))[: n_small + 1]
    atomic.write_text(small_csv, "".join(",".join(r) + "\n" for r in rows))
    return small_csv, train_csv


def _rows(path: Path) -> int:
    with open(path, newline="") as fh:
        return sum(1 for _ in fh) - 1


def run_train(csv_path: Path, out: Path, args: list[str]) -> dict:
    """`/usr/bin/time -f %M edge-train ...`: peak RSS (MB), wall seconds, epoch seconds."""
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rss_file = out.parent / f"{out.name}.rss"
    cmd = [
        "/usr/bin/time",
        "-f",
        "%M",
        "-o",
        str(rss_file),
        str(EDGE_TRAIN),
        str(csv_path),
        "--out",
        str(out),
        "--json",
        "--arch",  # the demo's network, as measured before efficientnet_lite0 became the default
        "compact",
        *args,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"edge-train failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout)
    epochs = {int(e): float(s) for e, s in EPOCH_LINE.findall(proc.stderr)}
    manifest = read_manifest(out / MANIFEST_FILE)
    return {
        "command": "edge-train " + " ".join(shlex.quote(c) for c in cmd[6:]),
        "peak_rss_mb": int(rss_file.read_text().split()[-1]) / 1024,
        "wall_s": round(wall, 1),
        "epoch_seconds": epochs,
        "n_train": manifest.data.n_train,
        "n_val": manifest.data.n_val,
        "val_map": result["metrics"].get("mAP"),
        "run_dir": str(out),
    }


def measure_rss(small: Path, large: Path, work: Path, size: int) -> dict:
    common = ["--epochs", "1", "--input-size", str(size)]
    res = {}
    for name, csv_path in (("streamed_small", small), ("streamed_large", large)):
        log(f"RSS: {name}")
        res[name] = run_train(csv_path, work / "runs" / name, common)
        log(f"  peak RSS {res[name]['peak_rss_mb']:.0f} MB, {res[name]['wall_s']} s")
    res["ratio_large_over_small"] = (
        res["streamed_large"]["peak_rss_mb"] / res["streamed_small"]["peak_rss_mb"]
    )
    return res


def measure_throughput(small: Path, work: Path, size: int, repeats: int) -> dict:
    """Two-epoch runs; images/s of each epoch = training images / epoch seconds."""
    cache = work / "cache"  # decoding is not part of an epoch: decode once
    common = [
        "--epochs",
        "2",
        "--patience",
        "5",
        "--input-size",
        str(size),
        "--cache-dir",
        str(cache),
    ]
    runs: list[dict] = []
    for i in range(repeats):
        log(f"throughput: run {i + 1}/{repeats}")
        r = run_train(small, work / "runs" / f"tp-{i}", common)
        r["images_per_s"] = {e: r["n_train"] / s for e, s in r["epoch_seconds"].items()}
        runs.append(r)
        log(f"  epochs {r['epoch_seconds']} -> {r['images_per_s']}")
    return {
        "runs": runs,
        "images_per_s": {e: max(r["images_per_s"][e] for r in runs) for e in (1, 2)},
    }


def measure_accuracy(work: Path) -> dict:
    """Default demo training; test mAP of its Keras model."""
    import keras
    import numpy as np

    from edge_common.images import load_table
    from edge_runtime.evaluation.dataset import read_labels_csv
    from edge_runtime.evaluation.metrics import mean_average_precision
    from trainer.demo.demo_data import DemoConfig, make_demo_dataset

    folder = work / "demo-default"
    if not (folder / "test.csv").is_file():
        make_demo_dataset(DemoConfig(str(folder)))
    log("accuracy: default demo training")
    r = run_train(folder / "train.csv", work / "runs" / "acc", [])
    run = open_run(r["run_dir"])
    test = read_labels_csv(folder / "test.csv", labels=list(run.manifest.labels))
    test, x = load_table(test, run.manifest.input_size, "test")
    model = keras.models.load_model(run.model_path, safe_mode=True)
    scores = model.predict(x.astype(np.float32), batch_size=64, verbose=0)
    r["test_map"] = float(mean_average_precision(test.y, scores))
    r["epochs_run"] = run.manifest.training.epochs_run
    log(f"  test mAP {r['test_map']:.4f} after {r['epochs_run']} epochs")
    return r


def measure_formats(small: Path, size: int, work: Path) -> dict:
    """tf.data read rate of the small set's pixels in three on-disk forms (2 passes, best)."""
    import numpy as np
    import tensorflow as tf

    from edge_common.shards import open_shards
    from edge_runtime.evaluation.dataset import read_labels_csv

    table = read_labels_csv(small)
    shards = open_shards(table.paths, (size, size), work / "cache")
    rec = shards.record_bytes
    tfr = work / f"format-{len(shards)}-{size}.tfrecord"
    if not tfr.is_file():
        with tf.io.TFRecordWriter(str(tfr)) as w:
            for sh in shards.shards:
                arr = np.load(sh.file, mmap_mode="r")
                for img in arr:
                    feat = {
                        "image": tf.train.Feature(
                            bytes_list=tf.train.BytesList(value=[img.tobytes()])
                        )
                    }
                    w.write(
                        tf.train.Example(
                            features=tf.train.Features(feature=feat)
                        ).SerializeToString()
                    )
    shape = shards.shape

    def npy_fixed():
        files = [str(s.file) for s in shards.shards]
        heads = np.array([s.header_bytes for s in shards.shards], np.int64)
        ds = tf.data.Dataset.from_tensor_slices((files, heads)).interleave(
            lambda f, h: tf.data.FixedLengthRecordDataset(
                f, rec, header_bytes=h, buffer_size=1 << 20
            ),
            cycle_length=4,
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        return ds.map(
            lambda r: tf.reshape(tf.io.decode_raw(r, tf.uint8), shape),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    def tfrecord():
        spec = {"image": tf.io.FixedLenFeature([], tf.string)}
        ds = tf.data.TFRecordDataset(str(tfr), buffer_size=1 << 20)
        return ds.map(
            lambda s: tf.reshape(
                tf.io.decode_raw(tf.io.parse_single_example(s, spec)["image"], tf.uint8), shape
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    def npy_mmap_generator():
        def gen():
            for sh in shards.shards:
                yield from np.load(sh.file, mmap_mode="r")

        return tf.data.Dataset.from_generator(gen, output_signature=tf.TensorSpec(shape, tf.uint8))

    res = {}
    for name, make in (
        ("npy_fixed_length", npy_fixed),
        ("tfrecord_example", tfrecord),
        ("npy_mmap_generator", npy_mmap_generator),
    ):
        rates = []
        for _ in range(2):
            t0 = time.perf_counter()
            n = sum(int(b.shape[0]) for b in make().batch(256).prefetch(2))
            rates.append(n / (time.perf_counter() - t0))
        res[name] = {"images": n, "images_per_s": max(rates)}
        log(f"format {name}: {max(rates):.0f} images/s")
    res["shard_bytes_per_image"] = rec
    res["tfrecord_bytes"] = tfr.stat().st_size
    res["npy_bytes"] = sum(s.file.stat().st_size for s in shards.shards)
    return res


def report_md(r: dict) -> str:
    m = r["machine"]
    rss, tp = r["rss"], r["throughput"]
    lines = [
        "# Large data sets: streamed training",
        "",
        f"Machine: {m['cpu_model']}, {m['usable_cores']} usable cores ({m['platform']}), shared with other "
        f"jobs (load average at start {m['load_average_at_start']}); Python {m['python']}, TensorFlow "
        f"{m['versions']['tensorflow']}, Keras {m['versions']['keras']}.",
        f"Command: `{r['command']}` ({r['seconds'] / 60:.0f} min). Demo images at {r['size']} px.",
        "",
        "## Peak memory of `edge-train ... --epochs 1` (`/usr/bin/time -f %M`)",
        "",
        "| run | training / validation images | peak RSS |",
        "|---|---|---|",
    ]
    for name in ("streamed_small", "streamed_large"):
        x = rss[name]
        lines.append(
            f"| {name.replace('_', ' ')} | {x['n_train']:,} / {x['n_val']:,} | {x['peak_rss_mb']:,.0f} MB |"
        )
    lines += [
        "",
        f"Streamed, {rss['streamed_large']['n_train'] + rss['streamed_large']['n_val']:,} vs "
        f"{rss['streamed_small']['n_train'] + rss['streamed_small']['n_val']:,} images: "
        f"**{rss['ratio_large_over_small']:.2f}x** peak RSS (target <= 1.3x).",
        "",
        "## Epoch throughput (best of the runs)",
        "",
        "| epoch | images/s |",
        "|---|---|",
    ]
    for e in (1, 2):
        lines.append(f"| {e} | {tp['images_per_s'][e]:,.0f} |")
    lines += [
        "",
        "Epoch seconds as `edge-train` prints them (training steps plus the epoch's validation "
        "pass); epoch 1 also traces the graphs.",
        "",
    ]
    if r.get("accuracy"):
        a = r["accuracy"]
        lines += [
            "## Accuracy: default demo training (1,500 train / 300 test images)",
            "",
            f"{a['epochs_run']} epochs run, test mAP {a['test_map']:.4f}.",
            "",
        ]
    f = r["formats"]
    lines += [
        "## Shard format: tf.data read rate of the same pixels",
        "",
        "| format | images/s |",
        "|---|---|",
    ]
    for name in ("npy_fixed_length", "tfrecord_example", "npy_mmap_generator"):
        lines.append(f"| {name.replace('_', ' ')} | {f[name]['images_per_s']:,.0f} |")
    lines += ["", f"Bytes on disk: .npy {f['npy_bytes']:,}, TFRecord {f['tfrecord_bytes']:,}.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    a = parse_args(argv)
    t0 = time.perf_counter()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/bm_scale.py " + " ".join(
        shlex.quote(x) for x in (argv or sys.argv[1:])
    )
    machine = machine_info()
    small, large = make_data(work, a.n_large, a.n_small, a.size)
    result = {
        "command": command,
        "machine": machine,
        "size": a.size,
        "n_small": a.n_small,
        "n_large": a.n_large,
    }
    result["rss"] = measure_rss(small, large, work, a.size)
    result["throughput"] = measure_throughput(small, work, a.size, a.repeats)
    result["formats"] = measure_formats(small, a.size, work)
    result["accuracy"] = None if a.skip_accuracy else measure_accuracy(work)
    result["seconds"] = time.perf_counter() - t0
    out = Path(a.out)
    atomic.write_json(out / "scale.json", result)
    atomic.write_text(out / "scale.md", report_md(result))
    log(f"wrote {out / 'scale.md'} and {out / 'scale.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
