"""Training a sigmoid-head multi-label CNN from a labelled image folder."""

from .config import Arch, Augment, FineTune, Loss, Recipe, Thresholds, TrainConfig
from .fit.plan import TrainPlan, resolve
from .fit.train import TrainResult, train
from .model.models import build_model

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
