"""`edge-infer`: classify images with a TFLite model on the device.

The only place that turns library exceptions into messages and exit codes:
0 every input classified, 1 some inputs failed (listed on stderr after the rest were
classified), 2 usage or model error. Never a traceback for an EdgeError.
"""
from __future__ import annotations

import csv
import glob
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator

import click

from . import atomic
from .clikit import DefaultGroup, Fatal
from .errors import EdgeError, first_line

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
_PARTIAL = (".tmp", ".part", ".partial", ".crdownload", ".swp")


def _load(model: str, threads: int | None = None, backend: str | None = None):
    from .classifier import Classifier

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            clf = Classifier.from_file(model, threads=threads, backend=backend)
    except EdgeError as exc:
        raise Fatal(str(exc)) from None
    for w in caught:  # one line each, without the library's source location
        click.echo(f"Warning: {w.message}", err=True)
    return clf


def _try_predict(clf, source, **kwargs):
    """(Prediction, None), or (None, the problem) for an input that cannot be classified."""
    try:
        return clf.predict(source, **kwargs), None
    except EdgeError as exc:
        return None, getattr(exc, "problem", str(exc))
    except (RuntimeError, ValueError, MemoryError) as exc:  # interpreter trouble on one input
        return None, f"{type(exc).__name__}: {first_line(exc)}"


# ------------------------------------------------------------------------------------ inputs
def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def expand_inputs(items: list[str], stdin=None) -> Iterator[tuple[str, str | None]]:
    """Yield (path, problem) for files, directories (recursive), globs and `-` (paths on stdin).

    `problem` is None for a usable path, else why nothing can be classified there.
    """
    for item in items:
        if item == "-":
            stream = stdin if stdin is not None else sys.stdin
            for line in stream:
                line = line.strip()
                if line:
                    yield from expand_inputs([line])
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _is_image(p))
            if not found:
                yield item, "directory holds no images"
            for p in found:
                yield str(p), None
        elif path.exists():
            yield item, None
        elif glob.has_magic(item):
            matches = sorted(m for m in glob.glob(item, recursive=True) if Path(m).is_file())
            if not matches:
                yield item, "no files match this pattern"
            for m in matches:
                yield m, None
        else:
            yield item, "file not found"


# ------------------------------------------------------------------------------------ output
class _Writer:
    """Writes one prediction at a time as a table row, a JSON line or a CSV row."""

    def __init__(self, fmt: str, labels: list[str]) -> None:
        self.fmt, self.labels = fmt, labels
        self._csv = None
        self._width = 0

    def start(self, names: list[str]) -> None:
        if self.fmt == "csv":
            self._csv = csv.writer(sys.stdout, lineterminator="\n")
            self._csv.writerow(["file", *self.labels, "labels"])
        elif self.fmt == "table":
            self._width = min(max([len(n) for n in names] + [4]), 60)
            head = "".join(f"{lab[:10]:>11}" for lab in self.labels)
            click.echo(f"{'file':<{self._width}} {head}  present")

    def write(self, pred) -> None:
        if self.fmt == "json":
            click.echo(atomic.dumps(pred.to_dict()))
        elif self.fmt == "csv":
            self._csv.writerow([pred.source, *(f"{pred.scores[k]:.6f}" for k in self.labels), " ".join(pred.labels)])
            sys.stdout.flush()
        else:
            name = str(pred.source)
            if len(name) > self._width:
                name = "..." + name[-(self._width - 3):]
            cells = "".join(f"{pred.scores[k]:>11.3f}" for k in self.labels)
            click.echo(f"{name:<{self._width}} {cells}  {', '.join(pred.labels) or '-'}")


def _fmt(as_json: bool, as_csv: bool) -> str:
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    return "json" if as_json else "csv" if as_csv else "table"


# ------------------------------------------------------------------------------------ commands
@click.group(cls=DefaultGroup, epilog="""\b
Examples:
  edge-infer model.tflite photo.jpg            classify one image (same as `predict`)
  edge-infer model.tflite photos/ --json       every image under photos/, JSON lines
  edge-infer info model.tflite                 labels, thresholds, tensors, ops
  edge-infer eval model.tflite test.csv        metrics on a labelled set
  edge-infer bench model.tflite --runs 100     latency and memory
""")
@click.version_option(package_name="edge-multilabel")
def main_group() -> None:
    """Run a multi-label TFLite image classifier (no TensorFlow needed)."""


