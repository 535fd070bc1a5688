"""A model for bm_serve.py whose inference, not the decode, dominates a request: MobileNetV2 at
224x224, random weights (speed does not depend on them), three sigmoid labels, exported float32
with the toolkit's metadata. Needs TensorFlow (the full environment).

    python benchmarks/bm_serve_model.py /tmp/mobilenetv2.tflite
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(out: str) -> None:
    import tensorflow as tf

    from edge_runtime.inference.preprocess import PREPROCESSING
    from exporter.convert import convert
    from exporter.model_metadata import ModelInfo, write_model

    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((224, 224, 3))
    x = tf.keras.layers.Rescaling(1 / 127.5, offset=-1)(inp)
    base = tf.keras.applications.MobileNetV2(
        input_shape=(224, 224, 3), include_top=False, weights=None, pooling="avg"
    )
    model = tf.keras.Model(inp, tf.keras.layers.Dense(3, activation="sigmoid")(base(x)))
    meta = {
        "labels": ["red", "green", "blue"],
        "thresholds": [0.5, 0.5, 0.5],
        "input": {"width": 224, "height": 224, "dtype": "float32"},
        "preprocessing": dict(PREPROCESSING),
        "arch": "mobilenetv2",
        "quantization": "float32",
    }
    info = ModelInfo(
        name="bench-mobilenetv2",
        description="bm_serve: random weights, for speed only",
        version="1",
        author="edge-multilabel benchmarks",
        license="Apache-2.0",
    )
    Path(out).write_bytes(write_model(convert(model, "float32"), meta, info))
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/bm_serve_model.py OUT.tflite")
    main(sys.argv[1])
