"""Training benchmark on the harder clutter demo: each architecture from each start, held-out test.

    python benchmarks/bm_training.py --out benchmarks/results [--work DIR] [--smoke]

Data (all generated, seeded; nothing downloaded): the target task is `trainer.demo.clutter_demo` with
7 labels in a long tail, 300 training and 300 test images from "camera 0". Two other sets stand
in for what a user would start from:
- "pretraining": the shapes demo (`trainer.demo.demo_data`: large plain shapes, labels circle, square,
  triangle, star, cross, none of them a target label), 1,200 images. A mobilenetv2 trained on it
  from scratch gives the backbone `--weights` file (it stands in for ImageNet here; no download
  is possible). compact and seed have no separate backbone: no pretrained row for them.
- "old camera": 6 of the 7 target labels from camera 1, 600 images: the run a user already has
  when new photos arrive (compact from scratch; mobilenetv2 from the pretrained backbone).
  `--init-from` it (the 7th label starts fresh).
Each row: test mAP / macro-F1 at the run's thresholds on the 300 held-out images, the test set's
chance mAP (mean prevalence), and the verdict the trainer gave on validation. Writes
training.md and training.json (atomically) with the machine and the command.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bm_common import log, machine_info  # noqa: E402

TARGET = ("hexagon", "ring", "arrow", "diamond", "pentagon", "bar", "tee")
PROFILES = {
    "full": dict(
        size=64, n_target=300, n_test=300, n_task_a=1200, n_old=600, epochs=25, pretrain_epochs=15
    ),
    "smoke": dict(
        size=32, n_target=48, n_test=32, n_task_a=64, n_old=48, epochs=2, pretrain_epochs=2
    ),
}
MNV2_WIDTH = 0.5  # alpha of mobilenetv2 here: a CPU-friendly size for a shared 2-core machine


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument(
        "--work", default=None, help="keep data and runs here (default: a temp dir, removed)"
    )
    p.add_argument(
        "--smoke", action="store_true", help="tiny settings (a wiring check, figures meaningless)"
    )
    return p.parse_args(argv)


def make_data(work: Path, prof: dict) -> dict:
    from trainer.demo.clutter_demo import ClutterConfig, make_clutter_dataset
    from trainer.demo.demo_data import DemoConfig, make_demo_dataset

    s = prof["size"]
    target, test = make_clutter_dataset(
        ClutterConfig(
            str(work / "target"),
            prof["n_target"],
            prof["n_test"],
            s,
            seed=13,
            labels=TARGET,
            camera=0,
        )
    )
    # Pretraining: the shapes demo (large plain shapes, none of them a target label), learnable
    # from scratch in minutes, unlike the clutter set.
    task_a, _ = make_demo_dataset(DemoConfig(str(work / "task_a"), prof["n_task_a"], 1, s, seed=11))
    old, _ = make_clutter_dataset(
        ClutterConfig(
            str(work / "old_camera"), prof["n_old"], 0, s, seed=12, labels=TARGET[:6], camera=1
        )
    )
    return {"target": target, "test": test, "task_a": task_a, "old": old}


def run_all(work: Path, prof: dict, data: dict) -> list[dict]:
    from trainer import TrainConfig, train
    from trainer.model.transfer import save_backbone_weights

    runs = work / "runs"
    common = dict(input_size=prof["size"], verbose=False, cache_dir=str(work / "cache"))

    def fit(name, **kw):
        t0 = time.perf_counter()
        cfg = dict(common, epochs=prof["epochs"])
        cfg.update(kw)
        log(f"training {name} ...")
        res = train(TrainConfig(out=str(runs / name), **cfg))
        log(
            f"  {name}: {res.manifest.training.epochs_run} epochs, {time.perf_counter() - t0:.0f} s, "
            f"val mAP {res.manifest.metrics.calibrated['map']:.3f}, {res.manifest.verdict}"
        )
        return res

    mn = dict(arch="mobilenetv2", width=MNV2_WIDTH)
    sources = {
        "mnv2_task_a": fit(
            "mnv2_task_a", data=str(data["task_a"]), epochs=prof["pretrain_epochs"], **mn
        )
    }
    weights = save_backbone_weights(
        sources["mnv2_task_a"].run_dir, work / "task_a_backbone.weights.h5"
    )
    # The runs a user already has from the old camera: compact from scratch, mobilenetv2 the way
    # the README recommends (from the pretrained backbone).
    sources["compact_old"] = fit("compact_old", data=str(data["old"]), arch="compact")
    sources["mnv2_old"] = fit("mnv2_old", data=str(data["old"]), weights=str(weights), **mn)
    tgt = str(data["target"])

    rows = [
        ("seed", "scratch (--recipe seed)", fit("seed_recipe", **_seed_cfg(tgt, prof))),
        ("compact", "scratch", fit("compact_scratch", data=tgt, arch="compact")),
        (
            "compact",
            "init-from (old camera run)",
            fit("compact_init", data=tgt, init_from=str(sources["compact_old"].run_dir)),
        ),
        ("mobilenetv2", "scratch", fit("mnv2_scratch", data=tgt, **mn)),
        (
            "mobilenetv2",
            "pretrained (--weights task-A backbone, two stages)",
            fit("mnv2_pre", data=tgt, weights=str(weights), **mn),
        ),
        (
            "mobilenetv2",
            "init-from (old camera run, itself pretrained)",
            fit("mnv2_init", data=tgt, init_from=str(sources["mnv2_old"].run_dir)),
        ),
    ]
    return [evaluate(arch, start, res, data["test"]) for arch, start, res in rows]


def _seed_cfg(tgt: str, prof: dict) -> dict:
    from trainer.config import RECIPES, Recipe

    # The seed recipe as it is (5 epochs, its network), at the benchmark's input size.
    return dict(
        RECIPES[Recipe.SEED], data=tgt, input_size=prof["size"], epochs=min(5, prof["epochs"])
    )


def evaluate(arch: str, start: str, res, test_csv: Path) -> dict:
    """Held-out test metrics of a run's Keras model through the one preprocessing path."""
    import keras

    from edge_common.images import load_table
    from edge_common.run import MODEL_FILE
    from edge_runtime.evaluation.dataset import read_labels_csv
    from edge_runtime.evaluation.metrics import multilabel_report
    from trainer.fit.quality import assess

    labels = res.labels
    size = res.manifest.input_size
    table, x = load_table(read_labels_csv(test_csv), size, "test")
    index = {n: j for j, n in enumerate(table.labels)}  # a label the run never saw scores no column
    y = np.stack(
        [
            table.y[:, index[n]] if n in index else np.zeros(len(table), table.y.dtype)
            for n in labels
        ],
        1,
    )
    model = keras.models.load_model(res.run_dir / MODEL_FILE, safe_mode=True, compile=False)
    scores = model.predict(x.astype(np.float32), batch_size=64, verbose=0)
    rep = multilabel_report(y, scores, np.asarray(res.thresholds), labels)
    q_test = assess(y, scores, labels)
    m = res.manifest
    return {
        "arch": arch,
        "start": start,
        "run": res.run_dir.name,
        "epochs_run": m.training.epochs_run,
        "seconds": round(res.seconds, 1),
        "val_map": m.metrics.calibrated["map"],
        "val_verdict": m.verdict,
        "test_map": rep["map"],
        "test_macro_f1": rep["macro_f1"],
        "test_chance_map": q_test["chance_map"],
        "test_mean_lift": q_test["mean_lift"],
        "test_verdict": q_test["verdict"],
        "labels_at_chance_val": m.quality["not_learned"],
    }


