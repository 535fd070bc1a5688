"""Sum-preserving int8 weight rounding (exporter/rounding.py): the numpy core on edge cases, and
the real converter keeping the integers it is given."""

from __future__ import annotations

import numpy as np
import pytest

from exporter.rounding import INT8_MAX, grid_scales, round_kernel, sum_preserving_round


def _rows(seed: int, n: int = 200, taps: int = 9) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u = rng.uniform(-INT8_MAX, INT8_MAX, size=(n, taps))
    u[np.arange(n), rng.integers(0, taps, n)] = INT8_MAX * rng.choice([-1, 1], n)  # the scale tap
    return u


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sums_survive_and_every_weight_stays_within_one_step(seed):
    u = _rows(seed)
    k = sum_preserving_round(u)
    assert np.array_equal(k, np.round(k))  # integers
    assert np.all(np.abs(k - u) < 1.0)
    assert np.all(np.abs(k.sum(axis=1) - u.sum(axis=1)) <= 0.5 + 1e-9)
    assert np.all(np.abs(k) <= INT8_MAX)
    ends = np.abs(u) >= INT8_MAX
    assert np.array_equal(k[ends], u[ends])  # the tap that sets the scale never moves
    # round-to-nearest misses the sum on most rows: the test can tell the two apart
    assert np.mean(np.abs(np.round(u).sum(axis=1) - u.sum(axis=1)) > 0.5) > 0.3


def test_rows_nearest_already_balances_are_left_as_they_are():
    u = np.array([[0.2, -0.2, 5.4, -5.4], [1.0, 2.0, 3.0, 4.0]])
    assert np.array_equal(sum_preserving_round(u), np.round(u))


def test_the_fewest_taps_nearest_to_the_other_rounding_flip():
    u = np.array([[0.4, 0.45, 0.3, 0.1]])  # sum 1.25: nearest gives 0; one tap must go up
    assert sum_preserving_round(u).tolist() == [[0.0, 1.0, 0.0, 0.0]]


def test_edges_zero_rows_and_bad_shapes():
    assert np.array_equal(sum_preserving_round(np.zeros((3, 9))), np.zeros((3, 9)))
    one = np.array([[126.6, 126.6, -127.0]])  # cannot go past 127, cannot move the end tap
    k = sum_preserving_round(one)
    assert np.all(np.abs(k) <= INT8_MAX) and k[0, 2] == -127
    with pytest.raises(ValueError):
        sum_preserving_round(np.float64(1.0))
    with pytest.raises(ValueError):
        round_kernel(np.zeros((3, 3, 2)), per_channel=True)


def test_an_edge_detecting_kernel_keeps_its_zero_response_to_flat_patches():
    """A large kernel summing to ~0 (an edge detector) on the converter's grid: nearest moves
    its flat-patch response by several times its true value, sum-preserving does not."""
    rng = np.random.default_rng(3)
    w = rng.normal(0, 3.0, size=(3, 3, 1, 32))
    w -= w.mean(axis=(0, 1), keepdims=True)  # every channel sums to 0
    s = grid_scales(w, -1)
    nearest = np.round(w / s) * s
    balanced = round_kernel(w, per_channel=True)
    assert np.all(np.abs(balanced.sum(axis=(0, 1))) <= 0.5 * s.ravel() + 1e-12)
    assert (np.abs(nearest.sum(axis=(0, 1))) / s.ravel()).max() > 1.0  # nearest leaks
    # same grid: the converter will find nothing to round
    assert np.allclose(balanced / s, np.round(balanced / s))
    assert np.array_equal(np.abs(balanced).max(axis=(0, 1, 2)), np.abs(w).max(axis=(0, 1, 2)))


