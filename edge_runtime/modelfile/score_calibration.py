"""Per-label decisions for consumers with one global threshold: the standard score calibration.

MediaPipe Tasks and the TFLite Task Library decide with ONE score threshold for every label; our
labels each have their own. The standard metadata's score calibration (ScoreCalibrationOptions
with an associated TENSOR_AXIS_SCORE_CALIBRATION file, one `scale,slope,offset[,min_score]` line
per label) lets a consumer map each label's score before that threshold. This module computes
lines that map each label's threshold to 0.5, so that a consumer at threshold 0.5 decides
exactly what `edge-infer` decides (score >= threshold), and it replays the consumer's arithmetic
so that the claim is checked on every float32 score near every threshold.

The consumer's formula (MediaPipe's ScoreCalibrationCalculator and score_calibration_utils, the
Task Library's score_calibration.cc), in float32 with a few steps in double:
    p < min_score                      -> default_score (0 here)
    x = log(p) - log(1 - p)            INVERSE_LOGISTIC, each log clamped below 1e-16
    s = x * slope + offset
    calibrated = scale * sigmoid(s)    and the label is kept when calibrated >= 0.5

With scale 1 and slope 1, calibrated >= 0.5 exactly when s >= 0. The lines are:
- min_score = the smallest float32 >= the threshold, so `p < min_score` is exactly
  `p < threshold` for every float32 score p: below the threshold a consumer sees 0. This, not the
  sigmoid, decides the low side: in float32, a score one step below the threshold can give
  s = -1e-8, whose sigmoid rounds to exactly 0.5 and would pass;
- offset = -x(min_score), computed as the consumer computes x, then raised by a few float32
  steps, so that s >= 0 at the threshold even if the consumer's `log` rounds differently from
  ours (x is monotonic, so s >= 0 for every score above too). A score at its threshold thus
  reads 0.5 (a hair above); one above reads sigmoid(logit(p) - logit(threshold)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FILE = "score_calibration.txt"
CONSUMER_THRESHOLD = 0.5
DEFAULT_SCORE = 0.0  # what a consumer reads for a label under its threshold
_LOG_MIN = np.float32(1e-16)  # the consumers' clamp (kLogScoreMinimum)
_MAX_LINES = 100_000
_F32 = np.float32


@dataclass(frozen=True)
class Sigmoid:
    """One label's line: float32 values, written so that a float parser gets them back exactly."""

    scale: float
    slope: float
    offset: float
    min_score: float

    def line(self) -> str:
        # repr of the float64 holding the float32 value: a correctly rounding parser (absl's
        # SimpleAtof, strtof) returns that very float32.
        return ",".join(
            repr(float(v)) for v in (self.scale, self.slope, self.offset, self.min_score)
        )


def _clamped_log(x: np.ndarray) -> np.ndarray:
    """The consumers' ClampedLog(x, 1e-16) on float32 `x`: float32 out, the log in double."""
    x = np.asarray(x, dtype=_F32)
    xd = x.astype(np.float64)
    t = np.float64(_LOG_MIN)
    with np.errstate(divide="ignore", invalid="ignore"):
        below = 2.0 * np.log(t) - np.log(2.0 * t - xd)
        return np.where(x < _LOG_MIN, below, np.log(xd)).astype(_F32)


def inverse_logistic(p: np.ndarray) -> np.ndarray:
    """x = ClampedLog(p) - ClampedLog(1 - p) as the consumers compute it (1 - p in double, then
    rounded to float32 as their function's float parameter; the difference in float32)."""
    p = np.asarray(p, dtype=_F32)
    one_minus = (1.0 - p.astype(np.float64)).astype(_F32)
    return (_clamped_log(p) - _clamped_log(one_minus)).astype(_F32)


def threshold_float32(threshold: float) -> np.float32:
    """The smallest float32 >= `threshold`: a float32 score p has p >= threshold iff p >= this."""
    t = _F32(threshold)
    if float(t) < float(threshold):
        t = np.nextafter(t, _F32(np.inf), dtype=_F32)
    return t


def sigmoids(thresholds: Sequence[float]) -> list[Sigmoid]:
    """The calibration lines mapping each threshold (in [0, 1]) to the consumer threshold 0.5."""
    out = []
    for threshold in thresholds:
        if not (0.0 <= float(threshold) <= 1.0):
            raise ValueError(f"threshold {threshold} is outside 0..1")
        b = threshold_float32(threshold)
        x = inverse_logistic(b)
        # Headroom for a consumer whose log rounds to the next float32 in either term, and for
        # the float32 difference: each term's step, and the result's.
        logs = _clamped_log(np.array([b, _F32(1.0 - float(b))], dtype=_F32))
        room = sum(float(np.spacing(np.abs(v))) for v in (*logs, x))
        offset = _F32(-float(x) + 2 * room)
        if float(offset) + float(x) < 0:  # pragma: no cover - the rounding cannot undo 2*room
            offset = np.nextafter(offset, _F32(np.inf), dtype=_F32)
        out.append(Sigmoid(1.0, 1.0, float(offset), float(b)))
    return out


