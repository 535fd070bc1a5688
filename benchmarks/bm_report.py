"""report.md and the PNG charts from the report dict (written atomically)."""

from __future__ import annotations

import io
import math
from pathlib import Path

from bm_common import MODES

from edge_runtime import atomic

CHARTS = ("latency_by_mode.png", "size_vs_map.png", "arch_comparison.png", "end_to_end.png")


def _f(v, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.{nd}f}"


def _rows(report: dict, **match) -> list[dict]:
    return [r for r in report["latency"]["rows"] if all(r.get(k) == v for k, v in match.items())]


def _one(report: dict, **match) -> dict:
    rows = _rows(report, **match)
    return rows[0] if rows else {}


def _save_png(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic.write_bytes(path, buf.getvalue())


def charts(report: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    for chart in (_chart_latency, _chart_size_vs_map, _chart_architectures, _chart_end_to_end):
        chart(report, out, plt, ticker)
    return list(CHARTS)


def _chart_latency(report: dict, out: Path, plt, ticker) -> None:
    """Latency by mode and threads: batch 1 (predict) and batch N (scores, per image)."""
    threads, batch = report["latency"]["threads"], report["latency"]["batch"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, (impl, b) in zip(axes, (("predict", 1), ("scores", batch))):
        width = 0.8 / (len(threads) + 1)
        for i, t in enumerate(threads):
            vals = [
                _one(report, impl=impl, mode=m, threads=t, batch=b).get("p50_ms", math.nan) / b
                for m in MODES
            ]
            ax.bar(
                [j + i * width for j in range(len(MODES))], vals, width, label=f"{impl}, {t} thr"
            )
        bare = [
            _one(report, impl="bare", mode=m, threads=threads[0], batch=b).get("p50_ms", math.nan)
            / b
            for m in MODES
        ]
        ax.bar(
            [j + len(threads) * width for j in range(len(MODES))],
            bare,
            width,
            color="grey",
            label=f"bare invoke, {threads[0]} thr",
        )
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(MODES))], MODES)
        k = _one(report, impl="keras_call", batch=b).get("p50_ms", math.nan) / b
        ax.set_title(f"batch {b}: p50 ms per image (Keras direct call: {k:.2f} ms)")
        ax.set_ylabel("ms per image (p50, log scale)")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%.3g"))
        ax.yaxis.set_minor_locator(ticker.LogLocator(base=10, subs=(2.0, 5.0)))
        ax.yaxis.set_minor_formatter(ticker.FormatStrFormatter("%.2g"))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.legend(fontsize=8)
    _save_png(fig, out / CHARTS[0])
    plt.close(fig)


def _chart_size_vs_map(report: dict, out: Path, plt, ticker) -> None:
    """Size vs mAP per export mode."""
    acc = report["accuracy"]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, m in enumerate(acc["modes"]):
        r = acc["modes"][m]
        ax.scatter(r["size_bytes"] / 1024, r["map"], s=50)
        ax.annotate(
            m,
            (r["size_bytes"] / 1024, r["map"]),
            textcoords="offset points",
            xytext=(5, 6 if i % 2 else -14),
        )
    ax.scatter(
        acc["keras"]["size_bytes"] / 1024, acc["keras"]["map"], marker="s", s=50, color="black"
    )
    ax.annotate(
        "keras (.keras)",
        (acc["keras"]["size_bytes"] / 1024, acc["keras"]["map"]),
        textcoords="offset points",
        xytext=(5, -10),
    )
    # At least 0.05 of mAP on the axis, so that differences in the 4th decimal do not look large.
    maps = [r["map"] for r in acc["modes"].values()] + [acc["keras"]["map"]]
    lo, hi = min(maps), max(maps)
    pad = max(0.0, 0.05 - (hi - lo)) / 2 + 0.005
    ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad) if hi + pad <= 1.0 else 1.0 + 0.005)
    ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%.3f"))
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_locator(ticker.LogLocator(base=10, subs=(2.0, 3.0, 5.0)))
    ax.xaxis.set_minor_formatter(ticker.FormatStrFormatter("%g"))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("file size (KiB, log)")
    ax.set_ylabel(f"test mAP ({acc['test_images']} images)")
    ax.set_title(f"{acc['arch']}: size vs accuracy per export mode")
    _save_png(fig, out / CHARTS[1])
    plt.close(fig)


