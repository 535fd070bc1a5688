"""Decoding a data set through the one preprocessing path, with an on-disk cache.

Decoding a few thousand photos takes longer than a small model's epoch, and it is the same work
every run, so the decoded uint8 array is cached. The cache key hashes everything the pixels
depend on: absolute paths, file sizes and mtimes, the input size and the preprocessing
description; any change makes a new key, so a stale cache is never read. The decoding itself is
the runtime's parallel decoder (`edge_runtime.inference.decode`), so a data set's pixels are exactly the
device's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_runtime import atomic
from edge_runtime.errors import DataError
from edge_runtime.evaluation.dataset import LabelTable, SkippedRow
from edge_runtime.inference.decode import decode_many
from edge_runtime.inference.preprocess import PREPROCESSING

Failure = tuple[int, Path, str]  # (index in `paths`, path, reason)


def cache_key(paths: Sequence[Path], size: tuple[int, int]) -> str:
    """A hash of the inputs that determine the decoded pixels."""
    h = hashlib.sha256()
    h.update(
        json.dumps({"size": list(size), "preprocessing": PREPROCESSING}, sort_keys=True).encode()
    )
    for p in paths:
        p = Path(p).resolve()
        try:
            st = p.stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        h.update(f"\0{p}\0{stamp}".encode())
    return h.hexdigest()[:32]


def load_images(
    paths: Sequence[Path | str],
    size: tuple[int, int],
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> tuple[np.ndarray, list[Failure]]:
    """Decode `paths` with `load_image` into an (n, h, w, 3) uint8 array.

    `size` is (width, height). Unreadable images do not stop the run: their slot stays zero and
    they are returned in `failures` for the caller to drop and report. With `cache_dir`, a
    previous identical decode is read back instead (failures are cached too).
    """
    paths = [Path(p) for p in paths]
    w, h = int(size[0]), int(size[1])
    npy = meta = None
    if cache_dir is not None:
        cache = Path(cache_dir)
        key = cache_key(paths, (w, h))
        npy, meta = cache / f"images-{key}.npy", cache / f"images-{key}.json"
        hit = _read_cache(npy, meta, len(paths), (h, w))
        if hit is not None:
            return hit
    out = np.zeros((len(paths), h, w, 3), dtype=np.uint8)
    failures: list[Failure] = []
    for d in decode_many(paths, (w, h), workers=workers):
        if d.error is None:
            out[d.index] = d.frame
        else:
            failures.append((d.index, paths[d.index], d.error.problem))
    if npy is not None and meta is not None:
        _write_cache(npy, meta, out, failures)
    return out, failures


def load_table(
    table: LabelTable,
    size: tuple[int, int],
    what: str,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> tuple[LabelTable, np.ndarray]:
    """Decode a label table's images; drop the unreadable rows (recorded as skipped rows).

    Raises `DataError` when no image is readable. The returned table and array line up row for
    row, so `table.y` labels `x`.
    """
    x, failures = load_images(table.paths, size, cache_dir=cache_dir, workers=workers)
    if not failures:
        return table, x
    table, keep = drop_unreadable(table, failures, what)
    return table, x[keep]


def drop_unreadable(
    table: LabelTable, failures: Sequence[Failure], what: str
) -> tuple[LabelTable, np.ndarray]:
    """The table without its unreadable rows (recorded as skipped rows) and the kept row indices.

    Raises `DataError` when no row is left.
    """
    bad = {i for i, _, _ in failures}
    extra = [
        SkippedRow(table.rows[i] if table.rows else 0, str(p), f"unreadable image: {reason}")
        for i, p, reason in failures
    ]
    keep = np.array([i for i in range(len(table)) if i not in bad], dtype=np.int64)
    if not len(keep):
        raise DataError(f"{table.csv_path}: no readable {what} image; first problem: {extra[0]}")
    return table.subset(keep, extra_skipped=extra), keep


def _read_cache(
    npy: Path, meta: Path, n: int, hw: tuple[int, int]
) -> tuple[np.ndarray, list[Failure]] | None:
    if not (npy.is_file() and meta.is_file()):
        return None
    # A corrupt cache (empty, truncated, not an array, malformed meta) is just a miss.
    try:
        info = json.loads(meta.read_text())
        arr = np.load(npy, allow_pickle=False)
        if not (isinstance(info, dict) and isinstance(arr, np.ndarray)):
            return None
        if arr.shape != (n, *hw, 3) or arr.dtype != np.uint8:
            return None
        failures = [(int(i), Path(p), str(r)) for i, p, r in info.get("failures", [])]
    except (EOFError, ValueError, TypeError, OSError):
        return None
    return arr, failures


def _write_cache(npy: Path, meta: Path, arr: np.ndarray, failures: list[Failure]) -> None:
    """The array first, then the meta file that makes it a hit; each written atomically."""
    try:
        with atomic.replacing(npy) as fh:
            np.save(fh, arr, allow_pickle=False)
        atomic.write_json(
            meta,
            {"failures": [[i, str(p), r] for i, p, r in failures], "preprocessing": PREPROCESSING},
        )
    except OSError:
        pass  # caching is an optimisation; a read-only cache dir must not fail training
