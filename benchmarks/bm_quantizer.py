"""Evaluate ai-edge-quantizer (AEQ) as the `--quant int8` path against the TFLite converter's.

    python benchmarks/bm_quantizer.py RUN_DIR [RUN_DIR ...] --out benchmarks/results \
        [--tflite-python .venv-tflite/bin/python] [--mediapipe-python .venv-mediapipe/bin/python]

Needs TensorFlow (the train extra) and the quantizer in the same environment; the quantizer is
NOT a dependency of the project (see README "Dependencies and their futures"):

    python -m venv .venv-quantizer
    .venv-quantizer/bin/pip install -e '.[train]' ai-edge-quantizer==0.10.0 litert-quantizer==0.11.0

For each run directory, each variant goes through the real `exporter.export` with
`--quant int8 --per-tensor` or `--per-channel` (same held-out images, same calibration images,
same gate, same metadata writer); only the conversion function the exporter calls is swapped for
the AEQ variants: the converter's float32 model, then AEQ's static int8 recipe (calibrated on
the same representative images), with the output left float32 (`OUTPUT` not quantized) as ours
is, and either the input quantized (AEQ has no uint8 activations: an int8 input, pixel - 128)
or left float32 (`float-io`). Measured: conversion seconds (the whole conversion: the float
model, then AEQ's calibration and quantization; after one warm-up export), file size, the
gate's verdict and figures, the interpreter's input/output types, ops, the largest scale count
on one tensor, and one-thread invoke latency (ai-edge-litert, interleaved blocks). With
`--tflite-python` each file is also run by tflite-runtime 2.14 (the 32-bit Pi's package) and
compared with ai-edge-litert's scores; with `--mediapipe-python`, classified by MediaPipe Tasks.
`--quantizer litert_quantizer` evaluates AEQ's renamed successor instead. Writes quantizer.md
and quantizer.json (quantizer_litert.*) into --out, atomically. Nothing asserts speed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the bm_* helpers beside this file

import numpy as np  # noqa: E402
from bm_common import log, machine_info, stats, time_interleaved  # noqa: E402

from edge_runtime import atomic  # noqa: E402
from edge_runtime.modelfile import metadata  # noqa: E402

# name: (quantizer, weight scales, input left float32)
VARIANTS = {
    "converter per-tensor": ("converter", "per-tensor", False),
    "converter per-channel": ("converter", "per-channel", False),
    "aeq per-tensor": ("aeq", "per-tensor", False),
    "aeq per-channel": ("aeq", "per-channel", False),
    "aeq per-tensor float-io": ("aeq", "per-tensor", True),
}

_PROBE = """
import json, sys, numpy as np
from edge_runtime import Classifier
out = {}
for path, frame_file in json.loads(sys.argv[1]):
    frames = np.load(frame_file)
    try:
        if sys.argv[2] == "mediapipe":
            import mediapipe as mp
            from mediapipe.tasks import python as mpt
            from mediapipe.tasks.python import vision
            opts = vision.ImageClassifierOptions(
                base_options=mpt.BaseOptions(model_asset_path=path), max_results=-1)
            with vision.ImageClassifier.create_from_options(opts) as clf:
                rows = []
                for f in frames:
                    cats = clf.classify(mp.Image(image_format=mp.ImageFormat.SRGB,
                        data=np.ascontiguousarray(f))).classifications[0].categories
                    rows.append([c.score for c in sorted(cats, key=lambda c: c.index)])
        else:
            clf = Classifier.from_file(path, backend=sys.argv[2])
            rows = [list(clf.predict(f).scores.values()) for f in frames]
        out[path] = {"scores": rows}
    except Exception as exc:
        out[path] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
