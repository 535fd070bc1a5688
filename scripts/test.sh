#!/usr/bin/env bash
# The project's test command, on a fresh machine with only Python 3.10+ (3.11 in CI), pip and venv.
#   1. environments, installed with uv (pip installs it; it unpacks TensorFlow several times faster
#      than pip; pip itself is the fallback): .venv (TensorFlow, trainer, exporter, pytest-xdist)
#      first, the others beside it:
#      - two runtime-only environments with no TensorFlow: ai-edge-litert on numpy 2 with the video
#        and watch extras (.venv-litert: the OpenCV tests run there) and tflite-runtime on numpy < 2
#        (.venv-tflite: no OpenCV, those tests skip);
#      - MediaPipe Tasks (.venv-mediapipe), which reads our exported files;
#   2. ruff: lint and format check (a failure stops here, in seconds);
#   3. fixtures, built once with the real TensorFlow and exporter: the tiny runtime models and, beside
#      them, a trained run exported in every mode, which every pytest worker reuses;
#   4. the full environment's tests on two workers (fast tests first, then the longest slow ones:
#      tests/conftest.py orders them), while the other environments run their tests beside it, each
#      logging to a file printed at the end. A broken import fails the fixture build within seconds.
# SKIP_LEAN=1 runs the full environment only; SKIP_MEDIAPIPE=1 leaves out the MediaPipe step;
# TEST_WORKERS=N sets the pytest workers (default 2; 0 runs in one process). Extra arguments go to
# the full environment's pytest run.
set -euo pipefail -m
cd "$(dirname "$0")/.."
PY=$(command -v "${PYTHON:-python3}")
# No bytecode compiled at install (20 s for TensorFlow's 10,000 modules): the first import writes
# it for the modules actually used, and every later process reads it (so it must be allowed to).
export PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=2 UV_PYTHON_DOWNLOADS=never
unset PYTHONDONTWRITEBYTECODE
T0=$SECONDS
FIXTURES=$(mktemp -d)
LOGS=$(mktemp -d)
JOBS=()
cleanup() {
  # Each job is a process group of its own (set -m): stop it whole, pytest included.
  for pid in "${JOBS[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
  rm -rf "$FIXTURES" "$LOGS"
}
trap cleanup EXIT
stamp() { echo "== [$((SECONDS - T0)) s] $*"; }

