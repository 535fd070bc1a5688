"""The standard score calibration maps each label's threshold to 0.5, exactly.

The consumers' arithmetic (MediaPipe's ScoreCalibrationCalculator, the Task Library) is replayed
in float32 by `score_calibration.consumer_scores`; here it decides every float32 score in a wide
neighbourhood of each threshold, and every int8 output step, exactly as `score >= threshold`.
tests/test_mediapipe.py checks the real MediaPipe on real models.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edge_runtime.cli import main_group
from edge_runtime.inference.classifier import Classifier
from edge_runtime.modelfile import metadata, standard_metadata
from edge_runtime.modelfile import score_calibration as sc

pytestmark = pytest.mark.runtime

F32 = np.float32
THRESHOLDS = [
    0.5,
    0.3,  # not a float32: the calibration must round it up, not to nearest
    float(F32(0.3)),  # the float32 nearest 0.3 (below 0.3): a different threshold
    0.1 + 1e-12,
    100 / 256,  # an int8 output step: reachable exactly
    0.0,
    1.0,
    1e-7,
    0.9999999,
    float(np.nextafter(F32(0.75), F32(1))),
    0.98,
    0.02,
]


def neighbourhood(t: float, steps: int = 4096) -> np.ndarray:
    """Every float32 within `steps` float32 steps of `t` on either side (clipped to [0, 1])."""
    base = F32(t).view(np.int32)
    bits = np.arange(int(base) - steps, int(base) + steps + 1, dtype=np.int64)
    bits = bits[(bits >= 0) & (bits <= F32(1.0).view(np.int32))]
    return bits.astype(np.int32).view(F32)


def test_every_float32_near_each_threshold_is_decided_as_edge_infer():
    lines = sc.sigmoids(THRESHOLDS)
    int8_steps = np.arange(257, dtype=np.float32) / F32(256)
    rng = np.random.default_rng(0)
    for j, t in enumerate(THRESHOLDS):
        p = np.concatenate([neighbourhood(t), int8_steps, rng.random(2000).astype(F32), [0, 1]])
        p = p.astype(F32)
        got = sc.consumer_scores(p[:, None], [lines[j]])[:, 0] >= F32(sc.CONSUMER_THRESHOLD)
        want = p.astype(np.float64) >= t  # edge-infer: the float32 score against the threshold
        assert (got == want).all(), (t, p[got != want][:5])
        assert want.any() or t == 1.0  # both sides of the threshold are present
        below = p.astype(np.float64) < t
        assert (sc.consumer_scores(p[below, None], [lines[j]]) == 0).all()  # 0 below


def test_the_threshold_itself_reads_about_half_and_above_it_more():
    for t, line in zip(THRESHOLDS, sc.sigmoids(THRESHOLDS)):
        b = sc.threshold_float32(t)
        at = float(sc.consumer_scores(np.array([[b]], F32), [line])[0, 0])
        assert 0.5 <= at <= 0.5 + 1e-5, (t, at)  # headroom: a few float32 steps of logit(t)
        if 0.01 < t < 0.99:  # away from the ends: sigmoid(logit(p) - logit(t)), nearly
            p = min(t + 0.005, 0.995)
            expected = 1 / (1 + np.exp(-(np.log(p / (1 - p)) - np.log(t / (1 - t)))))
            got = sc.consumer_scores(np.array([[p]], F32), [line])[0, 0]
            assert got == pytest.approx(expected, abs=1e-4)


def test_a_consumer_whose_log_rounds_otherwise_still_decides_alike():
    """The offset has headroom: were a consumer's log one float32 step off in either term,
    the threshold would still reach 0.5."""
    for t, line in zip(THRESHOLDS, sc.sigmoids(THRESHOLDS)):
        b = sc.threshold_float32(t)
        logs = sc._clamped_log(np.array([b, F32(1.0 - float(b))], F32))
        for d1 in (-1, 0, 1):
            for d2 in (-1, 0, 1):
                l1 = logs[0] + F32(d1) * np.spacing(np.abs(logs[0]))
                l2 = logs[1] + F32(d2) * np.spacing(np.abs(logs[1]))
                x = F32(F32(l1) - F32(l2))
                assert F32(x * F32(line.slope) + F32(line.offset)) >= 0, (t, d1, d2)


def test_the_file_has_one_line_per_label_and_parses_back_exactly():
    text = sc.file_text(THRESHOLDS)
    assert not text.endswith("\n") and len(text.split("\n")) == len(THRESHOLDS)
    parsed = sc.parse(text)
    assert parsed == sc.sigmoids(THRESHOLDS)
    for s in parsed:
        assert s.scale == 1.0 and s.slope == 1.0 and float(F32(s.min_score)) == s.min_score
    assert sc.check(THRESHOLDS, text) == []
    assert sc.check([0.5] * len(THRESHOLDS), text)  # other thresholds: it says so
    assert sc.check(THRESHOLDS, text + "\n")  # a final newline is one line too many
    assert sc.parse("1,1,0\n\n1,1,0,0.5")[1] is None  # an empty line: no calibration
    for bad in ("1,2", "a,b,c"):
        with pytest.raises(ValueError):
            sc.parse(bad)
    with pytest.raises(ValueError):
        sc.sigmoids([1.5])


def test_info_shows_the_calibration_of_a_calibrated_model(fixture_models):
    path = fixture_models["int8_calibrated"]
    clf = Classifier.from_file(path)
    data = path.read_bytes()
    raw = metadata.archive(data).read(sc.FILE).decode()
    assert sc.check(clf.thresholds, raw) == []
    out = standard_metadata.read(data)["subgraphs"][0]["outputs"][0]
    assert [u["type"] for u in out["process_units"]] == ["score_calibration", "score_thresholding"]
    assert out["process_units"][0]["score_transformation"] == "INVERSE_LOGISTIC"
    assert out["process_units"][1]["global_score_threshold"] == 0.5
    files = {f["name"]: f["type"] for f in out["associated_files"]}
    assert files == {"labels.txt": "TENSOR_AXIS_LABELS", sc.FILE: "TENSOR_AXIS_SCORE_CALIBRATION"}

    r = CliRunner().invoke(main_group, ["info", str(path)])
    assert r.exit_code == 0, r.output
    assert "score calibration INVERSE_LOGISTIC" in r.stdout and "score threshold 0.5" in r.stdout
    assert "decides exactly as edge-infer" in r.stdout
    r = CliRunner().invoke(main_group, ["info", str(fixture_models["int8"])])
    assert "calibration none" in r.stdout
    r = CliRunner().invoke(main_group, ["info", str(path), "--json"])
    assert json.loads(r.stdout)["score_calibration"]["problems"] == []
    r = CliRunner().invoke(main_group, ["verify", str(path)])
    assert r.exit_code == 0 and "intact" in r.stdout  # the calibration file is in the record


def test_the_runtime_keeps_its_probabilities_and_thresholds(fixture_models):
    plain, calibrated = (
        Classifier.from_file(fixture_models[k]) for k in ("int8", "int8_calibrated")
    )
    frames = np.load(fixture_models["int8"].parent / "reference_frames.npy")
    scores = calibrated.scores(frames)
    assert np.array_equal(plain.scores(frames), scores)  # the same raw probabilities
    thr = calibrated.thresholds
    for frame, row in zip(frames, scores):
        expected = {lab for lab, v, t in zip(calibrated.labels, row, thr) if v >= t}
        assert set(calibrated.predict(frame).labels) == expected


def test_info_says_when_a_calibration_disagrees_with_the_thresholds(fixture_models, tmp_path):
    """A file whose calibration does not map its thresholds to 0.5 (here: one line for another
    threshold; then garbage) is named as such, in one line, without a traceback."""
    data = fixture_models["int8_calibrated"].read_bytes()
    arc = metadata.archive(data)
    meta = metadata.read(data)
    for text in (sc.file_text([0.5] * len(meta["labels"])), "not,a,number\n" * 3 + "x"):
        files = {"labels.txt": arc.read("labels.txt"), sc.FILE: text.encode()}
        bad = tmp_path / "bad.tflite"
        bad.write_bytes(metadata.embed(data, meta, files=files))
        r = CliRunner().invoke(main_group, ["info", str(bad)])
        assert r.exit_code == 0, r.output  # intact: the record was rewritten with it
        line = next(x for x in r.stdout.splitlines() if x.startswith("calibration"))
        assert "DISAGREES" in line and "Traceback" not in r.output