def file_text(thresholds: Sequence[float]) -> str:
    """The associated file: one line per label, NO final newline (both consumers split on "\\n"
    and count the lines against the labels: a final newline is one line too many)."""
    return "\n".join(s.line() for s in sigmoids(thresholds))


def parse(text: str) -> list[Sigmoid | None]:
    """Lines of a calibration file (None for an empty line: no calibration for that label)."""
    lines = text.split("\n")
    if len(lines) > _MAX_LINES:
        raise ValueError(f"{len(lines):,} lines, over the {_MAX_LINES:,}-line limit")
    out: list[Sigmoid | None] = []
    for i, line in enumerate(lines, start=1):
        if not line:
            out.append(None)
            continue
        parts = line.split(",")
        if len(parts) not in (3, 4):
            raise ValueError(f"line {i}: {len(parts)} values, expected 3 or 4")
        try:
            v = [float(_F32(float(p))) for p in parts]
        except ValueError:
            raise ValueError(f"line {i}: not numbers: {line[:80]!r}") from None
        out.append(Sigmoid(v[0], v[1], v[2], v[3] if len(v) == 4 else float("-inf")))
    return out


def consumer_scores(
    scores: np.ndarray, lines: Sequence[Sigmoid | None], default_score: float = DEFAULT_SCORE
) -> np.ndarray:
    """What MediaPipe's ScoreCalibrationCalculator computes (INVERSE_LOGISTIC), float32, for
    `scores` of shape (..., labels) in label order."""
    p = np.asarray(scores, dtype=_F32)
    if p.shape[-1] != len(lines):
        raise ValueError(f"{p.shape[-1]} scores for {len(lines)} calibration lines")
    out = np.empty(p.shape, dtype=_F32)
    for j, sig in enumerate(lines):
        col = p[..., j]
        if sig is None:
            out[..., j] = _F32(default_score)
            continue
        s = (inverse_logistic(col) * _F32(sig.slope) + _F32(sig.offset)).astype(_F32)
        sd = s.astype(np.float64)
        with np.errstate(over="ignore"):
            pos = (sig.scale / (1.0 + np.exp(-sd))).astype(_F32)  # s >= 0: in double, then float
            e = np.exp(sd).astype(_F32)  # s < 0: float(exp(s)), the division in double
            neg = ((_F32(sig.scale) * e).astype(np.float64) / (1.0 + e.astype(np.float64))).astype(
                _F32
            )
        cal = np.where(s >= 0, pos, neg)
        cal = np.clip(cal, _F32(0), _F32(sig.scale))
        out[..., j] = np.where(col < _F32(sig.min_score), _F32(default_score), cal)
    return out


def check(thresholds: Sequence[float], text: str) -> list[str]:
    """Problems that make a model's calibration file disagree with its thresholds (none: it maps
    each threshold to 0.5 as `file_text` writes it)."""
    try:
        got = parse(text)
    except ValueError as exc:
        return [f"{FILE}: {exc}"]
    if len(got) != len(thresholds):
        return [f"{FILE}: {len(got)} lines for {len(thresholds)} labels"]
    want = sigmoids(thresholds)
    return [
        f"{FILE} line {i}: {g} does not map threshold {t:g} to {CONSUMER_THRESHOLD}"
        for i, (g, w, t) in enumerate(zip(got, want, thresholds), start=1)
        if g != w
    ]


def report(data: bytes, std: dict | None, thresholds: Sequence[float], name: str) -> dict | None:
    """For `edge-infer info`: the calibration a consumer of the standard metadata applies, and
    whether it maps each of `thresholds` to 0.5; None when the model carries none."""
    from . import metadata
    from .standard_metadata import score_calibration_file

    file = score_calibration_file(std)
    if file is None:
        return None
    arc = metadata.archive(data, name)
    raw = arc.read(file) if arc is not None else None
    if raw is None:
        problems = [f"{file} is named by the standard metadata but missing from the file"]
    else:
        problems = check(thresholds, raw.decode("ascii", "replace"))
    return {"file": file, "consumer_threshold": CONSUMER_THRESHOLD, "problems": problems}


def line(rep: dict | None) -> str:
    """One line for `edge-infer info`."""
    if rep is None:
        return (
            "calibration none: MediaPipe/Task Library get probabilities; apply the per-label "
            "thresholds yourself (or export with --score-calibration)"
        )
    if rep["problems"]:
        return f"calibration {rep['file']} DISAGREES with the thresholds: {rep['problems'][0]}"
    return (
        f"calibration {rep['file']}: a consumer at score threshold {rep['consumer_threshold']:g} "
        "(MediaPipe, Task Library) decides exactly as edge-infer; its scores are calibrated "
        "(0.5 at each label's threshold, 0 below), not probabilities"
    )
