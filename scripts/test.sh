#!/usr/bin/env bash
# The project's test command, on a fresh machine with only Python 3.10+ (3.11 in CI), pip and venv.
#   1. a full environment (.venv: TensorFlow, the trainer, the exporter) runs the fast tests first
#      (a broken build fails within a minute) and exports small fixture models with the real
#      exporter;
#   2. while it runs the slow tests (they train and convert models), the other environments run
#      beside it, each logging to a file printed when it is done:
#      - two runtime-only environments with no TensorFlow run the runtime tests on the fixtures:
#        ai-edge-litert on numpy 2 with the video and watch extras (.venv-litert: the OpenCV tests
#        run there) and tflite-runtime on numpy < 2 (.venv-tflite: no OpenCV, those tests skip);
#      - MediaPipe Tasks classifies with a real edge-export of a small demo run (.venv-mediapipe).
# SKIP_LEAN=1 runs the full environment only; SKIP_MEDIAPIPE=1 leaves out the MediaPipe step.
# Extra arguments go to the full environment's pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 TF_CPP_MIN_LOG_LEVEL=2
T0=$SECONDS

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

lean_litert() {
  venv .venv-litert
  .venv-litert/bin/pip install -q -e ".[video,watch]" pytest
  EDGE_FIXTURE_MODELS="$FIXTURES" run_pytest .venv-litert/bin/python -q -p no:cacheprovider -m runtime $RUNTIME_TESTS
}

lean_tflite() {
  venv .venv-tflite
  .venv-tflite/bin/pip install -q "tflite-runtime==2.14.0" "numpy<2" pillow click pytest
  .venv-tflite/bin/pip install -q --no-deps -e .
  EDGE_FIXTURE_MODELS="$FIXTURES" EDGE_EXPECT_BACKEND=tflite-runtime \
    run_pytest .venv-tflite/bin/python -q -p no:cacheprovider -m runtime $RUNTIME_TESTS
}

mediapipe_step() {
  # A real edge-export of a small demo run; the gate is loosened because this step proves the
  # file format (names, scores), not the model's quality, which the exporter tests judge.
  local MP="$FIXTURES/mediapipe"
  .venv/bin/edge-train make-demo "$MP/data" --n-train 400 --n-test 24 --size 64 > /dev/null
  .venv/bin/edge-train "$MP/data/train.csv" --out "$MP/run" --arch compact --input-size 48 --epochs 8 --quiet > /dev/null
  .venv/bin/edge-export "$MP/run" --quant int8 --out "$MP/demo.tflite" --min-agreement 0 --max-map-drop 1 > /dev/null
  mkdir -p "$MP/images" && cp "$MP"/data/test/*.png "$MP/images/"
  venv .venv-mediapipe
  .venv-mediapipe/bin/pip install -q -e . mediapipe pytest
  .venv-mediapipe/bin/python -c "import mediapipe" || { echo "mediapipe does not import: failing" >&2; return 1; }
  EDGE_FIXTURE_MODELS="$FIXTURES" EDGE_MEDIAPIPE_DEMO="$MP" \
    run_pytest .venv-mediapipe/bin/python -q -p no:cacheprovider -rs tests/test_mediapipe.py
}

echo "== full environment (.venv)"
venv .venv
.venv/bin/pip install -q -e ".[train,dev]"
echo "-- fast tests"
run_pytest .venv/bin/python -q -p no:cacheprovider -x -m "not slow" "$@"

if [ "${SKIP_LEAN:-0}" = 1 ]; then
  echo "-- slow tests (train or convert models)"
  run_pytest .venv/bin/python -q -p no:cacheprovider -m slow "$@"
  exit 0
fi

# Only the files that hold runtime tests: the others import TensorFlow or scikit-learn.
RUNTIME_TESTS=$(grep -l "pytest.mark.runtime" tests/test_*.py) || { echo "no runtime tests found" >&2; exit 1; }
FIXTURES=$(mktemp -d)
LOGS=$(mktemp -d)
trap 'rm -rf "$FIXTURES" "$LOGS"' EXIT
echo "-- fixture models for the runtime-only environments"
.venv/bin/python tests/make_fixture_models.py "$FIXTURES" > /dev/null

# The side environments run one after another (each is light), beside the slow tests. Each step
# runs as a job of its own so that `set -e` holds inside it (it is off in an `||` list).
side() {
  local rc=0
  lean_litert > "$LOGS/litert.log" 2>&1 &
  wait $! || rc=1
  lean_tflite > "$LOGS/tflite.log" 2>&1 &
  wait $! || rc=1
  if [ "${SKIP_MEDIAPIPE:-0}" != 1 ]; then
    mediapipe_step > "$LOGS/mediapipe.log" 2>&1 &
    wait $! || rc=1
  fi
  return "$rc"
}
side &
SIDE=$!

echo "-- slow tests (train or convert models; the other environments run meanwhile)"
set +e
run_pytest .venv/bin/python -q -p no:cacheprovider -m slow "$@"
SLOW=$?
wait "$SIDE"
SIDE_RC=$?
set -e
for env in litert tflite mediapipe; do
  [ -f "$LOGS/$env.log" ] || continue
  case $env in
    litert) echo "== runtime only: ai-edge-litert, numpy 2, OpenCV and watchdog (.venv-litert)" ;;
    tflite) echo "== runtime only: tflite-runtime, numpy < 2 (.venv-tflite)" ;;
    mediapipe) echo "== MediaPipe Tasks reads the exported file (.venv-mediapipe)" ;;
  esac
  cat "$LOGS/$env.log"
done
echo "== test.sh: $((SECONDS - T0)) s; slow tests exit $SLOW, other environments exit $SIDE_RC"
[ "$SLOW" -eq 0 ] && [ "$SIDE_RC" -eq 0 ]
