"""A decoded data set as fixed-size shards on disk, so training memory does not grow with it.

A shard is a plain `.npy` file holding `(k, height, width, 3)` uint8 pixels: exactly what
`load_image` returns for each of its rows (the runtime's parallel decoder fills them, so the
pixels are the device's). Why `.npy` and not TFRecord (measured in benchmarks/bm_scale.py): the
records are fixed-size raw pixels, so TensorFlow's native `FixedLengthRecordDataset` streams
them with no per-record parsing, numpy reads (or memory-maps) the same file, and this module
writes them without TensorFlow. The trainer streams them with buffered reads, not `mmap`:
mapped pages count as the training process's resident memory once touched.

A shard set lives in `<cache_dir>/shards-<key>/`, keyed by everything the pixels depend on (the
same key as the single-array cache: absolute paths, sizes and mtimes, the input size and the
preprocessing description, plus this format's version and shard size). Every shard is written
atomically and the `index.json` that makes the set a hit is written last. Opening checks every
shard's header and byte length; a missing, truncated or malformed shard is a miss and only that
shard is decoded again.

Rows are stored in a fixed pseudo-random order derived from the key, so that a CSV sorted by
label (a folder per class) still mixes in a bounded shuffle buffer; `position[r]` is where row
`r` lives.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime import atomic
from edge_runtime.errors import DataError
from edge_runtime.evaluation.dataset import LabelTable
from edge_runtime.inference.decode import decode_many

from .images import Failure, cache_key, drop_unreadable

FORMAT_VERSION = 1
INDEX_FILE = "index.json"
SHARD_BYTES = 32 << 20  # ~32 MB a shard: few files, yet a shard in flight is cheap to hold
MIN_SHARD_IMAGES = 16
Progress = Callable[[int, int], None]  # (images decoded so far, total)


@dataclass(frozen=True)
class Shard:
    file: Path
    start: int  # position of its first row in the whole set
    count: int
    header_bytes: int  # .npy header length: the pixels follow it


@dataclass
class ShardSet:
    """A complete, checked shard set: `len(self)` rows of (height, width, 3) uint8 pixels."""

    folder: Path
    size: tuple[int, int]  # (width, height)
    shards: list[Shard]
    position: np.ndarray  # (n,) int64: row r of the input lives at position[r]
    failures: list[Failure] = field(default_factory=list)  # rows whose image did not decode

    def __len__(self) -> int:
        return len(self.position)

    @property
    def record_bytes(self) -> int:
        return self.size[0] * self.size[1] * 3

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.size[1], self.size[0], 3)

    def read(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """The pixels of input rows `rows`, in that order, as one (k, h, w, 3) uint8 array.

        Plain positioned reads (`os.pread`), not a memory map: the pages stay in the OS cache
        and out of this process's resident memory.
        """
        pos = self.position[np.asarray(rows, dtype=np.int64)]
        out = np.empty((len(pos), *self.shape), dtype=np.uint8)
        starts = np.array([s.start for s in self.shards], dtype=np.int64)
        which = np.searchsorted(starts, pos, side="right") - 1
        rec = self.record_bytes
        fds: dict[int, int] = {}
        try:
            for k in np.argsort(pos, kind="stable"):  # ascending offsets: sequential-ish IO
                j = int(which[k])
                if j not in fds:
                    fds[j] = os.open(self.shards[j].file, os.O_RDONLY)
                sh = self.shards[j]
                offset = sh.header_bytes + (int(pos[k]) - sh.start) * rec
                buf = os.pread(fds[j], rec, offset)
                if len(buf) != rec:
                    raise DataError(
                        f"{sh.file}: shard truncated while reading (delete the cache folder)"
                    )
                out[k] = np.frombuffer(buf, dtype=np.uint8).reshape(self.shape)
        finally:
            for fd in fds.values():
                os.close(fd)
        return out


@dataclass(frozen=True)
class ShardView:
    """Some rows of a shard set, in table order: what a training split holds instead of pixels.

    Behaves like the (n, h, w, 3) array it stands for where the trainer needs it: `len`,
    `shape`, indexing by an index array (a sub-view) and `read()` for the pixels themselves.
    """

    shards: ShardSet
    rows: np.ndarray  # (n,) int64 input rows of `shards`

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.shards.shape)

    @property
    def positions(self) -> np.ndarray:
        """Where each row lives in the shard set (the streamed reader's numbering)."""
        return self.shards.position[self.rows]

    def __getitem__(self, index) -> ShardView:
        return ShardView(self.shards, np.asarray(self.rows[index], dtype=np.int64).reshape(-1))

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self.shards.read(self.rows[start:stop])

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """The pixels in table order, `batch_size` rows at a time (memory: one batch)."""
        for i in range(0, len(self.rows), batch_size):
            yield self.read(i, i + batch_size)


def shard_set_key(paths: Sequence[Path], size: tuple[int, int], shard_images: int) -> str:
    return cache_key(paths, size) + f"-v{FORMAT_VERSION}-s{shard_images}"


def images_per_shard(size: tuple[int, int], shard_bytes: int = SHARD_BYTES) -> int:
    return max(MIN_SHARD_IMAGES, shard_bytes // (size[0] * size[1] * 3))


def open_shards(
    paths: Sequence[Path | str],
    size: tuple[int, int],
    cache_dir: str | Path,
    *,
    workers: int | None = None,
    shard_images: int | None = None,
    progress: Progress | None = None,
    temporary: bool = False,
) -> ShardSet:
    """The shard set of `paths` at `size` (width, height): read back if cached, else decoded.

    Decoding streams through `decode_many` and holds one shard in memory at a time. Unreadable
    images do not stop it: their slot stays zero and they are listed in `failures`. With
    `temporary`, the whole `cache_dir` is deleted when the returned set is garbage-collected
    (or at exit).
    """
    paths = [Path(p) for p in paths]
    size = (int(size[0]), int(size[1]))
    per = int(shard_images or images_per_shard(size))
    folder = Path(cache_dir) / f"shards-{shard_set_key(paths, size, per)}"
    n = len(paths)
    position = _positions(n, folder.name)
    bounds = [(s, min(s + per, n)) for s in range(0, n, per)]
    index = _read_index(folder, n, size, per)
    todo = [
        j
        for j, (s, e) in enumerate(bounds)
        if index is None or _shard_header(folder / _name(j), e - s, size) is None
    ]
    failures: dict[int, list[Failure]] = {} if index is None else index
    if todo:
        folder.mkdir(parents=True, exist_ok=True)
        # position -> row: shard j holds the rows whose position falls in bounds[j]
        order = np.argsort(position, kind="stable")
        for j in todo:
            failures[j] = _write_shard(
                folder / _name(j),
                paths,
                order[bounds[j][0] : bounds[j][1]],
                size,
                workers,
                progress,
                done_before=sum(e - s for s, e in bounds[:j]),
                total=n,
            )
        _write_index(folder, n, size, per, failures)
    shards = []
    for j, (s, e) in enumerate(bounds):
        header = _shard_header(folder / _name(j), e - s, size)
        if header is None:  # written a moment ago: the disk or another process broke it
            raise DataError(f"{folder / _name(j)}: shard unreadable right after writing it")
        shards.append(Shard(folder / _name(j), s, e - s, header))
    result = ShardSet(
        folder,
        size,
        shards,
        position,
        sorted((f for fs in failures.values() for f in fs), key=lambda f: f[0]),
    )
    if temporary:
        weakref.finalize(result, shutil.rmtree, str(cache_dir), True)
    return result


def load_table_shards(
    table: LabelTable,
    size: tuple[int, int],
    what: str,
    cache_dir: str | Path,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
    temporary: bool = False,
) -> tuple[LabelTable, ShardView]:
    """`edge_common.images.load_table` for data sets larger than memory: a view, not an array.

    Unreadable rows are dropped and recorded as skipped rows; `DataError` if none is readable.
    The returned table and view line up row for row.
    """
    shards = open_shards(
        table.paths, size, cache_dir, workers=workers, progress=progress, temporary=temporary
    )
    if not shards.failures:
        return table, ShardView(shards, np.arange(len(table), dtype=np.int64))
    table, keep = drop_unreadable(table, shards.failures, what)
    return table, ShardView(shards, keep)


def print_progress(label: str, every: float = 0.1) -> Progress:
    """A `Progress` that prints `label: decoded k/n images` on stderr about every 10%."""
    state = {"next": 1}

    def report(done: int, total: int) -> None:
        if done >= state["next"] or done == total:
            state["next"] = done + max(1, int(total * every))
            if done > 1 or total == 1:
                print(f"{label}: decoded {done}/{total} images", file=sys.stderr, flush=True)

    return report


# --- internals ------------------------------------------------------------------------------------


def _name(j: int) -> str:
    return f"shard-{j:05d}.npy"


def _positions(n: int, key: str) -> np.ndarray:
    # A fixed shuffle per key: a re-run finds the same layout, a sorted CSV still mixes.
    seed = int.from_bytes(key.encode(), "little") % (2**63)
    return np.random.default_rng(seed).permutation(n).astype(np.int64)


def _write_shard(
    path: Path,
    paths: list[Path],
    rows: np.ndarray,
    size: tuple[int, int],
    workers: int | None,
    progress: Progress | None,
    done_before: int,
    total: int,
) -> list[Failure]:
    w, h = size
    buf = np.zeros((len(rows), h, w, 3), dtype=np.uint8)
    failures: list[Failure] = []
    for d in decode_many((paths[int(r)] for r in rows), size, workers=workers):
        if d.error is None:
            buf[d.index] = d.frame
        else:
            r = int(rows[d.index])
            failures.append((r, paths[r], d.error.problem))
        if progress is not None:
            progress(done_before + d.index + 1, total)
    try:
        with atomic.replacing(path) as fh:
            np.save(fh, buf, allow_pickle=False)
    except OSError as exc:
        raise DataError(
            f"{path}: cannot write shard ({exc.strerror or exc}); "
            "use --cache-dir on a disk with space"
        ) from None
    return failures


def _shard_header(path: Path, count: int, size: tuple[int, int]) -> int | None:
    """The .npy header length if `path` is a complete shard of `count` rows, else None."""
    w, h = size
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                return None
            header = fh.tell()
        if shape != (count, h, w, 3) or fortran or dtype != np.uint8:
            return None
        if path.stat().st_size != header + count * h * w * 3:
            return None
    except (OSError, ValueError, EOFError):
        return None
    return header


def _read_index(
    folder: Path, n: int, size: tuple[int, int], per: int
) -> dict[int, list[Failure]] | None:
    try:
        info = json.loads((folder / INDEX_FILE).read_text())
        if (
            info.get("format") != FORMAT_VERSION
            or info.get("count") != n
            or info.get("size") != list(size)
            or info.get("shard_images") != per
        ):
            return None
        return {
            int(j): [(int(i), Path(p), str(r)) for i, p, r in fs]
            for j, fs in info["failures"].items()
        }
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return None  # missing or corrupt index: a miss


def _write_index(
    folder: Path, n: int, size: tuple[int, int], per: int, failures: dict[int, list[Failure]]
) -> None:
    from edge_runtime.inference.preprocess import PREPROCESSING

    atomic.write_json(
        folder / INDEX_FILE,
        {
            "format": FORMAT_VERSION,
            "count": n,
            "size": list(size),
            "shard_images": per,
            "preprocessing": PREPROCESSING,
            "failures": {
                str(j): [[i, str(p), r] for i, p, r in fs] for j, fs in sorted(failures.items())
            },
        },
    )
