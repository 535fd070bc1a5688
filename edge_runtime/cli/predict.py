"""`edge-infer predict` (the default command): images, videos, streams, a camera or a watched
folder in; results or label events out. Parsing and reporting only: the run is `live.runner`."""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from ..live.output import Format, Writer
from ..live.runner import EventConfig, RunConfig
from ..live.sources import Reconnect, Sampling
from ..live.watch import WatchConfig
from .kit import Fatal, backend_option, config_default, load_classifier


@dataclass(frozen=True)
class PredictConfig:
    """One `edge-infer predict` run as its options asked for it: the library's own configs
    (whose defaults are the options' defaults), then carried out by `run_predict`."""

    model: str
    inputs: tuple[str, ...]
    fmt: Format = Format.TABLE
    run: RunConfig = RunConfig()
    sampling: Sampling = Sampling()  # videos, streams, the camera
    reconnect: Reconnect = Reconnect()  # streams and the camera
    camera: int | None = None
    watch: WatchConfig | None = None
    watch_timeout: float | None = None  # seconds
    max_count: int | None = None  # watched images
    threads: int | None = None  # interpreter threads
    backend: str | None = None  # interpreter package


def _fmt(as_json: bool, as_csv: bool) -> Format:
    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    return Format.JSON if as_json else Format.CSV if as_csv else Format.TABLE


@click.command(
    epilog="""\b
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
when importable, else OpenCV device N. SIGTERM or Ctrl-C ends a run cleanly."""
)
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("inputs", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with one score column per label.")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    help="One threshold for every label (replaces the embedded ones).",
)
@click.option("--threads", type=click.IntRange(1, 64), help="Interpreter threads.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=config_default(RunConfig, "workers"),
    help="Decoding threads (default: the core count).",
)
@backend_option
@click.option("--no-draft", is_flag=True, help="Always decode JPEGs at full scale.")
@click.option(
    "--camera",
    type=click.IntRange(0),
    is_flag=False,
    flag_value=0,
    metavar="[N]",
    help="Classify camera N (default 0): picamera2, else OpenCV.",
)
@click.option(
    "--every",
    type=click.IntRange(1),
    default=config_default(Sampling, "every"),
    show_default=True,
    help="Frames: classify every Nth frame.",
)
@click.option(
    "--fps",
    type=click.FloatRange(0, min_open=True),
    help="Frames: classify at most F frames a second.",
)
@click.option(
    "--max-frames",
    type=click.IntRange(1),
    help="Frames: stop each source after this many classified.",
)
@click.option(
    "--retries",
    type=click.IntRange(0),
    default=config_default(Reconnect, "retries"),
    show_default=True,
    help="Streams/camera: reconnect attempts in a row after the source drops.",
)
@click.option(
    "--events",
    is_flag=True,
    help="Print only label changes (on after --on-frames, off after --off-frames).",
)
@click.option(
    "--on-frames",
    type=click.IntRange(1),
    default=config_default(EventConfig, "on_frames"),
    show_default=True,
    help="Events: consecutive frames at or over the threshold to turn a label on.",
)
@click.option(
    "--off-frames",
    type=click.IntRange(1),
    default=config_default(EventConfig, "off_frames"),
    show_default=True,
    help="Events: consecutive frames under the threshold to turn it off.",
)
@click.option(
    "--snapshot",
    "snapshot_dir",
    type=click.Path(file_okay=False),
    help="Events: save the frame that turned a label on into DIR (JPEG).",
)
@click.option(
    "--watch",
    "watch_dir",
    type=click.Path(file_okay=False),
    help="Classify each image written into DIR.",
)
@click.option(
    "--interval",
    type=click.FloatRange(0.01),
    default=config_default(WatchConfig, "interval"),
    show_default=True,
    help="Watch poll interval (s).",
)
@click.option(
    "--settle",
    type=click.FloatRange(0),
    default=config_default(WatchConfig, "settle"),
    show_default=True,
    help="Watch: a file counts as complete once unchanged for this many seconds.",
)
@click.option(
    "--poll",
    "force_poll",
    is_flag=True,
    help="Watch: list the folder at each poll instead of OS notification.",
)
@click.option(
    "--watch-timeout", type=click.FloatRange(0), help="Stop watching after this many seconds."
)
@click.option("--max-count", type=click.IntRange(1), help="Stop watching after this many images.")
def predict(model, inputs, **opt) -> None:
    """Classify images (files, directories, globs, - for paths on stdin), videos, streams,
    a camera, or a watched folder."""
    fmt = _fmt(opt["as_json"], opt["as_csv"])
    if not inputs and opt["watch_dir"] is None and opt["camera"] is None:
        raise click.UsageError(
            "give at least one INPUT (file, directory, glob, -, video or stream), --camera or --watch DIR"
        )
    if opt["watch_dir"] is not None and opt["camera"] is not None:
        raise click.UsageError("choose one of --camera and --watch (each runs until stopped)")
    if opt["snapshot_dir"] and not opt["events"]:
        raise click.UsageError("--snapshot saves the frames that turn a label on: add --events")
    events = EventConfig(opt["on_frames"], opt["off_frames"], opt["snapshot_dir"])
    watch = opt["watch_dir"]
    config = PredictConfig(
        model=model,
        inputs=tuple(inputs),
        fmt=fmt,
        run=RunConfig(
            threshold=opt["threshold"],
            workers=opt["workers"],
            draft=not opt["no_draft"],
            events=events if opt["events"] else None,
        ),
        sampling=Sampling(every=opt["every"], fps=opt["fps"], max_frames=opt["max_frames"]),
        reconnect=Reconnect(retries=opt["retries"]),
        camera=opt["camera"],
        watch=None
        if watch is None
        else WatchConfig(
            watch, settle=opt["settle"], interval=opt["interval"], notify=not opt["force_poll"]
        ),
        watch_timeout=opt["watch_timeout"],
        max_count=opt["max_count"],
        threads=opt["threads"],
        backend=opt["backend"],
    )
    run_predict(config)


