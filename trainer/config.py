"""The one training configuration, passed whole to `train()`."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Union

from edge_runtime.atomic import to_jsonable

from .errors import ConfigError


class Arch(str, Enum):
    """Model architectures `build_model` knows."""

    SEED = "seed"  # the tiny two-conv baseline
    COMPACT = "compact"  # depthwise-separable, BN + ReLU: quantizes well, fast on a Pi
    MOBILENETV3 = "mobilenetv3"  # MobileNetV3Small backbone (optionally ImageNet weights)


class Distribute(str, Enum):  # [scale: issue 12] see trainer/distribute.py
    NONE = "none"  # this process's default device
    MIRRORED = "mirrored"  # MirroredStrategy: every local GPU (or CPU device) of this machine
    MULTIWORKER = "multiworker"  # MultiWorkerMirroredStrategy: a cluster described by TF_CONFIG


class Loss(str, Enum):
    BCE = "bce"  # per-label positive-weighted binary cross-entropy
    FOCAL = "focal"  # binary focal loss (same positive weights), for many easy negatives


PosWeight = Union[str, tuple[float, ...]]  # "auto", "none" or one float per label


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation, applied in the tf.data pipeline (never saved in the model).

    Multi-label safe by construction: no random crop or zoom-in, which could cut a labelled
    object out of the picture while its label stays on. Translation is small and pads by
    reflection.
    """

    flip: bool = True  # horizontal flip
    vflip: bool = False  # vertical flip: off by default (upside-down scenes are rare in photos)
    translate: float = 0.1  # max shift as a fraction of the side; 0 = off
    brightness: float = 0.15  # max brightness delta in [0, 1] units; 0 = off
    contrast: float = 0.15  # contrast factor drawn from [1-c, 1+c]; 0 = off

    def __post_init__(self) -> None:
        # `not (lo <= v < hi)` also rejects NaN.
        if not 0.0 <= self.translate < 0.5:
            raise ConfigError(f"augment translate must be in [0, 0.5), got {self.translate}")
        for name in ("brightness", "contrast"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"augment {name} must be in [0, 1], got {value}")

    @property
    def enabled(self) -> bool:
        return bool(self.flip or self.vflip or self.translate or self.brightness or self.contrast)


NO_AUGMENT = Augment(flip=False, vflip=False, translate=0.0, brightness=0.0, contrast=0.0)


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; recorded in the run's manifest."""

    data: str  # labels CSV (layout auto-detected, see edge_runtime.dataset)
    out: str  # run directory to create (must not exist, or be empty)
    val_data: str | None = None  # separate validation CSV; otherwise split `data`
    arch: Arch = Arch.COMPACT
    input_size: int = 96  # square side in pixels
    epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 3e-3
    patience: int = 6  # epochs without val mAP improvement before stopping
    val_fraction: float = 0.2
    seed: int = 0
    pos_weight: PosWeight = "auto"
    loss: Loss = Loss.BCE
    focal_gamma: float = 2.0
    augment: Augment = field(default_factory=Augment)
    weights: str | None = None  # mobilenetv3 only: None, "imagenet" or a .h5/.weights.h5 path
    workers: int | None = None  # image-decoding threads (None: up to 8)
    cache_dir: str | None = None  # decoded-image cache; None = no cache
    width: float = 1.0  # channel multiplier of `compact` (and alpha of mobilenetv3)
    verbose: bool = True  # one line per epoch on stderr
    # [scale: issue 12] streamed shards (default) or the whole set in RAM; tf.distribute strategy
    in_memory: bool = False  # decode into one in-memory array (the old way: fastest for small sets)
    distribute: Distribute = Distribute.NONE  # batch_size is per replica; see trainer/distribute.py

    def __post_init__(self) -> None:
        # Accept plain strings for the enums (CLI, JSON) but store the enum.
        object.__setattr__(self, "arch", Arch(self.arch))
        object.__setattr__(self, "loss", Loss(self.loss))
        object.__setattr__(self, "distribute", Distribute(self.distribute))  # [scale: issue 12]
        if self.distribute is not Distribute.NONE and self.in_memory:
            raise ConfigError("distributed training streams its data from shards: drop in_memory (--in-memory)")
        if self.distribute is Distribute.MULTIWORKER:  # fail now, not after decoding the data set
            from .distribute import check_multiworker

            check_multiworker()
        if isinstance(self.pos_weight, (list, tuple)):
            object.__setattr__(self, "pos_weight", tuple(float(v) for v in self.pos_weight))
        elif self.pos_weight not in ("auto", "none"):
            raise ConfigError(f"pos_weight must be 'auto', 'none' or a list of floats, got {self.pos_weight!r}")
        if isinstance(self.augment, dict):
            object.__setattr__(self, "augment", Augment(**self.augment))
        if self.input_size < 32:
            raise ConfigError(f"input_size must be >= 32, got {self.input_size}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.weights is not None and self.arch is not Arch.MOBILENETV3:
            raise ConfigError("weights is only used with arch=mobilenetv3")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")

    def to_dict(self) -> dict:
        """JSON-ready (enums as their values, tuples as lists)."""
        return to_jsonable(asdict(self))