@pytest.mark.slow
@pytest.mark.parametrize("per_channel", [True, False])
def test_the_converter_keeps_the_balanced_integers_and_the_model_gets_its_weights_back(
    per_channel,
):
    """Real TFLite conversion of a conv + batch norm and a depthwise conv + batch norm: the int8
    kernels in the file are exactly the planned integers (batch norm folded), and the Keras model
    is unchanged afterwards."""
    pytest.importorskip("tensorflow")
    import keras

    from edge_runtime.inference.backend import interpreter_class
    from exporter.convert import convert
    from exporter.modes import WeightRounding, WeightScales

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255)(inp)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="c")(x)
    x = keras.layers.BatchNormalization(name="c_bn")(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="d")(x)
    x = keras.layers.BatchNormalization(name="d_bn")(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(2, activation="sigmoid")(x))
    rng = np.random.default_rng(0)
    for name in ("c_bn", "d_bn"):
        bn = model.get_layer(name)
        g, b, m, v = bn.get_weights()
        bn.set_weights([rng.uniform(0.5, 3, g.shape), b, m, rng.uniform(0.1, 2, v.shape)])
    before = [w.copy() for w in model.get_weights()]
    images = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(8)]
    scales = WeightScales.PER_CHANNEL if per_channel else WeightScales.PER_TENSOR
    data = convert(model, "int8", lambda: iter(images), scales, WeightRounding.SUM_PRESERVING)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))

    cls, _ = interpreter_class()
    interp = cls(model_content=data)
    kernels = {}
    for d in interp.get_tensor_details():
        if d["dtype"] == np.int8 and len(d["shape"]) == 4 and d["shape"][1:3].tolist() == [3, 3]:
            kernels[int(d["shape"][0])] = interp.get_tensor(d["index"])  # 8: conv, 1: depthwise
    assert set(kernels) == {1, 8}

    def planned(conv, bn, depthwise):
        w = conv.get_weights()[0]
        g, _, _, v = bn.get_weights()
        folded = (w.reshape(3, 3, 1, -1) if depthwise else w) * (g / np.sqrt(v + bn.epsilon))
        k = round_kernel(folded, per_channel) / grid_scales(folded, -1 if per_channel else None)
        return np.round(k).astype(np.int8)

    conv_k = planned(model.get_layer("c"), model.get_layer("c_bn"), False)
    dw_k = planned(model.get_layer("d"), model.get_layer("d_bn"), True)
    assert np.array_equal(kernels[8], np.transpose(conv_k, (3, 0, 1, 2)))  # TFLite: O,H,W,I
    assert np.array_equal(kernels[1], np.transpose(dw_k, (2, 0, 1, 3)))  # TFLite: 1,H,W,C
    nearest = convert(model, "int8", lambda: iter(images), scales, WeightRounding.NEAREST)
    assert nearest != data  # the option changes the file


# ------------------------------------------------------- the input normalisation, shift first


def test_whole_shift_only_for_offsets_that_are_whole_pixels():
    from exporter.normalisation import whole_shift

    assert whole_shift(1 / 128, -127 / 128) == -127  # EfficientNet-Lite0
    assert whole_shift(1 / 255, 0.0) is None  # no offset: nothing to split
    assert whole_shift(1 / 127.5, -1.0) is None  # MobileNetV2: -127.5 is not a whole pixel
    assert whole_shift(0.0, 1.0) is None
    assert whole_shift(float("nan"), 1.0) is None


@pytest.mark.slow
def test_shift_first_normalisation_is_the_same_function_and_converts_to_one_exact_op():
    """The copy gives the model's outputs; converted, the pixels go through one ADD at scale 1
    (no MUL requantizing them), and the uint8 input keeps scale 1 / zero point 0 (the runtime's
    untouched-frame path)."""
    pytest.importorskip("tensorflow")
    import keras

    from edge_runtime.inference.backend import interpreter_class
    from exporter.convert import convert, op_names
    from exporter.normalisation import shift_then_scale

    keras.utils.set_random_seed(1)
    inp = keras.Input((24, 24, 3), name="image")
    x = keras.layers.Rescaling(1 / 128, offset=-127 / 128, name="rescale")(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(2, activation="sigmoid", name="scores")(x))
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (16, 24, 24, 3), dtype=np.uint8)
    images[0, 0, 0] = (0, 255, 0)  # the full pixel range, as photos have
    copy = shift_then_scale(model, images[:4])
    assert copy is not model
    batch = images.astype(np.float32)
    assert np.allclose(copy(batch), model(batch), atol=1e-6)
    bare_in = keras.Input((24, 24, 3))
    bare = keras.Model(bare_in, keras.layers.GlobalAveragePooling2D()(bare_in))
    assert shift_then_scale(bare) is bare  # no leading Rescaling: left as built

    split = convert(model, "int8", lambda: iter(images), split_normalisation=True)
    plain = convert(model, "int8", lambda: iter(images), split_normalisation=False)
    assert "MUL" in op_names(plain) and "MUL" not in op_names(split)
    cls, _ = interpreter_class()
    interp = cls(model_content=split)
    detail = interp.get_input_details()[0]
    assert detail["dtype"] == np.uint8 and detail["quantization"] == (1.0, 0)
    shifted = [d for d in interp.get_tensor_details() if d["name"].endswith("shift_1/add")]
    assert [d["quantization"][0] for d in shifted] == [1.0]  # whole pixels, exactly
