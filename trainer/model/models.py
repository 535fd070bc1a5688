"""Model builders. Each takes raw 0-255 RGB pixels and ends in a per-label sigmoid named "scores".

Normalisation lives inside the graph (a Rescaling layer), so the exported model takes the uint8
output of `load_image` unchanged. Only builtin Keras layers are used: the saved `.keras` file
loads with `keras.models.load_model(path, safe_mode=True)` without importing this package, and
every op converts to a TFLite builtin.
"""

from __future__ import annotations

from pathlib import Path

from ..config import PRETRAINABLE, Arch
from ..errors import ConfigError

OUTPUT_NAME = "scores"
BACKBONE_NAME = "backbone"  # the nested backbone model of the pretrainable archs


def build_model(
    arch: Arch | str,
    input_size: int,
    n_labels: int,
    weights: str | None = None,
    width: float = 1.0,
    dropout: float = 0.2,
):
    """A Keras model: (batch, input_size, input_size, 3) float 0-255 -> (batch, n_labels) sigmoid.

    With `weights` ("imagenet" or a backbone weights file; PRETRAINABLE archs) the backbone's
    batch norm is wired in inference mode for good: fine-tuning must not overwrite the pretrained
    moving statistics with those of a few small batches (the Keras transfer-learning recipe).
    """
    import keras

    arch = Arch(arch)
    if n_labels < 1:
        raise ConfigError(f"need at least one label, got {n_labels}")
    if weights is not None and arch not in PRETRAINABLE:
        raise ConfigError(
            f"pretrained weights are only available for arch {' or '.join(a.value for a in PRETRAINABLE)}"
        )
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise ConfigError(f"{weights}: weights file not found")
    inputs = keras.Input((input_size, input_size, 3), name="image")
    if arch is Arch.SEED:
        x = _seed(inputs)
    elif arch is Arch.COMPACT:
        x = _compact(inputs, width, dropout)
    elif arch is Arch.EFFICIENTNET_LITE0:
        x = _efficientnet_lite0(inputs, input_size, weights, dropout)
    else:
        x = _mobilenet(arch, inputs, input_size, weights, width, dropout)
    outputs = keras.layers.Dense(n_labels, activation="sigmoid", name=OUTPUT_NAME)(x)
    return keras.Model(inputs, outputs, name=f"{arch.value}_multilabel")


def _seed(x):
    """The minimal baseline, exactly as specified: two conv/pool stages and a dense layer."""
    from keras import layers

    x = layers.Rescaling(1.0 / 255, name="rescale")(x)
    x = layers.Conv2D(32, (3, 3), activation="relu")(x)
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Conv2D(64, (3, 3), activation="relu")(x)
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Flatten()(x)
    return layers.Dense(128, activation="relu")(x)


# Keras's default 0.99 needs ~500 steps before the moving variance forgets its init of 1; a
# small dataset gives ~40 steps per epoch, so validation (inference mode) looked like chance for
# the first 10+ epochs. 0.9 tracks the batch statistics within a couple of epochs.
BN_MOMENTUM = 0.9

# (output channels, stride) of the depthwise-separable blocks of `compact`.
COMPACT_BLOCKS = ((32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1))


def _compact(x, width: float, dropout: float):
    """MobileNet-v1-style network built for int8: conv + BN + ReLU only.

    BN folds into the conv weights at conversion and plain ReLU (no swish / hard-swish) keeps
    activation ranges simple, which is what full-integer quantization likes. Global average
    pooling (no Flatten) keeps the head small and lets objects sit anywhere in the image.
    """
    from keras import layers

    def ch(c: int) -> int:
        return max(8, int(round(c * width / 8)) * 8)

    x = layers.Rescaling(1.0 / 255, name="rescale")(x)
    x = layers.Conv2D(ch(16), 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for i, (c, s) in enumerate(COMPACT_BLOCKS):
        x = layers.DepthwiseConv2D(3, strides=s, padding="same", use_bias=False, name=f"b{i}_dw")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"b{i}_dw_bn")(x)
        x = layers.ReLU(name=f"b{i}_dw_relu")(x)
        x = layers.Conv2D(ch(c), 1, use_bias=False, name=f"b{i}_pw")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"b{i}_pw_bn")(x)
        x = layers.ReLU(name=f"b{i}_pw_relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return layers.Dropout(dropout, name="dropout")(x)


def _mobilenet(arch: Arch, x, input_size: int, weights: str | None, width: float, dropout: float):
    """A Keras MobileNet backbone (no top) + global pooling; the input stays raw 0-255 pixels.

    MobileNetV2 (ReLU6 only) is the transfer-learning default: every activation is bounded and
    folds into int8 cleanly. MobileNetV3Small's hard-swish loses more under int8.
    """
    import keras
    from keras import layers

    try:
        if arch is Arch.MOBILENETV2:
            x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(
                x
            )  # what its weights expect
            backbone = keras.applications.MobileNetV2(
                input_shape=(input_size, input_size, 3),
                alpha=width,
                include_top=False,
                weights=weights,
                pooling=None,
                name=BACKBONE_NAME,
            )
        else:
            backbone = keras.applications.MobileNetV3Small(
                input_shape=(input_size, input_size, 3),
                alpha=width,
                include_top=False,
                weights=weights,
                include_preprocessing=True,  # Rescaling(1/127.5, offset=-1) inside the graph
                pooling=None,
                name=BACKBONE_NAME,
            )
    except ValueError as exc:  # e.g. an alpha or input size ImageNet weights do not exist for
        raise ConfigError(f"{arch.value}: {str(exc).strip().splitlines()[0]}") from None
    # Keras builds them with BN momentum 0.999: from scratch on a few hundred steps the moving
    # statistics stay near their init and inference-mode validation looks like chance (see
    # BN_MOMENTUM). Momentum only affects training updates, so pretrained weights are unaffected.
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    x = backbone(x, training=False) if weights is not None else backbone(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return layers.Dropout(dropout, name="dropout")(x)


def _efficientnet_lite0(x, input_size: int, weights: str | None, dropout: float):
    """EfficientNet-Lite0 (trainer/model/pretrained/) + global pooling, normalised inside the graph.

    "imagenet" reads the installed package's checkpoint (no network); a file is a backbone
    saved by `trainer.model.transfer.save_backbone_weights`.
    """
    from keras import layers

    from ..errors import WeightsError
    from .pretrained.efficientnet_lite import efficientnet_lite0, normalisation_layer
    from .pretrained.imagenet import load_imagenet

    # BN_MOMENTUM for a random start (see there); a pretrained one keeps batch norm frozen.
    backbone = efficientnet_lite0(input_size, BACKBONE_NAME, bn_momentum=BN_MOMENTUM)
    if weights == "imagenet":
        load_imagenet(backbone)
    elif weights is not None:
        try:
            backbone.load_weights(weights)
        except (ValueError, OSError) as exc:
            raise WeightsError(
                f"{Path(weights).name}: not an efficientnet_lite0 backbone weights file "
                f"({str(exc).strip().splitlines()[0][:160]})"
            ) from None
    x = normalisation_layer()(x)
    x = backbone(x, training=False) if weights is not None else backbone(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return layers.Dropout(dropout, name="dropout")(x)


def get_backbone(model):
    """The nested backbone model of a pretrainable arch, or None (seed, compact)."""
    try:
        return model.get_layer(BACKBONE_NAME)
    except ValueError:
        return None
