"""Parity metrics: pure numpy functions and their edge cases, and the gate's verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from exporter import parity
from exporter.config import DEFAULT_TOLERANCES, ExportConfig, Tolerances
from exporter.convert import QuantMode
from exporter.gate import check_parity


def test_abs_diffs_per_label():
    a = np.array([[0.1, 0.5], [0.2, 0.9]])
    b = np.array([[0.1, 0.4], [0.3, 0.9]])
    np.testing.assert_allclose(parity.max_abs_diff(a, b), [0.1, 0.1])
    np.testing.assert_allclose(parity.mean_abs_diff(a, b), [0.05, 0.05])


@pytest.mark.parametrize("fn", [parity.max_abs_diff, parity.mean_abs_diff])
def test_diff_edge_cases(fn):
    with pytest.raises(ValueError, match="no samples"):
        fn(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(ValueError, match="shape"):
        fn(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="shape"):
        fn(np.zeros(3), np.zeros(3))
    nan = np.array([[0.5, np.nan]])
    out = fn(np.array([[0.5, 0.5]]), nan)
    assert out[0] == 0 and math.isinf(out[1])


def test_decision_agreement_uses_each_sides_thresholds():
    keras = np.array([[0.6], [0.4], [0.55]])
    tfl = np.array([[0.62], [0.41], [0.52]])
    assert parity.decision_agreement(keras, tfl, [0.5], [0.5])[0] == 1.0
    assert parity.decision_agreement(keras, tfl, [0.5], [0.53])[0] == pytest.approx(2 / 3)
    assert parity.decision_agreement(keras, np.array([[np.nan], [0.41], [0.52]]), [0.5], [0.5])[
        0
    ] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        parity.decision_agreement(np.zeros((0, 1)), np.zeros((0, 1)), [0.5], [0.5])


def test_map_drop():
    y = np.array([[1], [0], [1], [0]])
    good = np.array([[0.9], [0.1], [0.8], [0.2]])
    bad = np.array([[0.1], [0.9], [0.8], [0.2]])
    assert parity.map_drop(y, good, good) == 0.0
    assert parity.map_drop(y, good, bad) > 0.2
    assert math.isinf(parity.map_drop(y, good, np.full((4, 1), np.nan)))
    assert parity.map_drop(np.zeros((4, 1)), good, bad) == 0.0  # no positives: nothing to rank
    with pytest.raises(ValueError):
        parity.map_drop(np.zeros((3, 1)), good, good)


def _scores(seed=0, n=200, labels=3):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < 0.4).astype(int)
    s = np.clip(0.15 + 0.7 * y + rng.normal(0, 0.1, y.shape), 0, 1)
    return y, s


def test_gate_passes_identical_and_int8_like_outputs():
    y, s = _scores()
    thr = np.full(3, 0.5)
    rep = check_parity(
        "float32", list("abc"), y, s, s, thr, thr, DEFAULT_TOLERANCES[QuantMode.FLOAT32]
    )
    assert rep.passed and rep.map_drop == 0.0
    q = np.round(s * 256) / 256  # one int8 output step
    rep = check_parity("int8", list("abc"), y, s, q, thr, thr, DEFAULT_TOLERANCES[QuantMode.INT8])
    assert rep.passed, rep.failures
    assert max(r["max_abs"] for r in rep.per_label) <= 1 / 512 + 1e-12


def test_gate_fails_and_names_the_worst_label():
    y, s = _scores(1)
    broken = s.copy()
    broken[:, 1] = 1 - broken[:, 1]  # one label inverted
    thr = np.full(3, 0.5)
    rep = check_parity(
        "int8", list("abc"), y, s, broken, thr, thr, DEFAULT_TOLERANCES[QuantMode.INT8]
    )
    assert not rep.passed
    assert any(f.startswith("b:") for f in rep.failures) and any(
        "mAP drop" in f for f in rep.failures
    )
    assert not any(f.startswith("a:") for f in rep.failures)
    assert rep.table().splitlines()[2].split()[0] == "b"  # worst label first


def test_float32_gate_catches_small_drift():
    y, s = _scores(2)
    thr = np.full(3, 0.5)
    rep = check_parity(
        "float32", list("abc"), y, s, s + 1e-3, thr, thr, DEFAULT_TOLERANCES[QuantMode.FLOAT32]
    )
    assert not rep.passed and any("max |diff|" in f for f in rep.failures)


def test_tolerance_overrides_and_int8_step_floor():
    cfg = ExportConfig(run_dir="r", overrides={"min_agreement": 0.5, "max_abs": None})
    assert cfg.tolerances(QuantMode.INT8).min_agreement == 0.5
    assert (
        cfg.tolerances(QuantMode.FLOAT32).max_abs == DEFAULT_TOLERANCES[QuantMode.FLOAT32].max_abs
    )
    with pytest.raises(ValueError, match="1/256"):
        ExportConfig(run_dir="r", overrides={"max_abs": 0.001}).tolerances(QuantMode.INT8)
    with pytest.raises(ValueError, match="unknown"):
        ExportConfig(run_dir="r", overrides={"max_ab": 0.1})


@pytest.mark.parametrize("flipped, passes", [(1, True), (2, True), (3, False)])
def test_int8_default_judges_decisions_not_raw_differences(flipped, passes):
    """int8's defaults: raw differences are shown, not judged; 98% decision agreement is."""
    y, s = _scores(4, n=100)
    thr = np.full(3, 0.5)
    q = s.copy()
    q[:, 2] = np.clip(s[:, 2] + 0.3, 0, 1)  # large raw shifts that change no decision ...
    q[:, 2] = np.where(s[:, 2] >= 0.5, q[:, 2], np.minimum(q[:, 2], 0.49))
    order = np.argsort(np.abs(s[:, 0] - 0.5))[:flipped]
    q[order, 0] = 1 - s[order, 0]  # ... and `flipped` decisions of label a turned over
    rep = check_parity("int8", list("abc"), y, s, q, thr, thr, DEFAULT_TOLERANCES[QuantMode.INT8])
    assert max(r["max_abs"] for r in rep.per_label) > 0.25
    assert rep.per_label[0]["agreement"] == pytest.approx(1 - flipped / 100)
    assert rep.passed is passes, rep.failures
    if not passes:
        assert rep.failures == [f"a: decision agreement {1 - flipped / 100:.3f} < 0.98"]


