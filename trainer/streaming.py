"""Training input streamed from shards on disk (edge_common.shards): memory flat in data size.

The training stream reads the shard files with TensorFlow's native fixed-length record reader
(no Python per image, no memory map), interleaves a few shards at a time, keeps only the split's
rows, shuffles them in a bounded buffer of raw pixels, then casts and augments exactly like the
in-memory pipeline (`trainer.augment`). Under a `tf.distribute` strategy each worker reads its
own shards (or, with fewer shard files than workers, its own rows of them). An epoch is a fixed
number of steps (`steps_per_epoch`) over an endlessly repeated stream, so every worker takes the
same number of steps (a worker with one batch more would wait forever for the others), and each
epoch sees every row at least once.

Validation and final predictions read the pixels in table order, a batch at a time, and call
the model directly: memory is one batch, and no cross-worker gathering is involved.
"""

from __future__ import annotations

import functools
import math
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

from edge_common.shards import ShardView, load_table_shards, print_progress
from edge_runtime.evaluation.dataset import LabelTable

from .config import Augment, TrainConfig

SHUFFLE_BYTES = 128 << 20  # the shuffle buffer holds ~128 MB of raw pixels (4,854 images at 96 px)
MIN_SHUFFLE = 1024
CYCLE = 4  # shards read at once: more mixing per buffer, more open files
PREDICT_BATCH = 128


def streamed_table(
    table: LabelTable, size: tuple[int, int], config: TrainConfig
) -> tuple[LabelTable, ShardView]:
    """Decode `table` into shards (or find them in `config.cache_dir`); unreadable rows dropped.

    Without a cache dir the shards go to a hidden temporary folder beside the run directory
    (the disk the user chose for results, not a possibly RAM-backed /tmp), removed afterwards.
    """
    temporary = config.cache_dir is None
    if temporary:
        out = Path(config.out).expanduser().resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        root = tempfile.mkdtemp(prefix=f".{out.name}.shards-", dir=out.parent)
    else:
        root = config.cache_dir
    progress = print_progress(table.csv_path.name) if config.verbose else None
    try:
        return load_table_shards(
            table,
            size,
            "training",
            root,
            workers=config.workers,
            progress=progress,
            temporary=temporary,
        )
    except BaseException:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
        raise


def shuffle_buffer(view: ShardView) -> int:
    return max(MIN_SHUFFLE, SHUFFLE_BYTES // view.shards.record_bytes)


def make_stream(
    view: ShardView,
    y: np.ndarray,
    batch_size: int,
    augment: Augment | None = None,
    shuffle: bool = True,
    seed: int = 0,
):
    """The streamed twin of `trainer.augment.make_dataset`: batches of (float32 0-255, multi-hot).

    `batch_size` is the global batch. Inside a multi-replica `tf.distribute` strategy scope the
    result is a distributed dataset (each replica gets `batch_size / replicas` images a step).
    With `shuffle=False` it yields the rows once, in table order (tests, inspection).
    """
    import tensorflow as tf

    y = np.asarray(y, dtype=np.float32)
    if not shuffle:
        h, w, _ = view.shards.shape
        ds = tf.data.Dataset.from_generator(
            lambda: view.batches(PREDICT_BATCH),
            output_signature=tf.TensorSpec((None, h, w, 3), tf.uint8),
        ).unbatch()
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(y)))
        ds = ds.map(lambda img, lab: (tf.cast(img, tf.float32), lab))
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    strategy = tf.distribute.get_strategy()
    if strategy.num_replicas_in_sync == 1:
        return _train_stream(view, y, batch_size, augment, seed, 0, 1)

    def per_worker(ctx: tf.distribute.InputContext):
        return _train_stream(
            view,
            y,
            ctx.get_per_replica_batch_size(batch_size),
            augment,
            seed,
            ctx.input_pipeline_id,
            ctx.num_input_pipelines,
        )

    return strategy.distribute_datasets_from_function(per_worker)


def steps_per_epoch(x, batch_size: int) -> int | None:
    """`model.fit(steps_per_epoch=)` for a stream (endless: see the module doc); None for arrays."""
    return None if isinstance(x, np.ndarray) else math.ceil(len(x) / batch_size)


