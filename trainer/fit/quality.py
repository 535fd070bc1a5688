"""Has the model learned anything? Each label's validation AP against what a random ranking scores.

A random ranking's expected AP is the label's prevalence, so a model at chance gets a tidy report
with an mAP that looks like a number. This verdict says so plainly, in the summary, `--json`
and the manifest (`manifest["quality"]`), with what to try.
"""

from __future__ import annotations

import numpy as np

from edge_runtime.evaluation.metrics import average_precision

N_PERMUTATIONS = 200  # random rankings per label, for the 95th percentile of chance AP
LABEL_MIN_LIFT = 0.10  # a label has learned if AP closes >= 10% of the gap chance -> 1 ...
MODEL_MIN_LIFT = 0.20  # ... the model if the mean label does >= 20% of it (and some label learned)
STRONG_LIFT = 0.50  # below this mean lift the model has learned, but weakly
CRITERIA = (
    f"lift = (AP - chance) / (1 - chance), chance = the label's validation prevalence; a label has "
    f"learned if its AP is above the 95th percentile of {N_PERMUTATIONS} random rankings and its lift "
    f">= {LABEL_MIN_LIFT}; the model if the mean lift >= {MODEL_MIN_LIFT} and some label learned "
    f"(weak below a mean lift of {STRONG_LIFT})"
)


def assess(
    y: np.ndarray,
    scores: np.ndarray,
    labels: list[str],
    n_train_pos: np.ndarray | None = None,
    seed: int = 0,
) -> dict:
    """The quality verdict, JSON-ready:

    {"learned": bool, "verdict": "learned"|"weak"|"not_learned", "map": float, "chance_map": float,
     "mean_lift": float, "per_label": {label: {"ap", "chance", "chance_p95", "lift", "learned"}},
     "not_learned": [labels], "advice": [str], "criteria": str}

    A label without validation positives cannot be judged: its entry has "learned": None.
    """
    y = np.asarray(y) > 0
    rng = np.random.default_rng(seed)
    per_label, lifts, aps, chances = {}, [], [], []
    for j, name in enumerate(labels):
        pos = int(y[:, j].sum())
        if pos == 0:
            per_label[name] = {
                "ap": None,
                "chance": 0.0,
                "chance_p95": None,
                "lift": None,
                "learned": None,
            }
            continue
        ap = average_precision(y[:, j], scores[:, j])
        chance = pos / len(y)
        null = [
            average_precision(rng.permutation(y[:, j]), scores[:, j]) for _ in range(N_PERMUTATIONS)
        ]
        p95 = float(np.percentile(null, 95))
        lift = (ap - chance) / (1 - chance) if chance < 1 else 0.0
        per_label[name] = {
            "ap": float(ap),
            "chance": float(chance),
            "chance_p95": p95,
            "lift": float(lift),
            "learned": bool(ap > p95 and lift >= LABEL_MIN_LIFT),
        }
        lifts.append(lift), aps.append(ap), chances.append(chance)
    judged = [n for n, v in per_label.items() if v["learned"] is not None]
    not_learned = [n for n in judged if not per_label[n]["learned"]]
    mean_lift = float(np.mean(lifts)) if lifts else 0.0
    learned = bool(mean_lift >= MODEL_MIN_LIFT and len(not_learned) < len(judged))
    verdict = "not_learned" if not learned else ("weak" if mean_lift < STRONG_LIFT else "learned")
    return {
        "learned": learned,
        "verdict": verdict,
        "map": float(np.mean(aps)) if aps else None,
        "chance_map": float(np.mean(chances)) if chances else None,
        "mean_lift": mean_lift,
        "per_label": per_label,
        "not_learned": not_learned,
        "advice": advice(verdict, not_learned, labels, n_train_pos),
        "criteria": CRITERIA,
    }


def advice(verdict: str, not_learned: list[str], labels: list[str], n_train_pos) -> list[str]:
    if verdict == "learned" and not not_learned:
        return []
    tips = []
    if verdict == "not_learned":
        tips.append(
            "the model scores at chance: check that the CSV's labels match its images "
            "(a shuffled or misaligned CSV looks exactly like this)"
        )
    if not_learned:
        counts = ""
        if n_train_pos is not None:
            index = {n: j for j, n in enumerate(labels)}
            counts = (
                " ("
                + ", ".join(f"{n}: {int(n_train_pos[index[n]])}" for n in not_learned[:8])
                + (", ..." if len(not_learned) > 8 else "")
                + " training positives)"
            )
        tips.append(f"more labelled images of the labels at chance{counts}")
    tips += [
        "start from pretrained weights: --arch mobilenetv2 --weights imagenet (or a local weights file)",
        "start from a run that already knows the domain: --init-from RUN_DIR",
        "a larger --input-size if the objects are small in the picture",
    ]
    return tips


def format_verdict(quality: dict) -> str:
    """The summary's lines about the verdict ('' when everything learned)."""
    if quality["verdict"] == "learned" and not quality["not_learned"]:
        return (
            f"quality: learned (mAP {quality['map']:.3f} vs {quality['chance_map']:.3f} at chance)"
        )
    head = {
        "not_learned": "WARNING: the model has NOT learned: validation mAP {m:.3f} vs {c:.3f} for a random "
        "ranking",
        "weak": "WARNING: the model has learned only weakly: validation mAP {m:.3f} vs {c:.3f} for a random "
        "ranking",
        "learned": "quality: learned (mAP {m:.3f} vs {c:.3f} at chance), but some labels have not",
    }[quality["verdict"]]
    lines = [head.format(m=quality["map"] or 0.0, c=quality["chance_map"] or 0.0)]
    if quality["not_learned"]:
        lines.append(
            "labels at chance: "
            + ", ".join(
                f"{n} (AP {quality['per_label'][n]['ap']:.3f}, chance {quality['per_label'][n]['chance']:.3f})"
                for n in quality["not_learned"]
            )
        )
    lines += [f"  try: {t}" for t in quality["advice"]]
    return "\n".join(lines)
