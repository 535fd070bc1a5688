"""The README's commands run, so the README cannot drift from the code.

Every `edge-*` line of the README's `sh` blocks is executed as written, in a scratch folder that
holds a small `photos/labels.csv`, with only these test-speed additions, each named here:
`edge-train` gets a tiny budget (`--epochs 1 --input-size 32`: from the default ImageNet start,
one head epoch on cached features), `edge-export` an open gate (a 1-epoch model is judged on
wiring here, not quality: the gate itself is tested in
test_exporter.py), and `--watch` a time limit. `edge-infer` runs as the installed command;
`edge-train` and `edge-export` run their click commands in this process (the same argv, exit code
and stderr; each command's own tests also start it as a real process), which spares a TensorFlow
import per line. The quickstart demo script runs whole, in the test's own environment, on a
smaller data set (DEMO_N_TRAIN=240, DEMO_N_TEST=40, 6 epochs at 48 px) with the same open gate as
`edge-export` above (DEMO_EXPORT_ARGS): this checks the script's wiring; the full demo's quality is
measured by the benchmark (benchmarks/results).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")

from trainer.demo.demo_data import DemoConfig, make_demo_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent
TEST_SPEED = {
    "edge-train": ["--epochs", "1", "--input-size", "32"],
    "edge-export": [
        "--min-agreement",
        "0",
        "--max-map-drop",
        "1",
        "--max-abs",
        "1",
        "--mean-abs",
        "1",
    ],
}

pytestmark = pytest.mark.slow


def sh_commands() -> list[str]:
    """Command lines of the README's ```sh blocks, comments stripped."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def test_quickstart_is_the_two_scripts_and_ci_runs_the_test_command():
    cmds = sh_commands()
    assert cmds[:2] == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert (ROOT / "scripts/demo.sh").is_file() and (ROOT / "scripts/test.sh").is_file()
    assert "scripts/test.sh" in (ROOT / ".ci/run").read_text()


def test_own_data_commands_run_as_written(tmp_path, monkeypatch):
    make_demo_dataset(
        DemoConfig(str(tmp_path / "photos"), n_train=120, n_test=30, image_size=48, seed=3)
    )
    (tmp_path / "photos/train.csv").rename(tmp_path / "photos/labels.csv")
    (tmp_path / "photos/test.csv").rename(tmp_path / "test.csv")
    (tmp_path / "test").symlink_to(tmp_path / "photos/test")  # test.csv's paths are relative to it
    (tmp_path / "frame.jpg").write_bytes((tmp_path / "photos/train/00000.png").read_bytes())
    (tmp_path / "captures").mkdir()
    for i in range(3):
        (tmp_path / f"captures/{i}.png").write_bytes(
            (tmp_path / f"photos/train/{i:05d}.png").read_bytes()
        )
    (tmp_path / "run/camera").mkdir(parents=True)

    from click.testing import CliRunner

    from exporter.cli import export_cmd
    from trainer.cli import cli as train_cli

    in_process = {"edge-train": train_cli, "edge-export": export_cmd}
    ran = []
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    monkeypatch.chdir(tmp_path)
    for line in sh_commands():
        if not line.startswith("edge-"):
            continue
        argv = shlex.split(line.replace("/run/camera", "run/camera").split(">")[0])
        argv += TEST_SPEED.get(argv[0], [])
        if "--watch" in argv:
            argv += ["--watch-timeout", "2"]
        if argv[0] in in_process:
            res = CliRunner().invoke(in_process[argv[0]], argv[1:], prog_name=argv[0])
            code, stderr = (
                res.exit_code,
                res.stderr + (repr(res.exception) if res.exit_code else ""),
            )
        else:
            proc = subprocess.run(
                [str(BIN / argv[0]), *argv[1:]],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            code, stderr = proc.returncode, proc.stderr
        assert code == 0, f"{line}\n{stderr[-2000:]}"
        assert "Traceback" not in stderr
        ran.append(argv[0] if argv[1] not in ("info", "eval", "bench") else f"{argv[0]} {argv[1]}")
    assert {
        "edge-train",
        "edge-export",
        "edge-infer",
        "edge-infer info",
        "edge-infer eval",
        "edge-infer bench",
    } <= set(ran)
    assert (tmp_path / "photos.tflite").is_file()


def test_quickstart_demo_runs(tmp_path):
    env = dict(
        os.environ,
        VENV=sys.prefix,
        SKIP_INSTALL="1",
        DEMO_OUT=str(tmp_path / "demo"),
        DEMO_N_TRAIN="240",
        DEMO_N_TEST="40",
        DEMO_EPOCHS="6",
        DEMO_TRAIN_ARGS="--input-size 48",
        DEMO_EXPORT_ARGS=" ".join(TEST_SPEED["edge-export"]),
    )
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts/demo.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = proc.stdout[proc.stdout.index("== summary") :]
    assert "test split: mAP" in summary and "latency:" in summary and "KiB" in summary
    assert (tmp_path / "demo/shapes.tflite").is_file()
