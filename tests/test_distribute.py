"""--distribute: the scaling rule, who is chief, MirroredStrategy on two logical CPU devices, and
two worker processes on localhost with TF_CONFIG that train one model; only the chief writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trainer import TrainConfig
from trainer.config import Distribute
from trainer.errors import ConfigError
from trainer.fit.distribute import is_chief, scaled
from trainer.fit.plan import resolve

EDGE_TRAIN = Path(sys.executable).with_name("edge-train")
TIMEOUT = 420  # seconds for a whole distributed run on a loaded 2-core machine


def tf_config(ports: list[int], kind: str, index: int, chief: bool = False) -> str:
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    if chief:
        cluster = {"chief": [cluster["worker"][0]], "worker": cluster["worker"][1:]}
    return json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):  # all bound at once: n different ports
            s = socket.socket()
            s.bind(("localhost", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def test_batch_size_and_learning_rate_scale_with_replicas():
    c = TrainConfig(data="d.csv", out="o", batch_size=32, learning_rate=0.004)
    assert scaled(c, 1) is c
    c4 = scaled(c, 4)
    assert c4.batch_size == 128 and c4.learning_rate == pytest.approx(
        0.008
    )  # x4 batch, x sqrt(4) rate
    assert (c4.data, c4.epochs, c4.seed) == (c.data, c.epochs, c.seed)


def test_chief_is_the_chief_task_or_worker_zero(monkeypatch):
    assert is_chief(Distribute.NONE) and is_chief(Distribute.MIRRORED)
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2], "worker", 0))
    assert is_chief(Distribute.MULTIWORKER)
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2], "worker", 1))
    assert not is_chief(Distribute.MULTIWORKER)
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2, 3], "chief", 0, chief=True))
    assert is_chief(Distribute.MULTIWORKER)
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2, 3], "worker", 0, chief=True))
    assert not is_chief(Distribute.MULTIWORKER)


@pytest.mark.parametrize(
    "value, needle",
    [
        (None, "needs TF_CONFIG"),
        ("{nope", "TF_CONFIG is not valid JSON"),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}',
            "is not in its cluster",
        ),
    ],
)
def test_bad_tf_config_is_a_one_line_usage_error(tmp_path, monkeypatch, value, needle):
    from click.testing import CliRunner

    from trainer.cli import cli

    if value is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        resolve(TrainConfig(data="d.csv", out="o", distribute="multiworker"))
    r = CliRunner().invoke(
        cli,
        [str(tmp_path / "d.csv"), "--out", str(tmp_path / "run"), "--distribute", "multiworker"],
    )
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("Error: ") and needle in r.stderr


@pytest.mark.slow
def test_mirrored_on_two_logical_cpu_devices(demo_data, tmp_path):
    """A fresh process (logical devices must be set before TensorFlow starts) trains with the
    Python API, --distribute mirrored over two CPU devices."""
    script = textwrap.dedent(f"""
        import json, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from trainer import TrainConfig, train
        r = train(TrainConfig(data={str(demo_data[0])!r}, out={str(tmp_path / "run")!r}, arch="compact", input_size=32,
                              epochs=2, batch_size=16, distribute="mirrored", verbose=False, seed=0))
        print(json.dumps(r.to_dict()))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["epochs_run"] == 2 and len(res["thresholds"]) == 5
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    d = m["training"]["distribute"]
    assert d["mode"] == "mirrored" and d["replicas"] == 2 and d["global_batch_size"] == 32
    assert d["learning_rate"] == pytest.approx(3e-3 * 2**0.5)
    assert (
        m["training"]["config"]["batch_size"] == 16
    )  # the user's per-replica value is recorded too
    assert (tmp_path / "run" / "model.keras").is_file() and sorted(
        p.name for p in tmp_path.iterdir()
    ) == ["run"]


@pytest.mark.slow
def test_two_workers_with_tf_config_train_one_model_and_only_the_chief_writes(demo_data, tmp_path):
    """Two `edge-train --distribute multiworker` processes on localhost, as on two machines."""
    ports = free_ports(2)
    out = tmp_path / "shared" / "run"
    scratch = (
        tmp_path / "tmp"
    )  # each worker's TMPDIR: what a non-chief writes must be gone at the end
    scratch.mkdir()
    procs = []
    for i in range(2):
        # No bytecode: TensorFlow's autograph imports generated modules from TMPDIR, and Python's
        # __pycache__ for them is not ours to clean up.
        env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "TMPDIR": str(scratch),
            "PYTHONDONTWRITEBYTECODE": "1",
            "TF_CONFIG": tf_config(ports, "worker", i),
        }
        procs.append(
            subprocess.Popen(
                [
                    str(EDGE_TRAIN),
                    str(demo_data[0]),
                    "--out",
                    str(out),
                    "--arch",
                    "compact",
                    "--input-size",
                    "32",
                    "--epochs",
                    "2",
                    "--batch-size",
                    "16",
                    "--distribute",
                    "multiworker",
                    "--json",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=TIMEOUT))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr[-3000:]
        res = json.loads(stdout)
        assert res["epochs_run"] == 2 and res["run_dir"] == str(out)
        assert "epoch 2/2" in stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["run"]  # one run dir, no temporaries
    assert list(scratch.iterdir()) == []
    m = json.loads((out / "manifest.json").read_text())
    d = m["training"]["distribute"]
    assert (d["mode"], d["replicas"], d["workers"], d["global_batch_size"]) == (
        "multiworker",
        2,
        2,
        32,
    )
    assert m["training"]["epochs_run"] == 2 and m["data"]["n_train"] == 128
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "model.keras",
            "manifest.json",
            "metrics.json",
            "train_split.csv",
            "val_split.csv",
            "curves.png",
            "pr_curves.png",
        ]
    )
