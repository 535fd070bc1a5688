"""int8 parity of the default start, measured over several trainings: how often does it pass?

    python benchmarks/bm_int8.py --setup squares --seeds 0 1 2 3 4 5 --work DIR [--out DIR]
    python benchmarks/bm_int8.py --setup squares-val256 --seeds 0 1 2 3 4 5 --work DIR
    python benchmarks/bm_int8.py --setup emoji --seeds 0 1 2 --work DIR
    python benchmarks/bm_int8.py --smoke --work DIR      # wiring only, figures meaningless

Training is the expensive part and conversion the cheap one, so each seed is trained once
(`edge-train` in a child process, as a user runs it; a run already in DIR/runs is reused) and
every export variant is then converted from the same run, in this process, through the
exporter's own steps (`load_run`, `reference`, `try_candidate`): the verdict is the default gate's
(exporter/config.py DEFAULT_TOLERANCES), on the run's held-out split, at the Keras thresholds.

Setups:
- `squares`: tests/test_pretrained.py's default-start test (colour squares of
  tests/make_fixture_models.py, 640 images, `--epochs 9 --input-size 64`), one data set, the
  training seed varies (CI's own training is not bit-reproducible either).
- `squares-val256`: the same test as it is now: the same 512 training images, and 256 held-out
  ones passed with `--val-data` (seed 2), so the gate judges 256 images.
- `emoji`: benchmarks/emoji_scenes.py's training style (600 images, Noto Color Emoji, needs
  `apt-get install -y fonts-noto-color-emoji`), `edge-train` with no options but `--seed`
  (EfficientNet-Lite0 from ImageNet at 224 px, head then fine-tuning: about 4 minutes a run on 2
  cores).

Variants: int8 weight scales (per-tensor, per-channel) x the exporter's two int8 fixes, each
alone and together: sum-preserving weight rounding (exporter/rounding.py) and the input
normalisation converted shift first (exporter/normalisation.py); "converter alone" is neither
(what edge-export did before). Per attempt: per-label flips (decisions
that differ from Keras's at its thresholds), minimum agreement, max and mean |p_tflite -
p_keras|, mAP drop, the gate's verdict, and how far from its threshold each flipped image's Keras
score was. Writes int8_<setup>.json / .md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from bm_common import log, machine_info  # noqa: E402

BIN = Path(sys.executable).parent
SETUPS = {
    "squares": dict(n=640, train_args=["--epochs", "9", "--input-size", "64"]),
    # the test since this benchmark: the same 512 training images, 256 held out (--val-data)
    "squares-val256": dict(n=512, n_val=256, train_args=["--epochs", "9", "--input-size", "64"]),
    "emoji": dict(n=600, train_args=[]),
    "smoke": dict(n=96, train_args=["--epochs", "2", "--input-size", "32"]),
}
# (weight scales, weight rounding, input normalisation split): the converter alone (nearest,
# as built), each fix alone, and both (the exporter's default since this benchmark)
FIXES = {
    "converter alone": ("nearest", False),
    "shift-first normalisation": ("nearest", True),
    "sum-preserving rounding": ("sum-preserving", False),
    "both (default)": ("sum-preserving", True),
}
VARIANTS = tuple(
    (scales, fix)
    for fix in FIXES
    for scales in ("per-tensor", "per-channel")
    if scales == "per-channel" or fix in ("converter alone", "both (default)")
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--setup", choices=["squares", "squares-val256", "emoji"], default="squares")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--work", help="data, runs and exports are kept here (required to measure)")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--smoke", action="store_true", help="tiny data, 2 epochs (wiring only)")
    p.add_argument(
        "--rewrite",
        action="store_true",
        help="only recompute the summary of --out's int8_<setup>.json and rewrite its .md",
    )
    return p.parse_args(argv)


def make_data(setup: str, work: Path) -> tuple[Path, Path | None]:
    """The training CSV, and the separate validation CSV when the setup has one."""
    csv, val = work / "data" / "labels.csv", work / "val" / "labels.csv"
    n_val = SETUPS[setup].get("n_val")
    if csv.is_file():
        return csv, (val if n_val else None)
    n = SETUPS[setup]["n"]
    if setup == "emoji":
        from emoji_scenes import SceneConfig, make_scenes

        return make_scenes(SceneConfig(str(work / "data"), n, "noto", 1, 256)), None
    sys.path.insert(0, str(ROOT / "tests"))
    from make_fixture_models import write_colour_squares

    train_csv = write_colour_squares(work / "data", n, seed=1)
    return train_csv, (write_colour_squares(work / "val", n_val, seed=2) if n_val else None)


def train(setup: str, csv: Path, val: Path | None, run_dir: Path, seed: int) -> float | None:
    """Train one run (skipped when it exists); its seconds, or None when reused."""
    if (run_dir / "manifest.json").is_file():
        return None
    cmd = [str(BIN / "edge-train"), str(csv), "--out", str(run_dir), "--seed", str(seed)]
    cmd += (["--val-data", str(val)] if val else []) + SETUPS[setup]["train_args"] + ["--json"]
    log(f"train: edge-train {csv.parent.name}/labels.csv --out {run_dir.name} " + " ".join(cmd[5:]))
    t0 = time.perf_counter()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"edge-train failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def attempts(run_dir: Path, seed: int) -> list[dict]:
    """Every variant of one run, judged by the default gate."""
    from edge_runtime.inference.classifier import Classifier
    from exporter import ExportConfig
    from exporter.export import load_run, reference, try_candidate
    from exporter.modes import Candidate, QuantMode

    base = ExportConfig(run_dir=str(run_dir), out=str(run_dir / "unused.tflite"))
    run = load_run(base)
    ref = reference(run, base, lambda msg: None)
    rows = []
    for scales, fix in VARIANTS:
        rounding, split = FIXES[fix]
        config = ExportConfig(
            run_dir=str(run_dir),
            weight_scales=scales,
            weight_rounding=rounding,
            split_normalisation=split,
            out=base.out,
        )
        t0 = time.perf_counter()
        conv = try_candidate(run, ref, Candidate(QuantMode.INT8, config.weight_scales), config)
        seconds = time.perf_counter() - t0
        scores = np.asarray(Classifier.from_bytes(conv.data, name="<bm>").scores(ref.x), float)
        rows.append(row(run, ref, conv.report, scores, seed, scales, fix, seconds))
        log(
            f"  {run_dir.name} {scales}/{fix}: {'PASS' if conv.report.passed else 'fail'} "
            f"flips {rows[-1]['flips']} max|d| {rows[-1]['max_abs']:.3f}"
        )
    return rows


def row(run, ref, report, scores, seed, scales, fix, seconds) -> dict:
    from exporter.parity import INT8_OUTPUT_STEP, near_threshold

    thr = ref.keras_thresholds
    flipped = (ref.keras_scores >= thr) != (scores >= thr)
    near = np.abs(ref.keras_scores - thr)[flipped]  # Keras's distance to the threshold, flips
    in_step = flipped & near_threshold(ref.keras_scores, thr, INT8_OUTPUT_STEP)
    allowed = allowed_flips(len(ref.x))
    every_flip_passes = bool(flipped.sum(axis=0).max() <= allowed and report.map_drop <= 0.02)
    return {
        "seed": seed,
        "run": run.run_dir.name,
        "weight_scales": scales,
        "fix": fix,
        "passed": report.passed,
        "failures": report.failures,
        "n": int(len(ref.x)),
        "flips": flipped.sum(axis=0).astype(int).tolist(),
        # what the int8 gate counts: flips of images Keras scored within one output step of the
        # threshold are not (exporter/parity.py near_threshold)
        "flips_judged": (flipped & ~in_step).sum(axis=0).astype(int).tolist(),
        "passed_counting_every_flip": every_flip_passes,
        "min_agreement": min(r["agreement"] for r in report.per_label),
        "max_abs": max(r["max_abs"] for r in report.per_label),
        "mean_abs": float(np.mean([r["mean_abs"] for r in report.per_label])),
        "map_keras": report.keras["map"],
        "map_drop": report.map_drop,
        "flip_distance_to_threshold": sorted(round(float(v), 4) for v in near),
        "convert_and_judge_seconds": round(seconds, 1),
    }


def allowed_flips(n: int, min_agreement: float = 0.98) -> int:
    """The most flipped decisions per label the gate lets through on `n` held-out images."""
    return int(np.floor((1.0 - min_agreement) * n + 1e-9))


def chance_failure(flips: np.ndarray, n: int) -> dict:
    """How often a conversion like these fails the gate by chance alone.

    `flips` is (attempts, labels). Each label's flips are taken as Poisson with that label's mean
    over the attempts, labels independent: the estimate. The bound is pessimistic: every label
    at the one-sided 95% upper bound of the worst label's mean.
    """
    from scipy.stats import chi2, poisson

    runs, labels = flips.shape
    k = allowed_flips(n)
    rates = flips.mean(axis=0)
    worst_total = int(flips.sum(axis=0).max())
    worst_hi = chi2.ppf(0.95, 2 * worst_total + 2) / 2 / runs
    return {
        "flips_per_label_rates": rates.tolist(),
        "worst_label_rate_95": float(worst_hi),
        "p_fail": float(1 - np.prod(poisson.cdf(k, rates))),
        "p_fail_95": float(1 - poisson.cdf(k, worst_hi) ** labels),
    }


def summary(rows: list[dict]) -> list[dict]:
    out = []
    for scales, fix in VARIANTS:
        rs = [r for r in rows if (r["weight_scales"], r["fix"]) == (scales, fix)]
        if not rs:
            continue
        flips = np.array([r["flips"] for r in rs])
        judged = np.array([r["flips_judged"] for r in rs])
        every = chance_failure(flips, rs[0]["n"])
        out.append(
            {
                "variant": f"{scales}, {fix}",
                "passed": sum(r["passed"] for r in rs),
                "passed_counting_every_flip": sum(r["passed_counting_every_flip"] for r in rs),
                "attempts": len(rs),
                "flips_per_label_mean": float(flips.mean()),
                "flips_within_one_step": int(flips.sum() - judged.sum()),
                "flips_max_label": int(judged.max()),
                "total_flips_per_run": float(flips.sum(axis=1).mean()),
                "mean_abs": float(np.mean([r["mean_abs"] for r in rs])),
                "max_abs": float(np.max([r["max_abs"] for r in rs])),
                "worst_map_drop": float(np.max([r["map_drop"] for r in rs])),
                **chance_failure(judged, rs[0]["n"]),
                "p_fail_counting_every_flip": every["p_fail"],
                "p_fail_95_counting_every_flip": every["p_fail_95"],
            }
        )
    # the exporter's default: per-tensor if it passes, else per-channel (same rounding)
    for fix in ("converter alone", "both (default)"):
        by_seed, every = {}, {}
        for r in rows:
            if r["fix"] == fix:
                by_seed[r["seed"]] = by_seed.get(r["seed"], False) or r["passed"]
                every[r["seed"]] = every.get(r["seed"], False) or r["passed_counting_every_flip"]
        if by_seed:
            out.append(
                {
                    "variant": f"edge-export's order (per-tensor, else per-channel), {fix}",
                    "passed": sum(by_seed.values()),
                    "passed_counting_every_flip": sum(every.values()),
                    "attempts": len(by_seed),
                }
            )
    return out


def _pct(p: float) -> str:
    return f"{100 * p:.0f}%" if p >= 0.1 else f"{100 * p:.2g}%"


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"# int8 parity over {len(report['seeds'])} trainings: {report['setup']}",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {m.get('cpu_model')}, {m.get('logical_cores')} cores, load {report['load_at_start']:.1f} "
        f"at start; {report['seconds']:.0f} s. Held-out images per run: {report['n_held_out']} "
        "(the run's validation split); default gate: per label agreement >= 0.98 with Keras at "
        "its thresholds, mAP drop <= 0.02.",
        "",
        "| variant | passed | passed, every flip counted | flips per label (mean) | of which "
        "within one step | worst label (judged) | mean abs | max abs | worst mAP drop | "
        "chance failure (95% bound) | same, every flip counted |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report["summary"]:
        if "flips_max_label" not in s:
            lines.append(
                f"| {s['variant']} | {s['passed']}/{s['attempts']} | "
                f"{s['passed_counting_every_flip']}/{s['attempts']} | | | | | | | | |"
            )
            continue
        lines.append(
            f"| {s['variant']} | {s['passed']}/{s['attempts']} | "
            f"{s['passed_counting_every_flip']}/{s['attempts']} | {s['flips_per_label_mean']:.2f} | "
            f"{s['flips_within_one_step']} | {s['flips_max_label']} | {s['mean_abs']:.4f} | "
            f"{s['max_abs']:.3f} | {s['worst_map_drop']:+.4f} | "
            f"{_pct(s['p_fail'])} ({_pct(s['p_fail_95'])}) | "
            f"{_pct(s['p_fail_counting_every_flip'])} ({_pct(s['p_fail_95_counting_every_flip'])}) |"
        )
    lines += [
        "",
        "The gate does not count a flip of an image Keras scored within one int8 output step "
        "(1/256) of the threshold (exporter/parity.py near_threshold); the columns 'every flip "
        "counted' judge as the gate did before that rule.",
        "",
        "Per attempt (flips per label; Keras score distance to threshold of each flip):",
        "",
    ]
    for r in report["rows"]:
        lines.append(
            f"- seed {r['seed']} {r['weight_scales']}, {r['fix']}: "
            f"{'pass' if r['passed'] else 'FAIL'}, flips {r['flips']} (judged "
            f"{r.get('flips_judged', r['flips'])}), min agreement "
            f"{r['min_agreement']:.3f}, max abs {r['max_abs']:.3f}, mAP drop {r['map_drop']:+.4f}; "
            f"distances {r['flip_distance_to_threshold']}"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from edge_runtime.atomic import write_json, write_text

    args = parse_args(argv)
    setup = "smoke" if args.smoke else args.setup
    out = Path(args.out)
    if args.rewrite:
        report = json.loads((out / f"int8_{setup}.json").read_text())
        report["summary"] = summary(report["rows"])
        write_json(out / f"int8_{setup}.json", report)
        write_text(out / f"int8_{setup}.md", markdown(report))
        return 0
    if not args.work:
        raise SystemExit("--work is required to measure")
    work = Path(args.work)
    t0 = time.perf_counter()
    load = os.getloadavg()[0]
    csv, val = make_data("squares" if setup == "smoke" else setup, work)
    rows, train_seconds = [], {}
    for seed in args.seeds:
        run_dir = work / "runs" / f"{setup}-s{seed}"
        train_seconds[seed] = train(setup, csv, val, run_dir, seed)
        rows += attempts(run_dir, seed)
    report = {
        "command": "python benchmarks/bm_int8.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "setup": setup,
        "seeds": args.seeds,
        "machine": machine_info(),
        "load_at_start": load,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": time.perf_counter() - t0,
        "train_seconds": train_seconds,
        "n_held_out": rows[0]["n"] if rows else 0,
        "summary": summary(rows),
        "rows": rows,
    }
    write_json(out / f"int8_{setup}.json", report)
    write_text(out / f"int8_{setup}.md", markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
