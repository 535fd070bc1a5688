"""Trainer-specific error types (all `EdgeError`, so the CLI reports them in one line)."""
from __future__ import annotations

from edge_runtime.errors import EdgeError


class DataError(EdgeError):
    """The training data cannot be used (too few images, every image unreadable, ...)."""


class ConfigError(EdgeError, ValueError):
    """An invalid training option."""
