"""`--distribute`: tf.distribute strategies, how batch size and learning rate scale, who writes.

- `none`: the default device, as before.
- `mirrored`: `tf.distribute.MirroredStrategy` over every local GPU (or, without GPUs, the CPU
  devices TensorFlow sees): one process, synchronous data-parallel training.
- `multiworker`: `tf.distribute.MultiWorkerMirroredStrategy`, configured by the standard
  `TF_CONFIG` environment variable (what Kubernetes operators and cloud trainers set): run the
  same `edge-train` command on every machine, each with its own `task`.

Scaling rule (with R replicas in sync, over all workers): `batch_size` is per replica, so the
global batch is `batch_size * R` and an epoch takes R times fewer steps; the Adam learning rate
is multiplied by `sqrt(R)` (the square-root rule for adaptive optimizers: the gradient noise of
an R-times larger batch falls by sqrt(R); the linear rule suits SGD and overshoots with Adam).
One replica trains exactly as `none` does. The effective values are in the run's manifest.

Only the chief writes the run directory (task `chief`, or worker 0 when the cluster names no
chief). The other workers run the same code to the end (saving can involve collective reads of
the weights) into a throwaway directory that is deleted.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from ..config import Distribute, TrainConfig
from ..errors import ConfigError
from ..tf_internals import multiworker_fit_fixes


def tf_config() -> dict:
    """The parsed `TF_CONFIG` ({} when unset); `ConfigError` when it is not valid JSON."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"TF_CONFIG is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    return value


def is_chief(mode: Distribute) -> bool:
    """Whether this process writes the run directory."""
    if mode is not Distribute.MULTIWORKER:
        return True
    conf = tf_config()
    task = conf.get("task") or {}
    cluster = conf.get("cluster") or {}
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    if "chief" in cluster:
        return kind == "chief"
    return kind == "worker" and index == 0


def check_multiworker() -> None:
    """`ConfigError` unless TF_CONFIG describes a cluster that holds this task."""
    conf = tf_config()
    if not conf:
        raise ConfigError(
            "--distribute multiworker needs TF_CONFIG (the cluster and this task), "
            'e.g. {"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
            '"task": {"type": "worker", "index": 0}}'
        )
    cluster, task = conf.get("cluster"), conf.get("task")
    if not isinstance(cluster, dict) or not isinstance(task, dict) or "type" not in task:
        raise ConfigError("TF_CONFIG needs a 'cluster' object and a 'task' with 'type' and 'index'")
    members = cluster.get(task["type"])
    if not isinstance(members, list) or not 0 <= int(task.get("index", 0)) < len(members):
        raise ConfigError(f"TF_CONFIG task {task} is not in its cluster {cluster}")


def make_strategy(mode: Distribute):
    """The `tf.distribute.Strategy` for `mode` (the default strategy for `none`).

    A multi-worker strategy must exist before TensorFlow runs anything else in the process.
    """
    import tensorflow as tf

    if mode is Distribute.NONE:
        return tf.distribute.get_strategy()
    if mode is Distribute.MIRRORED:
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        # On CPUs, all-reduce through the host: NCCL is for GPUs only.
        cross = None if gpus else tf.distribute.ReductionToOneDevice()
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=cross)
    check_multiworker()
    return multiworker_fit_fixes(tf.distribute.MultiWorkerMirroredStrategy())


def scaled(config: TrainConfig, replicas: int) -> TrainConfig:
    """`config` with the global batch size and learning rate for `replicas` replicas."""
    if replicas <= 1:
        return config
    return replace(
        config,
        batch_size=config.batch_size * replicas,
        learning_rate=config.learning_rate * math.sqrt(replicas),
    )


def describe(config: TrainConfig, model) -> dict:
    """What the manifest records: strategy, replicas, workers and the effective batch and rate."""
    strategy = getattr(model, "distribute_strategy", None)
    replicas = int(getattr(strategy, "num_replicas_in_sync", 1) or 1)
    workers = 1
    if config.distribute is Distribute.MULTIWORKER:
        cluster = tf_config().get("cluster") or {}
        workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    eff = scaled(config, replicas)
    return {
        "mode": config.distribute.value,
        "replicas": replicas,
        "workers": max(1, workers),
        "global_batch_size": eff.batch_size,
        "learning_rate": eff.learning_rate,
        "rule": "global batch = batch_size x replicas; learning rate = lr x sqrt(replicas)",
    }


def in_strategy(fit):
    """Decorate `_fit(config, data)`: run it inside the configured strategy's scope, with the
    scaled global batch size and learning rate in the config it receives."""

    @functools.wraps(fit)
    def wrapper(config: TrainConfig, data, *args, **kwargs):
        if config.distribute is Distribute.NONE:
            return fit(config, data, *args, **kwargs)
        strategy = make_strategy(config.distribute)
        with strategy.scope():
            return fit(scaled(config, strategy.num_replicas_in_sync), data, *args, **kwargs)

    return wrapper


@contextmanager
def run_dir_for_this_process(out: Path, mode: Distribute) -> Iterator[Path]:
    """`out` on the chief; elsewhere a throwaway path in a temporary folder, deleted after."""
    if is_chief(mode):
        yield out
        return
    scratch = Path(tempfile.mkdtemp(prefix="edge-train-worker-"))
    try:
        yield scratch / out.name
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
