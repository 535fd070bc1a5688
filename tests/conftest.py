"""Shared fixtures: small seeded demo data, made once per test session."""

from __future__ import annotations

import pytest

from trainer.demo.demo_data import DemoConfig, make_demo_dataset


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """A small demo set: (train_csv, test_csv) with 160 / 48 images of 64x64 pixels."""
    out = tmp_path_factory.mktemp("demo")
    return make_demo_dataset(DemoConfig(str(out), n_train=160, n_test=48, image_size=64, seed=0))


def _prebuilt(name: str):
    """`$EDGE_FIXTURE_MODELS/trained/NAME` when scripts/test.sh built it (once for every worker)."""
    import os
    from pathlib import Path

    folder = os.environ.get("EDGE_FIXTURE_MODELS")
    path = Path(folder) / "trained" / name if folder else None
    return path if path is not None and path.exists() else None


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A tiny `compact` model trained on the easy colour-squares task (make_fixture_models.py): its run dir."""
    pytest.importorskip("tensorflow")
    prebuilt = _prebuilt("run")
    if prebuilt:
        return prebuilt
    from make_fixture_models import build_trained_run

    return build_trained_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="session")
def exported(trained_run, tmp_path_factory):
    """{mode: ExportResult} of `trained_run` exported once per mode at the default gates."""
    import pickle

    prebuilt = _prebuilt("exported.pickle")
    if prebuilt:
        return pickle.loads(prebuilt.read_bytes())
    from make_fixture_models import export_every_mode

    return export_every_mode(trained_run, tmp_path_factory.mktemp("exported"))


@pytest.fixture(scope="session")
def fixture_models(tmp_path_factory):
    """{name: Path} of the tiny TFLite fixture models (see tests/make_fixture_models.py).

    Uses the folder in `$EDGE_FIXTURE_MODELS` when set (built once by the full environment, so
    the runtime tests run without TensorFlow); otherwise builds them here, which needs TensorFlow.
    """
    import json
    import os
    from pathlib import Path

    folder = os.environ.get("EDGE_FIXTURE_MODELS")
    if folder:
        index = Path(folder) / "fixtures.json"
        if not index.is_file():
            pytest.fail(
                f"$EDGE_FIXTURE_MODELS={folder} holds no fixtures.json: run tests/make_fixture_models.py"
            )
        return {name: Path(folder) / file for name, file in json.loads(index.read_text()).items()}
    pytest.importorskip(
        "tensorflow", reason="building fixture models needs TensorFlow; set $EDGE_FIXTURE_MODELS"
    )
    from make_fixture_models import build_fixture_models

    return build_fixture_models(tmp_path_factory.mktemp("fixture_models"))


# Run order (it changes only how long the run takes, never what passes): the fast tests first, so
# a failure among them shows early; then the slow ones, longest first, so that the two workers of
# scripts/test.sh finish together instead of one waiting on a long test picked up last. Order from
# `--durations` of a two-worker run on the CI machine (the longest about 2 minutes).
LONGEST_FIRST = (
    "test_pretrained.py::test_the_default_start_is_imagenet_offline_and_its_int8_passes_the_default_gate",
    "test_readme.py::test_own_data_commands_run_as_written",
    "test_benchmarks.py::test_smoke_run_writes_complete_report",
    "test_readme.py::test_quickstart_demo_runs",
    "test_recipes.py::test_seed_recipe_matches_the_seed_script",
    "test_distribute.py::test_two_workers_with_tf_config_train_one_model_and_only_the_chief_writes",
    "test_exporter.py::test_auto_keeps_the_smallest_passing_mode_and_explains_failures",
    "test_transfer.py::test_the_imagenet_start_beats_scratch_on_a_small_task",
    "test_distribute.py::test_mirrored_on_two_logical_cpu_devices",
    "test_transfer.py::test_init_from_run_records_lineage_in_the_manifest",
    "test_collect_loop.py::test_collect_correct_retrain_export_verify_beats_the_deployed_model",
    "test_trainer.py::test_cli_focal_loss_is_the_loss_trained_and_validated_with",
)


def pytest_collection_modifyitems(config, items):
    def rank(item) -> tuple[int, int]:
        if item.get_closest_marker("slow") is None:
            return (0, 0)
        for i, name in enumerate(LONGEST_FIRST):
            if item.nodeid.endswith(name):
                return (1, i)
        return (1, len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: the collection order within each rank