# install VENV ARGS...: create the environment once, then install into it, quietly.
install() {
  local venv=$1; shift
  if [ -x .venv/bin/uv ]; then
    [ -x "$venv/bin/python" ] || .venv/bin/uv venv -q --python "$PY" "$venv"
    .venv/bin/uv pip install -q --python "$venv/bin/python" "$@"
  else
    [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --no-compile "$@"
  fi
}

# pytest exits 5 when it collects nothing: for us that is a broken run, never a pass.
run_pytest() {
  local py=$1; shift
  set +e
  "$py" -m pytest -p no:cacheprovider "$@"
  local rc=$?
  set -e
  if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: failing" >&2; return 1; fi
  return "$rc"
}

# Only the files that hold runtime tests: the others import TensorFlow or scikit-learn.
RUNTIME_TESTS=$(grep -l "pytest.mark.runtime" tests/test_*.py) || { echo "no runtime tests found" >&2; exit 1; }

install_litert() { install .venv-litert -e ".[video,watch]" pytest; }
install_tflite() {
  install .venv-tflite "tflite-runtime==2.14.0" "numpy<2" pillow click pytest
  install .venv-tflite --no-deps -e .
}
install_mediapipe() {
  install .venv-mediapipe -e . "mediapipe<1.3" pytest  # CI: 1.2.3
  .venv-mediapipe/bin/python -c "import mediapipe" || { echo "mediapipe does not import: failing" >&2; return 1; }
}
test_litert() {
  EDGE_FIXTURE_MODELS="$FIXTURES" run_pytest .venv-litert/bin/python -q -m runtime $RUNTIME_TESTS
}
test_tflite() {
  EDGE_FIXTURE_MODELS="$FIXTURES" EDGE_EXPECT_BACKEND=tflite-runtime \
    run_pytest .venv-tflite/bin/python -q -m runtime $RUNTIME_TESTS
}
test_mediapipe() {
  # MediaPipe reads the fixture models and a real edge-export (the trained run's int8 file).
  EDGE_FIXTURE_MODELS="$FIXTURES" run_pytest .venv-mediapipe/bin/python -q -rs tests/test_mediapipe.py
}

# side STEP...: run each `install_X` / `test_X` in turn, as a job of its own so that `set -e`
# holds inside it (it is off in an `||` list), logging to $LOGS/X.log; 1 if any failed.
side() {
  local rc=0 step
  for step in "$@"; do
    "$step" >> "$LOGS/${step#*_}.log" 2>&1 &
    wait $! || { rc=1; echo "FAILED: $step" >> "$LOGS/${step#*_}.log"; }
  done
  return "$rc"
}

stamp "full environment (.venv)"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q uv || echo "uv did not install: installing with pip (slower)"
LEAN=1
[ "${SKIP_LEAN:-0}" = 1 ] && LEAN=0
MP=$LEAN
[ "${SKIP_MEDIAPIPE:-0}" = 1 ] && MP=0
SIDE_RC=0
# The other environments' installs need nothing from .venv but uv: they run while .venv installs.
if [ "$LEAN" = 1 ]; then
  side install_litert install_tflite & JOBS+=($!); LEAN_INSTALL=$!
fi
if [ "$MP" = 1 ]; then
  side install_mediapipe & JOBS+=($!); MP_INSTALL=$!
fi
install .venv -e ".[train,dev]"

stamp "ruff (lint and format check)"
.venv/bin/ruff check -q . || { echo "ruff check failed (ruff check --fix . mends most)" >&2; exit 1; }
.venv/bin/ruff format -q --check . || { echo "ruff format --check failed: run ruff format ." >&2; exit 1; }

stamp "fixture models"
# fixtures NAME [ARGS]: TensorFlow's start-up chatter goes to a log, shown only when the build fails.
fixtures() {
  local log="$LOGS/fixtures-$1.log"; shift
  .venv/bin/python tests/make_fixture_models.py "$FIXTURES" "$@" > "$log" 2>&1 ||
    { cat "$log"; echo "building the fixture models failed" >&2; return 1; }
}
# The trained run (the longer build) on one core, the runtime models on the other.
fixtures trained --trained-run & JOBS+=($!); TRAINED=$!
fixtures runtime
if [ "$LEAN" = 1 ]; then
  # The lean environments' tests need only the runtime fixtures: they start now.
  if wait "$LEAN_INSTALL"; then
    side test_litert test_tflite & JOBS+=($!); LEAN_JOB=$!
  else
    SIDE_RC=1
  fi
fi
wait "$TRAINED"
if [ "$MP" = 1 ]; then
  if wait "$MP_INSTALL"; then
    side test_mediapipe & JOBS+=($!); MP_JOB=$!
  else
    SIDE_RC=1
  fi
fi

WORKERS=${TEST_WORKERS:-2}
XDIST=()
[ "$WORKERS" -gt 0 ] && XDIST=(-n "$WORKERS" --dist loadgroup)
stamp "full environment tests (${WORKERS} workers; fast tests first)"
set +e
EDGE_FIXTURE_MODELS="$FIXTURES" run_pytest .venv/bin/python -q --durations=12 "${XDIST[@]}" "$@"
FULL=$?
[ -n "${LEAN_JOB:-}" ] && { wait "$LEAN_JOB" || SIDE_RC=1; }
[ -n "${MP_JOB:-}" ] && { wait "$MP_JOB" || SIDE_RC=1; }
set -e
for env in litert tflite mediapipe; do
  [ -f "$LOGS/$env.log" ] || continue
  case $env in
    litert) echo "== runtime only: ai-edge-litert, numpy 2, OpenCV and watchdog (.venv-litert)" ;;
    tflite) echo "== runtime only: tflite-runtime, numpy < 2 (.venv-tflite)" ;;
    mediapipe) echo "== MediaPipe Tasks reads the exported files (.venv-mediapipe)" ;;
  esac
  cat "$LOGS/$env.log"
done
stamp "test.sh done: full environment exit $FULL, other environments exit $SIDE_RC"
[ "$FULL" -eq 0 ] && [ "$SIDE_RC" -eq 0 ]
