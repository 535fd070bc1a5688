"""Parallel image decoding through the one preprocessing path, with an on-disk cache.

Decoding a few thousand photos with Pillow takes longer than a small model's epoch, and it is
the same work every run, so the decoded uint8 array is cached. The cache key hashes everything
the pixels depend on: absolute paths, file sizes and mtimes, the input size and the
preprocessing description; any change makes a new key, so a stale cache is never read.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from edge_runtime import atomic
from edge_runtime.errors import ImageError
from edge_runtime.preprocess import PREPROCESSING, load_image

Failure = tuple[int, Path, str]  # (index in `paths`, path, reason)


def cache_key(paths: Sequence[Path], size: tuple[int, int]) -> str:
    """A hash of the inputs that determine the decoded pixels."""
    h = hashlib.sha256()
    h.update(json.dumps({"size": list(size), "preprocessing": PREPROCESSING}, sort_keys=True).encode())
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

    def work(i: int) -> tuple[int, str | None]:
        try:
            out[i] = load_image(paths[i], (w, h))
            return i, None
        except ImageError as exc:
            return i, exc.problem

    n_workers = workers or min(8, os.cpu_count() or 1)
    # Threads, not processes: Pillow releases the GIL while decoding and resizing.
    with ThreadPoolExecutor(max_workers=max(1, n_workers)) as pool:
        for i, reason in pool.map(work, range(len(paths))):
            if reason is not None:
                failures.append((i, paths[i], reason))
    if npy is not None and meta is not None:
        _write_cache(npy, meta, out, failures)
    return out, failures


def _read_cache(npy: Path, meta: Path, n: int, hw: tuple[int, int]) -> tuple[np.ndarray, list[Failure]] | None:
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
    """Write atomically (tmp + os.replace): a killed run never leaves a truncated cache.

    The array first, then the meta file that makes it a hit; a temporary file is removed on any
    failure.
    """
    try:
        npy.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{npy.name}.", suffix=".tmp", dir=npy.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
            os.chmod(tmp, 0o644)  # mkstemp creates 0600
            os.replace(tmp, npy)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        atomic.write_json(meta, {"failures": [[i, str(p), r] for i, p, r in failures],
                                 "preprocessing": PREPROCESSING})
    except OSError:
        pass  # caching is an optimisation; a read-only cache dir must not fail training
