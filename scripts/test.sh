#!/usr/bin/env bash
# The project's test command, on a fresh machine with only Python 3.10+ (3.11 in CI), pip and venv.
#   1. a full environment (.venv: TensorFlow, the trainer, the exporter) runs every test: the fast
#      ones first (a broken build fails in seconds), then the ones marked slow;
#   2. it exports small fixture models with the real exporter;
#   3. two runtime-only environments with no TensorFlow run the runtime tests against them:
#      ai-edge-litert on numpy 2 with the video and watch extras (.venv-litert: the OpenCV tests
#      run there) and tflite-runtime on numpy < 2 (.venv-tflite: no OpenCV, those tests skip).
# Set SKIP_LEAN=1 to run step 1 only. Extra arguments go to the full pytest run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 TF_CPP_MIN_LOG_LEVEL=2

venv() {  # venv DIR: create it once, quietly
  [ -x "$1/bin/python" ] || "$PY" -m venv "$1"
}

# pytest exits 5 when it collects nothing: for us that is a broken run, never a pass.
run_pytest() {
  local py=$1; shift
  set +e
  "$py" -m pytest "$@"
  local rc=$?
  set -e
  if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: failing" >&2; return 1; fi
  return "$rc"
}

echo "== full environment (.venv)"
venv .venv
.venv/bin/pip install -q -e ".[train,dev]"
echo "-- fast tests"
run_pytest .venv/bin/python -q -p no:cacheprovider -x -m "not slow" "$@"
echo "-- slow tests (train or convert models)"
run_pytest .venv/bin/python -q -p no:cacheprovider -m slow "$@"

[ "${SKIP_LEAN:-0}" = 1 ] && exit 0

# Only the files that hold runtime tests: the others import TensorFlow or scikit-learn.
RUNTIME_TESTS=$(grep -l "pytest.mark.runtime" tests/test_*.py) || { echo "no runtime tests found" >&2; exit 1; }
FIXTURES=$(mktemp -d)
trap 'rm -rf "$FIXTURES"' EXIT
echo "== fixture models for the runtime-only environments"
.venv/bin/python tests/make_fixture_models.py "$FIXTURES"

echo "== runtime only: ai-edge-litert, numpy 2, OpenCV and watchdog (.venv-litert)"
venv .venv-litert
.venv-litert/bin/pip install -q -e ".[video,watch]" pytest
EDGE_FIXTURE_MODELS="$FIXTURES" run_pytest .venv-litert/bin/python -q -p no:cacheprovider -m runtime $RUNTIME_TESTS

echo "== runtime only: tflite-runtime, numpy < 2 (.venv-tflite)"
venv .venv-tflite
.venv-tflite/bin/pip install -q "tflite-runtime==2.14.0" "numpy<2" pillow click pytest
.venv-tflite/bin/pip install -q --no-deps -e .
EDGE_FIXTURE_MODELS="$FIXTURES" EDGE_EXPECT_BACKEND=tflite-runtime \
  run_pytest .venv-tflite/bin/python -q -p no:cacheprovider -m runtime $RUNTIME_TESTS

[ "${SKIP_MEDIAPIPE:-0}" = 1 ] && exit 0
echo "== MediaPipe Tasks reads the exported file (.venv-mediapipe)"
# A real edge-export of a small demo run; the gate is loosened because this step proves the file
# format (names, scores), not the model's quality, which the full run's exporter tests judge.
MP="$FIXTURES/mediapipe"
.venv/bin/edge-train make-demo "$MP/data" --n-train 400 --n-test 24 --size 64 > /dev/null
.venv/bin/edge-train "$MP/data/train.csv" --out "$MP/run" --arch compact --input-size 48 --epochs 8 --quiet > /dev/null
.venv/bin/edge-export "$MP/run" --quant int8 --out "$MP/demo.tflite" --min-agreement 0 --max-map-drop 1 > /dev/null
mkdir -p "$MP/images" && cp "$MP"/data/test/*.png "$MP/images/"
venv .venv-mediapipe
.venv-mediapipe/bin/pip install -q -e . mediapipe pytest
.venv-mediapipe/bin/python -c "import mediapipe" || { echo "mediapipe does not import: failing" >&2; exit 1; }
EDGE_FIXTURE_MODELS="$FIXTURES" EDGE_MEDIAPIPE_DEMO="$MP" \
  run_pytest .venv-mediapipe/bin/python -q -p no:cacheprovider -rs tests/test_mediapipe.py
