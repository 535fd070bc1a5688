"""`resolve(config)`: the one step that reads files and the environment before training starts.

A `TrainConfig` is what the user asked for and only validates itself. Resolving fills what it
left open (`arch`, `input_size`, `learning_rate`, `width`, `weights`: from the `init_from` run when there is
one, else from ARCH_DEFAULTS), opens and checks that run (edge_common.run: bounded, typed, the
model archive checked), checks that a weights file exists and that TF_CONFIG describes this task.
It takes well under a second and runs before any image is decoded, so a bad option or a
malformed run is one line at once, not a failure after minutes. The resolved config is the one
recorded in the manifest.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path

from edge_common.run import RunDir, RunDirError, open_run

from ..config import (
    ARCH_DEFAULTS,
    DEFAULT_ARCH,
    NO_WEIGHTS,
    Arch,
    ArchDefaults,
    Distribute,
    TrainConfig,
)
from ..errors import ConfigError
from .distribute import check_multiworker


@dataclass(frozen=True)
class TrainPlan:
    """A resolved training run: the config with nothing left open, and the run it starts from."""

    config: TrainConfig  # arch, input_size, learning_rate and width filled in
    parent: RunDir | None = None  # the `init_from` run, opened and checked

    def __post_init__(self) -> None:
        c = self.config
        if None in (c.arch, c.input_size, c.learning_rate, c.width):
            raise ConfigError("a TrainPlan needs a resolved config: use resolve(config)")


def resolve(config: TrainConfig | TrainPlan) -> TrainPlan:
    """The plan for `config` (a plan is returned as it is); ConfigError when it cannot run."""
    require_training_install()  # first: what else is missing matters only once this is there
    if isinstance(config, TrainPlan):
        return config
    parent = _open_parent(config.init_from) if config.init_from else None
    arch = config.arch or _parent_arch(parent) or DEFAULT_ARCH
    width, input_size = config.width, config.input_size
    if parent is not None:  # what the user left open comes from the run training starts from
        width = parent.manifest.width if width is None else width
        input_size = parent.manifest.input_size[0] if input_size is None else input_size
        _check_compatible(config, parent, arch, width)
    defaults = ARCH_DEFAULTS[arch]
    width = 1.0 if width is None else float(width)
    if arch is Arch.EFFICIENTNET_LITE0 and width != 1.0:
        raise ConfigError("efficientnet_lite0 has one width (1.0): its stem and head are fixed")
    resolved = replace(
        config,
        arch=arch,
        width=width,
        weights=_weights(config.weights, defaults, parent is not None),
        input_size=defaults.input_size if input_size is None else int(input_size),
        learning_rate=(
            defaults.learning_rate if config.learning_rate is None else config.learning_rate
        ),
    )
    if config.weights not in (None, NO_WEIGHTS, "imagenet") and not Path(config.weights).is_file():
        raise ConfigError(f"{config.weights}: weights file not found")
    if resolved.weights == "imagenet" and arch is Arch.EFFICIENTNET_LITE0:
        from ..model.pretrained.imagenet import checkpoint

        checkpoint()  # the package's file is there and intact, or WeightsError saying what to install
    if config.distribute is Distribute.MULTIWORKER:  # fail now, not after decoding the data set
        check_multiworker()
    return TrainPlan(resolved, parent)


def require_training_install() -> None:
    """ConfigError unless TensorFlow/Keras is importable (the device-only install has none)."""
    if importlib.util.find_spec("keras") is None:
        raise ConfigError("edge-train needs TensorFlow: pip install 'edge-multilabel[train]'")


def _weights(weights: str | None, defaults: ArchDefaults, init_from: bool) -> str | None:
    """The start: "imagenet" or a file; None with init_from or for an arch with no pretrained
    default; NO_WEIGHTS ("none", a random start) kept where the arch's default would be
    pretrained, so that the recorded config, fed back, asks for the same start."""
    if init_from:
        return None
    if weights is None:
        return defaults.weights
    if weights == NO_WEIGHTS and defaults.weights is None:
        return None
    return weights


def _open_parent(run_dir: str) -> RunDir:
    try:
        return open_run(run_dir)
    except RunDirError as exc:
        raise ConfigError(str(exc)) from None


def _parent_arch(parent: RunDir | None) -> Arch | None:
    if parent is None:
        return None
    try:
        return Arch(parent.manifest.arch)
    except ValueError:
        raise ConfigError(
            f"{parent.path}: that run is arch {parent.manifest.arch!r}, which this trainer does "
            f"not know ({', '.join(a.value for a in Arch)})"
        ) from None


def _check_compatible(config: TrainConfig, parent: RunDir, arch: Arch, width: float) -> None:
    prev = parent.manifest
    if arch.value != prev.arch:
        raise ConfigError(
            f"{config.init_from}: that run is arch {prev.arch}, not {arch.value}; "
            "--init-from needs the same architecture"
        )
    if width != prev.width:
        raise ConfigError(f"{config.init_from}: that run has width {prev.width}, not {width}")
