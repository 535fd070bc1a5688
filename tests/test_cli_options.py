"""Every option of every CLI, driven once through click's CliRunner, and what it produced.

One table per command: option -> (the arguments that drive it, a check of what the CLI built).
`test_every_option_has_an_entry` lists each command's options from click itself, so an option
added later without a line here fails the suite; adding one is one line in the table.

The work is stubbed at the library boundary (the `train` / `export` / `run_predict` function the
CLI calls, which receives the config), so this runs in seconds: no TensorFlow, no training.
edge-infer's small commands (eval, info, verify, bench) run for real on the tiny fixture models.
A check takes (config, result): the config the CLI handed over and click's result.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

HERE = Path(__file__).parent

# ------------------------------------------------------------------------------- edge-train
# Imported lazily: the lean environments (which run the edge-infer half) have no trainer deps.


def _train_table(init_run: str) -> dict:
    from trainer.config import (
        NO_AUGMENT,
        Arch,
        Distribute,
        FineTune,
        HeadFeatures,
        Loss,
        Thresholds,
    )

    return {
        "--out": ([], lambda c, r: c.out.endswith("run")),
        "--recipe": (["--recipe", "seed"], lambda c, r: c.arch is Arch.SEED and c.epochs == 5),
        "--val-data": (["--val-data", "v.csv"], lambda c, r: c.val_data == "v.csv"),
        "--arch": (["--arch", "seed"], lambda c, r: c.arch is Arch.SEED),
        "--input-size": (["--input-size", "48"], lambda c, r: c.input_size == 48),
        "--epochs": (["--epochs", "7"], lambda c, r: c.epochs == 7),
        "--batch-size": (["--batch-size", "9"], lambda c, r: c.batch_size == 9),
        "--lr": (["--lr", "0.0123"], lambda c, r: c.learning_rate == 0.0123),
        "--patience": (["--patience", "11"], lambda c, r: c.patience == 11),
        "--early-stop": (["--no-early-stop", "--early-stop"], lambda c, r: c.early_stop is True),
        "--no-early-stop": (["--no-early-stop"], lambda c, r: c.early_stop is False),
        "--val-fraction": (["--val-fraction", "0.35"], lambda c, r: c.val_fraction == 0.35),
        "--seed": (["--seed", "42"], lambda c, r: c.seed == 42),
        "--pos-weight": (["--pos-weight", "1,2.5"], lambda c, r: c.pos_weight == (1.0, 2.5)),
        "--loss": (["--loss", "focal"], lambda c, r: c.loss is Loss.FOCAL),
        "--focal-gamma": (["--focal-gamma", "3.5"], lambda c, r: c.focal_gamma == 3.5),
        "--thresholds": (["--thresholds", "0.5"], lambda c, r: c.thresholds is Thresholds.HALF),
        "--no-augment": (["--no-augment"], lambda c, r: c.augment == NO_AUGMENT),
        "--no-flip": (["--no-flip"], lambda c, r: c.augment.flip is False and c.augment.enabled),
        "--vflip": (["--vflip"], lambda c, r: c.augment.vflip is True),
        "--translate": (["--translate", "0.05"], lambda c, r: c.augment.translate == 0.05),
        "--brightness": (["--brightness", "0.3"], lambda c, r: c.augment.brightness == 0.3),
        "--contrast": (["--contrast", "0.25"], lambda c, r: c.augment.contrast == 0.25),
        "--weights": (
            ["--arch", "mobilenetv2", "--weights", "imagenet"],
            lambda c, r: c.weights == "imagenet" and c.pretrained,
        ),
        "--fine-tune": (
            ["--arch", "mobilenetv3", "--weights", "imagenet", "--fine-tune", "all"],
            lambda c, r: c.fine_tune is FineTune.ALL,
        ),
        "--head-epochs": (
            [
                "--arch",
                "mobilenetv2",
                "--weights",
                "imagenet",
                "--epochs",
                "9",
                "--head-epochs",
                "2",
            ],
            lambda c, r: c.head_epochs == 2 and c.stage1_epochs == 2,
        ),
        "--head-features": (
            ["--head-features", "cached"],
            lambda c, r: c.head_features is HeadFeatures.CACHED and c.pretrained,
        ),
        "--init-from": (["--init-from", init_run], lambda c, r: c.init_from == init_run),
        # efficientnet_lite0, the default, has one width
        "--width": (["--arch", "compact", "--width", "0.5"], lambda c, r: c.width == 0.5),
        "--workers": (["--workers", "3"], lambda c, r: c.workers == 3),
        "--cache-dir": (["--cache-dir", "cache"], lambda c, r: c.cache_dir == "cache"),
        # Removed (one input pipeline): a one-line usage error before anything is trained.
        "--in-memory": (
            ["--in-memory"],
            lambda c, r: c is None and r.exit_code == 2 and "--in-memory was removed" in r.stderr,
        ),
        "--distribute": (
            ["--distribute", "mirrored"],
            lambda c, r: c.distribute is Distribute.MIRRORED,
        ),
        "--json": (["--json"], lambda c, r: json.loads(r.stdout) == STUB_RESULT),
        "--quiet": (["--quiet"], lambda c, r: c.verbose is False),
    }


def _demo_table() -> dict:
    return {
        "--n-train": (["--n-train", "12"], lambda c, r: c.n_train == 12),
        "--n-test": (["--n-test", "5"], lambda c, r: c.n_test == 5),
        "--size": (["--size", "40"], lambda c, r: c.image_size == 40),
        "--seed": (["--seed", "9"], lambda c, r: c.seed == 9),
        "--variant": (
            ["--variant", "clutter"],
            lambda c, r: type(c).__name__ == "ClutterConfig",
        ),
    }


# ------------------------------------------------------------------------------- edge-export


def _export_table() -> dict:
    from exporter.modes import QuantMode, WeightRounding, WeightScales

    return {
        "--quant": (["--quant", "float16"], lambda c, r: c.quant is QuantMode.FLOAT16),
        "--out": (["--out", "m.tflite"], lambda c, r: c.out == "m.tflite"),
        "--data": (["--data", "calib.csv"], lambda c, r: c.data == "calib.csv"),
        "--val-data": (["--val-data", "v.csv"], lambda c, r: c.val_data == "v.csv"),
        "--calibration-size": (
            ["--calibration-size", "17"],
            lambda c, r: c.calibration_size == 17,
        ),
        "--per-tensor": (
            ["--per-tensor"],
            lambda c, r: c.weight_scales is WeightScales.PER_TENSOR and len(c.candidates()) == 1,
        ),
        "--per-channel": (
            ["--per-channel"],
            lambda c, r: c.weight_scales is WeightScales.PER_CHANNEL,
        ),
        "--weight-rounding": (
            ["--weight-rounding", "nearest"],
            lambda c, r: c.weight_rounding is WeightRounding.NEAREST,
        ),
        "--max-abs": (
            ["--quant", "float32", "--max-abs", "0.003"],
            lambda c, r: c.tolerances(QuantMode.FLOAT32).max_abs == 0.003,
        ),
        "--mean-abs": (
            ["--quant", "float32", "--mean-abs", "0.0004"],
            lambda c, r: c.tolerances(QuantMode.FLOAT32).mean_abs == 0.0004,
        ),
        "--min-agreement": (
            ["--min-agreement", "0.9"],
            lambda c, r: c.tolerances(QuantMode.INT8).min_agreement == 0.9,
        ),
        "--max-map-drop": (
            ["--max-map-drop", "0.05"],
            lambda c, r: c.tolerances(QuantMode.INT8).max_map_drop == 0.05,
        ),
        "--min-map": (
            ["--min-map", "0.7"],
            lambda c, r: c.tolerances(QuantMode.INT8).min_map == 0.7,
        ),
        "--report": (["--report", "p.json"], lambda c, r: str(c.report_path()) == "p.json"),
        "--threads": (["--threads", "3"], lambda c, r: c.threads == 3),
        "--backend": (["--backend", "tensorflow"], lambda c, r: c.backend == "tensorflow"),
        "--cache-dir": (["--cache-dir", "cache"], lambda c, r: c.cache_dir == "cache"),
        "--json": (["--json"], lambda c, r: json.loads(r.stdout) == STUB_RESULT),
        "--name": (["--name", "birds"], lambda c, r: c.model_info.name == "birds"),
        "--description": (
            ["--description", "garden birds"],
            lambda c, r: c.model_info.description == "garden birds",
        ),
        "--model-version": (
            ["--model-version", "2.1"],
            lambda c, r: c.model_info.version == "2.1",
        ),
        "--author": (["--author", "Ada"], lambda c, r: c.model_info.author == "Ada"),
        "--license": (["--license", "MIT"], lambda c, r: c.model_info.license == "MIT"),
        "--score-calibration": (["--score-calibration"], lambda c, r: c.score_calibration is True),
    }


# ------------------------------------------------------------------------------- edge-infer


def _predict_table() -> dict:
    from edge_runtime.live.output import Format

    return {
        "--json": (["--json"], lambda c, r: c.fmt is Format.JSON),
        "--csv": (["--csv"], lambda c, r: c.fmt is Format.CSV),
        "--threshold": (["--threshold", "0.3"], lambda c, r: c.run.threshold == 0.3),
        "--threads": (["--threads", "3"], lambda c, r: c.threads == 3),
        "--workers": (["--workers", "5"], lambda c, r: c.run.workers == 5),
        "--backend": (["--backend", "tensorflow"], lambda c, r: c.backend == "tensorflow"),
        "--no-draft": (["--no-draft"], lambda c, r: c.run.draft is False),
        "--camera": (["--camera", "2"], lambda c, r: c.camera == 2),
        "--every": (["--every", "4"], lambda c, r: c.sampling.every == 4),
        "--fps": (["--fps", "2.5"], lambda c, r: c.sampling.fps == 2.5),
        "--max-frames": (["--max-frames", "30"], lambda c, r: c.sampling.max_frames == 30),
        "--retries": (["--retries", "7"], lambda c, r: c.reconnect.retries == 7),
        "--events": (["--events"], lambda c, r: c.run.events is not None),
        "--on-frames": (
            ["--events", "--on-frames", "6"],
            lambda c, r: c.run.events.on_frames == 6,
        ),
        "--off-frames": (
            ["--events", "--off-frames", "8"],
            lambda c, r: c.run.events.off_frames == 8,
        ),
        "--snapshot": (
            ["--events", "--snapshot", "shots"],
            lambda c, r: c.run.events.snapshot_dir == "shots",
        ),
        "--watch": (["--watch", "in"], lambda c, r: c.watch.folder == "in"),
        "--interval": (
            ["--watch", "in", "--interval", "0.2"],
            lambda c, r: c.watch.interval == 0.2,
        ),
        "--settle": (["--watch", "in", "--settle", "2.5"], lambda c, r: c.watch.settle == 2.5),
        "--poll": (["--watch", "in", "--poll"], lambda c, r: c.watch.notify is False),
        "--watch-timeout": (
            ["--watch", "in", "--watch-timeout", "9"],
            lambda c, r: c.watch_timeout == 9,
        ),
        "--max-count": (["--watch", "in", "--max-count", "4"], lambda c, r: c.max_count == 4),
        "--mqtt": (
            ["--mqtt", "mqtt://edge@broker.lan:1884"],
            lambda c, r: (
                (c.mqtt.host, c.mqtt.port, c.mqtt.username, c.mqtt.tls)
                == ("broker.lan", 1884, "edge", False)
            ),
        ),
        "--mqtt-client-id": (
            ["--mqtt", "mqtt://b", "--mqtt-client-id", "cam-2"],
            lambda c, r: c.mqtt.client_id == "cam-2" and c.mqtt.topic_prefix.endswith("/cam-2"),
        ),
        "--mqtt-prefix": (
            ["--mqtt", "mqtt://b", "--mqtt-prefix", "home/cam"],
            lambda c, r: c.mqtt.topic_prefix == "home/cam",
        ),
        "--mqtt-ca": (
            ["--mqtt", "mqtts://b", "--mqtt-ca", str(HERE / "conftest.py")],
            lambda c, r: c.mqtt.tls and c.mqtt.ca_file == str(HERE / "conftest.py"),
        ),
        "--mqtt-queue": (
            ["--mqtt", "mqtt://b", "--mqtt-queue", "12"],
            lambda c, r: c.mqtt.queue_size == 12,
        ),
        "--mqtt-results-every": (
            ["--mqtt", "mqtt://b", "--mqtt-results-every", "0.5"],
            lambda c, r: c.mqtt.results_every == 0.5,
        ),
        "--mqtt-discovery": (
            ["--mqtt", "mqtt://b", "--mqtt-discovery", "off"],
            lambda c, r: c.mqtt.discovery_prefix is None,
        ),
        "--mqtt-wait": (["--mqtt", "mqtt://b", "--mqtt-wait", "2"], lambda c, r: c.mqtt.wait == 2),
        "--camera-size": (
            ["--camera", "--camera-size", "640x360"],
            lambda c, r: c.camera_size == (640, 360),
        ),
        "--collect": (["--collect", "unsure"], lambda c, r: c.collect.folder == "unsure"),
        "--collect-margin": (
            ["--collect", "u", "--collect-margin", "2.5"],
            lambda c, r: c.collect.margin == 2.5,
        ),
        "--collect-interval": (
            ["--collect", "u", "--collect-interval", "0.5"],
            lambda c, r: c.collect.interval == 0.5,
        ),
        "--collect-max": (
            ["--collect", "u", "--collect-max", "9"],
            lambda c, r: c.collect.max_items == 9,
        ),
        "--collect-max-mb": (
            ["--collect", "u", "--collect-max-mb", "1.5"],
            lambda c, r: c.collect.max_mb == 1.5,
        ),
    }


def _serve_table() -> dict:
    return {
        "--host": (["--host", "0.0.0.0"], lambda c, r: c.host == "0.0.0.0"),
        "--port": (["--port", "9000"], lambda c, r: c.port == 9000),
        "--token": (["--token", "tok"], lambda c, r: c.token == "tok"),
        "--max-mb": (["--max-mb", "2"], lambda c, r: c.max_bytes == 2 << 20),
        "--pool": (["--pool", "3"], lambda c, r: c.pool == 3),
        "--threads": (["--threads", "2"], lambda c, r: c.threads == 2),
        "--threshold": (["--threshold", "0.4"], lambda c, r: c.threshold == 0.4),
        "--no-draft": (["--no-draft"], lambda c, r: c.draft is False),
        "--backend": (["--backend", "tensorflow"], lambda c, r: c.backend == "tensorflow"),
    }


# The small commands run for real; `seen` holds what reached the library (see `spies`).
def _eval_table(backend: str) -> dict:
    return {
        "--json": (["--json"], lambda c, r: json.loads(r.stdout)["n_samples"] == 12),
        "--min-map": (
            ["--json", "--min-map", "0.5"],
            lambda c, r: json.loads(r.stdout)["min_map"] == {"required": 0.5, "passed": True},
        ),
        "--threads": (["--threads", "2"], lambda c, r: c["load"]["threads"] == 2),
        "--backend": (["--backend", backend], lambda c, r: c["load"]["backend"] == backend),
    }


def _info_table(backend: str) -> dict:
    return {
        "--json": (
            ["--json"],
            lambda c, r: json.loads(r.stdout)["labels"] == ["red", "green", "blue"],
        ),
        "--backend": (["--backend", backend], lambda c, r: c["load"]["backend"] == backend),
    }


def _verify_table() -> dict:
    return {"--json": (["--json"], lambda c, r: json.loads(r.stdout)["status"] == "intact")}


def _bench_table(backend: str) -> dict:
    # IMAGE stands for a real image file made by the test.
    return {
        "--image": (
            ["--image", "IMAGE"],
            lambda c, r: Path(c["bench"][0]["image"]).name == "x.png",
        ),
        "--runs": (["--runs", "3"], lambda c, r: c["bench"][0]["runs"] == 3),
        "--warmup": (["--warmup", "0"], lambda c, r: c["bench"][0]["warmup"] == 0),
        "--threads": (["--threads", "2"], lambda c, r: c["bench"][0]["threads"] == 2),
        "--threads-sweep": (
            ["--threads-sweep", "1,2"],
            lambda c, r: [b["threads"] for b in c["bench"]] == [1, 2],
        ),
        "--backend": (["--backend", backend], lambda c, r: c["bench"][0]["backend"] == backend),
        "--json": (["--json"], lambda c, r: json.loads(r.stdout)["latency"]["runs"] == 2),
    }


def _group_table() -> dict:
    return {"--version": (["--version"], lambda c, r: "version" in r.stdout)}


STUB_RESULT = {"stub": "result"}


def long_options(command: click.Command) -> set[str]:
    """Every long option string of `command` as click knows it (`--x/--no-x` gives both)."""
    names: set[str] = set()
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(o for o in (*param.opts, *param.secondary_opts) if o.startswith("--"))
    return names


def _tables() -> dict[str, dict]:
    """Command name -> its table; the trainer's and exporter's only where they import."""
    backend = "ai-edge-litert"
    tables = {
        "edge-infer": _group_table(),
        "edge-infer predict": _predict_table(),
        "edge-infer serve": _serve_table(),
        "edge-infer eval": _eval_table(backend),
        "edge-infer info": _info_table(backend),
        "edge-infer verify": _verify_table(),
        "edge-infer bench": _bench_table(backend),
    }
    try:
        tables.update(
            {
                "edge-train": {},  # the group itself has no options but --help
                "edge-train train": _train_table("run"),
                "edge-train make-demo": _demo_table(),
                "edge-export": _export_table(),
            }
        )
    except ImportError:  # a lean environment: no trainer or exporter dependencies
        pass
    return tables


def _commands() -> dict[str, click.Command]:
    """Every command of every CLI, found through click (a new subcommand appears here too)."""
    from edge_runtime.cli.main import main_group

    found = {"edge-infer": main_group}
    found.update({f"edge-infer {n}": c for n, c in main_group.commands.items()})
    try:
        from exporter.cli import export_cmd
        from trainer.cli import cli as train_group
    except ImportError:
        return found
    found["edge-train"] = train_group
    found.update({f"edge-train {n}": c for n, c in train_group.commands.items()})
    found["edge-export"] = export_cmd
    return found


@pytest.mark.runtime
def test_every_option_has_an_entry():
    problems = []
    tables = _tables()
    for name, command in _commands().items():
        if name not in tables:
            problems.append(f"{name}: a command with no table of options here")
            continue
        have, table = long_options(command), tables[name]
        untested, stale = sorted(have - set(table)), sorted(set(table) - have)
        if untested:
            problems.append(f"{name}: options with no entry in its table here: {untested}")
        if stale:
            problems.append(f"{name}: table entries for options it does not have: {stale}")
    assert not problems, "\n".join(problems)


def test_an_option_without_an_entry_is_caught():
    """The check above can fail: an option nobody drives shows up in `long_options`."""
    table = {"--a": None, "--b": None}
    command = click.Command(
        "x",
        params=[click.Option(["--a"]), click.Option(["--b/--no-b"]), click.Option(["--c", "-c"])],
    )
    assert long_options(command) - set(table) == {"--no-b", "--c"}


# ------------------------------------------------------------------------------- driving


@pytest.fixture
def train_stub(monkeypatch):
    """`trainer.fit.train` replaced by a module whose `train` records the config (no TensorFlow):
    the resolved config of the `TrainPlan` the CLI hands over."""
    seen = []

    def train(plan):
        seen.append(plan.config)
        return types.SimpleNamespace(summary=lambda: "trained", to_dict=lambda: STUB_RESULT)

    monkeypatch.setitem(sys.modules, "trainer.fit.train", types.SimpleNamespace(train=train))
    return seen


def _train_cases():
    try:
        return list(_train_table("RUN").items())
    except ImportError:
        return []


@pytest.mark.parametrize("option, case", _train_cases(), ids=[o for o, _ in _train_cases()])
def test_edge_train_option(option, case, train_stub, tmp_path, monkeypatch, request):
    from trainer.cli import cli

    args, check = case
    if option == "--init-from":  # a real run directory: its manifest is read
        run = str(request.getfixturevalue("trained_run"))
        args, check = _train_table(run)[option]
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["data.csv", "--out", str(tmp_path / "run"), *args])
    if not train_stub:  # an option that stops the CLI before training (a removed one)
        assert check(None, r), (option, r.output)
        return
    assert r.exit_code == 0, r.output
    (config,) = train_stub
    assert check(config, r), (option, config)


def test_edge_train_defaults_are_the_configs(train_stub, tmp_path):
    from trainer.cli import cli
    from trainer.config import TrainConfig
    from trainer.fit.plan import resolve

    r = CliRunner().invoke(cli, ["data.csv", "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert train_stub == [resolve(TrainConfig(data="data.csv", out=str(tmp_path / "run"))).config]


def _demo_cases():
    return list(_demo_table().items())


@pytest.mark.parametrize("option, case", _demo_cases(), ids=[o for o, _ in _demo_cases()])
def test_edge_train_make_demo_option(option, case, monkeypatch, tmp_path):
    pytest.importorskip("trainer.cli")
    from trainer.cli import cli
    from trainer.demo import clutter_demo, demo_data

    seen = []

    def make(config):
        seen.append(config)
        return "train.csv", "test.csv"

    monkeypatch.setattr(demo_data, "make_demo_dataset", make)
    monkeypatch.setattr(clutter_demo, "make_clutter_dataset", make)
    args, check = case
    r = CliRunner().invoke(cli, ["make-demo", str(tmp_path / "demo"), *args])
    assert r.exit_code == 0, r.output
    (config,) = seen
    assert check(config, r), (option, config)


@pytest.fixture
def export_stub(monkeypatch):
    """`exporter.export.export` replaced by a function that records the config."""
    pytest.importorskip("exporter.export")
    import importlib

    module = importlib.import_module("exporter.export")  # `exporter.export` is also a function
    seen = []

    def export(config, log=None):
        seen.append(config)
        return types.SimpleNamespace(summary=lambda: "exported", to_dict=lambda: STUB_RESULT)

    monkeypatch.setattr(module, "export", export)
    return seen


def _export_cases():
    try:
        return list(_export_table().items())
    except ImportError:
        return []


@pytest.mark.parametrize("option, case", _export_cases(), ids=[o for o, _ in _export_cases()])
def test_edge_export_option(option, case, export_stub):
    from exporter.cli import export_cmd

    args, check = case
    r = CliRunner().invoke(export_cmd, ["runs/r1", *args])
    assert r.exit_code == 0, r.output
    (config,) = export_stub
    assert check(config, r), (option, config)


def test_edge_export_defaults_are_the_configs(export_stub):
    from exporter.cli import export_cmd
    from exporter.config import ExportConfig
    from exporter.modes import QuantMode

    r = CliRunner().invoke(export_cmd, ["runs/r1"])
    assert r.exit_code == 0, r.output
    (got,) = export_stub
    want = ExportConfig(run_dir="runs/r1")
    for field in ("out", "quant", "data", "val_data", "calibration_size", "weight_scales"):
        assert getattr(got, field) == getattr(want, field), field
    assert (got.report, got.threads, got.backend, got.cache_dir, got.model_info) == (
        want.report,
        want.threads,
        want.backend,
        want.cache_dir,
        want.model_info,
    )
    assert all(
        got.tolerances(m) == want.tolerances(m) for m in QuantMode if m is not QuantMode.AUTO
    )


@pytest.fixture
def predict_stub(monkeypatch):
    from edge_runtime.cli import predict as predict_module

    seen = []
    monkeypatch.setattr(predict_module, "run_predict", seen.append)
    return seen


@pytest.mark.runtime
@pytest.mark.parametrize("option, case", list(_predict_table().items()), ids=list(_predict_table()))
def test_edge_infer_predict_option(option, case, predict_stub):
    from edge_runtime.cli.main import main_group

    args, check = case
    r = CliRunner().invoke(main_group, ["predict", "model.tflite", "a.jpg", *args])
    assert r.exit_code == 0, r.output
    (config,) = predict_stub
    assert check(config, r), (option, config)


@pytest.mark.runtime
def test_edge_infer_predict_defaults_are_the_configs(predict_stub):
    from edge_runtime.cli.main import main_group
    from edge_runtime.cli.predict import PredictConfig
    from edge_runtime.live.watch import WatchConfig

    r = CliRunner().invoke(main_group, ["model.tflite", "a.jpg", "--watch", "in"])
    assert r.exit_code == 0, r.output
    assert predict_stub == [PredictConfig("model.tflite", ("a.jpg",), watch=WatchConfig("in"))]
    r = CliRunner().invoke(main_group, ["model.tflite", "a.jpg", "--events"])
    from edge_runtime.live.runner import EventConfig

    assert r.exit_code == 0 and predict_stub[-1].run.events == EventConfig()


@pytest.fixture
def serve_stub(monkeypatch):
    from edge_runtime.cli import serve as serve_module

    seen = []
    monkeypatch.setattr(serve_module, "run_serve", lambda model, config: seen.append(config))
    return seen


@pytest.mark.runtime
@pytest.mark.parametrize("option, case", list(_serve_table().items()), ids=list(_serve_table()))
def test_edge_infer_serve_option(option, case, serve_stub):
    from edge_runtime.cli.main import main_group

    args, check = case
    r = CliRunner().invoke(main_group, ["serve", "model.tflite", *args])
    assert r.exit_code == 0, r.output
    (config,) = serve_stub
    assert check(config, r), (option, config)


@pytest.mark.runtime
def test_edge_infer_serve_defaults_are_the_config(serve_stub):
    from edge_runtime.cli.main import main_group
    from edge_runtime.serve.server import ServeConfig

    r = CliRunner().invoke(main_group, ["serve", "model.tflite"], env={"EDGE_SERVE_TOKEN": ""})
    assert r.exit_code == 0, r.output
    assert serve_stub == [ServeConfig()]


@pytest.fixture
def spies(monkeypatch):
    """Record what the small commands hand the library (they still run for real)."""
    from edge_runtime.cli import evaluate, model
    from edge_runtime.inference import bench

    seen: dict = {"bench": []}
    for module in (evaluate, model):
        real_load = module.load_classifier

        def load(path, threads=None, backend=None, _real=real_load):
            seen["load"] = {"threads": threads, "backend": backend}
            return _real(path, threads, backend)

        monkeypatch.setattr(module, "load_classifier", load)
    real_bench = bench.benchmark

    def benchmark(model_path, image=None, **kwargs):
        seen["bench"].append({"image": image, **kwargs})
        return real_bench(model_path, image, **{**kwargs, "runs": min(kwargs["runs"], 3)})

    monkeypatch.setattr(bench, "benchmark", benchmark)
    return seen


def _small_cases():
    from edge_runtime.inference.backend import interpreter_class

    try:
        _, backend = interpreter_class()
    except Exception:  # no interpreter here: the tests skip below
        backend = "ai-edge-litert"
    return [
        (cmd, option, case)
        for cmd, table in (
            ("eval", _eval_table(backend)),
            ("info", _info_table(backend)),
            ("verify", _verify_table()),
            ("bench", _bench_table(backend)),
        )
        for option, case in table.items()
    ]


@pytest.mark.runtime
@pytest.mark.parametrize(
    "cmd, option, case", _small_cases(), ids=[f"{c}{o}" for c, o, _ in _small_cases()]
)
def test_edge_infer_small_command_option(cmd, option, case, spies, fixture_models, tmp_path):
    from PIL import Image

    from edge_runtime.cli.main import main_group

    model = str(fixture_models["int8"])
    args, check = case
    extra: list[str] = []
    if cmd == "eval":
        extra = [str(_labels_csv(fixture_models, tmp_path))]
    if cmd == "bench":
        image = tmp_path / "x.png"
        Image.new("RGB", (40, 30), (200, 10, 10)).save(image)
        args = [str(image) if a == "IMAGE" else a for a in args]
        args = [*args, *([] if "--runs" in args else ["--runs", "2"])]
        args = [*args, *([] if "--warmup" in args else ["--warmup", "1"])]
    r = CliRunner().invoke(main_group, [cmd, model, *extra, *args])
    assert r.exit_code in (0, 1), r.output
    assert check(spies, r), (cmd, option, r.output)


def _labels_csv(fixture_models, tmp_path) -> Path:
    """12 labelled images the fixture model knows (the colour squares it was trained on)."""
    import csv

    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(HERE))
    from make_fixture_models import synthetic_images

    x, y = synthetic_images(12, seed=5)
    (tmp_path / "img").mkdir(exist_ok=True)
    with open(tmp_path / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "red", "green", "blue"])
        for i, (img, row) in enumerate(zip(x, y)):
            Image.fromarray(np.asarray(img)).save(tmp_path / "img" / f"{i}.png")
            w.writerow([f"img/{i}.png", *[int(v) for v in row]])
    return tmp_path / "labels.csv"


@pytest.mark.runtime
def test_edge_infer_version():
    from edge_runtime.cli.main import main_group

    args, check = _group_table()["--version"]
    r = CliRunner().invoke(main_group, args)
    assert r.exit_code == 0 and check(None, r), r.output
