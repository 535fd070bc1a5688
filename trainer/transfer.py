"""Starting points other than random: a pretrained backbone (`weights`) or a previous run (`init_from`).

Transfer learning trains in two stages (see `stages.py`): the head alone with the backbone frozen,
then (per `FineTune`) the top of the backbone at a lower rate. Batch norm stays in inference mode
throughout, so stage 1 leaves every backbone weight, moving statistics included, exactly as
loaded. `init_from` copies a previous run's weights layer by layer and remaps its head by label
name: shared labels keep their column, new labels start fresh, dropped ones go.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .config import PRETRAINABLE, Arch, FineTune, TrainConfig
from .errors import ConfigError
from .models import OUTPUT_NAME, build_model, get_backbone

TOP_FRACTION = 1 / 3  # FineTune.TOP trains the last third of the backbone's layers


def start_model(config: TrainConfig, labels: list[str]):
    """The model training starts from, and its lineage record for the manifest."""
    model = build_model(
        config.arch, config.input_size, len(labels), weights=config.weights, width=config.width
    )
    if config.init_from:
        return model, {
            "start": "init_from",
            "init_from": init_from_run(model, config.init_from, labels),
        }
    if config.weights:
        return model, {
            "start": "pretrained",
            "weights": describe_weights(config.weights, config.arch),
        }
    return model, {"start": "scratch"}


def check_start(config: TrainConfig) -> None:
    """Fail now, before the data is decoded, if the pretrained weights cannot be had."""
    if config.weights == "imagenet" and config.arch is Arch.EFFICIENTNET_LITE0:
        from .pretrained.imagenet import checkpoint

        checkpoint()  # WeightsError naming the package to install


def describe_weights(weights: str, arch: Arch | None = None) -> dict:
    """Where pretrained weights came from, without the training machine's paths."""
    if weights == "imagenet" and arch is Arch.EFFICIENTNET_LITE0:
        from .pretrained.imagenet import checkpoint

        return checkpoint().describe()  # the package, its version, the file's SHA-256
    if weights == "imagenet":  # Keras's download (mobilenets)
        return {"source": "imagenet"}
    return {"source": "file", "file": Path(weights).name, "sha256": file_sha256(weights)}


def init_from_run(model, run_dir: str | Path, labels: list[str]) -> dict:
    """Copy a previous run's weights into `model` (same arch); the head is remapped by label name."""
    import keras

    from .artifacts import MANIFEST_FILE, MODEL_FILE

    run = Path(run_dir)
    prev_manifest = json.loads((run / MANIFEST_FILE).read_text())
    prev_labels = [str(v) for v in prev_manifest["labels"]]
    prev = keras.models.load_model(run / MODEL_FILE, safe_mode=True, compile=False)
    if len(prev.layers) != len(model.layers):
        raise ConfigError(
            f"{run_dir}: its model has a different structure ({len(prev.layers)} layers, "
            f"this one {len(model.layers)})"
        )
    for new, old in zip(model.layers, prev.layers):
        if new.name == OUTPUT_NAME:
            continue
        w_new, w_old = new.get_weights(), old.get_weights()
        if [w.shape for w in w_new] != [w.shape for w in w_old]:
            raise ConfigError(
                f"{run_dir}: layer {old.name!r} has other weight shapes than this model's "
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
    return {
        "run": run.resolve().name,  # a name, not a path of this machine
        "model_sha256": file_sha256(run / MODEL_FILE),
        "arch": prev_manifest.get("arch"),
        "labels_kept": [n for n in labels if n in index],
        "labels_new": [n for n in labels if n not in index],
        "labels_dropped": [n for n in prev_labels if n not in set(labels)],
        "parent": prev_manifest.get("lineage"),
    }


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
    import keras

    from .artifacts import MANIFEST_FILE, MODEL_FILE

    run = Path(run_dir)
    arch = json.loads((run / MANIFEST_FILE).read_text()).get("arch")
    if arch not in {a.value for a in PRETRAINABLE}:
        raise ConfigError(
            f"{run_dir}: arch {arch} has no separate backbone; use --init-from to start from it"
        )
    model = keras.models.load_model(run / MODEL_FILE, safe_mode=True, compile=False)
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
