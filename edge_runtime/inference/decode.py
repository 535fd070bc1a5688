"""Decoding many images on a pool of threads, in input order, a bounded window ahead.

Decoding (JPEG/PNG inflate, EXIF orientation, resize) is what a camera-sized image costs most;
the interpreter on a small model costs far less. Pillow releases the GIL while it decodes and
resizes, so a few threads keep the interpreter fed on a multi-core Pi. Results come back in the
order of the inputs, and only `window` images are decoded ahead, so memory stays bounded however
long the input (a folder of 100,000 files, paths streamed on stdin).

Every image goes through `load_image`: this is the one preprocessing path, run in parallel. The
trainer and the exporter decode their data sets with it too.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np

from ..errors import ImageError
from .preprocess import ImageSource, load_image


class Decoded(NamedTuple):
    """One input's outcome: its position, the source, and either the frame or the error."""

    index: int
    source: Any  # the item as given (an ImageSource, or what `image_of` maps to one)
    frame: np.ndarray | None  # (height, width, 3) uint8 at the requested size
    error: ImageError | None


def default_workers() -> int:
    """The cores this process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _one(
    index: int,
    source: Any,
    size: tuple[int, int],
    draft: bool,
    image_of: Callable[[Any], ImageSource] | None,
) -> Decoded:
    try:
        image = source if image_of is None else image_of(source)
        return Decoded(index, source, load_image(image, size, draft=draft), None)
    except ImageError as exc:
        return Decoded(index, source, None, exc)


def decode_many(
    sources: Iterable[Any],
    size: tuple[int, int],
    *,
    workers: int | None = None,
    draft: bool = True,
    window: int | None = None,
    image_of: Callable[[Any], ImageSource] | None = None,
) -> Iterator[Decoded]:
    """Yield a `Decoded` per source, in input order, decoding up to `window` inputs ahead.

    `size` is (width, height). `workers=None` uses every available core; 1 decodes inline with
    no thread at all. `sources` is consumed lazily (it may be a generator of paths from stdin,
    or of camera frames). `image_of` maps an item to the image to load (default: the item
    itself), so items can carry their own bookkeeping, e.g. a video frame's index and time.
    An unreadable image is a `Decoded` with `error` set, never an exception: a batch goes on.
    """
    n = default_workers() if workers is None else max(1, int(workers))
    if n == 1:
        for i, src in enumerate(sources):
            yield _one(i, src, size, draft, image_of)
        return
    ahead = max(n, window if window is not None else 2 * n)
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="decode") as pool:
        try:
            items = enumerate(sources)
            while True:
                try:
                    i, src = next(items)
                except StopIteration:
                    break
                except BaseException:
                    # The source failed (a stream gave up): what was read before still counts.
                    while pending:
                        yield pending.popleft().result()
                    raise
                pending.append(pool.submit(_one, i, src, size, draft, image_of))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
                # A slow source (a camera, a pipe) must not hold finished results back.
                while pending and pending[0].done():
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # the consumer stopped early (break, an exception): drop what is queued
            for fut in pending:
                fut.cancel()