def _chart_architectures(report: dict, out: Path, plt, ticker) -> None:
    """Architectures side by side."""
    archs = report["architectures"]
    names = list(archs)
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.6))
    panels = (
        ("params", "parameters (M)", 1e-6),
        ("macs", "MACs per image (M)", 1e-6),
        ("int8_predict_p50_ms", "int8 predict p50, 1 thread (ms)", 1.0),
        ("keras_test_map", "test mAP (Keras)", 1.0),
    )
    for ax, (key, title, scale) in zip(axes, panels):
        ax.bar(
            names,
            [(archs[n].get(key) or math.nan) * scale for n in names],
            color=["C0", "C1", "C2"][: len(names)],
        )
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
    _save_png(fig, out / CHARTS[2])
    plt.close(fig)


def _chart_end_to_end(report: dict, out: Path, plt, ticker) -> None:
    """End to end from camera JPEGs."""
    e2e = report["end_to_end"]["results"]
    fig, ax = plt.subplots(figsize=(7, 4))
    keys = ("predict_draft", "predict_full", "decode_draft", "decode_full")
    width = 0.8 / len(keys)
    for i, k in enumerate(keys):
        ax.bar(
            [j + i * width for j in range(len(e2e))],
            [r[k]["images_per_s"] for r in e2e],
            width,
            label=k,
        )
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(e2e))], [r["resolution"] for r in e2e])
    ax.set_ylabel("images per second (1 / p50)")
    ax.set_title(f"JPEG q90 to scores ({report['end_to_end']['model']})")
    ax.legend(fontsize=8)
    _save_png(fig, out / CHARTS[3])
    plt.close(fig)


def _md_header(report: dict) -> list[str]:
    """Title, machine and method."""
    m = report["machine"]
    v = m["versions"]
    lat = report["latency"]
    L = [
        "# Benchmark report",
        "",
        f"Produced by `{report['command']}` at {report['started_at']} in {report['seconds']:.0f} s "
        f"(profile `{report['profile']['name']}`).",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu_model']} ({m['logical_cores']} logical cores, {m['usable_cores']} usable), {m['machine']}",
        f"- OS: {m['platform']}; load average at start: {m['load_average_at_start']}",
        f"- Python {m['python']}; tensorflow {v['tensorflow']}, keras {v['keras']}, ai-edge-litert {v['ai-edge-litert']}, "
        f"numpy {v['numpy']}, pillow {v['pillow']}",
        f"- TFLite backend: {lat['backend']}; Keras runs with TensorFlow's own thread pools "
        f"(intra-op {lat['keras_threads']['intra_op']}, inter-op {lat['keras_threads']['inter_op']}; 0 = all cores)",
        "",
        "## Method",
        "",
        f"Same trained `{report['accuracy']['arch']}` model ({lat['input_size'][0]}x{lat['input_size'][1]} input) "
        "for every row; inputs are real demo test images at input size (uint8; the Keras rows get them as float32 "
        "0-255, converted once outside the timing, and so does the bare-interpreter floor). "
        f"Each figure is per call, {lat['warmup']} warm-up calls then {lat['runs']} timed calls "
        f"(Keras: {lat['keras_runs']}) with `time.perf_counter_ns`; the calls compared with each other are timed "
        "in interleaved blocks in one process, each with its own interpreter. `bare` is "
        "`set_tensor + invoke + get_tensor` on a raw interpreter of the same file at the same thread count; "
        "`ratio` = runtime p50 / bare p50 (the runtime's overhead). Numbers from a shared or busy machine are noisy; "
        "ratios taken within one run are more stable than absolute times.",
        "",
    ]
    return L


