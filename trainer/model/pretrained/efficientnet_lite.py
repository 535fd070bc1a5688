"""EfficientNet-Lite0 in builtin Keras layers: the published architecture, nothing custom.

EfficientNet-Lite (TensorFlow TPU repository, `efficientnet/lite`) is EfficientNet-B0 made for
integer accelerators: no squeeze-and-excitation, ReLU6 instead of swish, and the stem (32
channels) and head (1280) fixed across the family. Sixteen MBConv blocks in seven stages.

Three details must match the checkpoint (ImageNet weights trained in TensorFlow and converted to
PyTorch by the `efficientnet_lite_pytorch` port), each verified (see tests/test_pretrained.py
and the README's "Where the ImageNet weights come from"):
- padding is TensorFlow's 'same' (on a stride-2 convolution of an even input: nothing before,
  the remainder after), which the port reproduces with its `Conv2dStaticSamePadding`; PyTorch's
  symmetric padding would shift every stride-2 layer by a pixel;
- batch-norm epsilon 1e-3 (TensorFlow's EfficientNet default, the port's `batch_norm_epsilon`),
  not PyTorch's 1e-5;
- the input is (pixel - 127) / 128 (the lite builder's MEAN_RGB / STDDEV_RGB), applied by the
  caller's Rescaling layer so the backbone itself takes normalised pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPSILON = 1e-3
INPUT_MEAN = 127.0  # on 0-255 pixels
INPUT_STD = 128.0

# Stages of EfficientNet-Lite0 as (repeats, kernel, stride, expand ratio, output channels): the
# builder's 'r1_k3_s11_e1_i32_o16', 'r2_k3_s22_e6_i16_o24', ... with width and depth 1.0.
LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


@dataclass(frozen=True)
class Block:
    """One MBConv block: expand 1x1 (unless ratio 1), depthwise kxk, project 1x1, skip if same."""

    index: int
    in_channels: int
    out_channels: int
    expand: int
    kernel: int
    stride: int

    @property
    def hidden(self) -> int:
        return self.in_channels * self.expand

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def lite0_blocks() -> list[Block]:
    """The 16 blocks in order; the first of each stage carries its stride and channel change."""
    blocks, channels = [], STEM_CHANNELS
    for repeats, kernel, stride, expand, out in LITE0_STAGES:
        for r in range(repeats):
            blocks.append(
                Block(len(blocks), channels, out, expand, kernel, stride if r == 0 else 1)
            )
            channels = out
    return blocks


def efficientnet_lite0(input_size: int, name: str, bn_momentum: float = 0.99):
    """The backbone: normalised (batch, size, size, 3) -> (batch, size/32, size/32, 1280), ReLU6.

    Layer names are the checkpoint's modules in Keras spelling (see `imagenet.LAYER_NAMES`).
    """
    import keras
    from keras import layers

    def conv(x, filters, kernel, stride, name):
        return layers.Conv2D(
            filters, kernel, strides=stride, padding="same", use_bias=False, name=name
        )(x)

    def bn(x, name):
        return layers.BatchNormalization(momentum=bn_momentum, epsilon=BN_EPSILON, name=name)(x)

    def relu6(x, name):
        return layers.ReLU(max_value=6.0, name=name)(x)

    inputs = keras.Input((input_size, input_size, 3), name="normalised_image")
    x = relu6(bn(conv(inputs, STEM_CHANNELS, 3, 2, "stem_conv"), "stem_bn"), "stem_relu")
    for b in lite0_blocks():
        p = f"block{b.index}"
        h = x
        if b.expand != 1:
            h = conv(h, b.hidden, 1, 1, f"{p}_expand_conv")
            h = relu6(bn(h, f"{p}_expand_bn"), f"{p}_expand_relu")
        h = layers.DepthwiseConv2D(
            b.kernel, strides=b.stride, padding="same", use_bias=False, name=f"{p}_dw_conv"
        )(h)
        h = relu6(bn(h, f"{p}_dw_bn"), f"{p}_dw_relu")
        h = bn(conv(h, b.out_channels, 1, 1, f"{p}_project_conv"), f"{p}_project_bn")
        x = layers.Add(name=f"{p}_add")([x, h]) if b.residual else h
    x = relu6(bn(conv(x, HEAD_CHANNELS, 1, 1, "head_conv"), "head_bn"), "head_relu")
    return keras.Model(inputs, x, name=name)


def normalisation_layer():
    """(pixel - INPUT_MEAN) / INPUT_STD on raw 0-255 pixels, as a builtin Rescaling layer."""
    from keras import layers

    return layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="rescale")
