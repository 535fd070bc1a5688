"""Closing the loop, as the README tells it: collect, correct, retrain, export, verify.

The deployed model is the shared trained fixture (conftest's `trained_run` and its int8 export):
bright colour squares (value 180-255) on dark noise (0-59). In the field it meets squares of any
brightness from the noise's level up to the bright ones (60-179) and misses the dim ones.
`--collect` with its default margin keeps the pictures it is unsure about, a person (here: the
generator's truth) corrects labels.csv, `edge-train --init-from` fine-tunes on it, the result goes
through the export gate and `verify`, and it must beat the deployed model on held-out dim
pictures. One training, seconds: the first model is the fixture every exporter test shares.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from make_fixture_models import LABELS, write_colour_squares

pytest.importorskip("tensorflow")

from edge_runtime.cli import main_group  # noqa: E402
from edge_runtime.evaluation.dataset import read_labels_csv  # noqa: E402
from exporter.cli import export_cmd  # noqa: E402
from trainer.cli import cli as train_cli  # noqa: E402

pytestmark = pytest.mark.slow
# The field's squares span the noise's level up to the training brightness, so the deployed
# model's decision must cross its threshold somewhere inside: whatever model a fixture build made,
# some field pictures sit near a threshold. (A band of dim squares only, 70-109, left it to the
# build: one fixture build was confidently "absent" on nearly all of them and 5 of 600 were
# collected.) Measured on seven fixture builds: the default margin keeps 12-35% of the field
# pictures and 0-17% of the bright ones; on three, the full loop took macro-F1 on held-out dim
# squares (60-139) from 0.40-0.53 to 0.76-0.95.
DIM = (60, 180)
HELD = (60, 140)
FIELD = 600  # dim pictures the device sees
COLLECT: tuple = ("--collect-max", 120)  # the default margin and interval; a count cap
TRAIN: tuple = ("--epochs", 20)
# float32: in these trials one int8 export of such a small collection failed (its output was cut
# off; three reruns passed), and its gate judges a dozen or two held-out pictures. The loop is the
# subject here; the gate is tested in test_exporter.py.
EXPORT: tuple = ("--quant", "float32")


def invoke(command, *args):
    result = CliRunner().invoke(command, [str(a) for a in args])
    assert result.exit_code == 0, result.output[-3000:]
    return result


def macro_f1(model: Path, labels_csv: Path) -> float:
    return json.loads(invoke(main_group, "eval", model, labels_csv, "--json").stdout)["macro_f1"]


def test_collect_correct_retrain_export_verify_beats_the_deployed_model(
    trained_run, exported, tmp_path
):
    deployed = Path(exported["int8"].out)
    home = write_colour_squares(tmp_path / "home", 60, seed=11)  # what it was trained on
    field = write_colour_squares(tmp_path / "field", FIELD, seed=12, intensity=DIM)
    held_out = write_colour_squares(tmp_path / "held_out", 90, seed=13, intensity=HELD)

    # 1. collect on the device, default margin and caps
    col = tmp_path / "unsure"
    invoke(main_group, deployed, home.parent, field.parent, "--collect", col, *COLLECT)
    with open(col / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    kinds = [Path(row["source"]).parent.name for row in rows]
    assert kinds.count("field") >= 40, kinds  # enough to learn from
    assert kinds.count("field") >= 4 * kinds.count("home"), kinds  # the doubtful kind

    # 2. a person corrects the model's decisions (the generator knows the truth)
    truth = {}
    for table in (read_labels_csv(home), read_labels_csv(field)):
        truth.update({str(p): y for p, y in zip(table.paths, table.y)})
    before = read_labels_csv(col / "labels.csv", labels=LABELS)
    corrected = [truth[str(Path(row["source"]).resolve())] for row in rows]
    changed = sum(int((a != b).any()) for a, b in zip(before.y, corrected))
    assert changed > 0  # the model's decisions were wrong on some collected pictures
    with open(col / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", *LABELS])
        for row, y in zip(rows, corrected):
            w.writerow([row["filename"], *(int(v) for v in y)])

    # 3. retrain from the deployed run, 4. export through the gate, 5. verify
    run2 = tmp_path / "run2"
    invoke(train_cli, col / "labels.csv", "--out", run2, "--init-from", trained_run, *TRAIN)
    model2 = tmp_path / "model2.tflite"
    invoke(export_cmd, run2, "--out", model2, *EXPORT)
    assert "intact" in invoke(main_group, "verify", model2).stdout

    # 6. better on the kind of picture that was collected
    f1_before, f1_after = macro_f1(deployed, held_out), macro_f1(model2, held_out)
    print(
        f"collected {kinds.count('field')} of {FIELD} dim and {kinds.count('home')} of 60 bright "
        f"pictures ({changed} rows corrected); held-out dim squares: macro-F1 {f1_before:.3f} "
        f"deployed, {f1_after:.3f} retrained"
    )
    assert f1_after >= f1_before + 0.15, (f1_before, f1_after)
