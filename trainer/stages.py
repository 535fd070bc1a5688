"""Fitting in stages: one plain stage from scratch, or head-then-fine-tune from a pretrained start.

Each stage compiles a fresh Adam at its own rate. The weights kept are those of the best
validation-mAP epoch over all stages: a fine-tuning stage that never beats the head stage does
not get to overwrite it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import FineTune, TrainConfig
from .transfer import set_stage_trainable

FINE_TUNE_LR_SCALE = 0.1  # stage 2 rate = learning_rate x this: adapt features, do not wipe them
INIT_FROM_LR_SCALE = 0.3  # --init-from: the model already knows the domain; fresh head columns
WARMUP_EPOCHS = 1  # linear warm-up of the rate at the start of a stage that moves pretrained layers


@dataclass(frozen=True)
class Stage:
    name: str  # "train" (everything), "head" (backbone frozen) or "fine-tune"
    epochs: int
    learning_rate: float
    warmup: bool

    def describe(self, fine_tune: FineTune) -> str:
        what = {
            "train": "all layers",
            "head": "the head, backbone frozen",
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
    head = Stage("head", config.stage1_epochs, lr, warmup=False)
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
) -> tuple[dict, int]:
    """Fit `model` stage by stage; returns (history with a "stage" entry per epoch, best epoch).

    `train_ds` is the endless training stream (an epoch is `steps_per_epoch` batches); `val_x`
    the validation `ShardView`."""
    import keras

    from .callbacks import EpochLog, ValidationMetrics, WarmUp

    history: dict[str, list] = {}
    best = (-np.inf, None, 0)  # (val mAP, weights, 1-based epoch over all stages)
    for k, stage in enumerate(stages):
        if len(stages) > 1:
            log(f"stage {k + 1}/{len(stages)}: {stage.describe(config.fine_tune)}")
        set_stage_trainable(model, stage.name, config.fine_tune)
        model.compile(
            optimizer=keras.optimizers.Adam(stage.learning_rate),
            loss=loss_fn,
            metrics=[keras.metrics.BinaryAccuracy(name="accuracy")],
        )  # reported, never selects
        callbacks = [ValidationMetrics(val_x, val_y, loss_fn)]  # first: the others read val_map
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
        hist = model.fit(
            train_ds,
            epochs=stage.epochs,
            callbacks=callbacks,
            verbose=0,
            shuffle=False,
            steps_per_epoch=steps_per_epoch,
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
