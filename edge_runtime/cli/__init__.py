"""`edge-infer`: a thin click layer that turns library exceptions into messages and exit codes."""

from .main import main, main_group

__all__ = ["main", "main_group"]
