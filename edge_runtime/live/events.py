"""Label events: per-label hysteresis over a sequence of score rows.

A camera at 30 fps sees a bird in 30 frames a second; what a user wants is "bird on" once, and
"bird off" once it has gone. A label turns on after `on_frames` consecutive frames at or over its
threshold and off after `off_frames` consecutive frames under it. Both counts guard against a
single noisy frame flipping the state. Pure: no clock, no I/O, so it is tested on scripted
sequences and usable on any source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

DEFAULT_ON_FRAMES = 3  # 0.1 s at 30 fps, 0.6 s at 5 fps: quick, yet one noisy frame is not enough
# leaving takes a little longer than arriving, so a flicker is not two events
DEFAULT_OFF_FRAMES = 5


class State(str, Enum):
    ON = "on"
    OFF = "off"


@dataclass(frozen=True)
class Change:
    """A label changed state at the frame whose scores were passed to `update`."""

    label: str
    state: State
    score: float  # the label's score on that frame


class Hysteresis:
    """Feed one score row per frame to `update`; it returns the labels that changed state.

    Every label starts off. `thresholds` are per label, in the order of `labels`.
    """

    def __init__(
        self,
        labels: Sequence[str],
        thresholds: Sequence[float],
        *,
        on_frames: int = DEFAULT_ON_FRAMES,
        off_frames: int = DEFAULT_OFF_FRAMES,
    ) -> None:
        if len(labels) != len(thresholds):
            raise ValueError(f"{len(labels)} labels but {len(thresholds)} thresholds")
        if on_frames < 1 or off_frames < 1:
            raise ValueError("on_frames and off_frames must be >= 1")
        self.labels = list(labels)
        self.thresholds = [float(t) for t in thresholds]
        self.on_frames, self.off_frames = int(on_frames), int(off_frames)
        self._on = [False] * len(self.labels)
        self._run = [0] * len(self.labels)  # consecutive frames disagreeing with the current state

    @property
    def active(self) -> list[str]:
        """Labels currently on."""
        return [label for label, on in zip(self.labels, self._on) if on]

    def update(self, scores: Sequence[float]) -> list[Change]:
        """Advance by one frame; return the changes it caused (usually none)."""
        if len(scores) != len(self.labels):
            raise ValueError(f"expected {len(self.labels)} scores, got {len(scores)}")
        changes = []
        for i, (score, thr) in enumerate(zip(scores, self.thresholds)):
            over = score >= thr
            if over == self._on[i]:
                self._run[i] = 0
                continue
            self._run[i] += 1
            if self._run[i] >= (self.on_frames if over else self.off_frames):
                self._on[i], self._run[i] = over, 0
                changes.append(
                    Change(self.labels[i], State.ON if over else State.OFF, float(score))
                )
        return changes
