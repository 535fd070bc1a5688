"""Fitting in stages: one plain stage from scratch, or head-then-fine-tune from a pretrained start.

Each stage compiles a fresh Adam at its own rate. The weights kept are those of the best
validation-mAP epoch over all stages: a fine-tuning stage that never beats the head stage does
not get to overwrite it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import Distribute, FineTune, HeadFeatures, TrainConfig
from ..model.transfer import set_stage_trainable

FINE_TUNE_LR_SCALE = 0.1  # stage 2 rate = learning_rate x this: adapt features, do not wipe them
INIT_FROM_LR_SCALE = 0.3  # --init-from: the model already knows the domain; fresh head columns
WARMUP_EPOCHS = 1  # linear warm-up of the rate at the start of a stage that moves pretrained layers
# Stage 1 on cached features fits a linear head on fixed features: at the base rate it needed
# 40-60 epochs to converge (EfficientNet-Lite0, 480 images), at 10x it converged in 10 to the
# same validation mAP (0.744 vs 0.747; benchmarks/bm_pretrained.py's data). Epochs there are cheap,
# but the budget (`epochs`, `head_epochs`) means the same with or without the cache.
CACHED_HEAD_LR_SCALE = 10.0


@dataclass(frozen=True)
class Stage:
    name: str  # "train" (everything), "head" (backbone frozen) or "fine-tune"
    epochs: int
    learning_rate: float
    warmup: bool
    cached: bool = False  # a head stage on pooled features computed once (head_cache)

    def describe(self, fine_tune: FineTune) -> str:
        what = {
            "train": "all layers",
            "head": "the head, backbone frozen" + (", on cached features" if self.cached else ""),
            "fine-tune": f"head + {fine_tune.value} of the backbone (batch norm frozen)",
        }[self.name]
        return f"{self.name}: {what}, {self.epochs} epochs max at lr {self.learning_rate:.1e}" + (
            " with warm-up" if self.warmup else ""
        )


def plan_stages(config: TrainConfig) -> list[Stage]:
    """The stages `config` trains in (recorded in the manifest)."""
    lr = config.learning_rate
    if config.init_from:
        return [Stage("train", config.epochs, lr * INIT_FROM_LR_SCALE, warmup=True)]
    if not config.pretrained:
        return [Stage("train", config.epochs, lr, warmup=False)]
    cached = caches_head_features(config)
    head = Stage(
        "head",
        config.stage1_epochs,
        lr * CACHED_HEAD_LR_SCALE if cached else lr,
        warmup=False,
        cached=cached,
    )
    rest = config.epochs - head.epochs
    if config.fine_tune is FineTune.NONE or rest < 1:
        return [head]
    return [head, Stage("fine-tune", rest, lr * FINE_TUNE_LR_SCALE, warmup=True)]


def fit_stages(
    model,
    config: TrainConfig,
    stages: list[Stage],
    train_ds,
    val_x,
    val_y,
    loss_fn,
    steps_per_epoch: int,
    log,
    train_xy: tuple | None = None,
) -> tuple[dict, int]:
    """Fit `model` stage by stage; returns (history with a "stage" entry per epoch, best epoch).

    `train_ds` is the endless training stream (an epoch is `steps_per_epoch` batches); `val_x`
    the validation `ShardView`. With `train_xy` (the training images un-augmented, a `ShardView`,
    and their labels), a head stage may train on features computed once (head_cache).
    """
    import keras

    from .callbacks import EpochLog, ValidationMetrics, WarmUp

    history: dict[str, list] = {}
    best = (-np.inf, None, 0)  # (val mAP, weights, 1-based epoch over all stages)
    for k, stage in enumerate(stages):
        if len(stages) > 1:
            log(f"stage {k + 1}/{len(stages)}: {stage.describe(config.fine_tune)}")
        set_stage_trainable(model, stage.name, config.fine_tune)
        fitted, data, steps, val = model, train_ds, steps_per_epoch, (val_x, val_y)
        if stage.cached:
            fitted, data, steps, val = _on_cached_features(model, config, train_xy, val, log)
        fitted.compile(
            optimizer=keras.optimizers.Adam(stage.learning_rate),
            loss=loss_fn,
            metrics=[keras.metrics.BinaryAccuracy(name="accuracy")],
        )  # reported, never selects
        callbacks = [ValidationMetrics(*val, loss_fn)]  # first: the others read val_map
        if stage.warmup:
            callbacks.append(WarmUp(stage.learning_rate, WARMUP_EPOCHS * steps_per_epoch))
        if config.early_stop:
            callbacks += [
                keras.callbacks.ReduceLROnPlateau(
                    monitor="val_map",
                    mode="max",
                    factor=0.3,
                    patience=max(1, config.patience // 2),
                    min_lr=1e-6,
                    verbose=0,
                ),
                keras.callbacks.EarlyStopping(
                    monitor="val_map",
                    mode="max",
                    patience=config.patience,
                    restore_best_weights=True,
                    verbose=0,
                ),
            ]
        if config.verbose:
            callbacks.append(EpochLog(stage.epochs, steps=steps_per_epoch))
        hist = fitted.fit(
            data,
            epochs=stage.epochs,
            callbacks=callbacks,
            verbose=0,
            shuffle=False,
            steps_per_epoch=steps,
        )
        done = len(history.get("loss", []))
        n = len(hist.history.get("loss", []))
        for key, vals in {**hist.history, "stage": [stage.name] * n}.items():
            history.setdefault(key, [None] * done).extend(
                v if key == "stage" else float(v) for v in vals
            )
        for key in history:  # a key only some stages log (learning_rate) stays aligned
            history[key].extend([None] * (done + n - len(history[key])))
        val_map = hist.history.get("val_map", [])
        if not config.early_stop:  # the last epoch's weights, as a plain script keeps them
            best = (val_map[-1] if val_map else np.nan, None, done + n)
            continue
        i = int(np.argmax(val_map)) if val_map else n - 1
        if val_map and val_map[i] > best[0]:
            best = (val_map[i], model.get_weights(), done + i + 1)  # EarlyStopping restored epoch i
        elif best[1] is not None:
            model.set_weights(best[1])  # this stage did worse than an earlier one: keep that
    return history, best[2]


def caches_head_features(config: TrainConfig) -> bool:
    """Whether stage 1 trains on cached features (head_cache): by default, but not when the config
    asks for augmented images, nor under a tf.distribute strategy (each worker would compute
    every feature, and the head's tiny steps gain nothing from replicas)."""
    return config.head_features is HeadFeatures.CACHED and config.distribute is Distribute.NONE


def _on_cached_features(model, config: TrainConfig, train_xy, val, log):
    """(head model, its dataset, steps None, validation on features) for a cached head stage."""
    import time

    from . import head_cache

    if train_xy is None or not head_cache.usable(model):
        raise ValueError("a cached head stage needs the un-augmented training set and a backbone")
    t0 = time.perf_counter()
    f_train = head_cache.pooled_features(model, train_xy[0])
    f_val = head_cache.pooled_features(model, val[0])
    log(
        f"  backbone features of {len(f_train) + len(f_val)} images in {time.perf_counter() - t0:.1f}s"
    )
    ds = head_cache.feature_dataset(f_train, train_xy[1], config.batch_size, config.seed)
    # the feature set is finite: an epoch is one pass (steps None)
    return head_cache.head_model(model), ds, None, (head_cache.Rows(f_val), val[1])
