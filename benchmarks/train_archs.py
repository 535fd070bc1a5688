"""Train each arch with the default TrainConfig on the demo set; evaluate on the held-out test.csv.

    python benchmarks/train_archs.py [OUT_DIR] [ARCH ...]

Writes demo data (1500 train / 300 test, 96 px, seed 0) once, then one run per arch; prints one
JSON line per arch: test macro-F1 at the calibrated (validation-tuned) thresholds and at 0.5,
test mAP, and training seconds.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edge_runtime.dataset import read_labels_csv
from edge_runtime.metrics import multilabel_report
from trainer import TrainConfig, train
from trainer.demo_data import DemoConfig, make_demo_dataset
from trainer.images import load_images


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/edge-bench")
    archs = sys.argv[2:] or ["compact", "seed"]
    demo = out / "demo"
    if not (demo / "test.csv").is_file():
        make_demo_dataset(DemoConfig(str(demo), n_train=1500, n_test=300, image_size=96, seed=0))
    for arch in archs:
        run_dir = out / f"run_{arch}"
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        r = train(TrainConfig(data=str(demo / "train.csv"), out=str(run_dir), arch=arch, cache_dir=str(out / "cache")))
        import keras

        test = read_labels_csv(demo / "test.csv", labels=r.labels)
        x, _ = load_images(test.paths, tuple(r.manifest["input_size"]), cache_dir=out / "cache")
        model = keras.models.load_model(run_dir / "model.keras", safe_mode=True)
        scores = model.predict(x.astype(np.float32), verbose=0)
        cal = multilabel_report(test.y, scores, np.asarray(r.thresholds), r.labels)
        at05 = multilabel_report(test.y, scores, 0.5, r.labels)
        print(json.dumps({"arch": arch, "input_size": r.manifest["input_size"][0],
                          "test_macro_f1": round(cal["macro_f1"], 4), "test_macro_f1_at_0.5": round(at05["macro_f1"], 4),
                          "test_map": round(cal["map"], 4), "epochs_run": r.manifest["training"]["epochs_run"],
                          "train_seconds": round(r.seconds, 1)}), flush=True)


if __name__ == "__main__":
    main()