def _train_stream(
    view: ShardView,
    y: np.ndarray,
    batch_size: int,
    augment: Augment | None,
    seed: int,
    pipeline: int,
    pipelines: int,
):
    """One input pipeline: its part of the rows, shuffled, augmented, batched, repeated forever."""
    import tensorflow as tf

    from .augment import _augment_fn

    h, w, _ = view.shards.shape
    ytab = np.zeros((len(view.shards), y.shape[1]), dtype=np.float32)  # labels by shard position
    ytab[view.positions] = y
    ytab_t = tf.constant(ytab)
    ds = split_records(view, pipeline, pipelines, shuffle_files=True, seed=seed)
    ds = ds.shuffle(shuffle_buffer(view), seed=seed, reshuffle_each_iteration=True).repeat()

    def decode(pos, rec):
        img = tf.reshape(tf.io.decode_raw(rec, tf.uint8), (h, w, 3))
        return tf.cast(img, tf.float32), tf.gather(ytab_t, pos)

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None and augment.enabled:
        fn = _augment_fn(augment, h, w)
        ds = ds.map(lambda img, lab: (fn(img), lab), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def split_records(
    view: ShardView,
    pipeline: int = 0,
    pipelines: int = 1,
    shuffle_files: bool = False,
    seed: int = 0,
):
    """One pass over this pipeline's share of the view's rows: (shard position, raw pixel bytes).

    With at least as many shard files as pipelines, each pipeline reads only its own files;
    otherwise every pipeline reads all files in one fixed order and keeps every `pipelines`-th
    row of the view.
    """
    import tensorflow as tf

    shards = view.shards
    member = np.zeros(len(shards), dtype=bool)  # by shard position: is the row in this split?
    member[view.positions] = True
    member_t = tf.constant(member)
    files = [str(s.file) for s in shards.shards]
    table = tf.data.Dataset.from_tensor_slices(
        (
            files,
            *(
                np.array([getattr(s, k) for s in shards.shards], dtype=np.int64)
                for k in ("header_bytes", "start", "count")
            ),
        )
    )
    by_file = pipelines > 1 and len(files) >= pipelines
    by_row = pipelines > 1 and not by_file
    if by_file:
        table = table.shard(pipelines, pipeline)
    if shuffle_files and not by_row:  # row-level sharding needs one fixed file order
        table = table.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)

    def read(file, header, start, count):
        recs = tf.data.FixedLengthRecordDataset(
            file, shards.record_bytes, header_bytes=header, buffer_size=1 << 20
        )
        return tf.data.Dataset.zip((tf.data.Dataset.range(start, start + count), recs))

    ds = table.interleave(
        read,
        cycle_length=min(CYCLE, len(files)),
        block_length=16,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=by_row or not shuffle_files,
    )
    ds = ds.filter(lambda pos, rec: tf.gather(member_t, pos))
    return ds.shard(pipelines, pipeline) if by_row else ds


def predict(model, x, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """Scores of `x` (an array, or a `ShardView` read a batch at a time) in its row order."""
    if isinstance(x, np.ndarray):
        return model.predict(x.astype(np.float32), batch_size=64, verbose=0)
    import tensorflow as tf

    call = _inference_fn(model)
    out = [call(tf.convert_to_tensor(b, dtype=tf.float32)).numpy() for b in x.batches(batch_size)]
    n_labels = int(model.outputs[0].shape[-1])
    return np.concatenate(out, axis=0) if out else np.zeros((0, n_labels), np.float32)


_INFERENCE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _inference_fn(model):
    """The model's compiled inference call, traced once per model (not once per epoch).

    A direct call, not `model.predict`: no per-replica splitting and gathering under a strategy
    (every worker scores the same full set with the same weights).
    """
    import tensorflow as tf

    fn = _INFERENCE.get(model)
    if fn is None:
        ref = weakref.ref(model)  # the cached function must not keep the model alive
        fn = _INFERENCE[model] = tf.function(
            lambda t: ref()(t, training=False), reduce_retracing=True
        )
    return fn


def validation_callback(x_val, y_val: np.ndarray, loss_fn):
    """`callbacks.ValidationMetrics` for arrays; its streamed twin for a `ShardView`."""
    from .callbacks import ValidationMetrics

    if isinstance(x_val, np.ndarray):
        return ValidationMetrics(x_val, y_val, loss_fn)
    return _streamed_validation_class()(x_val, y_val, loss_fn)


@functools.cache
def _streamed_validation_class():
    # Defined on first use: trainer.callbacks imports Keras, and this module must not (data.py,
    # which runs before TensorFlow may start, imports it).
    from .callbacks import ValidationMetrics

    class StreamedValidationMetrics(ValidationMetrics):
        """ValidationMetrics over a `ShardView`: one batch in memory, not the validation set."""

        def __init__(self, x_val: ShardView, y_val: np.ndarray, loss_fn) -> None:
            super().__init__(np.zeros((0, 1, 1, 3), np.float32), y_val, loss_fn)
            self.x_val = x_val

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            import keras

            from edge_runtime.evaluation.metrics import mean_average_precision

            if logs is None:
                return
            scores = predict(self.model, self.x_val)
            val_loss = float(np.mean(keras.ops.convert_to_numpy(self.loss_fn(self.y_val, scores))))
            m = mean_average_precision(self.y_val, scores)
            logs["val_loss"], logs["val_map"] = _agree_across_workers(
                val_loss, 0.0 if math.isnan(m) else m
            )

    return StreamedValidationMetrics


def _agree_across_workers(*values: float) -> tuple[float, ...]:
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
