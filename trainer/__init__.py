"""Training a sigmoid-head multi-label CNN from a labelled image folder."""

from .config import Arch, Augment, FineTune, Loss, Recipe, Thresholds, TrainConfig
from .models import build_model
from .plan import TrainPlan, resolve
from .train import TrainResult, train

__all__ = [
    "Arch",
    "Augment",
    "FineTune",
    "Loss",
    "Recipe",
    "Thresholds",
    "TrainConfig",
    "TrainPlan",
    "TrainResult",
    "build_model",
    "resolve",
    "train",
]
