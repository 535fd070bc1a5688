"""Starting points other than random: a pretrained backbone (`weights`) or a previous run (`init_from`).

Transfer learning trains in two stages (see `fit/stages.py`): the head alone with the backbone frozen,
then (per `FineTune`) the top of the backbone at a lower rate. Batch norm stays in inference mode
throughout, so stage 1 leaves every backbone weight, moving statistics included, exactly as
loaded. `init_from` copies a previous run's weights layer by layer and remaps its head by label
name: shared labels keep their column, new labels start fresh, dropped ones go.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from edge_common.run import InitFrom, Lineage, RunDir, RunDirError, open_run
from edge_runtime.errors import first_line

from ..config import PRETRAINABLE, Arch, FineTune, TrainConfig
from ..errors import ConfigError
from .models import OUTPUT_NAME, build_model, get_backbone

TOP_FRACTION = 1 / 3  # FineTune.TOP trains the last third of the backbone's layers


def start_model(config: TrainConfig, labels: list[str], parent: RunDir | None = None):
    """The model training starts from, and its lineage record for the manifest.

    `parent` is the `init_from` run, opened and checked by `trainer.resolve`.
    """
    weights = config.weights if config.pretrained else None  # NO_WEIGHTS: a random start
    model = build_model(
        config.arch, config.input_size, len(labels), weights=weights, width=config.width
    )
    if config.init_from:
        if parent is None:
            raise ConfigError("init_from needs the run opened by trainer.resolve")
        return model, Lineage("init_from", init_from=init_from_run(model, parent, labels))
    if weights:
        return model, Lineage("pretrained", weights=describe_weights(config.weights, config.arch))
    return model, Lineage("scratch")


def describe_weights(weights: str, arch: Arch | None = None) -> dict:
    """Where pretrained weights came from, without the training machine's paths."""
    if weights == "imagenet" and arch is Arch.EFFICIENTNET_LITE0:
        from .pretrained.imagenet import checkpoint

        return checkpoint().describe()  # the package, its version, the file's SHA-256
    if weights == "imagenet":  # Keras's download (mobilenets)
        return {"source": "imagenet"}
    return {"source": "file", "file": Path(weights).name, "sha256": file_sha256(weights)}


def init_from_run(model, run: RunDir, labels: list[str]) -> InitFrom:
    """Copy a previous run's weights into `model` (same arch); the head is remapped by label name."""
    prev_labels = list(run.manifest.labels)
    prev = load_run_model(run)
    if len(prev.layers) != len(model.layers):
        raise ConfigError(
            f"{run.path}: its model has a different structure ({len(prev.layers)} layers, "
            f"this one {len(model.layers)})"
        )
    for new, old in zip(model.layers, prev.layers):
        if new.name == OUTPUT_NAME:
            continue
        w_new, w_old = new.get_weights(), old.get_weights()
        if [w.shape for w in w_new] != [w.shape for w in w_old]:
            raise ConfigError(
                f"{run.path}: layer {old.name!r} has other weight shapes than this model's "
                "(a different input size or width for this arch?)"
            )
        new.set_weights(w_old)
    kernel, bias = model.get_layer(OUTPUT_NAME).get_weights()
    old_kernel, old_bias = prev.get_layer(OUTPUT_NAME).get_weights()
    index = {name: j for j, name in enumerate(prev_labels)}
    for j, name in enumerate(labels):
        if name in index:
            kernel[:, j], bias[j] = old_kernel[:, index[name]], old_bias[index[name]]
    model.get_layer(OUTPUT_NAME).set_weights([kernel, bias])
    return InitFrom(
        run=run.path.resolve().name,  # a name, not a path of this machine
        model_sha256=file_sha256(run.model_path),
        arch=run.manifest.arch,
        labels_kept=tuple(n for n in labels if n in index),
        labels_new=tuple(n for n in labels if n not in index),
        labels_dropped=tuple(n for n in prev_labels if n not in set(labels)),
        parent=run.manifest.lineage,
    )


def load_run_model(run: RunDir):
    """A checked run's Keras model (safe mode, uncompiled); ConfigError if Keras refuses it."""
    import keras

    try:
        return keras.models.load_model(run.model_path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises ValueError, OSError, zipfile errors ... for bad files
        raise ConfigError(
            f"{run.model_path}: cannot load Keras model ({first_line(exc)[:200]})"
        ) from None


def set_stage_trainable(model, stage: str, fine_tune: FineTune) -> None:
    """Freeze for `stage`: "head" (backbone frozen), "fine-tune" (per `fine_tune`), else all train."""
    import keras

    backbone = get_backbone(model)
    if backbone is None:
        return
    if stage == "head" or (stage == "fine-tune" and fine_tune is FineTune.NONE):
        backbone.trainable = False
        return
    backbone.trainable = True
    if stage != "fine-tune":
        return
    cut = int(len(backbone.layers) * (1 - TOP_FRACTION)) if fine_tune is FineTune.TOP else 0
    for i, layer in enumerate(backbone.layers):
        # Batch norm stays frozen: a few small batches would overwrite ImageNet-scale statistics.
        layer.trainable = i >= cut and not isinstance(layer, keras.layers.BatchNormalization)


def save_backbone_weights(run_dir: str | Path, path: str | Path) -> Path:
    """Write the backbone of a pretrainable-arch run as a `--weights` file (e.g. for another task)."""
    try:
        run = open_run(run_dir)
    except RunDirError as exc:
        raise ConfigError(str(exc)) from None
    arch = run.manifest.arch
    if arch not in {a.value for a in PRETRAINABLE}:
        raise ConfigError(
            f"{run_dir}: arch {arch} has no separate backbone; use --init-from to start from it"
        )
    model = load_run_model(run)
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ConfigError(f"{path}: a backbone weights file must end in .weights.h5")
    tmp = path.with_name(f".{path.name[: -len('.weights.h5')]}.tmp-{os.getpid()}.weights.h5")
    try:  # atomic: complete or not at all
        get_backbone(model).save_weights(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def backbone_weights(model) -> list[np.ndarray]:
    """Every backbone weight (trainable and moving statistics), for before/after comparisons."""
    backbone = get_backbone(model)
    return [np.array(w) for w in backbone.get_weights()] if backbone is not None else []


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
