"""What the trainer tests share: a tiny training configuration (a run takes seconds)."""

from __future__ import annotations

from trainer import TrainConfig


def tiny_config(data, out, **kw) -> TrainConfig:
    """compact at 32 px, 2 epochs, batch 32, quiet, seed 0; `kw` overrides any of it.

    compact, not the default efficientnet_lite0: these tests are about the pipeline, and a small
    network from scratch trains in seconds."""
    base = dict(
        data=str(data),
        out=str(out),
        arch="compact",
        input_size=32,
        epochs=2,
        batch_size=32,
        patience=5,
        verbose=False,
        seed=0,
    )
    base.update(kw)
    return TrainConfig(**base)