print(json.dumps(out))
"""


QUANTIZER = "ai_edge_quantizer"  # --quantizer litert_quantizer: its successor, same API


def aeq_convert(weight_scales: str, float_input: bool, seen: dict) -> Callable:
    """A drop-in for `exporter.convert.convert` that quantizes int8 with AEQ."""
    import importlib

    from ai_edge_litert.interpreter import Interpreter

    algorithm_manager, qtyping, quantizer = (
        importlib.import_module(f"{QUANTIZER}.{m}")
        for m in ("algorithm_manager", "qtyping", "quantizer")
    )

    from exporter.convert import convert
    from exporter.modes import QuantMode

    granularity = {
        "per-tensor": qtyping.QuantGranularity.TENSORWISE,
        "per-channel": qtyping.QuantGranularity.CHANNELWISE,
    }[weight_scales]
    keep_float = [qtyping.TFLOperationName.OUTPUT]
    if float_input:
        keep_float.append(qtyping.TFLOperationName.INPUT)

    def convert_with_aeq(model, mode, representative=None, scales=None):
        if QuantMode(mode) is not QuantMode.INT8:
            return convert(model, mode, representative, scales)
        t0 = time.perf_counter()
        flat = convert(model, QuantMode.FLOAT32)
        signatures = Interpreter(model_content=flat).get_signature_list()
        key, io = next(iter(signatures.items()))
        (name,) = io["inputs"]
        qt = quantizer.Quantizer(flat)
        qt.add_static_config(
            regex=".*",
            operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
            activation_num_bits=8,
            weight_num_bits=8,
            weight_granularity=granularity,
        )
        for op in keep_float:
            qt.update_quantization_recipe(
                regex=".*",
                operation_name=op,
                algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE,
            )
        samples = [{name: np.asarray(img, np.float32)[None]} for img in representative()]
        result = qt.quantize(qt.calibrate({key: samples}), enable_progress_report=False)
        seen.update(seconds=time.perf_counter() - t0, flat=bytes(result.quantized_model))
        return seen["flat"]

    return convert_with_aeq


def timed_converter(seen: dict) -> Callable:
    from exporter.convert import convert

    def timed(model, mode, representative=None, scales=None):
        t0 = time.perf_counter()
        data = convert(model, mode, representative, scales)
        seen.update(seconds=time.perf_counter() - t0, flat=data)
        return data

    return timed


@contextlib.contextmanager
def conversion(fn: Callable) -> Iterator[None]:
    """The exporter with `fn` as the conversion it calls; everything else is the real export."""
    import importlib

    export_module = importlib.import_module(
        "exporter.export"
    )  # `exporter.export` is also a function

    saved = export_module.convert
    export_module.convert = fn
    try:
        yield
    finally:
        export_module.convert = saved


def export_variant(run_dir: Path, out: Path, variant: str, calibration: int) -> dict:
    """The real export of one variant; the row of figures, and the converted flatbuffer (kept
    also when the gate fails, so that it can still be inspected and timed)."""
    from edge_runtime.inference.backend import op_names
    from exporter import ExportConfig, export
    from exporter.export import ParityError
    from exporter.modes import QuantMode
    from exporter.tf_internals import max_scales_per_tensor

    kind, scales, float_input = VARIANTS[variant]
    seen: dict = {}
    fn = timed_converter(seen) if kind == "converter" else aeq_convert(scales, float_input, seen)
    config = ExportConfig(
        run_dir=str(run_dir),
        out=str(out),
        quant=QuantMode.INT8,
        weight_scales=scales,
        calibration_size=calibration,
    )
    row: dict = {"variant": variant, "quantizer": kind, "weight_scales": scales}
    t0 = time.perf_counter()
    try:
        with conversion(fn):
            try:
                result = export(config, log=lambda msg: None)
            except ParityError as exc:
                result = exc.result
    except Exception as exc:  # a conversion the quantizer could not do is a result too
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        return row
    summary = result.parity.summary() if result.parity else {}
    flat = seen["flat"]
    out.with_suffix(".flat.tflite").write_bytes(flat)
    row.update(
        export_seconds=time.perf_counter() - t0,
        conversion_seconds=seen["seconds"],
        passed=result.passed,
        failures=list(result.parity.failures) if result.parity else [],
        size_bytes=result.size_bytes,
        parity={k: summary.get(k) for k in ("map_keras", "map_tflite", "min_agreement", "max_abs")},
        map_drop=result.parity.map_drop if result.parity else None,
        io=_io(flat),
        ops=sorted(set(op_names(flat) or [])),
        max_scales=max_scales_per_tensor(flat),
    )
    return row


def _io(flat: bytes) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=flat)

    def one(d: dict) -> str:
        scale, zero = d["quantization"]
        q = f" (scale {scale:.4g}, zero point {zero})" if scale else ""
        return f"{np.dtype(d['dtype']).name}{q}"

    return {"input": one(it.get_input_details()[0]), "output": one(it.get_output_details()[0])}


def latency(files: dict[str, Path], frame: np.ndarray, runs: int) -> dict[str, dict]:
    """One-thread invoke latency of each file (ai-edge-litert), timed in interleaved blocks."""
    from ai_edge_litert.interpreter import Interpreter

    fns = {}
    for name, path in files.items():
        it = Interpreter(model_content=metadata.strip(path.read_bytes()), num_threads=1)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        dtype = np.dtype(d["dtype"])
        x = frame[None].astype(np.int16) - 128 if dtype == np.int8 else frame[None]
        it.set_tensor(d["index"], x.astype(dtype))
        fns[name] = it.invoke
    times = time_interleaved(fns, warmup=20, runs=runs)
    return {name: stats(ns) for name, ns in times.items()}


def probe(python: str, kind: str, files: dict[str, Path], frames: Path) -> dict:
    """Run each file in another environment (tflite-runtime or MediaPipe); scores or an error."""
    arg = json.dumps([[str(p), str(frames)] for p in files.values()])
    proc = subprocess.run(
        [python, "-c", _PROBE, arg, kind], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        return {str(p): {"error": proc.stderr.strip().splitlines()[-1:]} for p in files.values()}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def evaluate_run(run_dir: Path, work: Path, args) -> dict:
    from edge_runtime import Classifier
    from edge_runtime.inference.preprocess import load_image

    # The first conversion in a process also pays TensorFlow's start (tracing, the first
    # SavedModel export): one export is done and thrown away first, so that the variants'
    # conversion seconds compare like with like.
    log(f"{run_dir}: warm-up export (not measured)")
    export_variant(run_dir, work / "warm-up.tflite", next(iter(VARIANTS)), args.calibration_size)
    log(f"{run_dir}: exporting {len(VARIANTS)} variants")
    rows, files, complete = [], {}, {}
    for variant in VARIANTS:
        out = work / (variant.replace(" ", "_") + ".tflite")
        row = export_variant(run_dir, out, variant, args.calibration_size)
        log(f"  {variant}: {row.get('error') or ('pass' if row['passed'] else 'FAIL')}")
        rows.append(row)
        if "error" not in row:
            files[variant] = out.with_suffix(".flat.tflite")  # the flatbuffer, gate or not
        if row.get("passed"):
            complete[variant] = out  # with the metadata MediaPipe needs
    if not files:
        return {"run": str(run_dir), "variants": rows}
    ref = Classifier.from_file(next(iter(files.values())))
    # Held-out images of the run (its validation split): what the gate judged too.
    with open(Path(run_dir) / "val_split.csv", newline="") as fh:
        images = [Path(row[0]) for row in list(csv.reader(fh))[1:17]]
    frames = np.stack([load_image(p, ref.input_size) for p in images])
    np.save(work / "frames.npy", frames)
    log(f"  latency, {args.runs} runs each")
    lat = latency(files, frames[0], args.runs)
    ours = {
        n: [list(Classifier.from_file(p).predict(f).scores.values()) for f in frames]
        for n, p in files.items()
    }
    others = {}
    for kind, python in (
        ("tflite-runtime", args.tflite_python),
        ("mediapipe", args.mediapipe_python),
    ):
        if python:
            log(f"  {kind} ({python})")
            which = complete if kind == "mediapipe" else files
            got = probe(python, kind, which, work / "frames.npy")
            others[kind] = {
                n: _agreement(ours[n], got.get(str(p), {"error": "no answer"}))
                for n, p in which.items()
            }
    for row in rows:
        name = row["variant"]
        if name in lat:
            row["latency"] = {k: lat[name][k] for k in ("p50_ms", "p90_ms", "runs")}
        for kind, per in others.items():
            if name in per:
                row[kind] = per[name]
    return {"run": str(run_dir), "images_compared": len(frames), "variants": rows}


def _agreement(ours: list, theirs: dict) -> dict:
    if "error" in theirs:
        return {"runs": False, "error": theirs["error"]}
    diff = np.abs(np.asarray(ours) - np.asarray(theirs["scores"]))
    return {"runs": True, "max_abs_diff_vs_litert": float(diff.max())}


def report(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"# int8: the TFLite converter's quantizer against {results['quantizer']}",
        "",
        f"Command: `{results['command']}`",
        f"Machine: {m['cpu_model']}, {m['usable_cores']} usable cores, load average at start "
        f"{m['load_average_at_start']}; versions {json.dumps(results['versions'])}",
        "",
    ]
    for run in results["runs"]:
        lines += [
            f"## {run['run']}",
            "",
            "| variant | gate | size KiB | conversion s | input | output | max scales/tensor | "
            "min agreement | mAP drop | max abs diff | invoke p50 ms (1 thread) | tflite-runtime 2.14 | MediaPipe |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in run["variants"]:
            if "error" in r:
                lines.append(f"| {r['variant']} | error: {r['error']} |" + " |" * 11)
                continue
            p = r.get("parity", {})
            io = r.get("io", {})

            lines.append(
                "| "
                + " | ".join(
                    [
                        r["variant"],
                        "pass" if r["passed"] else "FAIL: " + "; ".join(r["failures"])[:120],
                        f"{r['size_bytes'] / 1024:.1f}",
                        _num(r.get("conversion_seconds"), 2),
                        io.get("input", "-"),
                        io.get("output", "-"),
                        str(r.get("max_scales", "-")),
                        _num(p.get("min_agreement"), 4),
                        _num(r.get("map_drop"), 4),
                        _num(p.get("max_abs"), 4),
                        _num((r.get("latency") or {}).get("p50_ms"), 3),
                        _other(r, "tflite-runtime"),
                        _other(r, "mediapipe"),
                    ]
                )
                + " |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def _other(row: dict, kind: str) -> str:
    o = row.get(kind)
    if not o:
        return "-"
    if not o["runs"]:
        return f"fails: {o['error']}"
    return f"runs (max diff {o['max_abs_diff_vs_litert']:.4f})"


def _num(v, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def main(argv: list[str] | None = None) -> None:
    global QUANTIZER
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, help="keep the exported files here")
    parser.add_argument("--calibration-size", type=int, default=300)
    parser.add_argument("--runs", type=int, default=300, help="timed invokes per file")
    parser.add_argument("--tflite-python", help="a Python with tflite-runtime and this project")
    parser.add_argument("--mediapipe-python", help="a Python with mediapipe and this project")
    parser.add_argument(
        "--quantizer",
        choices=("ai_edge_quantizer", "litert_quantizer"),
        default="ai_edge_quantizer",
        help="the AEQ package (litert_quantizer: its renamed successor); results go to "
        "quantizer.md, or quantizer_litert.md",
    )
    args = parser.parse_args(argv)
    QUANTIZER = args.quantizer
    stem = "quantizer" if QUANTIZER == "ai_edge_quantizer" else "quantizer_litert"
    from importlib import metadata as dist

    results = {
        "command": "python benchmarks/bm_quantizer.py "
        + shlex.join(sys.argv[1:] if argv is None else argv),
        "quantizer": QUANTIZER.replace("_", "-"),
        "machine": machine_info(),
        "versions": {
            d: dist.version(d)
            for d in (QUANTIZER.replace("_", "-"), "ai-edge-litert", "tensorflow-cpu")
        },
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for i, run_dir in enumerate(args.runs_dirs):
            sub = work / f"{i}_{run_dir.name}"
            sub.mkdir(parents=True, exist_ok=True)
            results["runs"].append(evaluate_run(run_dir, sub, args))
    args.out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(args.out / f"{stem}.json", results)
    atomic.write_text(args.out / f"{stem}.md", report(results))
    log(f"wrote {args.out / stem}.md and {stem}.json")


if __name__ == "__main__":
    main()