def markdown(report: dict) -> str:
    mach = report["machine"]
    lines = [
        "# Training benchmark: the clutter demo (small objects, textured backgrounds, long label tail)",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {mach.get('cpu_model')}, {mach.get('logical_cores')} logical cores (shared VM; other jobs "
        f"were training at the same time), {mach.get('platform')}  ",
        f"Finished {report['finished']} in {report['seconds']:.0f} s. Profile: `{report['profile_name']}` "
        f"{report['profile']}; mobilenetv2 alpha {MNV2_WIDTH}.",
        "",
        "Target: 7 labels, 300 training images (20% of them validation), 300 held-out test images; test "
        "metrics at each run's kept thresholds. Chance = the mAP of a random ranking (mean prevalence).",
        "",
        "| arch | start | epochs | train s | val mAP | val verdict | test mAP | test macro-F1 | test chance mAP | test verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['arch']} | {r['start']} | {r['epochs_run']} | {r['seconds']:.0f} | {r['val_map']:.3f} | "
            f"{r['val_verdict']} | {r['test_map']:.3f} | {r['test_macro_f1']:.3f} | "
            f"{r['test_chance_map']:.3f} | {r['test_verdict']} |"
        )
    lines += [
        "",
        "Training is not bit-reproducible (parallel augmentation, oneDNN): figures move between runs.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    from edge_runtime.atomic import write_json, write_text

    args = parse_args(argv)
    name = "smoke" if args.smoke else "full"
    prof = PROFILES[name]
    t0 = time.perf_counter()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bm_training_"))
    try:
        log(f"data in {work}")
        data = make_data(work, prof)
        rows = run_all(work, prof, data)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    report = {
        "command": "python benchmarks/bm_training.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": time.perf_counter() - t0,
        "profile_name": name,
        "profile": prof,
        "mobilenetv2_width": MNV2_WIDTH,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "training.json", report)
    write_text(out / "training.md", markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
