"""Recipes and defaults: `--recipe seed` is the seed script; the CLI's defaults come from TrainConfig."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest

from edge_runtime.cli.kit import config_default
from edge_runtime.evaluation.dataset import read_labels_csv
from edge_runtime.inference.preprocess import load_image
from trainer import TrainConfig
from trainer.config import (
    ARCH_DEFAULTS,
    NO_AUGMENT,
    NO_WEIGHTS,
    RECIPES,
    Arch,
    HeadFeatures,
    Recipe,
    Thresholds,
)
from trainer.errors import ConfigError
from trainer.fit.plan import resolve

# How far the toolkit's seed recipe may land from the seed script on the same data, in held-out
# test mAP and macro-F1 (each the mean of two seeds). The old toolkit "seed" row (our defaults on
# the seed network) was 0.28 mAP below the script on the data; this test would catch that.
# Measured once here: mAP 0.458 (script) vs 0.439 (recipe), macro-F1 0.259 vs 0.211. Both are
# only modestly above chance on this small set (5 epochs of 384 images). A later run with the same
# seeds gave the recipe macro-F1 0.355 (the script's stayed 0.259): F1 at a fixed 0.5 swings with
# every label whose scores sit near 0.5, and training is not bit-reproducible from run to run. So
# mAP (threshold-free) holds the tight bound, macro-F1 a looser one that still catches the 0.28 gap.
SEED_TOLERANCE = {"map": 0.08, "macro_f1": 0.15}


def test_seed_recipe_is_the_seed_script_settings():
    c = TrainConfig.from_recipe("seed", data="d.csv", out="o")
    assert (c.arch, c.input_size, c.learning_rate, c.epochs, c.batch_size, c.val_fraction) == (
        Arch.SEED,
        64,
        1e-3,
        5,
        32,
        0.2,
    )
    assert c.pos_weight == "none" and c.augment == NO_AUGMENT and not c.augment.enabled
    assert c.early_stop is False and c.thresholds is Thresholds.HALF and c.weights is None


def test_recipe_overrides_win_and_default_recipe_is_the_plain_config():
    c = TrainConfig.from_recipe(Recipe.SEED, data="d.csv", out="o", epochs=3, input_size=32)
    assert (c.epochs, c.input_size, c.learning_rate) == (3, 32, 1e-3)
    assert TrainConfig.from_recipe("default", data="d.csv", out="o") == TrainConfig(
        data="d.csv", out="o"
    )
    with pytest.raises(ConfigError, match="recipe must be one of"):
        TrainConfig.from_recipe("nope", data="d.csv", out="o")


@pytest.mark.parametrize("arch", list(Arch))
def test_per_arch_defaults_fill_only_what_is_not_given(arch):
    c = resolve(TrainConfig(data="d.csv", out="o", arch=arch)).config
    assert (c.input_size, c.learning_rate) == (
        ARCH_DEFAULTS[arch].input_size,
        ARCH_DEFAULTS[arch].learning_rate,
    )
    c = resolve(TrainConfig(data="d.csv", out="o", arch=arch, input_size=48, learning_rate=0.01))
    assert (c.config.input_size, c.config.learning_rate) == (48, 0.01)
    default = resolve(TrainConfig(data="d.csv", out="o")).config
    assert (default.arch, default.weights, default.pretrained) == (
        Arch.EFFICIENTNET_LITE0,
        "imagenet",  # the ImageNet start, from the installed package
        True,
    )
    # The config itself leaves them open: resolving is the step that fills them.
    assert TrainConfig(data="d.csv", out="o").input_size is None


def test_weights_default_per_arch_and_none_means_random():
    def resolved(**kwargs):
        return resolve(TrainConfig(data="d.csv", out="o", **kwargs)).config

    assert resolved(arch="compact").weights is None
    assert resolved(arch="mobilenetv2").weights is None  # a download: asked for, never default
    assert resolved(arch="compact", weights="none").weights is None
    scratch = resolved(weights="none")
    # "none" is kept where the arch's default is pretrained: the recorded config, fed back in,
    # asks for the same random start.
    assert scratch.arch is Arch.EFFICIENTNET_LITE0 and scratch.weights == NO_WEIGHTS
    assert not scratch.pretrained
    assert resolve(scratch).config == scratch
    assert resolve(TrainConfig(**scratch.to_dict())).config.weights == NO_WEIGHTS
    with pytest.raises(ConfigError, match="one width"):
        resolved(width=0.5)


def _cli_config(monkeypatch, args):
    """The resolved TrainConfig the CLI builds for `args` (training replaced by a recorder)."""
    import importlib

    from click.testing import CliRunner

    from trainer.cli import cli

    train_mod = importlib.import_module(
        "trainer.fit.train"
    )  # the module (the package exports a function of its name)
    seen = {}

    def record(plan):
        seen["config"] = plan.config
        raise ConfigError("recorded")

    monkeypatch.setattr(train_mod, "train", record)
    r = CliRunner().invoke(cli, ["d.csv", "--out", "o", *args])
    assert r.exit_code == 2 and "recorded" in r.stderr, r.output
    return seen["config"]


def test_cli_defaults_come_from_train_config(monkeypatch):
    import click

    from trainer.cli import train_cmd

    unset = (None, getattr(click.core, "UNSET", None))  # click >= 8.3 marks "no default" with UNSET
    config_fields = {f.name for f in fields(TrainConfig)}
    for param in train_cmd.params:
        if (
            param.name in config_fields and not param.required
        ):  # None = "not given": TrainConfig/recipe decides
            assert any(param.default is u for u in unset), (
                f"--{param.name} writes its own default {param.default!r}"
            )
    assert _cli_config(monkeypatch, []) == resolve(TrainConfig(data="d.csv", out="o")).config
    seed = _cli_config(monkeypatch, ["--recipe", "seed", "--epochs", "3"])
    assert seed == resolve(TrainConfig.from_recipe("seed", data="d.csv", out="o", epochs=3)).config
    c = _cli_config(monkeypatch, ["--head-features", "cached", "--weights", "none"])
    assert (c.head_features, c.weights, c.arch) == (
        HeadFeatures.CACHED,
        NO_WEIGHTS,
        Arch.EFFICIENTNET_LITE0,
    )
    aug = _cli_config(monkeypatch, ["--translate", "0.2", "--no-flip"]).augment
    assert (aug.translate, aug.flip, aug.brightness) == (
        0.2,
        False,
        config_default(TrainConfig, "augment").brightness,
    )
    assert _cli_config(monkeypatch, ["--recipe", "seed", "--vflip"]).augment == RECIPES[
        Recipe.SEED
    ]["augment"].__class__(**{**RECIPES[Recipe.SEED]["augment"].__dict__, "vflip": True})


def seed_script(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, seed: int) -> np.ndarray:
    """The seed's own script, as the issue describes it: model.fit on arrays, plain BCE, 0.5."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((64, 64, 3)),
            layers.Rescaling(1.0 / 255),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(y.shape[1], activation="sigmoid"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    model.fit(x, y, validation_split=0.2, epochs=5, batch_size=32, verbose=0)
    return model.predict(x_test, verbose=0)


@pytest.mark.slow
def test_seed_recipe_matches_the_seed_script(tmp_path):
    import keras

    from edge_runtime.evaluation.metrics import multilabel_report
    from trainer import train
    from trainer.demo.demo_data import DemoConfig, make_demo_dataset

    train_csv, test_csv = make_demo_dataset(
        DemoConfig(str(tmp_path / "d"), n_train=480, n_test=160, image_size=64, seed=5)
    )
    tr, te = read_labels_csv(train_csv), read_labels_csv(test_csv)
    assert tr.labels == te.labels
    x = np.stack([load_image(p, (64, 64)) for p in tr.paths]).astype(np.float32)
    x_test = np.stack([load_image(p, (64, 64)) for p in te.paths]).astype(np.float32)
    script, ours = [], []
    for seed in (0, 1):
        s = seed_script(x, tr.y.astype(np.float32), x_test, seed)
        script.append(multilabel_report(te.y, s, 0.5, te.labels))
        res = train(
            TrainConfig.from_recipe(
                "seed",
                data=str(train_csv),
                out=str(tmp_path / f"r{seed}"),
                seed=seed,
                verbose=False,
            )
        )
        assert res.thresholds == [0.5] * len(te.labels) and res.manifest.thresholds_source == "0.5"
        assert res.manifest.training.epochs_run == 5 and res.manifest.training.best_epoch == 5
        model = keras.models.load_model(res.run_dir / "model.keras", compile=False)
        ours.append(multilabel_report(te.y, model.predict(x_test, verbose=0), 0.5, te.labels))
    for key in ("map", "macro_f1"):
        a, b = np.mean([r[key] for r in script]), np.mean([r[key] for r in ours])
        print(f"{key}: seed script {a:.3f}, --recipe seed {b:.3f}")
        assert abs(a - b) <= SEED_TOLERANCE[key], (
            f"{key}: seed script {a:.3f} vs --recipe seed {b:.3f}"
        )


def test_clutter_demo_writes_a_long_tail_of_small_objects(tmp_path):
    from click.testing import CliRunner

    from trainer.cli import cli
    from trainer.demo.clutter_demo import ClutterConfig

    r = CliRunner().invoke(
        cli,
        [
            "make-demo",
            str(tmp_path / "c"),
            "--variant",
            "clutter",
            "--n-train",
            "200",
            "--n-test",
            "2",
            "--size",
            "32",
        ],
    )
    assert r.exit_code == 0, r.output
    t = read_labels_csv(tmp_path / "c" / "train.csv")
    assert (
        len(t) == 200
        and t.paths[0].suffix == ".jpg"
        and load_image(t.paths[0], (32, 32)).shape == (32, 32, 3)
    )
    freq = dict(zip(t.labels, t.y.mean(axis=0)))
    expected = dict(zip(ClutterConfig("x").labels, ClutterConfig("x").presence()))
    assert freq["circle"] > 0.3 and freq["circle"] > 3 * freq.get(
        "ring", 0
    )  # the tail: first vs last label
    assert all(abs(freq[n] - expected[n]) < 0.1 for n in freq)
    with pytest.raises(ValueError, match="unknown clutter demo labels"):
        ClutterConfig("x", labels=("circle", "blob"))
