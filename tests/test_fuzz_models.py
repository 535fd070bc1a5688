"""Hostile model files (issue 13): a seeded set built from the int8 fixture model, each loaded by
`Classifier.from_file` and by the real `edge-infer info` in a subprocess with a memory and CPU
limit. No crash, no signal, no traceback: a one-line error (exit 2) or a correct result."""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hostile_models import cases

from edge_runtime.errors import ModelError
from edge_runtime.modelfile import metadata as md
from edge_runtime.modelfile.flatbuffer import check_structure

pytestmark = pytest.mark.runtime

MEMORY_LIMIT = 1 << 30  # address space: the interpreter packages map ~300-600 MB before any model
CPU_SECONDS = 20
WALL_SECONDS = 60
# Peak resident memory for a refused model: the 3 GiB bomb used to take 6.3 GB.
REFUSED_PEAK_MB = 100

DRIVER = r"""
import atexit, json, sys


def _peak():  # this process's own high-water mark: rusage of a child also counts the parent's
    with open("/proc/self/status") as fh:  # pages at fork/exec (a pytest holding TensorFlow: 300 MB)
        kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    with open(sys.argv[2], "w") as out:
        out.write(str(kb))


atexit.register(_peak)
from edge_runtime.inference.classifier import Classifier
from edge_runtime.errors import EdgeError
path = sys.argv[1]
try:
    clf = Classifier.from_file(path)
    result = {"ok": True, "labels": clf.labels, "n_outputs": int(clf.output_details["shape"][-1])}
except EdgeError as exc:
    result = {"ok": False, "error": str(exc)}
print(json.dumps(result), flush=True)
from edge_runtime.cli import main
main(["info", "--json", path])
"""


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_limited(args: list[str]) -> dict:
    """Run `args` under the limits: returncode (negative = signal), stdout, stderr, wall time."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [str(Path(__file__).parent.parent), os.environ.get("PYTHONPATH", "")]
        ),
    )
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, preexec_fn=_limits, env=env
        )
        timer = threading.Timer(WALL_SECONDS, proc.kill)
        timer.start()
        proc.wait()
        timer.cancel()
        out.seek(0), err.seek(0)
        return {
            "rc": proc.returncode,
            "stdout": out.read().decode("utf-8", "replace"),
            "stderr": err.read().decode("utf-8", "replace"),
            "seconds": time.monotonic() - t0,
        }


@pytest.fixture(scope="module")
def hostile(fixture_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    good = fixture_models["int8"].read_bytes()
    built = {}
    for name, (data, expect) in cases(good, seed=13).items():
        path = folder / f"{name}.tflite"
        path.write_bytes(data)
        built[name] = (path, expect)
    return built


@pytest.fixture(scope="module")
def outcomes(hostile):
    """Every case run once (two at a time: the suite must stay under a minute on 2 cores)."""

    def one(item):
        name, (path, _) = item
        peak = path.with_suffix(".peak")
        o = run_limited([sys.executable, "-c", DRIVER, str(path), str(peak)])
        o["peak_mb"] = int(peak.read_text()) / 1024 if peak.is_file() else math.inf
        return name, o

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(one, hostile.items()))


def test_suite_is_seeded_and_varied(hostile):
    kinds = {name.split("_")[0] for name in hostile}
    assert {
        "bomb",
        "nested",
        "json",
        "archive",
        "eocd",
        "absurd",
        "truncated",
        "mutated",
        "stdmeta",
    } <= kinds
    assert len(hostile) >= 40


def test_no_crash_no_traceback(hostile, outcomes, fixture_models):
    labels = md.read(fixture_models["int8"].read_bytes())["labels"]
    good_flat = md.strip(fixture_models["int8"].read_bytes())
    problems = []
    for name, (path, expect) in hostile.items():
        o = outcomes[name]
        lines = o["stdout"].splitlines()
        # Our warnings, and the interpreter library's own INFO line about its delegate.
        err_lines = [
            x for x in o["stderr"].splitlines() if not x.startswith(("Warning: ", "INFO: "))
        ]
        why = None
        if o["rc"] < 0:
            why = f"killed by signal {-o['rc']}"
        elif "Traceback" in o["stderr"] or "Traceback" in o["stdout"]:
            why = "traceback: " + o["stderr"][-300:]
        elif not lines:
            why = f"no output, rc {o['rc']}: {o['stderr'][-300:]}"
        else:
            first = json.loads(lines[0])
            if first["ok"]:
                if expect == "refuse":
                    why = "loaded, but must be refused"
                elif o["rc"] not in (0, 1) or len(lines) != 2:
                    why = f"Classifier loaded but `info` exited {o['rc']}: {o['stderr'][-200:]}"
                else:
                    info = json.loads(lines[1])
                    status = info["integrity"]["status"]
                    # `info` exits 1 exactly when the model was changed after export, and a
                    # changed flatbuffer that still loads must be reported as changed.
                    changed = path.read_bytes()[: len(good_flat)] != good_flat
                    if (o["rc"] == 1) != (status == "modified") or (
                        changed and status != "modified"
                    ):
                        why = f"integrity {status} with exit {o['rc']} (flatbuffer changed: {changed})"
                    # A correct result: one score per label, and our labels whenever the
                    # metadata survived (a damaged archive gives generic names, never wrong ones).
                    elif len(info["labels"]) != first["n_outputs"] or (
                        info["has_metadata"] and info["labels"] != labels
                    ):
                        why = f"inconsistent result {info['labels']}"
            else:
                if o["rc"] != 2:
                    why = f"refused by Classifier but `info` exited {o['rc']}"
                elif (
                    len(err_lines) != 1
                    or not err_lines[0].startswith("Error: ")
                    or str(path) not in err_lines[0]
                ):
                    why = f"not a one-line error naming the file: {o['stderr'][-300:]!r}"
        if why:
            problems.append(f"{name}: {why}")
    assert not problems, "\n".join(problems)


def test_refusals_are_fast_and_small(hostile, outcomes):
    for name in (
        "bomb_3gib",
        "bomb_lying_directory",
        "nested_json_deep",
        "oversized_stored_json",
        "archive_many_entries",
        "absurd_input_60000",
    ):
        o = outcomes[name]
        assert o["rc"] == 2, (name, o["stderr"])
        assert o["peak_mb"] < REFUSED_PEAK_MB, (name, o["peak_mb"])
    assert "limit" in outcomes["bomb_3gib"]["stderr"]
    assert "absurdly large" in outcomes["absurd_input_60000"]["stderr"]


def test_bounds_check_on_crafted_flatbuffers(fixture_models):
    """Issue 11: the pure-Python bounds check turns crafted offsets into ModelError, never an
    IndexError or a read past the end (what makes tflite-runtime 2.14 segfault)."""
    import struct

    flat = md.strip(fixture_models["int8"].read_bytes())
    check_structure(flat)
    crafted = {
        "root offset past the end": struct.pack("<I", len(flat) + 4) + flat[4:],
        "empty": b"",
        "just the header": flat[:8],
    }
    root = struct.unpack_from("<I", flat, 0)[0]
    bad_vtable = bytearray(flat)
    struct.pack_into("<i", bad_vtable, root, -len(flat))  # vtable beyond the end
    crafted["vtable past the end"] = bytes(bad_vtable)
    huge_vector = bytearray(flat)
    from edge_runtime.modelfile.flatbuffer import Reader

    r = Reader(flat)
    model = r.table(root)
    at = r.field(model, 4)  # buffers vector
    struct.pack_into("<I", huge_vector, at + r.u32(at), 0x3FFFFFFF)  # a length far past the end
    crafted["vector length past the end"] = bytes(huge_vector)
    for name, data in crafted.items():
        with pytest.raises(ModelError, match="corrupt|truncated") as exc:
            check_structure(data, name)
        assert "\n" not in str(exc.value), name
