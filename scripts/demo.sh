#!/usr/bin/env bash
# The whole pipeline on built-in demo data, on a fresh machine (Python 3.10+, pip, venv):
# set up .venv, make demo data, train, export int8 through the parity gate, classify a few
# images with edge-infer, evaluate on the test split, benchmark, and print a summary.
# Everything lands in demo_out/ (DEMO_OUT to change). VENV=DIR uses another virtual
# environment, SKIP_INSTALL=1 skips the pip step (the README test does both, and makes the run
# small with DEMO_N_TRAIN / DEMO_N_TEST / DEMO_EPOCHS / DEMO_TRAIN_ARGS, and opens the gate with DEMO_EXPORT_ARGS
# because a few epochs on a few hundred images leave a model too weak to judge; the defaults are
# the full demo, whose int8 export passes the default gate).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${DEMO_OUT:-demo_out}
export PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=2

VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
[ "${SKIP_INSTALL:-0}" = 1 ] || "$VENV/bin/pip" install -q -e ".[train]"
BIN=$VENV/bin
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== 1/6 demo data"
$BIN/edge-train make-demo "$OUT/data" ${DEMO_N_TRAIN:+--n-train "$DEMO_N_TRAIN"} ${DEMO_N_TEST:+--n-test "$DEMO_N_TEST"}

echo "== 2/6 train (progress on stderr, one line per epoch)"
# compact, not the default efficientnet_lite0: on these plain shapes a small network from scratch
# already scores test mAP 0.998 in minutes (README, "Which architecture").
$BIN/edge-train "$OUT/data/train.csv" --out "$OUT/run" --arch compact --cache-dir "$OUT/cache" ${DEMO_EPOCHS:+--epochs "$DEMO_EPOCHS"} ${DEMO_TRAIN_ARGS:-}

echo "== 3/6 export int8 through the parity gate"
$BIN/edge-export "$OUT/run" --quant int8 --out "$OUT/shapes.tflite" --cache-dir "$OUT/cache" ${DEMO_EXPORT_ARGS:-}

echo "== 4/6 edge-infer on a few test images"
$BIN/edge-infer "$OUT/shapes.tflite" "$OUT"/data/test/0000[0-4].png

echo "== 5/6 edge-infer eval on the test split (never seen in training)"
$BIN/edge-infer eval "$OUT/shapes.tflite" "$OUT/data/test.csv" --json > "$OUT/eval.json"
$BIN/python -c "import json, sys; from edge_runtime.evaluation.metrics import format_report; \
print(format_report(json.load(open(sys.argv[1])), sys.argv[2]))" "$OUT/eval.json" "int8 model on the test split"

echo "== 6/6 latency"
$BIN/edge-infer bench "$OUT/shapes.tflite" --runs 200 --warmup 20 --threads 1 --json > "$OUT/bench.json"

$BIN/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
ev = json.loads((out / "eval.json").read_text())
bench = json.loads((out / "bench.json").read_text().splitlines()[0])
model = out / "shapes.tflite"
keras_size = (out / "run" / "model.keras").stat().st_size
lat = bench["latency"]
print("\n== summary")
print(f"labels:     {', '.join(ev['per_label'])}")
print(f"test split: mAP {ev['map']:.3f}  macro-F1 {ev['macro_f1']:.3f}  micro-F1 {ev['micro_f1']:.3f}  "
      f"(n={ev['n_samples']}, int8 model on the device path, its embedded thresholds)")
print(f"model:      {model} {model.stat().st_size / 1024:.0f} KiB (Keras file {keras_size / 1024:.0f} KiB)")
print(f"latency:    p50 {lat['p50']:.3f} ms, p90 {lat['p90']:.3f} ms per invoke on {bench['threads']} thread "
      f"({bench['backend']}), init {bench['init_ms']:.1f} ms, peak RSS {bench['peak_rss_mb']:.0f} MB")
PY
