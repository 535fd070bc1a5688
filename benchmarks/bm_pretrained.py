"""Pretrained vs from scratch where training and test images differ in appearance.

    python benchmarks/bm_pretrained.py --out benchmarks/results [--work DIR] [--smoke] \\
        [--twemoji DIR]

Data (benchmarks/emoji_scenes.py; from installed packages only, nothing downloaded while it runs):
everyday objects (car, tree, dog, cup, house, cat, apple, bicycle, bird, banana: a long label
tail) pasted at random scale on scikit-image / scikit-learn sample photographs, any subset per
image. Training: 600 images drawn in Google's Noto Color Emoji (Debian fonts-noto-color-emoji).
Test: 300 images of the same objects drawn in Twitter's Twemoji (npm emoji-datasource-twitter
16.0.0, `--twemoji` = its folder), plus 300 more in the training style as a reference.
Install once: `apt-get install -y fonts-noto-color-emoji` and
`npm install --prefix DIR emoji-datasource-twitter@16.0.0`
(then `--twemoji DIR/node_modules/emoji-datasource-twitter`).

Rows, each trained as a user runs it (`edge-train` in a child process) and exported by
`edge-export` at its defaults (int8, the default parity gate): compact from scratch,
mobilenetv2 from scratch, efficientnet_lite0 frozen (`--fine-tune none`: the head alone on cached
ImageNet features), and efficientnet_lite0 with no options at all (the default: ImageNet start,
head on cached features, then the top third fine-tuned). Test metrics come from `edge-infer eval`
on the exported int8 file (the device path). A model whose int8 export fails the default gate is
exported again with the gate open, evaluated all the same, and marked. Also: int8 file size,
`edge-infer bench` latency (1 thread), multiply-accumulates (bm_macs), training seconds, and the
machine's load average, since the machine is shared. Writes pretrained.md / pretrained.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bm_common import log, machine_info  # noqa: E402

BIN = Path(sys.executable).parent
PROFILES = {
    "full": dict(n_train=600, n_test=300, image_size=256, epochs=None, size_args=[]),
    # wiring only: tiny sets, small inputs, few epochs; figures meaningless
    "smoke": dict(n_train=64, n_test=24, image_size=96, epochs=2, size_args=["--input-size", "64"]),
}
ROWS = (  # (key, arch label, start, edge-train options)
    ("compact", "compact", "scratch", ["--arch", "compact"]),
    ("mobilenetv2", "mobilenetv2", "scratch", ["--arch", "mobilenetv2"]),
    (
        "eff_frozen",
        "efficientnet_lite0",
        "ImageNet, frozen (head only, on cached features)",
        ["--fine-tune", "none", "--head-features", "cached"],
    ),
    (
        "eff_cached",
        "efficientnet_lite0",
        "ImageNet, fine-tuned, stage 1 on cached features",
        ["--head-features", "cached"],
    ),
    ("eff_default", "efficientnet_lite0", "ImageNet, fine-tuned: the default (no options)", []),
)
# per-channel: the better int8 of the two when both miss the gate (per-tensor is tried first)
OPEN_GATE = ["--min-agreement", "0", "--max-map-drop", "1", "--per-channel"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--work", default=None, help="keep data and runs here (default: temp, removed)")
    p.add_argument("--smoke", action="store_true", help="tiny settings (wiring check only)")
    p.add_argument(
        "--twemoji",
        default=os.environ.get("TWEMOJI_DIR"),
        help="folder of the npm package emoji-datasource-twitter (or $TWEMOJI_DIR)",
    )
    return p.parse_args(argv)


def make_data(work: Path, prof: dict, twemoji: str | None) -> dict:
    from emoji_scenes import SceneConfig, make_scenes

    size, n, nt = prof["image_size"], prof["n_train"], prof["n_test"]
    return {
        "train": make_scenes(SceneConfig(str(work / "train"), n, "noto", 1, size)),
        "test": make_scenes(
            SceneConfig(str(work / "test"), nt, "twemoji", 2, size, twemoji_dir=twemoji)
        ),
        "test_same_style": make_scenes(SceneConfig(str(work / "test_noto"), nt, "noto", 3, size)),
    }


def run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and what != "export"):
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def command(cmd: list[str]) -> str:
    return " ".join(shlex.quote(c if not c.startswith("/") else Path(c).name) for c in cmd)


def one_row(key, arch, start, opts, data, work: Path, prof: dict) -> dict:
    run_dir, model = work / "runs" / key, work / f"{key}.tflite"
    train_cmd = [str(BIN / "edge-train"), str(data["train"]), "--out", str(run_dir), *opts]
    if prof["epochs"]:
        train_cmd += ["--epochs", str(prof["epochs"])]
    train_cmd += prof["size_args"] + ["--json"]
    load = os.getloadavg()[0]
    log(f"{key}: {command(train_cmd)}")
    t0 = time.perf_counter()
    res = json.loads(run(train_cmd, "edge-train").stdout)
    seconds = time.perf_counter() - t0
    export_cmd = [str(BIN / "edge-export"), str(run_dir), "--out", str(model)]
    proc = run(export_cmd, "export")
    gate = proc.returncode == 0
    if not gate:  # still measure the int8 model, marked as failing the default gate
        log(f"{key}: int8 failed the default gate; exporting with the gate open to measure it")
        run(export_cmd + OPEN_GATE, "edge-export (open gate)")
    parity = json.loads(model.with_suffix(".parity.json").read_text())["parity"]
    row = {
        "key": key,
        "arch": arch,
        "start": start,
        "train_command": command(train_cmd),
        "train_seconds": round(seconds, 1),
        "load_at_start": round(load, 1),
        "epochs_run": res["epochs_run"],
        "best_epoch": res["best_epoch"],
        "val_map": res["metrics"]["map"],
        "int8_default_gate": "pass" if gate else "fail",
        "int8_min_agreement": min(r["agreement"] for r in parity["per_label"]),
        "int8_kib": round(model.stat().st_size / 1024, 1),
        "lineage": res["lineage"],
    }
    for name in ("test", "test_same_style"):
        ev = json.loads(
            run(
                [str(BIN / "edge-infer"), "eval", str(model), str(data[name]), "--json"], "eval"
            ).stdout
        )
        row[f"{name}_map"], row[f"{name}_macro_f1"] = ev["map"], ev["macro_f1"]
    bench = json.loads(
        run(
            [str(BIN / "edge-infer"), "bench", str(model), "--threads", "1", "--json"]
            + ["--runs", "100"],
            "bench",
        ).stdout.splitlines()[0]
    )
    row["latency_p50_ms"] = bench["latency"]["p50"]
    row.update(_size_and_macs(run_dir))
    log(
        f"{key}: test mAP {row['test_map']:.3f} (same style {row['test_same_style_map']:.3f}), "
        f"gate {row['int8_default_gate']}, {row['train_seconds']:.0f} s"
    )
    return row


def _size_and_macs(run_dir: Path) -> dict:
    import keras
    from bm_macs import count

    model = keras.models.load_model(run_dir / "model.keras", safe_mode=True, compile=False)
    c = count(model)
    return {
        "input_size": int(model.input.shape[1]),
        "params": c["params"],
        "macs_m": round(c["macs"] / 1e6, 1),
    }


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Pretrained vs from scratch, training and test images in different styles",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {m.get('cpu_model')}, {m.get('logical_cores')} logical cores, shared with other "
        f"jobs (load average at each row's start in the table), {m.get('platform')}  ",
        f"Finished {report['finished']} in {report['seconds']:.0f} s; profile `{report['profile_name']}`.",
        "",
        "Data: 10 everyday objects pasted on sample photographs, any subset per image; 600 "
        "training images in Noto Color Emoji style, test 300 in Twemoji style (another drawing of "
        "the same objects), and 300 more in the training style for reference. Test metrics: "
        "`edge-infer eval` on the int8 export (the device path), at the model's thresholds.",
        "",
        "| arch | start | input | test mAP (other style) | test macro-F1 | same-style test mAP | "
        "val mAP | int8 default gate | int8 KiB | latency p50 1 thread | MACs | train s | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['arch']} | {r['start']} | {r['input_size']} | {r['test_map']:.3f} | "
            f"{r['test_macro_f1']:.3f} | {r['test_same_style_map']:.3f} | {r['val_map']:.3f} | "
            f"{r['int8_default_gate']} (min agreement {r['int8_min_agreement']:.3f}) | "
            f"{r['int8_kib']:.0f} | {r['latency_p50_ms']:.2f} ms | {r['macs_m']:.0f} M | "
            f"{r['train_seconds']:.0f} | {r['load_at_start']} |"
        )
    lines += ["", "Training commands (paths shortened to names):", ""]
    lines += [f"- {r['key']}: `{r['train_command']}`" for r in report["rows"]]
    lines += [
        "",
        "Training is not bit-reproducible (parallel augmentation, oneDNN): figures move between "
        "runs. Latencies were taken on a shared machine: trust ratios more than milliseconds.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    from edge_runtime.atomic import write_json, write_text

    args = parse_args(argv)
    name = "smoke" if args.smoke else "full"
    prof = PROFILES[name]
    t0 = time.perf_counter()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bm_pretrained_"))
    try:
        log(f"data in {work}")
        data = make_data(work, prof, args.twemoji)
        rows = [one_row(*row, data, work, prof) for row in ROWS]
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    report = {
        "command": "python benchmarks/bm_pretrained.py "
        + command(list(argv if argv is not None else sys.argv[1:])),
        "machine": machine_info(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": time.perf_counter() - t0,
        "profile_name": name,
        "profile": prof,
        "material": {
            "training style": "Debian fonts-noto-color-emoji (NotoColorEmoji.ttf, size 109)",
            "test style": "npm emoji-datasource-twitter 16.0.0 (img/twitter/64)",
            "backgrounds": "scikit-image and scikit-learn sample images (in their wheels)",
        },
        "rows": rows,
    }
    out = Path(args.out)
    stem = "pretrained" if name == "full" else "pretrained_smoke"
    write_json(out / f"{stem}.json", report)
    write_text(out / f"{stem}.md", markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
