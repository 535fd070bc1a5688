"""The one training configuration, passed whole to `train()`, and the named recipes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum

from edge_common.run import MAX_INPUT_SIDE
from edge_runtime.atomic import to_jsonable

from .errors import ConfigError


class Arch(str, Enum):
    """Model architectures `build_model` knows."""

    SEED = "seed"  # the tiny two-conv baseline
    COMPACT = "compact"  # depthwise-separable, BN + ReLU: quantizes well, fast on a Pi
    # MobileNetV2 backbone (ReLU6: int8-friendly), for transfer learning
    MOBILENETV2 = "mobilenetv2"
    MOBILENETV3 = "mobilenetv3"  # MobileNetV3Small backbone (hard-swish: int8 loses more)
    # EfficientNet-Lite0 (ReLU6, no squeeze-and-excitation): ImageNet weights from an installed
    # package, so a pretrained start needs no network (trainer/model/pretrained/)
    EFFICIENTNET_LITE0 = "efficientnet_lite0"


# archs with a backbone `weights` can fill
PRETRAINABLE = (Arch.MOBILENETV2, Arch.MOBILENETV3, Arch.EFFICIENTNET_LITE0)
NO_WEIGHTS = "none"  # `weights` that asks for a random start where the arch defaults to pretrained


class Distribute(str, Enum):  # see trainer/fit/distribute.py
    NONE = "none"  # this process's default device
    MIRRORED = "mirrored"  # MirroredStrategy: every local GPU (or CPU device) of this machine
    MULTIWORKER = "multiworker"  # MultiWorkerMirroredStrategy: a cluster described by TF_CONFIG


class Loss(str, Enum):
    BCE = "bce"  # per-label positive-weighted binary cross-entropy
    FOCAL = "focal"  # binary focal loss (same positive weights), for many easy negatives


class FineTune(str, Enum):
    """What stage 2 of transfer learning trains (stage 1 always trains the head alone)."""

    NONE = "none"  # head only: the backbone stays exactly as loaded
    TOP = "top"  # the top third of the backbone at a lower rate (default: adapts, forgets little)
    ALL = "all"  # the whole backbone at a lower rate (for data far from the pretraining)


class HeadFeatures(str, Enum):
    """What stage 1 (the head alone, backbone frozen) trains on."""

    AUGMENTED = "augmented"  # augmented images through the frozen backbone every epoch
    CACHED = "cached"  # each image's pooled features, computed once: fast, no augmentation


class Thresholds(str, Enum):
    """Which per-label thresholds the run keeps (both reports are always written)."""

    CALIBRATED = "calibrated"  # per-label max-F1 on validation
    HALF = "0.5"  # a fixed 0.5, as a plain Keras script would use


class Recipe(str, Enum):
    """Named starting points for a `TrainConfig`; any field can still be overridden."""

    DEFAULT = "default"  # the toolkit's defaults (compact, 96 px, early stopping, augmentation)
    SEED = "seed"  # exactly the seed script: see RECIPES


PosWeight = str | tuple[float, ...]  # "auto", "none" or one float per label


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
class ArchDefaults:
    input_size: int
    learning_rate: float
    weights: str | None = None  # the start when neither weights nor init_from is given


# Filled in for `input_size` / `learning_rate` left at None. Why each differs:
# - seed: 64 px and Adam 1e-3 are the values the seed network was written with; at 96 px its
#   Flatten layer (and the dense layer after it) grows 2.3x. Issue 8 measured it at our compact
#   defaults (3e-3, 96 px, weights, augmentation): mAP 0.52 against 0.80 with its own settings.
# - compact: 96 px and 3e-3, the toolkit's tuned defaults (batch norm lets it take the higher rate).
# - mobilenetv2/v3: 96 px is the smallest size with Keras ImageNet weights; 1e-3 for the head
#   (stage 1), and stage 2 runs at FINE_TUNE_LR_SCALE of that so pretrained features survive.
ARCH_DEFAULTS = {
    Arch.SEED: ArchDefaults(64, 1e-3),
    Arch.COMPACT: ArchDefaults(96, 3e-3),
    Arch.MOBILENETV2: ArchDefaults(96, 1e-3),
    Arch.MOBILENETV3: ArchDefaults(96, 3e-3),
    Arch.EFFICIENTNET_LITE0: ArchDefaults(224, 1e-3, weights="imagenet"),
}
# A pretrained start by default: users' photos need features a few hundred images cannot teach
# (benchmarks/bm_pretrained.py), and these weights come from an installed package, offline.
DEFAULT_ARCH = Arch.EFFICIENTNET_LITE0


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; recorded (resolved) in the run's manifest.

    A config only validates what it is given. `arch`, `input_size`, `learning_rate` and `width`
    left at None are filled by `trainer.resolve`: from the `init_from` run when there is
    one, else from ARCH_DEFAULTS; `train()` resolves the config it is given.
    """

    data: str  # labels CSV (layout auto-detected, see edge_runtime.evaluation.dataset)
    out: str  # run directory to create (must not exist, or be empty)
    val_data: str | None = None  # separate validation CSV; otherwise split `data`
    arch: Arch | None = None  # None: the init_from run's, else compact
    input_size: int | None = None  # square side in pixels; None: per-arch default (ARCH_DEFAULTS)
    epochs: int = 30  # the whole budget; with pretrained weights stage 1 takes `head_epochs` of it
    batch_size: int = 32
    learning_rate: float | None = None  # Adam; None: per-arch default (ARCH_DEFAULTS)
    patience: int = 6  # epochs without val mAP improvement before stopping
    early_stop: bool = True  # False: a fixed number of epochs at a constant rate, last weights kept
    val_fraction: float = 0.2
    seed: int = 0
    pos_weight: PosWeight = "auto"
    loss: Loss = Loss.BCE
    focal_gamma: float = 2.0
    augment: Augment = field(default_factory=Augment)
    thresholds: Thresholds = Thresholds.CALIBRATED
    # "imagenet", a backbone .weights.h5/.h5 file, or "none" (random); None: the arch's default
    # (ARCH_DEFAULTS: imagenet for efficientnet_lite0, none for the others) unless init_from
    weights: str | None = None
    fine_tune: FineTune = FineTune.TOP  # stage 2 after a pretrained start (see FineTune)
    head_epochs: int | None = None  # stage 1 length; None: a third of `epochs` (at least 1)
    # Stage 1 on augmented images (default) or on features computed once. Measured on
    # benchmarks/bm_pretrained.py's data (efficientnet_lite0, 224 px, then the same fine-tuning):
    # augmented reached test mAP 0.816 (Keras) where cached reached 0.751, for about 2 more
    # minutes of training on 2 cores; cached is the fast option.
    head_features: HeadFeatures = HeadFeatures.AUGMENTED
    init_from: str | None = None  # a previous run directory to start from (labels remapped by name)
    workers: int | None = None  # image-decoding threads (None: up to 8)
    cache_dir: str | None = None  # decoded-image cache; None = no cache
    # channel multiplier of compact / alpha of mobilenets; None: 1.0 or init_from's
    width: float | None = None
    verbose: bool = True  # one line per epoch on stderr
    distribute: Distribute = (
        Distribute.NONE
    )  # batch_size is per replica; see trainer/fit/distribute.py

    def __post_init__(self) -> None:
        if self.weights not in (None, NO_WEIGHTS) and self.init_from is not None:
            raise ConfigError(
                "use either weights (a pretrained backbone) or init_from (a previous run), not both"
            )
        # Accept plain strings for the enums (CLI, JSON) and lists for tuples, but store the
        # declared types: the representation is normalised, never the meaning.
        for name, enum in (
            ("arch", Arch),
            ("loss", Loss),
            ("thresholds", Thresholds),
            ("fine_tune", FineTune),
            ("head_features", HeadFeatures),
            ("distribute", Distribute),
        ):
            value = getattr(self, name)
            if value is None and name == "arch":
                continue
            try:
                object.__setattr__(self, name, enum(value))
            except ValueError:
                choices = ", ".join(e.value for e in enum)
                raise ConfigError(f"{name} must be one of {choices}, got {value!r}") from None
        if isinstance(self.pos_weight, (list, tuple)):
            object.__setattr__(self, "pos_weight", tuple(float(v) for v in self.pos_weight))
        elif self.pos_weight not in ("auto", "none"):
            raise ConfigError(
                f"pos_weight must be 'auto', 'none' or a list of floats, got {self.pos_weight!r}"
            )
        if isinstance(self.augment, dict):
            object.__setattr__(self, "augment", Augment(**self.augment))
        if self.input_size is not None and self.input_size < 32:
            raise ConfigError(f"input_size must be >= 32, got {self.input_size}")
        if self.input_size is not None and self.input_size > MAX_INPUT_SIDE:
            # A run directory's readers refuse larger: fail now, not after training.
            raise ConfigError(f"input_size must be <= {MAX_INPUT_SIDE}, got {self.input_size}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        # Without init_from (refused beside weights above) the arch left open is the default.
        if (
            self.weights not in (None, NO_WEIGHTS)
            and (self.arch or DEFAULT_ARCH) not in PRETRAINABLE
        ):
            raise ConfigError(
                f"weights is only used with arch {' or '.join(a.value for a in PRETRAINABLE)}"
            )
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.head_epochs is not None and not 1 <= self.head_epochs <= self.epochs:
            raise ConfigError(
                f"head_epochs must be in [1, epochs={self.epochs}], got {self.head_epochs}"
            )

    @property
    def pretrained(self) -> bool:
        """Starts from a pretrained backbone: trained in two stages (head, then fine-tuning)."""
        return self.weights not in (None, NO_WEIGHTS)

    @property
    def stage1_epochs(self) -> int:
        if not self.pretrained:
            return self.epochs
        if self.fine_tune is FineTune.NONE:
            return self.epochs
        return self.head_epochs if self.head_epochs is not None else max(1, self.epochs // 3)

    def to_dict(self) -> dict:
        """JSON-ready (enums as their values, tuples as lists)."""
        return to_jsonable(asdict(self))

    @classmethod
    def from_recipe(cls, recipe: Recipe | str = Recipe.DEFAULT, **overrides) -> TrainConfig:
        """A config from a named recipe; `overrides` (e.g. data, out, epochs) win over it."""
        try:
            recipe = Recipe(recipe)
        except ValueError:
            raise ConfigError(
                f"recipe must be one of {', '.join(r.value for r in Recipe)}, got {recipe!r}"
            ) from None
        return cls(**{**RECIPES[recipe], **overrides})


# The seed recipe is the seed script, nothing of ours added: its network at 64x64, Adam 1e-3,
# 5 epochs, batch 32, 20% validation, plain (unweighted) BCE, no augmentation, no early stopping
# or rate schedule (the last epoch's weights), decisions at 0.5. The calibrated thresholds are
# still computed and reported beside the 0.5 ones.
RECIPES: dict[Recipe, dict] = {
    Recipe.DEFAULT: {},
    Recipe.SEED: dict(
        arch=Arch.SEED,
        input_size=64,
        learning_rate=1e-3,
        epochs=5,
        batch_size=32,
        val_fraction=0.2,
        pos_weight="none",
        loss=Loss.BCE,
        augment=NO_AUGMENT,
        early_stop=False,
        thresholds=Thresholds.HALF,
    ),
}


__all__ = [
    "ARCH_DEFAULTS",
    "Arch",
    "Augment",
    "FineTune",
    "HeadFeatures",
    "Loss",
    "NO_AUGMENT",
    "RECIPES",
    "Recipe",
    "Thresholds",
    "TrainConfig",
]
