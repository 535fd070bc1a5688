"""Trainer-specific error types (all `EdgeError`, so the CLI reports them in one line)."""

from __future__ import annotations

from edge_runtime.errors import DataError, EdgeError

__all__ = ["ConfigError", "DataError", "WeightsError"]


class ConfigError(EdgeError, ValueError):
    """An invalid training option."""


class WeightsError(EdgeError):
    """Pretrained weights cannot be used: package missing, file corrupt or hostile, wrong shapes."""