def run_predict(config: PredictConfig) -> None:
    """Carry out `config`: results on stdout, failures and the summary on stderr; exit 1 when
    an input failed."""
    from ..live.inputs import expand_inputs
    from ..live.runner import Runner, stop_on_sigterm

    clf = load_classifier(config.model, config.threads, config.backend)
    inputs = config.inputs
    # Inputs named on the command line are listed up front (sources to open, a bar, a column
    # width); `-` (image paths on stdin) stays lazy, read as it comes, in its place.
    segments = [
        expand_inputs(["-"]) if arg == "-" else list(expand_inputs([arg])) for arg in inputs
    ]
    known = [item for seg in segments if isinstance(seg, list) for item in seg]
    items = known if "-" not in inputs else itertools.chain.from_iterable(segments)
    sources = _open_sources(known, config)
    live = bool(sources) or config.watch is not None
    events = config.run.events
    writer = Writer(
        config.fmt,
        clf.labels,
        live=bool(sources),
        events=events is not None,
        snapshots=bool(events and events.snapshot_dir),
        names=[i.name for i in known],
    )
    later: list[tuple[str, str]] = []

    def on_failure(name: str, problem: str) -> None:
        if live:  # a run that may never end reports as it goes
            click.echo(f"Error: {name}: {problem}", err=True)
        else:
            later.append((name, problem))

    runner = Runner(clf, config.run, writer, on_failure=on_failure)
    with stop_on_sigterm(runner.stop):
        try:
            _run_inputs(runner, items, iter(sources))
            if config.camera is not None and not runner.stop.is_set():
                runner.frames(sources[-1])
            if config.watch is not None and not runner.stop.is_set():
                _run_watch(runner, config)
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


def _open_sources(items, config: PredictConfig) -> list:
    """Every video and stream, in order, then the camera: all opened before anything runs, so a
    bad source is a usage error (exit 2)."""
    from ..errors import SourceError
    from ..live.runner import open_sources

    bad = next((i for i in items if i.live and i.problem is not None), None)
    if bad is not None:
        raise Fatal(f"{bad.name}: {bad.problem}")
    try:
        return open_sources(
            [i.name for i in items if i.live],
            config.camera,
            on_problem=_warn,
            reconnect=config.reconnect,
            sampling=config.sampling,
        )
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
                with click.progressbar(
                    images(group), length=bar_len, label="classifying", file=sys.stderr
                ) as bar:
                    runner.images(bar)
            else:
                runner.images(images(group))
            continue
        for _ in group:
            if not runner.stop.is_set():
                runner.frames(next(sources))


def _run_watch(runner, config: PredictConfig) -> None:
    from ..live.watch import Watcher

    folder = Path(config.watch.folder)
    if not folder.is_dir():
        raise Fatal(f"{folder}: watch folder does not exist")
    with Watcher(config.watch, on_problem=_warn) as watcher:
        click.echo(f"watching {folder} ({watcher.mode}; Ctrl-C or SIGTERM to stop)", err=True)
        runner.watch(watcher, config.watch_timeout, config.max_count)


def _warn(message: str) -> None:
    click.echo(f"Warning: {message}", err=True)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
