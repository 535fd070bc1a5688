"""Exception types of the whole toolkit.

Library code raises these; only the click CLIs turn them into one-line messages and exit codes.
They live in the runtime because it is the one package every other part may import.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base class: every error the toolkit raises on purpose."""


class ImageError(EdgeError):
    """An input image could not be used (missing, unreadable, truncated, too large, ...)."""

    def __init__(self, source: object, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class ModelError(EdgeError):
    """A model file is missing, corrupt, not a TFLite model, or not an image classifier."""


class LabelsError(EdgeError):
    """A labels CSV is malformed or does not match the model."""


class DataError(EdgeError):
    """A data set cannot be used: too few or no readable images, a missing calibration CSV, ..."""


class SourceError(EdgeError):
    """A camera, video file or stream cannot be opened or read (or a stream stayed down)."""


class BackendError(EdgeError):
    """No usable interpreter package, or the requested one is not installed."""


class MqttError(EdgeError):
    """An unusable MQTT setting (URL, client id, topic prefix) or a missing paho-mqtt package."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name: for one-line errors."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