def _md_latency(report: dict) -> list[str]:
    lat = report["latency"]
    threads, batch = lat["threads"], lat["batch"]
    L = [
        "## 1. Latency",
        "",
        "| implementation | threads | batch | p50 ms | p90 ms | p99 ms | images/s | bare p50 ms | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for impl in ("keras_predict", "keras_call"):
        for r in _rows(report, impl=impl):
            L.append(
                f"| Keras `{'model.predict' if impl == 'keras_predict' else 'model(x, training=False)'}` | - | "
                f"{r['batch']} | {_f(r['p50_ms'])} | {_f(r['p90_ms'])} | {_f(r['p99_ms'])} | "
                f"{_f(r['images_per_s'], 1)} | - | - |"
            )
    for mode in MODES:
        for t in threads:
            for impl, b in (("predict", 1), ("scores", batch)):
                r = _one(report, impl=impl, mode=mode, threads=t, batch=b)
                bare = _one(report, impl="bare", mode=mode, threads=t, batch=b)
                ratio = _one(report, impl=f"{impl}/bare", mode=mode, threads=t, batch=b)
                if not r:
                    continue
                L.append(
                    f"| {mode} `Classifier.{impl}` | {t} | {b} | {_f(r['p50_ms'])} | {_f(r['p90_ms'])} | "
                    f"{_f(r['p99_ms'])} | {_f(r['images_per_s'], 1)} | {_f(bare.get('p50_ms'))} | "
                    f"{_f(ratio.get('ratio_p50'), 2)} |"
                )
    L += ["", "![latency](latency_by_mode.png)", ""]
    return L


def _md_end_to_end(report: dict) -> list[str]:
    e2e = report["end_to_end"]
    L = [
        "## 2. End to end from camera-size JPEG",
        "",
        f"{e2e['model']}, {e2e['threads']} thread(s); demo test images upscaled (bicubic) to camera size and "
        "saved as JPEG quality 90. `draft` = reduced-scale JPEG decoding (the default of `load_image` and "
        "`Classifier.predict`), `full` = `draft=False`. Images/s = 1 / p50 of one call (`predict` = decode, "
        "resize and inference; `decode` = `load_image` alone). Differences draft vs full: scores of the int8 "
        "model (steps of 1/256) and of the float32 export, and the decoded input frame (0-255).",
        "",
        "| resolution | files | KiB/file | predict draft img/s | predict full img/s | decode draft img/s | "
        "decode full img/s | predict speed-up | max score diff (int8) | max score diff (float32) | "
        "max / mean pixel diff | label sets changed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in e2e["results"]:
        L.append(
            f"| {r['resolution']} | {r['files']} | {_f(r['mean_file_kib'], 0)} | "
            f"{_f(r['predict_draft']['images_per_s'], 1)} | {_f(r['predict_full']['images_per_s'], 1)} | "
            f"{_f(r['decode_draft']['images_per_s'], 1)} | {_f(r['decode_full']['images_per_s'], 1)} | "
            f"{_f(r['speedup_predict_p50'], 2)}x | {_f(r['max_abs_score_diff'], 4)} | "
            f"{_f(r.get('float32_max_abs_score_diff'), 6)} | "
            f"{r['max_abs_pixel_diff']} / {_f(r['mean_abs_pixel_diff'], 2)} | "
            f"{r['images_with_different_labels']} |"
        )
    L += ["", "![end to end](end_to_end.png)", ""]
    return L


def _md_accuracy(report: dict) -> list[str]:
    acc = report["accuracy"]
    L = [
        "## 3. Size and accuracy per export mode",
        "",
        f"Demo test split ({acc['test_images']} images, never seen in training or threshold calibration), "
        "each model at its embedded thresholds (Keras: the manifest's). Agreement = fraction of equal yes/no "
        "decisions with Keras, each at its own thresholds (the exporter re-calibrates them on the exported model's "
        "outputs) and at the Keras thresholds (the score change alone); the parity columns come from the "
        "exporter's gate on the validation split.",
        "",
        "| model | size KiB | x Keras file | mAP | micro-F1 | macro-F1 | test agreement | agreement at Keras thr. | "
        "max thr. shift | test max abs diff | parity min agreement | parity max abs diff | parity mAP drop | gate |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        f"| Keras `.keras` | {_f(acc['keras']['size_bytes'] / 1024, 1)} | 1.000 | {_f(acc['keras']['map'])} | "
        f"{_f(acc['keras']['micro_f1'])} | {_f(acc['keras']['macro_f1'])} | - | - | - | - | - | - | - | - |",
    ]
    for mode in acc["modes"]:
        r = acc["modes"][mode]
        scales = f" ({r['weight_scales']})" if r.get("weight_scales") else ""
        L.append(
            f"| {mode}{scales} | {_f(r['size_bytes'] / 1024, 1)} | {_f(r['size_bytes'] / acc['keras']['size_bytes'])} | "
            f"{_f(r['map'])} | {_f(r['micro_f1'])} | {_f(r['macro_f1'])} | {_f(r['test_agreement_with_keras'])} | "
            f"{_f(r.get('test_agreement_at_keras_thresholds'))} | {_f(r.get('max_threshold_shift'))} | "
            f"{_f(r['test_max_abs_diff_vs_keras'], 4)} | {_f(r['parity_min_agreement'])} | "
            f"{_f(r['parity_max_abs'], 4)} | {_f(r['parity_map_drop'], 4)} | {r['gate']} |"
        )
    L += ["", "![size vs mAP](size_vs_map.png)", ""]
    return L


def _md_architectures(report: dict) -> list[str]:
    archs = report["architectures"]
    L = [
        "## 4. Architectures",
        "",
        f"{' and '.join(a for a in archs if a != 'seed')} trained with the same configuration "
        f"({report['profile']['train']}){', mobilenetv3 from scratch (weights=None)' if 'mobilenetv3' in archs else ''}; "
        "seed with the seed recipe as written (`--recipe seed`: "
        "64 px, Adam 1e-3, 5 epochs, plain BCE, no augmentation, thresholds 0.5), each judged at its own input size. MACs counted from the layer configs (Conv2D, DepthwiseConv2D, Dense; one image). "
        "int8 latency: `Classifier.predict` on a frame, 1 thread, with its bare-invoke floor.",
        "",
        "| arch | params | MACs | Keras KiB | int8 KiB | int8 predict p50 ms | bare p50 ms | epochs run | "
        "train s | test mAP Keras | test mAP int8 | int8 gate |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, a in archs.items():
        L.append(
            f"| {name} | {_f(a['params'])} | {_f(a['macs'])} | {_f(a['keras_size_bytes'] / 1024, 1)} | "
            f"{_f(a['int8_size_bytes'] / 1024, 1)} | {_f(a['int8_predict_p50_ms'])} | {_f(a['int8_bare_p50_ms'])} | "
            f"{a['epochs_run']} | {_f(a['train_seconds'], 0)} | {_f(a['keras_test_map'])} | "
            f"{_f(a['int8_test_map'])} | {a['int8_gate']} |"
        )
    L += ["", "![architectures](arch_comparison.png)", ""]
    return L


def markdown(report: dict) -> str:
    sections = (_md_header, _md_latency, _md_end_to_end, _md_accuracy, _md_architectures)
    return "\n".join(line for section in sections for line in section(report)) + "\n"


def write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report["charts"] = charts(report, out)
    atomic.write_json(out / "report.json", report)
    atomic.write_text(out / "report.md", markdown(report))
