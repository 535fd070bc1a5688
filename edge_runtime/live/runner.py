"""The engine behind `edge-infer predict`: images, frame sources and a watched folder in, records
or label events out, snapshots on disk. The CLI only parses options and reports.

Each frame source (a video, a stream, the camera) has its own label hysteresis; images (files,
stdin, the watch) share one, as the frames of a timelapse, numbered in arrival order. A failure
on one item is recorded and the run goes on; `stop` (set by SIGTERM) ends it between two items,
after every result already computed has been written.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image, ImageOps

from .. import atomic
from ..errors import SourceError
from ..inference.classifier import Classifier, Outcome
from ..inference.preprocess import to_rgb
from .events import DEFAULT_OFF_FRAMES, DEFAULT_ON_FRAMES, Hysteresis, State
from .sinks import Item, Sink
from .sources import Frame, FrameSource, Reconnect, Sampling
from .watch import Watcher

_IMAGES = "<images>"  # the hysteresis key shared by every image input


@dataclass(frozen=True)
class EventConfig:
    on_frames: int = DEFAULT_ON_FRAMES
    off_frames: int = DEFAULT_OFF_FRAMES
    snapshot_dir: str | None = None  # save the frame that turned a label on, as JPEG


@dataclass(frozen=True)
class RunConfig:
    threshold: float | None = None  # one threshold for every label (default: the embedded ones)
    workers: int | None = None  # decoding threads (None: every core)
    draft: bool = True  # reduced-scale JPEG decoding (see load_image)
    events: EventConfig | None = None  # None: write every result; else only label changes


@dataclass
class Summary:
    images: int = 0
    frames: int = 0
    events: int = 0
    snapshots: int = 0
    ignored: int = 0  # watch: arrivals that are not images
    reconnects: int = 0  # streams reopened after a drop
    undecodable: int = 0  # frames a source delivered but could not decode (skipped, reported)
    failed: dict[str, str] = field(default_factory=dict)  # input -> problem (one entry per input)
    stopped: bool = False  # ended by a signal or Ctrl-C

    def line(self) -> str:
        parts = [f"{self.images} images", f"{self.frames} frames"]
        if self.events or self.snapshots:
            parts.append(f"{self.events} events, {self.snapshots} snapshots")
        parts.append(f"{len(self.failed)} failed")
        if self.ignored:
            parts.append(f"{self.ignored} non-image files ignored")
        if self.reconnects:
            parts.append(f"{self.reconnects} stream reconnects")
        if self.undecodable:
            parts.append(f"{self.undecodable} undecodable frames skipped")
        return ("stopped: " if self.stopped else "done: ") + ", ".join(parts)


class Runner:
    """Classifies inputs with `clf` and hands each record to `sink` (the stdout `Writer`, or a
    `Fanout` of it and other sinks); see the module docstring.

    `on_failure(input, problem)` is called as each failure happens (the CLI prints live
    failures at once); every failure is also kept in `summary.failed`.
    """

    def __init__(
        self,
        clf: Classifier,
        config: RunConfig,
        sink: Sink,
        *,
        stop: threading.Event | None = None,
        on_failure: Callable[[str, str], None] | None = None,
    ) -> None:
        self.clf, self.config, self.sink = clf, config, sink
        self.stop = stop or threading.Event()
        self.on_failure = on_failure or (lambda name, problem: None)
        self.summary = Summary()
        n = len(clf.labels)
        self._thresholds = (
            [config.threshold] * n if config.threshold is not None else clf.thresholds.tolist()
        )
        self._hysteresis: dict[str, Hysteresis] = {}
        self._image_index = 0
        self._watching = False

    # ----------------------------------------------------------------------------- inputs
    def images(self, paths: Iterable[str]) -> None:
        """Classify image paths, decoding in parallel, results in input order."""
        cfg = self.config
        for outcome in self.clf.predict_many(
            self._until_stopped(paths),
            workers=cfg.workers,
            threshold=cfg.threshold,
            draft=cfg.draft,
        ):
            self._image(outcome)

    def frames(self, source: FrameSource) -> None:
        """Classify a frame source until it ends, fails or `stop` is set; closes it."""
        cfg = self.config
        try:
            for outcome in self.clf.predict_many(
                source.frames(self.stop),
                workers=cfg.workers,
                threshold=cfg.threshold,
                image_of=_frame_image,
                name_of=_frame_name,
            ):
                self._frame(outcome)
        except SourceError as exc:
            self.fail(source.name, str(exc).removeprefix(f"{source.name}: "))
        finally:
            source.close()
            self.summary.reconnects += source.reconnects
            self.summary.undecodable += source.undecodable

    def watch(
        self, watcher: Watcher, timeout: float | None = None, max_count: int | None = None
    ) -> None:
        """Classify each image arriving in the watched folder until stop, timeout or max_count."""
        done = 0
        self._watching = True
        for batch in watcher.batches(self.stop, timeout):
            if max_count is not None:
                batch = batch[: max_count - done]
            self.images(str(p) for p in batch)
            done += len(batch)
            self.summary.ignored = watcher.ignored
            if max_count is not None and done >= max_count:
                break
        self.summary.ignored = watcher.ignored

    def _until_stopped(self, items: Iterable[str]) -> Iterable[str]:
        for item in items:
            if self.stop.is_set():
                return
            yield item

    # ----------------------------------------------------------------------------- results
    def fail(self, name: str, problem: str) -> None:
        """Record (and announce) an input that could not be classified."""
        self.summary.failed[name] = problem
        self.on_failure(name, problem)

    def _image(self, outcome: Outcome) -> None:
        if outcome.error is not None:
            self.fail(str(outcome.source), outcome.error.problem)
            return
        if self._watching:
            # A watched file that failed mid-write was retried once it changed, and now it is
            # whole: it no longer counts as failed.
            self.summary.failed.pop(str(outcome.source), None)
        self.summary.images += 1
        pred = outcome.prediction
        index, self._image_index = self._image_index, self._image_index + 1
        item = Item(str(outcome.source), index=index)
        if self.config.events is None:
            self.sink.result(pred.to_dict(), item)
        else:
            self._changes(
                _IMAGES, pred, item, _now(), lambda path: _save_file(str(outcome.source), path)
            )

    def _frame(self, outcome: Outcome) -> None:
        frame: Frame = outcome.source
        if outcome.error is not None:
            self.fail(f"{frame.source}#{frame.index}", outcome.error.problem)
            return
        self.summary.frames += 1
        pred = outcome.prediction
        item = Item(frame.source, frame=frame.image, index=frame.index)
        if self.config.events is None:
            self.sink.result({**pred.to_dict(), **frame.record()}, item)
        else:
            self._changes(
                frame.source, pred, item, frame.time, lambda path: _save_array(frame.image, path)
            )

    def _changes(self, key: str, pred, item: Item, when, save: Callable[[Path], None]) -> None:
        ev = self.config.events
        index = item.index
        hyst = self._hysteresis.get(key)
        if hyst is None:
            hyst = self._hysteresis[key] = Hysteresis(
                self.clf.labels, self._thresholds, on_frames=ev.on_frames, off_frames=ev.off_frames
            )
        for change in hyst.update(list(pred.scores.values())):
            record = {
                "file": pred.source,
                "label": change.label,
                "state": change.state.value,
                "frame": index,
                "time": when,
                "score": change.score,
            }
            if ev.snapshot_dir is not None:
                record["snapshot"] = (
                    self._snapshot(change, pred.source, index, save)
                    if change.state is State.ON
                    else None
                )
            self.summary.events += 1
            self.sink.event(record, item)

    def _snapshot(
        self, change, source: str, index: int, save: Callable[[Path], None]
    ) -> str | None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")  # names sort by time
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(source)).stem or "frame")[:40]
        label = re.sub(r"[^A-Za-z0-9._-]+", "_", change.label)
        path = Path(self.config.events.snapshot_dir) / f"{stamp}_{label}_{stem}_{index:06d}.jpg"
        try:
            save(path)
        except OSError as exc:
            self.fail(str(path), f"cannot write snapshot ({exc.strerror or exc})")
            return None
        self.summary.snapshots += 1
        return str(path)


def open_sources(
    names: Sequence[str],
    camera: int | None = None,
    *,
    sampling: Sampling = Sampling(),
    reconnect: Reconnect = Reconnect(),
    on_problem: Callable[[str], None] | None = None,
) -> list[FrameSource]:
    """Open each video or stream in `names`, then camera `camera` (if not None), in that order.

    All are opened before anything runs, so a bad source fails at once (`SourceError`); the ones
    already opened are closed again then.
    """
    opened: list[FrameSource] = []
    try:
        for name in names:
            opened.append(
                FrameSource(name, sampling=sampling, reconnect=reconnect, on_problem=on_problem)
            )
        if camera is not None:
            opened.append(
                FrameSource(
                    camera,
                    camera=True,
                    sampling=sampling,
                    reconnect=reconnect,
                    on_problem=on_problem,
                )
            )
    except BaseException:
        for src in opened:
            src.close()
        raise
    return opened


@contextmanager
def stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """SIGTERM (systemd stopping a service) sets `stop`: a run ends between two items, with every
    computed result written. Signal handlers belong to the main thread: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _frame_image(frame: Frame):
    return frame.image


def _frame_name(frame: Frame) -> str:
    return frame.source


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _save_array(image, path: Path) -> None:
    with atomic.replacing(path) as fh:
        Image.fromarray(image).save(fh, "JPEG", quality=90)


def _save_file(source: str, path: Path) -> None:
    with Image.open(source) as img:
        rgb = to_rgb(ImageOps.exif_transpose(img))
        with atomic.replacing(path) as fh:
            rgb.save(fh, "JPEG", quality=90)