def test_min_map_judges_the_exported_model_against_the_truth():
    y, s = _scores(5)
    thr = np.full(3, 0.5)
    useless = np.full_like(s, 0.5)  # agrees with itself perfectly, knows nothing
    tol = Tolerances(min_map=0.8)
    assert check_parity("float32", list("abc"), y, s, s, thr, thr, tol).passed
    rep = check_parity("float32", list("abc"), y, useless, useless, thr, thr, tol)
    assert (
        not rep.passed and rep.failures[0].startswith("mAP ") and "required 0.8" in rep.failures[0]
    )
    nan = s.copy()
    nan[0, 0] = np.nan
    assert (
        "required 0.8" in check_parity("float32", list("abc"), y, s, nan, thr, thr, tol).failures[0]
    )


def test_report_saves_json(tmp_path):
    import json

    y, s = _scores(3)
    thr = np.full(3, 0.5)
    rep = check_parity(
        "dynamic", list("abc"), y, s, s, thr, thr, DEFAULT_TOLERANCES[QuantMode.DYNAMIC]
    )
    path = rep.save(tmp_path / "r.json")
    d = json.loads(path.read_text())
    assert d["passed"] is True and len(d["per_label"]) == 3 and d["mode"] == "dynamic"


def test_near_threshold_band_counts_those_flips_as_agreeing_and_nothing_else():
    a = np.array([[0.500], [0.503], [0.5039], [0.40], [np.nan], [0.501]])
    b = np.array([[0.490], [0.490], [0.4900], [0.60], [0.50], [np.nan]])
    thr = np.array([0.5])
    step = parity.INT8_OUTPUT_STEP  # 0.00390625
    near = parity.near_threshold(a, thr, step)
    assert near[:, 0].tolist() == [True, True, True, False, False, True]
    assert parity.decision_agreement(a, b, thr, thr)[0] == pytest.approx(0 / 6)
    # flips within the band agree; a far flip, a NaN on either side do not
    assert parity.decision_agreement(a, b, thr, thr, tie_band=step)[0] == pytest.approx(3 / 6)
    edge = np.array([[0.5 + step]])  # exactly one step away: strictly outside the band
    assert parity.decision_agreement(edge, np.array([[0.4]]), thr, thr, tie_band=step)[0] == 0.0


@pytest.mark.parametrize(
    "distance_in_steps, int8_passes", [(0.5, True), (0.99, True), (1.5, False)]
)
def test_int8_gate_does_not_count_flips_within_one_output_step(distance_in_steps, int8_passes):
    """Three flipped decisions of label a among 100 images (agreement 0.97 < 0.98). When Keras
    scored those images within one int8 output step (1/256) of the threshold, an int8 model
    exact up to its output rounding could flip them: int8 passes, and says the raw figure. Just
    outside the band they count. float16 (a float output) counts them always."""
    y, s = _scores(4, n=100)
    thr = np.full(3, 0.5)
    d = distance_in_steps * parity.INT8_OUTPUT_STEP
    s = s.copy()
    s[:3, 0] = [0.5 + d, 0.5 - d, 0.5 + d]
    q = s.copy()
    q[:3, 0] = [0.5 - d, 0.5 + d, 0.5 - d]  # turned over
    int8 = check_parity("int8", list("abc"), y, s, q, thr, thr, DEFAULT_TOLERANCES[QuantMode.INT8])
    assert int8.per_label[0]["raw_agreement"] == pytest.approx(0.97)
    assert int8.passed is int8_passes, int8.failures
    assert int8.per_label[0]["agreement"] == pytest.approx(1.0 if int8_passes else 0.97)
    if not int8_passes:
        assert int8.failures == ["a: decision agreement 0.970 < 0.98"]
    tol16 = Tolerances(min_agreement=0.98, max_map_drop=0.02)  # float16's agreement rule alone
    f16 = check_parity("float16", list("abc"), y, s, q, thr, thr, tol16)
    assert not f16.passed and f16.per_label[0]["agreement"] == pytest.approx(0.97)


def test_int8_gate_still_fails_a_bad_conversion_with_a_few_flips_in_the_band():
    """A conversion flipping 8 of 100 decisions (agreement 0.92, the per-tensor file of issue
    17) fails even when two of its flips sit within one step of the threshold."""
    y, s = _scores(4, n=100)
    thr = np.full(3, 0.5)
    s = s.copy()
    q = s.copy()
    s[:2, 0] = [0.501, 0.499]
    q[:2, 0] = [0.499, 0.501]
    far = np.arange(2, 8)
    q[far, 0] = 1 - s[far, 0]
    rep = check_parity("int8", list("abc"), y, s, q, thr, thr, DEFAULT_TOLERANCES[QuantMode.INT8])
    assert rep.per_label[0]["raw_agreement"] == pytest.approx(0.92)
    assert rep.per_label[0]["agreement"] == pytest.approx(0.94)
    assert "a: decision agreement 0.940 < 0.98 (raw 0.920)" in rep.failures
