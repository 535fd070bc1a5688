"""Watch a folder and hand out each image once per write: never dropped, never repeated.

A file is identified by its content's arrival, not its name: its signature is (inode, size,
modification time). A capture program that rewrites `latest.jpg` (in place or by renaming a new
file over it) produces a new signature each time, so each picture is classified; a signature
already handled is never handed out again. A file that failed because its writer paused
mid-file is handed out again once it changes (the writer resumed). Files that vanish are
forgotten, so memory follows what the folder holds now, not everything it ever held.

Change notification comes from the OS (inotify on Linux) through `watchdog`: a poll then costs
the few paths that changed, however many files the folder holds. Without watchdog, or when the
OS refuses more watches, the watch lists the folder at each poll instead (cost grows with it;
the interval then stretches so the listing uses at most about a tenth of a core).

A file counts as complete once its signature is unchanged between two polls and it has not been
modified for `settle` seconds. Writers should still write to a temporary name (a dot-file or a
`.tmp`/`.part` suffix, which are ignored) and rename it into place: a rename is atomic, so the
watch can never read a half-written picture.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = {
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
}
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp")

Signature = tuple[int, int, int]  # (inode, size, mtime_ns): one per write of a file


def is_image_name(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _is_partial(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES)


@dataclass(frozen=True)
class WatchConfig:
    folder: str
    settle: float = 1.0  # seconds a file must be unmodified to count as complete
    interval: float = 0.5  # seconds between polls
    notify: bool = True  # use OS change notification (watchdog) when available


class Watcher:
    """Use as a context manager; call `poll()` every `interval` (or iterate `batches()`).

    `on_problem` receives one-line notices (the fallback to polling). `ignored` counts arrivals
    that are not images (by extension), for the caller's summary.
    """

    def __init__(
        self, config: WatchConfig, on_problem: Callable[[str], None] | None = None
    ) -> None:
        self.config = config
        self.folder = Path(config.folder)
        self.on_problem = on_problem or (lambda message: None)
        self.ignored = 0
        self.mode = "polling"
        self._known: dict[
            str, Signature
        ] = {}  # path -> signature last handed out (or found at start)
        self._pending: dict[
            str, Signature
        ] = {}  # path -> signature seen at the last poll, not yet settled
        self._dirty: set[str] = set()  # paths the OS said changed since the last poll
        self._lock = threading.Lock()
        self._observer = None

    # ----------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> Watcher:
        if self.config.notify and self._start_observer():
            self.mode = "inotify" if "Inotify" in type(self._observer).__name__ else "notify"
        else:
            # Polling: remember what is there now, so only what arrives from now on is new.
            self._known = {p: sig for p, sig in self._scan()}
        return self

    def __exit__(self, *exc) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def _start_observer(self) -> bool:
        try:
            from watchdog.events import (
                FileClosedEvent,
                FileCreatedEvent,
                FileDeletedEvent,
                FileModifiedEvent,
                FileMovedEvent,
                FileSystemEventHandler,
            )
            from watchdog.observers import Observer
        except ImportError:
            self.on_problem(
                "watchdog is not installed: listing the folder at every poll "
                "(pip install 'edge-multilabel[watch]' for OS change notification)"
            )
            return False
        mark = self._mark

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:  # on watchdog's thread
                mark(event.src_path, event.dest_path)

        observer = Observer()
        try:
            observer.schedule(
                Handler(),
                str(self.folder),
                recursive=True,
                event_filter=[
                    FileCreatedEvent,
                    FileModifiedEvent,
                    FileClosedEvent,
                    FileMovedEvent,
                    FileDeletedEvent,
                ],
            )
            observer.start()
        except OSError as exc:  # e.g. inotify watch or instance limits reached
            self.on_problem(
                f"{self.folder}: OS change notification unavailable ({exc.strerror or exc}); "
                "listing the folder at every poll"
            )
            return False
        self._observer = observer
        return True

    def _mark(self, *paths) -> None:
        with self._lock:
            self._dirty.update(os.fsdecode(p) for p in paths if p)

    # ----------------------------------------------------------------------------- polling
    def _scan(self) -> Iterator[tuple[str, Signature]]:
        stack = [str(self.folder)]
        while stack:
            try:
                with os.scandir(stack.pop()) as it:
                    for entry in it:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif not _is_partial(entry.name):
                            sig = _signature(entry.path)
                            if sig is not None:
                                yield entry.path, sig
            except OSError:  # a sub-folder vanished while listed
                continue

    def _changed(self) -> Iterable[tuple[str, Signature | None]]:
        """(path, signature or None if gone) for every path that may have changed."""
        if self._observer is None:
            present = dict(self._scan())
            for gone in set(self._known).difference(present):
                yield gone, None
            for gone in set(self._pending).difference(present):
                yield gone, None
            yield from present.items()
            return
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        for p in dirty.union(self._pending):
            if not _is_partial(os.path.basename(p)):
                yield p, _signature(p)

    def poll(self) -> list[Path]:
        """The images that arrived complete since the last poll, oldest first."""
        now = time.time()
        ready: list[tuple[int, str]] = []
        for path, sig in self._changed():
            if sig is None:  # vanished: forget it
                self._known.pop(path, None)
                self._pending.pop(path, None)
                continue
            if self._known.get(path) == sig:
                self._pending.pop(path, None)
                continue  # this write was handled already
            if (
                self._pending.get(path) != sig
                or sig[1] == 0
                or now - sig[2] / 1e9 < self.config.settle
            ):
                self._pending[path] = sig  # still being written, or just seen: look again next poll
                continue
            del self._pending[path]
            self._known[path] = sig
            if is_image_name(path):
                ready.append((sig[2], path))
            else:
                self.ignored += 1
        return [Path(p) for _, p in sorted(ready)]

    def batches(self, stop: threading.Event, timeout: float | None = None) -> Iterator[list[Path]]:
        """`poll()` every interval until `stop` is set or `timeout` seconds have passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not stop.is_set():
            t0 = time.monotonic()
            batch = self.poll()
            spent = time.monotonic() - t0
            if batch:
                yield batch
            if deadline is not None and time.monotonic() >= deadline:
                return
            # Listing a huge folder can take longer than the interval: back off so the listing
            # keeps at most about a tenth of a core busy (notification makes polls near free).
            stop.wait(max(self.config.interval, 9 * spent if self._observer is None else 0.0))

    @property
    def tracked(self) -> int:
        """Paths held in memory (bounded by the files the folder holds)."""
        return len(self._known) + len(self._pending)


def _signature(path: str) -> Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
