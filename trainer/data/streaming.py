"""The trainer's one input pipeline: decoded images streamed from shards on disk (edge_common.shards).

Memory stays flat in data size, and at small sizes streaming costs nothing against decoding
into RAM (measured: benchmarks/results/pipeline.md), so there is no second, in-memory pipeline.
The training stream reads the shard files with TensorFlow's native fixed-length record reader
(no Python per image, no memory map), interleaves a few shards at a time, keeps only the split's
rows, shuffles them in a bounded buffer of raw pixels, then casts and augments them
(`trainer.data.augment`). Under a `tf.distribute` strategy each worker reads its
own shards (or, with fewer shard files than workers, its own rows of them). An epoch is a fixed
number of steps (`steps_per_epoch`) over an endlessly repeated stream, so every worker takes the
same number of steps (a worker with one batch more would wait forever for the others), and each
epoch sees every row at least once.

Validation and final predictions read the pixels in table order, a batch at a time, and call
the model directly: memory is one batch, and no cross-worker gathering is involved.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

from edge_common.shards import ShardView, load_table_shards, print_progress
from edge_runtime.evaluation.dataset import LabelTable

from ..config import Augment, TrainConfig

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
    """The training input: batches of (float32 0-255 images, float32 multi-hot labels).

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


def steps_per_epoch(view: ShardView, batch_size: int) -> int:
    """`model.fit(steps_per_epoch=)`: the stream is endless (see the module doc)."""
    return math.ceil(len(view) / batch_size)


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

    from .augment import augment_fn

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
        fn = augment_fn(augment, h, w)
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


def predict(model, view: ShardView, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """Scores of the view's images in its row order, read a batch at a time."""
    import tensorflow as tf

    call = _inference_fn(model)
    out = [
        call(tf.convert_to_tensor(b, dtype=tf.float32)).numpy() for b in view.batches(batch_size)
    ]
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