@main_group.command(epilog="""\b
Examples:
  edge-infer model.tflite a.jpg b.png
  edge-infer model.tflite photos/ "more/**/*.jpg" --json > out.jsonl
  find cam/ -name '*.jpg' | edge-infer model.tflite - --csv
  edge-infer model.tflite --threshold 0.3 --threads 2 photo.jpg
  edge-infer model.tflite --watch incoming/          classify new files until Ctrl-C
""")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("inputs", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with one score column per label.")
@click.option("--threshold", type=click.FloatRange(0, 1), help="One threshold for every label (replaces the embedded ones).")
@click.option("--threads", type=click.IntRange(1, 64), help="Interpreter threads.")
@click.option("--backend", type=click.Choice(["ai-edge-litert", "tflite-runtime", "tensorflow"]), help="Interpreter package.")
@click.option("--no-draft", is_flag=True, help="Always decode JPEGs at full scale.")
@click.option("--watch", "watch_dir", type=click.Path(file_okay=False), help="Poll DIR and classify each new complete image.")
@click.option("--interval", type=click.FloatRange(0.01), default=0.5, show_default=True, help="Watch poll interval (s).")
@click.option("--settle", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Watch: a file counts as complete once unchanged for this many seconds.")
@click.option("--watch-timeout", type=click.FloatRange(0), help="Stop watching after this many seconds.")
@click.option("--max-count", type=click.IntRange(1), help="Stop watching after this many images.")
def predict(model, inputs, as_json, as_csv, threshold, threads, backend, no_draft, watch_dir, interval,
            settle, watch_timeout, max_count) -> None:
    """Classify images: files, directories (recursive), globs, or - for paths on stdin."""
    fmt = _fmt(as_json, as_csv)
    if not inputs and not watch_dir:
        raise click.UsageError("give at least one INPUT (file, directory, glob or -) or --watch DIR")
    clf = _load(model, threads, backend)
    writer = _Writer(fmt, clf.labels)
    failures: list[tuple[str, str]] = []

    def classify(path: str) -> str | None:
        """Classify and print one image; return the problem instead of raising."""
        pred, problem = _try_predict(clf, path, threshold=threshold, draft=not no_draft)
        if pred is not None:
            writer.write(pred)
        return problem

    def run(path: str) -> None:
        problem = classify(path)
        if problem is not None:
            failures.append((path, problem))

    if inputs:
        items = list(expand_inputs(list(inputs)))
        good = [p for p, problem in items if problem is None]
        failures.extend((p, problem) for p, problem in items if problem is not None)
        writer.start(good)
        # A bar only where nobody reads the results as they come: stdout redirected, stderr a terminal.
        show_bar = len(good) >= 10 and _isatty(sys.stderr) and not _isatty(sys.stdout)
        if show_bar:
            with click.progressbar(good, label="classifying", file=sys.stderr) as bar:
                for path in bar:
                    run(path)
        else:
            for path in good:
                run(path)
    for path, problem in failures:
        click.echo(f"Error: {path}: {problem}", err=True)
    watch_failed = 0
    if watch_dir:
        if not inputs:
            writer.start([watch_dir + "/" + "x" * 30])
        watch_failed = _watch(Path(watch_dir), classify, interval, settle, watch_timeout, max_count)
    if failures or watch_failed:
        sys.exit(1)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _watch(folder: Path, classify, interval: float, settle: float, timeout: float | None,
           max_count: int | None) -> int:
    """Poll `folder`; classify each new image once complete: unchanged in size and modification
    time between two polls and not modified for `settle` seconds (a writer may pause mid-file).

    `classify(path)` returns an error message or None; errors are reported at once (a watch may
    never end). Returns the number of failed images.
    """
    if not folder.is_dir():
        raise Fatal(f"{folder}: watch folder does not exist")
    # Files already there are not new: only what arrives from now on is classified.
    seen = {p for p in folder.rglob("*") if p.is_file()}
    pending: dict[Path, tuple[int, int]] = {}
    done = failed = 0
    deadline = None if timeout is None else time.monotonic() + timeout
    click.echo(f"watching {folder} (Ctrl-C to stop)", err=True)
    try:
        while deadline is None or time.monotonic() < deadline:
            for p in sorted(folder.rglob("*")):
                if p in seen or not p.is_file() or p.name.startswith(".") or p.suffix.lower() in _PARTIAL:
                    continue
                try:
                    st = p.stat()
                except OSError:
                    continue  # vanished between listing and stat
                sig = (st.st_size, st.st_mtime_ns)
                # A writer still appending changes size or mtime: wait until it has been quiet.
                if st.st_size == 0 or pending.get(p) != sig or time.time() - st.st_mtime < settle:
                    pending[p] = sig
                    continue
                pending.pop(p, None)
                seen.add(p)
                if not _is_image(p):
                    continue
                problem = classify(str(p))
                if problem is not None:
                    click.echo(f"Error: {p}: {problem}", err=True)
                    failed += 1
                done += 1
                if max_count is not None and done >= max_count:
                    return failed
            time.sleep(interval)
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    return failed


@main_group.command(epilog="""\b
Examples:
  edge-infer info model.tflite
  edge-infer info model.tflite --json | jq .labels
""")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--backend", type=click.Choice(["ai-edge-litert", "tflite-runtime", "tensorflow"]), help="Interpreter package.")
def info(model, as_json, backend) -> None:
    """Labels, thresholds, tensors, quantization, size, ops and embedded summaries of MODEL."""
    clf = _load(model, backend=backend)
    meta = clf.metadata

    def tensor(d: dict) -> dict:
        scale, zp = d["quantization"]
        return {"name": d["name"], "shape": [int(v) for v in d.get("shape_signature", d["shape"])],
                "dtype": d["dtype"].__name__, "quantization": {"scale": float(scale), "zero_point": int(zp)} if scale else None}

    out = {
        "model": model,
        "size_bytes": clf.model_size,
        "backend": clf.backend,
        "labels": clf.labels,
        "thresholds": [round(float(t), 6) for t in clf.thresholds],
        "input": tensor(clf.input_details),
        "output": tensor(clf.output_details),
        "ops": clf.op_names(),
        "has_metadata": bool(meta),
        "arch": meta.get("arch"),
        "quantization": meta.get("quantization"),
        "preprocessing": meta.get("preprocessing"),
        "training": meta.get("training"),
        "parity": meta.get("parity"),
        "toolkit_version": meta.get("toolkit_version"),
    }
    if as_json:
        click.echo(atomic.dumps(out))
        return
    click.echo(f"model       {model} ({clf.model_size / 1024:.1f} KiB, backend {clf.backend})")
    if not meta:
        click.echo("metadata    none (plain .tflite): generic labels, thresholds 0.5, raw 0-255 input assumed")
    for key in ("input", "output"):
        t = out[key]
        q = f", scale {t['quantization']['scale']:.6g} zero point {t['quantization']['zero_point']}" if t["quantization"] else ""
        click.echo(f"{key:<11} {t['shape']} {t['dtype']}{q}")
    click.echo(f"arch        {out['arch'] or '-'}   quantization {out['quantization'] or '-'}")
    click.echo(f"{'label':<20} threshold")
    for label, thr in zip(out["labels"], out["thresholds"]):
        click.echo(f"{label[:20]:<20} {thr:.3f}")
    ops = out["ops"]
    click.echo(f"ops         {', '.join(sorted(set(ops))) + f' ({len(ops)} nodes)' if ops is not None else 'unavailable with this backend'}")
    for key in ("training", "parity"):
        if isinstance(out[key], dict):
            click.echo(f"{key:<11} " + ", ".join(f"{k}={_short_value(v)}" for k, v in out[key].items()
                                                 if not isinstance(v, (dict, list))))


def _short_value(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@main_group.command(name="eval", epilog="""\b
Examples:
  edge-infer eval model.tflite test.csv
  edge-infer eval model.tflite test.csv --json > metrics.json
  edge-infer eval model.tflite test.csv --min-map 0.8   # exit 1 below 0.8 mAP
The CSV is `filename,labels` (labels joined by spaces) or one 0/1 column per label;
its labels must be the model's.""")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("labels_csv", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
@click.option("--min-map", type=click.FloatRange(0, 1), help="Exit 1 when the mAP is below this (a quality gate).")
@click.option("--threads", type=click.IntRange(1, 64), help="Interpreter threads.")
@click.option("--backend", type=click.Choice(["ai-edge-litert", "tflite-runtime", "tensorflow"]), help="Interpreter package.")
def evaluate(model, labels_csv, as_json, min_map, threads, backend) -> None:
    """Multi-label metrics of MODEL on a labelled CSV, at the model's embedded thresholds.

    Exit 1 when an image could not be evaluated or the mAP is below --min-map."""
    import numpy as np

    from .dataset import read_labels_csv
    from .metrics import format_report, multilabel_report

    clf = _load(model, threads, backend)
    try:
        table = read_labels_csv(labels_csv, labels=clf.labels, check_files=True)
    except EdgeError as exc:
        raise Fatal(str(exc)) from None
    for w in table.warnings:
        click.echo(f"Warning: {w}", err=True)
    failures = [(str(s.filename), s.reason) for s in table.skipped]
    rows, scores = [], []
    for i, path in enumerate(table.paths):
        pred, problem = _try_predict(clf, path)
        if pred is None:
            failures.append((str(path), problem))
        else:
            scores.append(list(pred.scores.values()))
            rows.append(i)
    if not rows:
        raise Fatal(f"{labels_csv}: no usable images")
    report = multilabel_report(table.y[rows], np.asarray(scores), clf.thresholds, clf.labels)
    report["skipped"] = len(failures)
    # NaN (no label has a positive here) never passes a quality gate.
    below = min_map is not None and not report["map"] >= min_map
    report["min_map"] = None if min_map is None else {"required": min_map, "passed": not below}
    if as_json:
        click.echo(atomic.dumps(report))
    else:
        click.echo(format_report(report, title=f"{model} on {labels_csv}"))
    for path, problem in failures:
        click.echo(f"Error: {path}: {problem}", err=True)
    if below:
        click.echo(f"Error: mAP {report['map']:.4f} is below the required --min-map {min_map}", err=True)
    if failures or below:
        sys.exit(1)


@main_group.command(epilog="""\b
Examples:
  edge-infer bench model.tflite
  edge-infer bench model.tflite --image photo.jpg --runs 200 --warmup 10
  edge-infer bench model.tflite --threads-sweep 1,2,4 --json
""")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--image", type=click.Path(dir_okay=False), help="Time the whole path from this image (default: a synthetic frame at input size).")
@click.option("--runs", type=click.IntRange(1), default=50, show_default=True)
@click.option("--warmup", type=click.IntRange(0), default=5, show_default=True)
@click.option("--threads", type=click.IntRange(1, 64), help="Interpreter threads.")
@click.option("--threads-sweep", help="Comma-separated thread counts, e.g. 1,2,4.")
@click.option("--backend", type=click.Choice(["ai-edge-litert", "tflite-runtime", "tensorflow"]), help="Interpreter package.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per thread count.")
def bench(model, image, runs, warmup, threads, threads_sweep, backend, as_json) -> None:
    """Latency (min/mean/p50/p90/p99/max), init time, stage split and peak memory of MODEL."""
    from .bench import benchmark

    if threads_sweep:
        try:
            counts = [int(t) for t in threads_sweep.split(",") if t.strip()]
        except ValueError:
            raise click.BadParameter("expected comma-separated integers", param_hint="--threads-sweep") from None
        if not counts or min(counts) < 1:
            raise click.BadParameter("thread counts must be >= 1", param_hint="--threads-sweep")
    else:
        counts = [threads]
    for t in counts:
        try:
            r = benchmark(model, image, runs=runs, warmup=warmup, threads=t, backend=backend)
        except EdgeError as exc:
            raise Fatal(str(exc)) from None
        if as_json:
            click.echo(atomic.dumps(r.to_dict()))
            continue
        lat = r.latency
        click.echo(f"{r.model} [{r.backend}, threads={r.threads or 'default'}] on {r.input}")
        click.echo(f"  init {r.init_ms:.2f} ms, warm-up {r.warmup}, {lat.runs} runs (ms): min {lat.min:.3f} "
                   f"mean {lat.mean:.3f} p50 {lat.p50:.3f} p90 {lat.p90:.3f} p99 {lat.p99:.3f} max {lat.max:.3f}")
        click.echo("  stages (median ms): " + ", ".join(f"{k} {v:.3f}" for k, v in r.stages.items()))
        if r.peak_rss_mb is not None:
            click.echo(f"  peak memory {r.peak_rss_mb:.1f} MiB")


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    try:
        main_group.main(args=argv, prog_name="edge-infer", standalone_mode=True)
    except EdgeError as exc:  # anything a command did not map itself
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
