"""The versions of TensorFlow and Keras this toolkit was tested with, and the one check of them.

The trainer and the exporter each reach into a few TensorFlow/Keras internals (private names, in
`trainer/tf_internals.py` and `exporter/tf_internals.py`, nowhere else). Each use checks, when
it first runs, that the installed version lies in the range the test suite has run
(`TENSORFLOW`, `KERAS` below: the same bounds as pyproject.toml's `train` extra): outside it a
warning says which range was tested; a private name that has gone is an `UnsupportedVersion`
error naming that range, never a silent change of behaviour.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

from edge_runtime.errors import EdgeError


class UnsupportedVersion(EdgeError):
    """A third-party package no longer has an internal this toolkit relies on."""


@dataclass(frozen=True)
class VersionRange:
    """A half-open version range [low, high) of one package, and what CI last ran."""

    package: str
    low: str
    high: str
    ran: str  # the version scripts/test.sh installed when this range was last widened

    def __str__(self) -> str:
        return f"{self.package} >={self.low},<{self.high} (CI ran {self.ran})"

    def admits(self, version: str) -> bool:
        return release(self.low) <= release(version) < release(self.high)


# Keep in step with pyproject.toml (tests/test_dependencies.py compares them).
TENSORFLOW = VersionRange("tensorflow", "2.16", "2.22", ran="2.21.0")
KERAS = VersionRange("keras", "3.0", "3.16", ran="3.15.1")


def release(version: str) -> tuple[int, ...]:
    """The numeric release part of a version string: "2.21.0rc1" -> (2, 21, 0)."""
    parts = []
    for piece in version.split("+")[0].split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() < len(piece):  # "0rc1": a pre-release of 0; stop here
            break
    return tuple(parts)


_warned: set[tuple[str, str]] = set()


def check(tested: VersionRange, version: str, use: str) -> None:
    """Warn (once per package and use) when `version` lies outside `tested`; `use` names what
    relies on it, e.g. "the per-tensor int8 switch"."""
    if tested.admits(version) or (tested.package, use) in _warned:
        return
    _warned.add((tested.package, use))
    warnings.warn(
        f"{tested.package} {version} is outside the range tested for {use}: {tested}",
        RuntimeWarning,
        stacklevel=3,
    )


def missing(tested: VersionRange, version: str, name: str, use: str) -> UnsupportedVersion:
    """The error for an internal `name` that `version` no longer has."""
    return UnsupportedVersion(
        f"{tested.package} {version} has no {name}, which {use} relies on; tested: {tested}. "
        "Install a tested version (the bounds of edge-multilabel's `train` extra)"
    )
