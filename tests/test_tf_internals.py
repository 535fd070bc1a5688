"""The doors to third-party internals: version ranges, the checks each private use makes before
and after, and pyproject's bounds agreeing with the ranges the messages name."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge_common import versions
from edge_common.versions import KERAS, TENSORFLOW, UnsupportedVersion, VersionRange

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2.21.0", (2, 21, 0)),
        ("2.21.0rc1", (2, 21, 0)),
        ("3.15.1.dev2026", (3, 15, 1)),
        ("2.16", (2, 16)),
        ("2.22.0+cpu", (2, 22, 0)),
        ("nightly", ()),
    ],
)
def test_release_parts(text, expected):
    assert versions.release(text) == expected


def test_range_is_half_open_and_warns_once_outside(monkeypatch):
    monkeypatch.setattr(versions, "_warned", set())
    tested = VersionRange("pkg", "2.16", "2.22", ran="2.21.0")
    assert tested.admits("2.16.0") and tested.admits("2.21.9") and not tested.admits("2.22.0")
    assert not tested.admits("2.15.1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        versions.check(tested, "2.21.0", "a use")  # inside: silent
        versions.check(tested, "2.23.1", "a use")
        versions.check(tested, "2.23.1", "a use")  # once per package and use
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "pkg 2.23.1" in message and ">=2.16,<2.22" in message and "a use" in message


def test_pyproject_bounds_match_the_tested_ranges():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    train = project["optional-dependencies"]["train"]
    for tested, names in ((TENSORFLOW, ("tensorflow", "tensorflow-cpu")), (KERAS, ("keras",))):
        specs = [d for d in train if re.match(rf"({'|'.join(names)})\s*[<>=]", d)]
        assert specs, f"no {tested.package} requirement in the train extra"
        for spec in specs:
            assert f">={tested.low}" in spec and f"<{tested.high}" in spec, (spec, str(tested))
        assert tested.admits(tested.ran)


def test_per_tensor_switch_missing_is_refused():
    pytest.importorskip("tensorflow")
    from exporter import tf_internals

    with pytest.raises(UnsupportedVersion, match=r"_experimental_disable_per_channel.*tested"):
        tf_internals.disable_per_channel(SimpleNamespace())  # a converter without the switch


def test_per_channel_file_fails_the_per_tensor_proof(fixture_models):
    pytest.importorskip("tensorflow")
    from exporter import tf_internals

    data = fixture_models["int8"].read_bytes()  # converted with the default: per channel
    assert tf_internals.max_scales_per_tensor(data) > 1
    with pytest.raises(UnsupportedVersion, match="no longer works"):
        tf_internals.require_per_tensor(data)
    assert tf_internals.max_scales_per_tensor(fixture_models["plain"].read_bytes()) == 0


def test_multiworker_fix_refuses_a_strategy_without_the_private_reduce():
    pytest.importorskip("tensorflow")
    from trainer.tf_internals import multiworker_fit_fixes

    bare = SimpleNamespace(extended=SimpleNamespace(), reduce=lambda *a, **k: None)
    with pytest.raises(UnsupportedVersion, match=r"_reduce_to.*keras >=3\.0,<3\.16"):
        multiworker_fit_fixes(bare)


@pytest.mark.runtime
def test_op_listing_falls_back_to_none_without_the_private_method(fixture_models, monkeypatch):
    from edge_runtime.inference import backend

    data = fixture_models["float32"].read_bytes()
    names = backend.op_names(data)
    assert names and "FULLY_CONNECTED" in names
    monkeypatch.setattr(backend, "_OPS_DETAILS", "_get_ops_details_renamed")
    assert backend.op_names(data) is None


def test_no_private_tensorflow_names_outside_the_doors():
    """TensorFlow/Keras private names (`x._name` on their objects, internal modules) appear only in
    the one internals module of each package (and the runtime's fenced op listing)."""
    allowed = {
        "trainer/tf_internals.py",
        "exporter/tf_internals.py",
        "edge_runtime/inference/backend.py",
    }
    pattern = re.compile(
        r"_experimental_|_reduce_to|_get_ops_details|schema_py_generated|tensorflow\.python\b"
        r"|keras\.src\b|tensorflow\.lite\.python\b"
    )
    offenders = []
    for package in ("trainer", "exporter", "edge_common", "edge_runtime", "benchmarks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in allowed:
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#")[0]
                if pattern.search(code) and "keras/src/" not in code:
                    offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_tested_versions_are_the_installed_ones_in_ci():
    """CI installs within the ranges: a run outside them would test something unnamed."""
    tf = pytest.importorskip("tensorflow")
    import keras

    assert TENSORFLOW.admits(tf.__version__), (tf.__version__, str(TENSORFLOW))
    assert KERAS.admits(keras.__version__), (keras.__version__, str(KERAS))
    assert "tensorflow" in sys.modules
