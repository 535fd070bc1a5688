"""Training callbacks: validation mAP (the selection metric) and one stderr line per epoch."""

from __future__ import annotations

import math
import sys
import time

import keras
import numpy as np

from edge_common.shards import ShardView
from edge_runtime.evaluation.metrics import mean_average_precision

from ..data.streaming import predict


class ValidationMetrics(keras.callbacks.Callback):
    """Score the validation set once per epoch; put `val_loss` and `val_map` into the logs.

    Must come before EarlyStopping / ReduceLROnPlateau in the callback list: they read the same
    logs dict. One scoring pass serves both numbers (no separate Keras validation pass), read
    from the shards a batch at a time: memory is one batch, not the validation set.
    mAP, not accuracy, selects the model: binary accuracy rewards predicting "absent".
    """

    def __init__(self, x_val: ShardView, y_val: np.ndarray, loss_fn) -> None:
        super().__init__()
        self.x_val = x_val
        self.y_val = np.asarray(y_val, dtype=np.float32)
        self.loss_fn = loss_fn

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        scores = predict(self.model, self.x_val)
        val_loss = float(np.mean(keras.ops.convert_to_numpy(self.loss_fn(self.y_val, scores))))
        m = mean_average_precision(self.y_val, scores)
        logs["val_loss"], logs["val_map"] = agree_across_workers(
            val_loss, 0.0 if math.isnan(m) else m
        )


def agree_across_workers(*values: float) -> tuple[float, ...]:
    """The mean of each value over all workers, so that early stopping and LR decisions match.

    Every worker computes the same figures from the same weights and data; averaging guards
    against last-bit differences between machines (a worker that stopped alone would leave the
    others waiting in the next all-reduce forever).
    """
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return values
    local = tf.constant(values, dtype=tf.float32)

    @tf.function  # collectives run eagerly are slow and warned about
    def mean():
        return strategy.reduce(
            tf.distribute.ReduceOp.MEAN, strategy.run(lambda: tf.identity(local)), axis=None
        )

    return tuple(float(v) for v in mean().numpy())


class WarmUp(keras.callbacks.Callback):
    """Raise the rate linearly from target/steps to `target` over `steps` batches, then let go.

    Fresh head columns give large gradients at first; at full rate they would push pretrained
    layers far from where they were before the head has settled.
    """

    def __init__(self, target: float, steps: int) -> None:
        super().__init__()
        self.target, self.steps, self.step = float(target), max(1, int(steps)), 0

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.step < self.steps:
            self.step += 1
            self.model.optimizer.learning_rate = self.target * self.step / self.steps


CLEAR_LINE = "\r\x1b[K"  # carriage return + erase to end of line: replaces the batch bar


class EpochLog(keras.callbacks.Callback):
    """`epoch 3/30  loss 0.2345  val_loss 0.2011  val_mAP 0.912  lr 3.0e-03  4.1s` on stderr.

    Keras's own progress bar is off: stdout is reserved for results (`--json`). On a terminal a
    bar of the batches redraws in place during each epoch; in a log file only the epoch lines
    appear. Only prints: it never adds to the logs, so the history is the same with and without
    progress output. The rate shown is the epoch's (`learning_rate`, logged by ReduceLROnPlateau
    before it reduces), else the optimizer's current one.
    """

    def __init__(self, epochs: int, steps: int | None = None, stream=None) -> None:
        super().__init__()
        self.epochs = epochs
        self.steps = steps
        self.stream = stream or sys.stderr
        self.live = bool(steps) and getattr(self.stream, "isatty", lambda: False)()
        self._t0 = 0.0
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._t0 = time.perf_counter()
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if not self.live:
            return
        done = min(batch + 1, self.steps)
        filled = int(24 * done / self.steps)
        loss = (logs or {}).get("loss", float("nan"))
        print(
            f"\repoch {self._epoch + 1}/{self.epochs} [{'=' * filled}{' ' * (24 - filled)}] "
            f"{done}/{self.steps}  loss {loss:.4f}",
            end="",
            file=self.stream,
            flush=True,
        )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        lr = logs.get("learning_rate")
        if lr is None:
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        print(
            f"{CLEAR_LINE if self.live else ''}epoch {epoch + 1}/{self.epochs}  loss {logs.get('loss', float('nan')):.4f}  "
            f"val_loss {logs.get('val_loss', float('nan')):.4f}  val_mAP {logs.get('val_map', float('nan')):.4f}  "
            f"lr {lr:.1e}  {time.perf_counter() - self._t0:.1f}s",
            file=self.stream,
            flush=True,
        )
