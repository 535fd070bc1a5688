"""Trainer-specific error types (all `EdgeError`, so the CLI reports them in one line)."""

from __future__ import annotations

from edge_runtime.errors import DataError, EdgeError

__all__ = ["ConfigError", "DataError"]


class ConfigError(EdgeError, ValueError):
    """An invalid training option."""
