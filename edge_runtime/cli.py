"""`edge-infer`: classify images with a TFLite model on the device.

The only place that turns library exceptions into messages and exit codes:
0 every input classified, 1 some inputs failed (listed on stderr after the rest were
classified), 2 usage or model error. Never a traceback for an EdgeError.
"""
from __future__ import annotations

import itertools
import sys
import warnings
from pathlib import Path

import click

from . import atomic
from .clikit import DefaultGroup, Fatal
from .errors import EdgeError, first_line
from .events import DEFAULT_OFF_FRAMES, DEFAULT_ON_FRAMES
from .output import Format, Writer


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


def _fmt(as_json: bool, as_csv: bool) -> Format:
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    return Format.JSON if as_json else Format.CSV if as_csv else Format.TABLE


# ------------------------------------------------------------------------------------ commands
@click.group(cls=DefaultGroup, epilog="""\b
Examples:
  edge-infer model.tflite photo.jpg            classify one image (same as `predict`)
  edge-infer model.tflite photos/ --json       every image under photos/, JSON lines
  edge-infer model.tflite --camera --events    label changes seen by the camera
  edge-infer info model.tflite                 labels, thresholds, tensors, ops
  edge-infer verify model.tflite               changed since export? (exit 1 if so)
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
  edge-infer model.tflite --threshold 0.3 --workers 4 photo.jpg
  edge-infer model.tflite clip.mp4 --fps 2 --json       frames of a video, 2 a second
  edge-infer model.tflite rtsp://cam.local/stream --events
  edge-infer model.tflite --camera --events --snapshot shots/
  edge-infer model.tflite --watch incoming/             classify each new file until stopped
\b
Videos and streams (rtsp://, http://) need the `video` extra (OpenCV); --camera uses picamera2
when importable, else OpenCV device N. SIGTERM or Ctrl-C ends a run cleanly.""")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("inputs", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with one score column per label.")
@click.option("--threshold", type=click.FloatRange(0, 1), help="One threshold for every label (replaces the embedded ones).")
@click.option("--threads", type=click.IntRange(1, 64), help="Interpreter threads.")
@click.option("--workers", type=click.IntRange(1, 64), help="Decoding threads (default: the core count).")
@click.option("--backend", type=click.Choice(["ai-edge-litert", "tflite-runtime", "tensorflow"]), help="Interpreter package.")
@click.option("--no-draft", is_flag=True, help="Always decode JPEGs at full scale.")
@click.option("--camera", type=click.IntRange(0), is_flag=False, flag_value=0, metavar="[N]",
              help="Classify camera N (default 0): picamera2, else OpenCV.")
@click.option("--every", type=click.IntRange(1), default=1, show_default=True, help="Frames: classify every Nth frame.")
@click.option("--fps", type=click.FloatRange(0, min_open=True), help="Frames: classify at most F frames a second.")
@click.option("--max-frames", type=click.IntRange(1), help="Frames: stop each source after this many classified.")
@click.option("--retries", type=click.IntRange(0), default=3, show_default=True,
              help="Streams/camera: reconnect attempts in a row after the source drops.")
@click.option("--events", is_flag=True, help="Print only label changes (on after --on-frames, off after --off-frames).")
@click.option("--on-frames", type=click.IntRange(1), default=DEFAULT_ON_FRAMES, show_default=True,
              help="Events: consecutive frames at or over the threshold to turn a label on.")
@click.option("--off-frames", type=click.IntRange(1), default=DEFAULT_OFF_FRAMES, show_default=True,
              help="Events: consecutive frames under the threshold to turn it off.")
@click.option("--snapshot", "snapshot_dir", type=click.Path(file_okay=False),
              help="Events: save the frame that turned a label on into DIR (JPEG).")
@click.option("--watch", "watch_dir", type=click.Path(file_okay=False), help="Classify each image written into DIR.")
@click.option("--interval", type=click.FloatRange(0.01), default=0.5, show_default=True, help="Watch poll interval (s).")
@click.option("--settle", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Watch: a file counts as complete once unchanged for this many seconds.")
@click.option("--poll", "force_poll", is_flag=True, help="Watch: list the folder at each poll instead of OS notification.")
@click.option("--watch-timeout", type=click.FloatRange(0), help="Stop watching after this many seconds.")
@click.option("--max-count", type=click.IntRange(1), help="Stop watching after this many images.")
def predict(model, inputs, **opt) -> None:
    """Classify images (files, directories, globs, - for paths on stdin), videos, streams,
    a camera, or a watched folder."""
    from .inputs import expand_inputs
    from .live import EventConfig, RunConfig, Runner, stop_on_sigterm

    fmt = _fmt(opt["as_json"], opt["as_csv"])
    if not inputs and opt["watch_dir"] is None and opt["camera"] is None:
        raise click.UsageError("give at least one INPUT (file, directory, glob, -, video or stream), --camera or --watch DIR")
    if opt["watch_dir"] is not None and opt["camera"] is not None:
        raise click.UsageError("choose one of --camera and --watch (each runs until stopped)")
    if opt["snapshot_dir"] and not opt["events"]:
        raise click.UsageError("--snapshot saves the frames that turn a label on: add --events")
    config = RunConfig(threshold=opt["threshold"], workers=opt["workers"], draft=not opt["no_draft"],
                       events=EventConfig(opt["on_frames"], opt["off_frames"], opt["snapshot_dir"]) if opt["events"] else None)
    clf = _load(model, opt["threads"], opt["backend"])
    # Inputs named on the command line are listed up front (sources to open, a bar, a column
    # width); `-` (image paths on stdin) stays lazy, read as it comes, in its place.
    segments = [expand_inputs(["-"]) if arg == "-" else list(expand_inputs([arg])) for arg in inputs]
    known = [item for seg in segments if isinstance(seg, list) for item in seg]
    items = known if "-" not in inputs else itertools.chain.from_iterable(segments)
    sources = _open_sources(known, opt)
    live = bool(sources) or opt["watch_dir"] is not None
    writer = Writer(fmt, clf.labels, live=bool(sources), events=opt["events"], snapshots=bool(opt["snapshot_dir"]),
                    names=[i.name for i in known])
    later: list[tuple[str, str]] = []

    def on_failure(name: str, problem: str) -> None:
        if live:  # a run that may never end reports as it goes
            click.echo(f"Error: {name}: {problem}", err=True)
        else:
            later.append((name, problem))

    runner = Runner(clf, config, writer, on_failure=on_failure)
    with stop_on_sigterm(runner.stop):
        try:
            _run_inputs(runner, items, iter(sources))
            if opt["camera"] is not None and not runner.stop.is_set():
                runner.frames(sources[-1])
            if opt["watch_dir"] is not None and not runner.stop.is_set():
                _run_watch(runner, opt)
        except KeyboardInterrupt:
            runner.stop.set()
        finally:
            for src in sources:
                src.close()
    summary = runner.summary
    summary.stopped = runner.stop.is_set()
    for name, problem in later:
        click.echo(f"Error: {name}: {problem}", err=True)
    if live or summary.stopped:
        click.echo(summary.line(), err=True)
    if summary.failed:
        sys.exit(1)


def _open_sources(items, opt) -> list:
    """Every video and stream, in order, then the camera: all opened before anything runs, so a
    bad source is a usage error (exit 2)."""
    from .errors import SourceError
    from .live import open_sources
    from .sources import Sampling

    bad = next((i for i in items if i.live and i.problem is not None), None)
    if bad is not None:
        raise Fatal(f"{bad.name}: {bad.problem}")
    try:
        return open_sources([i.name for i in items if i.live], opt["camera"], on_problem=_warn, retries=opt["retries"],
                            sampling=Sampling(every=opt["every"], fps=opt["fps"], max_frames=opt["max_frames"]))
    except SourceError as exc:
        raise Fatal(str(exc)) from None


def _run_inputs(runner, items, sources) -> None:
    """Images in runs (decoded in parallel), each video or stream in turn, in the order given."""
    def images(group):
        for item in group:
            if item.problem is not None:
                runner.fail(item.name, item.problem)
            else:
                yield item.name

    for live, group in itertools.groupby(items, key=lambda i: i.live and i.problem is None):
        if runner.stop.is_set():
            return
        if not live:
            group = list(group) if isinstance(items, list) else group
            bar_len = len(group) if isinstance(group, list) else 0
            # A bar only where nobody reads the results as they come: stdout redirected, stderr a terminal.
            if bar_len >= 10 and _isatty(sys.stderr) and not _isatty(sys.stdout):
                with click.progressbar(images(group), length=bar_len, label="classifying", file=sys.stderr) as bar:
                    runner.images(bar)
            else:
                runner.images(images(group))
            continue
        for _ in group:
            if not runner.stop.is_set():
                runner.frames(next(sources))


def _run_watch(runner, opt) -> None:
    from .watch import WatchConfig, Watcher

    folder = Path(opt["watch_dir"])
    if not folder.is_dir():
        raise Fatal(f"{folder}: watch folder does not exist")
    cfg = WatchConfig(str(folder), settle=opt["settle"], interval=opt["interval"], notify=not opt["force_poll"])
    with Watcher(cfg, on_problem=_warn) as watcher:
        click.echo(f"watching {folder} ({watcher.mode}; Ctrl-C or SIGTERM to stop)", err=True)
        runner.watch(watcher, opt["watch_timeout"], opt["max_count"])


def _warn(message: str) -> None:
    click.echo(f"Warning: {message}", err=True)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False



@main_group.command(epilog="""\b
Examples:
  edge-infer info model.tflite
  edge-infer info model.tflite --json | jq .labels
Exit code 1 when the model was changed after export (see `edge-infer verify`).
""")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--backend", type=click.Choice(["ai-edge-litert", "tflite-runtime", "tensorflow"]), help="Interpreter package.")
def info(model, as_json, backend) -> None:
    """Labels, thresholds, tensors, quantization, size, ops, standard metadata, integrity and
    embedded summaries of MODEL."""
    from .integrity import Status

    clf = _load(model, backend=backend)
    meta = clf.metadata
    std = clf.standard_metadata
    try:
        integrity = clf.integrity()
    except EdgeError as exc:
        raise Fatal(str(exc)) from None

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
        "standard_metadata": std,
        "integrity": integrity.to_dict(),
    }
    if as_json:
        click.echo(atomic.dumps(out))
    else:
        _print_info(out, meta, std, integrity)
    if integrity.status is Status.MODIFIED:
        sys.exit(1)


def _print_info(out: dict, meta: dict, std: dict | None, integrity) -> None:
    from .standard_metadata import describe as describe_standard

    click.echo(f"model       {out['model']} ({out['size_bytes'] / 1024:.1f} KiB, backend {out['backend']})")
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
    for line in describe_standard(std):
        click.echo(line)
    click.echo(f"integrity   {integrity.line()}")


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


@main_group.command(epilog="""\b
Examples:
  edge-infer verify model.tflite
  edge-infer verify model.tflite --json
  edge-infer verify new.tflite && cp new.tflite /opt/app/model.tflite   # refuse a damaged copy
\b
Exit codes: 0 intact; 1 changed after export, or nothing recorded to check against
(a model exported before integrity records, or a plain .tflite); 2 not a readable model.
It detects damage and swapped parts, not an attacker who rewrites the record too: for that,
compare `sha256sum` of the whole file with a value published elsewhere.""")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def verify(model, as_json) -> None:
    """Check MODEL's flatbuffer and label file against the SHA-256 recorded at export."""
    from .integrity import verify as verify_file

    try:
        report = verify_file(model)
    except EdgeError as exc:
        raise Fatal(str(exc)) from None
    if as_json:
        click.echo(atomic.dumps({"model": model, **report.to_dict()}))
    else:
        click.echo(f"{model}: {report.line()}")
    if not report.intact:
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    try:
        main_group.main(args=argv, prog_name="edge-infer", standalone_mode=True)
    except EdgeError as exc:  # anything a command did not map itself
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
